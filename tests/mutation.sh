#!/usr/bin/env bash
# Mutation testing of migsync's pure core with mutmut 3 (not part of tests/run or .ci/run:
# it runs the non-Slurm suite once per mutant, ~20-40 minutes per module on 2 cores).
#
#   tests/mutation.sh                 # every core module, one after the other
#   tests/mutation.sh hostlist emit   # only these (names as in CORE below)
#
# Each module runs in its own scratch copy of the checkout (the files git tracks, as they are in the
# work tree: `git add` a new test file first), with mutmut told to mutate only that file and
# to select tests with `-m "not slurm"` (the real-Slurm tests are minutes each and are not
# needed to kill mutants of pure code; nor are the hook, NHC, fast-Prolog and signal tests,
# which run the hooks as slurmd would, in subprocesses that cannot see the mutant). Results: mutation-report/<module>.txt (every mutant
# and its status) and a summary line per module in mutation-report/summary.txt.
# Surviving mutants that are equivalent are justified in tests/mutation-survivors.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CORE=(check act hostlist slurmsyntax gresconf slurmconf procfs backends/smi model emit discovery)
mods=("$@")
[ ${#mods[@]} -gt 0 ] || mods=("${CORE[@]}")
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 'mutmut>=3,<4'
OUT=${MUTATION_OUT:-$ROOT/mutation-report}
mkdir -p "$OUT"
JOBS=${MUTATION_JOBS:-2}
# MUTATION_TESTS="tests/test_smi.py tests/test_fixtures.py": a quicker run with only those
# files; its kill rate is a lower bound of the whole selection's (more tests kill more).
TESTS='"tests"'
if [ -n "${MUTATION_TESTS:-}" ]; then
    TESTS=$(printf '"%s", ' $MUTATION_TESTS); TESTS=${TESTS%, }
fi

for mod in "${mods[@]}"; do
    file="migsync/$mod.py"
    [ -f "$file" ] || { echo "mutation.sh: no such module: $file" >&2; exit 2; }
    work=$(mktemp -d /tmp/migsync-mutation.XXXXXX)
    commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- migsync tests || echo +changes)  # what the copy holds
    chmod 755 "$work"  # one test runs migsync as nobody from the copy
    git ls-files -z -c | (cd "$ROOT" && xargs -0 cp --parents -t "$work" 2>/dev/null || true)
    cat >> "$work/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["migsync"]
only_mutate = ["$file"]
pytest_add_cli_args_test_selection = [$TESTS, "-m", "not slurm", "-p", "no:cacheprovider", "--ignore=tests/test_hermetic.py",
    "--ignore=tests/test_fastprolog.py", "--ignore=tests/test_hooks.py", "--ignore=tests/test_nhc.py",
    "--ignore=tests/test_faults.py",
    "--deselect=tests/test_bad_input.py::test_unreadable_gres_conf"]  # runs /usr/bin/python3, which lacks mutmut
also_copy = ["tests", "migsync", "conf", "hooks", "bench", "README.md", ".ci"]
TOML
    echo "== $mod ($work)"
    start=$(date +%s)
    (cd "$work" && "$ROOT/.venv/bin/mutmut" run --max-children "$JOBS" > "$work/run.log" 2>&1) || {
        echo "mutation.sh: mutmut failed for $mod, see $work/run.log" >&2; tail -20 "$work/run.log" >&2; continue; }
    (cd "$work" && "$ROOT/.venv/bin/mutmut" results --all true) > "$OUT/${mod//\//.}.txt" 2>&1 || true
    # the diff of every survivor, to kill it with a test or justify it in mutation-survivors.md
    : > "$OUT/${mod//\//.}.survivors.diff"
    for m in $(sed -n 's/^ *\([^ ]*\): survived$/\1/p' "$OUT/${mod//\//.}.txt"); do
        (cd "$work" && "$ROOT/.venv/bin/mutmut" show "$m") >> "$OUT/${mod//\//.}.survivors.diff" 2>&1 || true
    done
    secs=$(( $(date +%s) - start ))
    # one line per mutant: "    name: status"
    total=$(grep -c ': ' "$OUT/${mod//\//.}.txt" || true)
    killed=$(grep -c ': killed$' "$OUT/${mod//\//.}.txt" || true)
    survived=$(grep -c ': survived$' "$OUT/${mod//\//.}.txt" || true)
    other=$(( total - killed - survived ))
    pct=$(awk -v k="$killed" -v t="$total" 'BEGIN { printf (t ? "%.1f" : "n/a"), (t ? 100*k/t : 0) }')
    line="$mod: $killed/$total killed ($pct%), $survived survived, $other other (timeout/no tests/suspicious), ${secs}s, $commit${MUTATION_TESTS:+, tests: $MUTATION_TESTS}"
    echo "$line"
    grep -v "^$mod:" "$OUT/summary.txt" 2>/dev/null > "$OUT/summary.tmp" || true
    echo "$line" >> "$OUT/summary.tmp"; mv "$OUT/summary.tmp" "$OUT/summary.txt"
    [ -n "${MUTATION_KEEP:-}" ] || rm -rf "$work"
done
