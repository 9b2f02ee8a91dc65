"""Which Slurm release's gres.conf rules apply: `slurmd -V`, remembered while slurmd is the
same file, so a Prolog that must check again does not start slurmd each time (issue 11)."""
import os
import shutil

import pytest

from migsync import runner, slurmversion


@pytest.mark.parametrize("text, want", [
    # expected values written by hand from what `slurmd -V` and the packages print
    ("slurm 22.05.8", "22.05"),
    ("slurm-wlm 24.11.5", "24.11"),
    ("24.11", "24.11"),
    ("slurm 26.05.0-0rc1", "26.05"),
    ("v124.11", "24.11"),       # the first two digits before a dot, as the regex did
    ("1.2.34.56", "34.56"),
    ("slurm 2.6", None),        # one digit each side: not a series
    ("", None),
    ("slurm ٢٢.٠٥", None),     # only ASCII digits
])
def test_series_is_found_in_version_text(text, want):
    if want is None:
        with pytest.raises(slurmversion.ConfigError):
            slurmversion.parse(text)
    else:
        assert slurmversion.parse(text) == want


@pytest.fixture
def slurmd(tmp_path, monkeypatch):
    """A fake slurmd that prints a version and counts its starts."""
    count = tmp_path / "starts"
    prog = tmp_path / "slurmd"
    prog.write_text(f'#!/bin/sh\necho x >> {count}\necho "slurm 24.11.5"\n')
    prog.chmod(0o755)
    monkeypatch.setattr(runner, "lookup", lambda name, search=runner.SAFE_PATH: str(prog)
                        if name == "slurmd" else name)

    class Fake:
        path = prog

        @staticmethod
        def starts():
            return len(count.read_text().splitlines()) if count.exists() else 0
    return Fake


def test_detect_runs_slurmd_and_names_the_binary(slurmd):
    series, how, ident = slurmversion.detect()
    assert (series, how) == ("24.11", "slurmd -V") and slurmd.starts() == 1
    assert ident.startswith(f"{slurmd.path}:")


def test_a_memo_of_the_same_binary_answers_without_starting_slurmd(slurmd):
    _, _, ident = slurmversion.detect()
    assert slurmversion.detect(memo={"slurmd": ident, "series": "24.11"}) == (
        "24.11", "slurmd -V", ident)
    assert slurmd.starts() == 1  # only the first call started it


def test_an_upgraded_slurmd_is_asked_again(slurmd):
    _, _, ident = slurmversion.detect()
    slurmd.path.write_text(slurmd.path.read_text().replace("24.11.5", "26.05.1"))
    os.utime(slurmd.path, (1, 1))  # an upgrade: same path, new mtime
    series, _, new = slurmversion.detect(memo={"slurmd": ident, "series": "24.11"})
    assert series == "26.05" and new != ident and slurmd.starts() == 2


@pytest.mark.parametrize("memo", [None, {}, {"slurmd": "", "series": "24.11"},
                                  {"series": "24.11"}, "24.11",
                                  {"slurmd": "SAME", "series": "24.11; rm -rf /"},
                                  {"slurmd": "SAME", "series": 24.11}])
def test_a_memo_that_is_not_exactly_ours_is_not_believed(slurmd, memo):
    _, _, ident = slurmversion.detect()
    if isinstance(memo, dict) and memo.get("slurmd") == "SAME":
        memo = dict(memo, slurmd=ident)
    assert slurmversion.detect(memo=memo)[0] == "24.11"
    assert slurmd.starts() == 2


def test_no_slurmd_gives_no_identity(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "lookup", lambda name, search=runner.SAFE_PATH:
                        str(tmp_path / "absent") if name == "slurmd" else name)
    monkeypatch.setattr(runner, "run", lambda argv, timeout=10: runner.Result(argv, 1, "", ""))
    assert slurmversion.detect(memo={"slurmd": "", "series": "24.11"}) == (None, "not found", "")


def test_a_prolog_that_must_check_again_reuses_the_health_checks_slurmd_version(
        slurmd, tmp_path, scontrol):
    """The health check asks slurmd; the Prolog after a gres.conf change checks again (not
    from cache) but takes the version from the state cache: slurmd starts once in all."""
    from conftest import SAMPLE, run_cli, smi_args

    gres = tmp_path / "gres.conf"
    shutil.copy(os.path.join(SAMPLE, "gres.conf"), gres)
    (tmp_path / "run").mkdir(mode=0o700)
    common = [*smi_args("seed", gres, os.path.join(SAMPLE, "slurm.conf"), "c51-g002"),
              "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "run" / "state.json",
              "--slurm-backend", "scontrol", "--scontrol", scontrol[0]]
    r = run_cli("healthcheck", "--json", "--no-syslog", *common)
    assert r.code == 0 and r.json()["slurm_version"]["series"] == "24.11", r.err
    assert slurmd.starts() == 1
    os.utime(gres, (1, 1))
    r = run_cli("prolog", "--json", *common)
    doc = r.json()
    assert r.code == 0 and doc["from_cache"] is False and doc["ok"] is True, r.err
    assert slurmd.starts() == 1


