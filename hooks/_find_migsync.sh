# Sourced by the hook scripts: find migsync and start it so that only migsync is imported.
# Slurm runs hooks as root with no PATH (HealthCheckProgram gets only SLURMD_NODENAME), in its
# log or spool directory. So: a fixed PATH, `cd /`, and an absolute interpreter in isolated
# mode (python -I: neither the working directory nor PYTHONPATH nor the user's site-packages
# is on sys.path), whatever the caller's environment says.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
MIGSYNC_PYTHON_BAKED=""   # written by `migsync install-hooks`: this installation's interpreter
MIGSYNC_SRC_BAKED=""      # ... and the source tree it imports migsync from, when not installed

case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
here=$(cd "$here" 2>/dev/null && pwd -P) || here=/nonexistent
py=""
src=""
if [ -n "$MIGSYNC_PYTHON_BAKED" ]; then
    py=$MIGSYNC_PYTHON_BAKED
    src=$MIGSYNC_SRC_BAKED
elif [ -f "$here/../migsync/__init__.py" ] && [ -f "$here/../pyproject.toml" ]; then
    # a source checkout: its own tree first, with its .venv (tests/run) or the system python3
    src=$(cd "$here/.." && pwd -P)
    for c in "$src/.venv/bin/python" /usr/bin/python3; do
        if [ -x "$c" ]; then py=$c; break; fi
    done
else
    # copied into a venv (/opt/migsync/hooks or /opt/migsync/bin), else the usual venv
    for c in "$here/../bin/python3" "$here/python3" /opt/migsync/bin/python3; do
        if [ -x "$c" ]; then py=$c; break; fi
    done
    if [ -z "$py" ]; then
        # a pip-installed console script names its interpreter on its first line
        for c in /usr/local/bin/migsync /usr/bin/migsync; do
            if [ -x "$c" ]; then
                IFS= read -r first < "$c"
                case $first in "#!"/*python*) py=${first#??}; py=${py%% *} ;; esac
                break
            fi
        done
    fi
fi

# The interpreter imports migsync from $src (if any) or its own site-packages, nothing
# else; a failure to start is one line and exit 70, never a traceback. The Prolog goes
# through migsync.fastprolog: a still-valid clean verdict answers without loading the CLI
# (hooks/prolog calls it "prolog-hook", for the exit code it maps; see there).
MIGSYNC_BOOT='import sys
src = sys.argv.pop(1)
if src:
    sys.path.insert(0, src)
try:
    if sys.argv[1:2] in (["prolog"], ["prolog-hook"]):
        try:  # hooks/prolog asks for "prolog-hook": a mismatch exits 86 there, not 1
            from migsync import fastprolog
            main_exit = fastprolog.hook_main if sys.argv[1] == "prolog-hook" else fastprolog.main
            del sys.argv[1]
        except ImportError:
            sys.argv[1] = "prolog"
            from migsync.cli import main_exit
    else:
        from migsync.cli import main_exit
except BaseException as exc:
    sys.stderr.write("migsync hook: cannot start migsync with %s: %s: %s\n"
                     % (sys.executable, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""))
    sys.exit(70)
sys.argv[0] = "migsync"
main_exit()'

migsync_missing() {
    echo "migsync hook: migsync not found (no interpreter beside $here, in a source checkout, /opt/migsync or a migsync console script); install it and run \`migsync install-hooks DIR\`" >&2
}

# migsync_exec COMMAND [ARGS]: replace the shell with migsync; 127 if it cannot be found.
migsync_exec() {
    if [ -z "$py" ] || [ ! -x "$py" ]; then migsync_missing; return 127; fi
    cd / || return 70
    exec "$py" -I -c "$MIGSYNC_BOOT" "$src" "$@"
}

# migsync_call COMMAND [ARGS]: run migsync and return its exit code (127: not found).
migsync_call() {
    if [ -z "$py" ] || [ ! -x "$py" ]; then migsync_missing; return 127; fi
    (cd / && exec "$py" -I -c "$MIGSYNC_BOOT" "$src" "$@")
}