# The slurmd this run descends from (slurmd starts the health check and the Prolog): its
# binary is the Slurm whose rules apply, wherever it is installed. The walk is tested on
# hand-built /proc trees, and once on the real /proc.
from migsync.slurmversion import running_slurmd as real_running_slurmd  # noqa: E402 (conftest patches the module's)


def _proc(tmp_path, chain, exe_of):
    """chain: [(pid, comm, ppid)], exe_of: {pid: target}; -> the fake /proc."""
    proc = tmp_path / "proc"
    for pid, comm, ppid in chain:
        d = proc / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 100\n")
        if pid in exe_of:
            os.symlink(exe_of[pid], d / "exe")
    return str(proc)


def _binary(path, mode=0o755):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho 'slurm 24.11.4'\n")
    path.chmod(mode)
    return str(path)


def test_the_slurmd_a_hook_runs_under_is_found_by_its_binary(tmp_path):
    slurmd = _binary(tmp_path / "opt" / "slurm" / "sbin" / "slurmd")
    proc = _proc(tmp_path, [(300, "python3", 200), (200, "sh", 100), (100, "slurmd", 1)],
                 {100: slurmd, 200: "/bin/dash"})
    assert real_running_slurmd(proc, 300) == slurmd
    assert real_running_slurmd(proc, 200) == slurmd


def test_under_slurmstepd_the_slurmd_beside_it_is_the_one(tmp_path):
    sbin = tmp_path / "opt" / "slurm" / "sbin"
    slurmd = _binary(sbin / "slurmd")
    stepd = _binary(sbin / "slurmstepd")
    proc = _proc(tmp_path, [(300, "sh", 250), (250, "slurmstepd", 1)], {250: stepd})
    assert real_running_slurmd(proc, 300) == slurmd


@pytest.mark.parametrize("case", ["no-ancestor", "deleted", "no-exe", "odd-comm", "cycle",
                                  "bad-stat"])
def test_when_the_walk_cannot_say_it_says_nothing(tmp_path, case):
    slurmd = _binary(tmp_path / "sbin" / "slurmd")
    chains = {
        "no-ancestor": ([(300, "python3", 200), (200, "bash", 1)], {}),
        "deleted": ([(300, "sh", 100), (100, "slurmd", 1)], {100: slurmd + " (deleted)"}),
        "no-exe": ([(300, "sh", 100), (100, "slurmd", 1)], {}),
        # a process named "my (slurmd)" is not slurmd: the name is what the last ')' closes
        "odd-comm": ([(300, "my (slurmd) x", 1)], {300: slurmd}),
        "cycle": ([(300, "sh", 301), (301, "sh", 300)], {}),
        "bad-stat": ([(300, "sh", "x")], {}),
    }
    chain, exe_of = chains[case]
    assert real_running_slurmd(_proc(tmp_path, chain, exe_of), 300) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the trust rule applies to root only")
def test_a_running_slurmd_binary_others_could_write_is_not_used(tmp_path):
    slurmd = _binary(tmp_path / "sbin" / "slurmd", 0o775)
    proc = _proc(tmp_path, [(300, "sh", 100), (100, "slurmd", 1)], {100: slurmd})
    assert real_running_slurmd(proc, 300) is None


def test_the_running_slurmd_wins_over_root_path(tmp_path, monkeypatch, slurmd):
    """The fixture's slurmd on the fixed PATH says 24.11; the one this run descends from
    (a /opt build) says 22.05: its rules apply."""
    opt = tmp_path / "opt" / "slurmd"
    opt.parent.mkdir()
    opt.write_text('#!/bin/sh\necho "slurm 22.05.11"\n')
    opt.chmod(0o755)
    monkeypatch.setattr(slurmversion, "running_slurmd", lambda *a, **k: str(opt))
    series, how, ident = slurmversion.detect()
    assert (series, how) == ("22.05", "slurmd -V") and ident.startswith(f"{opt}:")
    assert slurmd.starts() == 0


def test_the_real_proc_walk_finds_a_parent_named_slurmd(tmp_path):
    """On the real /proc: a copy of sh installed as .../sbin/slurmd runs Python, which finds
    that copy (its comm is 'slurmd', its exe the copy)."""
    fake = tmp_path / "sbin" / "slurmd"
    fake.parent.mkdir()
    shutil.copy("/bin/sh", fake)
    fake.chmod(0o755)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from migsync import slurmversion; "
            "print(slurmversion.running_slurmd())")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import subprocess
    import sys

    r = subprocess.run([str(fake), "-c", f'"$0" -I -c "$1" "$2"; exit $?', sys.executable, code,
                        repo], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(fake)
