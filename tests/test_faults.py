"""Concurrency, signals and deadlines, with real processes and hanging fakes."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import hermetic_env, node

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "migsync", "sample", "seed-node")


def env():
    # SLURM_CONF: an explicit slurm.conf, since another checkout's configless test may own
    # /run/slurm/conf while this runs
    return hermetic_env(PYTHONPATH=REPO, MIGSYNC_CONFIG=os.devnull, PATH="/usr/bin:/bin",
                        SLURM_CONF=os.path.join(SAMPLE, "slurm.conf"))


def script(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def hc_argv(tmp_path, smi, scontrol, *extra):
    return [sys.executable, "-m", "migsync", "healthcheck", "--no-syslog", "--backend", "nvidia-smi",
            "--nvidia-smi", smi, "--root", os.path.join(node("seed"), "root"),
            "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
            "--lock-file", str(tmp_path / "lock"), "--cache-file", str(tmp_path / "state.json"),
            "--prom-file", str(tmp_path / "prom" / "migsync.prom"),
            "--slurm-backend", "scontrol", "--scontrol", scontrol, *extra]


def wait_for(pred, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def fakes(tmp_path):
    log = tmp_path / "scontrol.log"
    scontrol = script(tmp_path / "scontrol", f'echo "$*" >> {log}\n'
                      'echo "NodeName=c51-g002 State=IDLE"')
    hang = script(tmp_path / "nvidia-smi-hang", f"echo $$ >> {tmp_path}/smi.pids\nexec sleep 300")
    return scontrol, hang, log


def test_two_runs_at_once_the_second_waits_then_exits_4_without_acting(tmp_path, fakes):
    scontrol, hang, log = fakes
    first = subprocess.Popen(hc_argv(tmp_path, hang, scontrol, "--timeout", "8"), env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (tmp_path / "smi.pids").exists()), "first run never started"
        t = time.monotonic()
        second = subprocess.run(hc_argv(tmp_path, os.path.join(node("seed"), "nvidia-smi"),
                                        scontrol, "--lock-wait", "0.5"),
                                env=env(), capture_output=True, text=True, timeout=60)
        assert second.returncode == 4, second.stderr
        assert "another migsync run (pid" in second.stderr
        assert time.monotonic() - t < 30
        assert not log.exists(), "the second run acted"
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)


@pytest.mark.parametrize("sig,code,name", [(signal.SIGTERM, 143, "SIGTERM"),
                                            # an ssh session dropped under `migsync check`:
                                            # SIGHUP's default action left the child running
                                            (signal.SIGHUP, 129, "SIGHUP")])
def test_sigterm_mid_run_leaves_no_partial_state_and_kills_the_child(tmp_path, fakes, sig, code,
                                                                     name):
    scontrol, hang, log = fakes
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    (prom_dir / "migsync.prom").write_text("# from the last run\n")
    proc = subprocess.Popen(hc_argv(tmp_path, hang, scontrol, "--timeout", "60"), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (tmp_path / "smi.pids").exists())
    child = int((tmp_path / "smi.pids").read_text().split()[0])
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert f"migsync: terminated ({name}); nothing was left half-written" in err
    assert "Traceback" not in err
    assert wait_for(lambda: not alive(child), 10), "the hanging nvidia-smi survived"
    assert (prom_dir / "migsync.prom").read_text() == "# from the last run\n"
    assert [f for f in os.listdir(prom_dir)] == ["migsync.prom"]
    assert not (tmp_path / "state.json").exists()
    assert not log.exists()


def test_under_nohup_sighup_stays_ignored(tmp_path, fakes):
    """`nohup migsync check ...` asks for the run to outlive the terminal: migsync must not
    turn an ignored SIGHUP back into its own exit 129."""
    scontrol, hang, log = fakes
    proc = subprocess.Popen(hc_argv(tmp_path, hang, scontrol, "--timeout", "60"), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        assert wait_for(lambda: (tmp_path / "smi.pids").exists())
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert proc.poll() is None, "an ignored SIGHUP ended the run"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 143


def test_a_command_printing_without_end_is_stopped_not_buffered(tmp_path, fakes):
    """A broken nvidia-smi that prints for ever filled memory until its timeout (1.5 GB in
    3 s, measured): its output is capped, the child killed, and the run is a discovery
    failure naming the cause."""
    scontrol, _, log = fakes
    flood = script(tmp_path / "nvidia-smi-flood",
                   f"echo $$ >> {tmp_path}/smi.pids\nexec yes '0, 00000000:17:00.0, GPU-x, A100'")
    # a short timeout only so that the run without the cap (it waited for the timeout,
    # buffering all the while) stays small
    r = subprocess.run(hc_argv(tmp_path, flood, scontrol, "--timeout", "2",
                               "--no-drain-on-discovery-failure"),
                       env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert r.stderr.splitlines()[0] == ("migsync: nvidia-smi: nvidia-smi-flood printed more "
                                        "than 16 MiB: stopped"), r.stderr
    for pid in (tmp_path / "smi.pids").read_text().split():
        assert wait_for(lambda: not alive(int(pid)), 10), "the flooding nvidia-smi survived"
    assert not log.exists() or "update" not in log.read_text()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare for a private full tmpfs")
@pytest.mark.parametrize("cmd,code", [("healthcheck", 0), ("prolog", 0)])
def test_a_full_state_directory_is_no_internal_error(tmp_path, fakes, cmd, code):
    """/run is a small tmpfs; when it is full, writing the holder's pid into the lock failed
    with ENOSPC: 'internal error', exit 70 for the health check. The lock is held all the
    same; the pid only names the holder in a waiting run's message."""
    scontrol, _, log = fakes
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    argv = hc_argv(tmp_path, os.path.join(node("seed"), "nvidia-smi"), scontrol)
    argv[argv.index("healthcheck")] = cmd
    argv[argv.index("--lock-file") + 1] = str(run / "lock")
    argv = [a for a in argv if not a.endswith("migsync.prom") and a != "--prom-file"]
    shell = (f"mount -t tmpfs -o size=8k tmpfs {run} && chmod 755 {run} && "
             f"(dd if=/dev/zero of={run}/fill bs=1k count=64 2>/dev/null; true) && "
             'exec "$@"')
    r = subprocess.run(["unshare", "-m", "sh", "-c", shell, "sh", *argv], env=env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == code, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert not log.exists() or "update" not in log.read_text()


def test_run_never_exceeds_its_deadline_when_every_command_hangs(tmp_path):
    scontrol = script(tmp_path / "scontrol", "exec sleep 300")
    hang = script(tmp_path / "nvidia-smi", "exec sleep 300")
    t = time.monotonic()
    r = subprocess.run(hc_argv(tmp_path, hang, scontrol, "--timeout", "120", "--deadline", "4"),
                       env=env(), capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t
    assert r.returncode == 5, r.stderr  # discovery timed out, then scontrol did too
    assert "timed out" in r.stderr
    assert elapsed < 4 + 5, f"took {elapsed:.1f}s with a 4 s deadline"  # 5 s: interpreter start


def test_prolog_path_never_imports_pynvml_or_starts_nvidia_smi(tmp_path, fakes):
    scontrol, hang, log = fakes
    code = (
        "import sys\n"
        "from migsync import cli\n"
        f"args = {hc_argv(tmp_path, os.path.join(node('seed'), 'nvidia-smi'), scontrol)[4:]!r}\n"
        "b = args.index('--backend'); args[b + 1] = 'auto'  # the full check tries NVML first\n"
        "assert cli.main(['healthcheck'] + args) == 0\n"
        "assert 'pynvml' in sys.modules\n"
        "for m in [m for m in sys.modules if m.startswith(('pynvml', 'migsync.backends'))]:\n"
        "    del sys.modules[m]\n"
        "i = args.index('--nvidia-smi'); args[i + 1] = '/nonexistent/nvidia-smi'\n"
        "assert cli.main(['prolog'] + args) == 0\n"
        "bad = [m for m in sys.modules if m.startswith(('pynvml', 'migsync.backends'))]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


# --- issue 12: the Prolog never exits non-zero for its own faults ------------------------

HOOK = os.path.join(REPO, "hooks", "prolog")


def prolog_hook(tmp_path, state, seed="seed-lost", *extra, env=None):
    """hooks/prolog as slurmd starts it (bare environment), with recorded node data."""
    s = tmp_path / "scontrol"
    if not s.exists():
        script(s, f'echo "$*" >> {tmp_path}/scontrol.log\n'
                  '[ "$1" = show ] && echo "NodeName=c51-g002 State=IDLE"\nexit 0')
    args = ["--no-syslog", "--backend", "nvidia-smi", "--nvidia-smi",
            os.path.join(node(seed), "nvidia-smi"), "--root", os.path.join(node(seed), "root"),
            "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
            "--lock-file", str(state / "lock"), "--cache-file", str(state / "state.json"),
            "--slurm-backend", "scontrol", "--scontrol", str(s), *extra]
    e = hermetic_env(SLURMD_NODENAME="c51-g002", MIGSYNC_CONFIG=os.devnull,
                     SLURM_CONF=os.path.join(SAMPLE, "slurm.conf"))
    e.update(env or {})
    return subprocess.run([HOOK, *args], env=e, capture_output=True, text=True, timeout=60,
                          cwd="/")


def good_cache(tmp_path, state):
    """The cache a full check of the consistent node writes: {ok: true}. Corrupting it must
    never make the Prolog believe anything; the mismatched node must still be refused."""
    r = prolog_hook(tmp_path, state, "seed")  # a cache miss: procfs check, no cache written
    assert r.returncode == 0, r.stderr
    code = subprocess.run([sys.executable, "-m", "migsync", "healthcheck", "--no-syslog",
                           "--backend", "nvidia-smi", "--nvidia-smi",
                           os.path.join(node("seed"), "nvidia-smi"), "--root",
                           os.path.join(node("seed"), "root"), "--gres-conf",
                           os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                           "--lock-file", str(state / "lock"), "--cache-file",
                           str(state / "state.json"), "--slurm-backend", "scontrol",
                           "--scontrol", str(tmp_path / "scontrol")],
                          env=env(), capture_output=True, text=True, timeout=60)
    assert code.returncode == 0, code.stderr
    return state / "state.json"


def _json_edit(fn):
    def edit(path):
        import json
        doc = json.loads(path.read_text())
        fn(doc)
        path.write_text(json.dumps(doc))
    return edit


def _replace(text):
    def edit(path):
        path.write_text(text)
    return edit


def _fifo(path):
    path.unlink()
    os.mkfifo(path)


def _dir(path):
    path.unlink()
    path.mkdir()


def _link(target):
    def edit(path):
        path.unlink()
        os.symlink(target, path)
    return edit


def _big(path):
    with open(path, "ab") as fh:
        fh.truncate(8 << 20)


CACHE_CORRUPTIONS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:57]),
    "empty": _replace(""),
    "binary": lambda p: p.write_bytes(b"\x00\xff\xfe" * 100),
    "not-utf8": lambda p: p.write_bytes(p.read_bytes().replace(b'"ok"', b'"\xff\xfe"')),
    "a-list": _replace("[1, 2, 3]"),
    "deep": _replace("[" * 100000 + "]" * 100000),
    "ok-is-a-string": _json_edit(lambda d: d.update(ok="yes")),
    "findings-a-string": _json_edit(lambda d: d.update(findings="none")),
    "finding-extra-key": _json_edit(lambda d: d.update(ok=False, findings=[
        {"id": "stale-cap", "message": "m", "short": "s", "evil": 1}])),
    "finding-bad-id": _json_edit(lambda d: d.update(ok=False, findings=[
        {"id": "rm -rf", "message": "m", "short": "s"}])),
    "finding-int-message": _json_edit(lambda d: d.update(ok=False, findings=[
        {"id": "stale-cap", "message": 5, "short": "s"}])),
    "gpus-wrong-type": _json_edit(lambda d: d.update(gpus=[{"minor": "2"}])),
    "profiles-wrong-type": _json_edit(lambda d: d.update(profiles=[1])),
    "files-wrong-type": _json_edit(lambda d: d.update(files="gres.conf")),
    "format-2": _json_edit(lambda d: d.update(format=2)),
    "fingerprint-int": _json_edit(lambda d: d.update(fingerprint=0)),
    "fifo": _fifo,
    "directory": _dir,
    "dev-zero": _link("/dev/zero"),
    "dangling-symlink": _link("/nonexistent/state.json"),
    "huge": _big,
    "mode-0666": lambda p: p.chmod(0o666),
}


@pytest.mark.parametrize("name", sorted(CACHE_CORRUPTIONS))
def test_prolog_hook_ignores_every_corrupt_cache(tmp_path, name):
    """Through hooks/prolog: a corrupt, truncated or wrong-typed cache is ignored and the
    full procfs check runs: exit 0 on the consistent node, exit 1 on the mismatched one
    (the cache of the consistent node says ok, so believing it would be the bug)."""
    state = tmp_path / "run"
    state.mkdir(mode=0o755)
    cache = good_cache(tmp_path, state)
    CACHE_CORRUPTIONS[name](cache)
    r = prolog_hook(tmp_path, state, "seed-lost")  # a FIFO or /dev/zero would hang: timeout
    assert r.returncode == 1, (name, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    r = prolog_hook(tmp_path, state, "seed")
    assert r.returncode == 0, (name, r.stderr)


@pytest.mark.parametrize("fault", ["settings", "lock-dir", "lock-symlink", "state-dir-mode",
                                   "bad-node", "bad-deadline"])
def test_prolog_hook_exits_0_for_its_own_faults(tmp_path, fault):
    state = tmp_path / "run"
    state.mkdir(mode=0o755)
    extra, env = [], {}
    if fault == "settings":
        cfg = tmp_path / "bad.toml"
        cfg.write_text("bakend = 'nvml'\n")
        env["MIGSYNC_CONFIG"] = str(cfg)
    elif fault == "lock-dir":
        extra = ["--lock-file", str(tmp_path / "missing" / "lock")]
    elif fault == "lock-symlink":
        os.symlink("/etc/passwd", state / "lock")
    elif fault == "state-dir-mode":
        os.chmod(state, 0o777)
    elif fault == "bad-node":
        extra = ["--node", "c51-g[001-002]"]
    else:
        extra = ["--deadline", "0"]
    before = open("/etc/passwd").read()
    r = prolog_hook(tmp_path, state, "seed-lost", *extra, env=env)
    assert r.returncode == 0, r.stderr  # migsync's own fault never blocks the job
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    want = {"settings": "unknown key 'bakend'", "lock-dir": "does not exist",
            "lock-symlink": "cannot open the lock file", "state-dir-mode": "mode 0777): refused",
            "bad-node": "hostlist expression", "bad-deadline": "deadline must be"}[fault]
    assert lines and want in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "scontrol.log").exists() or \
        "update" not in (tmp_path / "scontrol.log").read_text()
    assert open("/etc/passwd").read() == before


def test_prolog_internal_error_exits_0(tmp_path, monkeypatch):
    from conftest import run_cli
    from migsync import healthcheck

    def boom(*a, **k):
        raise RuntimeError("a bug")
    monkeypatch.setattr(healthcheck, "run", boom)
    r = run_cli("prolog", "--no-syslog", "--node", "c51-g002")
    assert r.code == 0 and "internal error: RuntimeError: a bug" in r.err


# --- issue 12: check honours --deadline; output errors are errors -------------------------

def test_check_honours_its_deadline_when_nvidia_smi_hangs(tmp_path):
    hang = script(tmp_path / "nvidia-smi", "exec sleep 300")
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "migsync", "check", "--backend", "nvidia-smi",
                        "--nvidia-smi", hang, "--root", os.path.join(node("seed"), "root"),
                        "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                        "--timeout", "100", "--deadline", "2"],
                       env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and "timed out" in r.stderr, r.stderr
    assert time.monotonic() - t < 2 + 10, "ran past its deadline"  # 10 s: interpreter start


CHECK = [sys.executable, "-m", "migsync", "check", "--backend", "nvidia-smi", "--nvidia-smi",
         os.path.join(node("seed"), "nvidia-smi"), "--root", os.path.join(node("seed"), "root"),
         "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002"]


@pytest.mark.parametrize("how", ["closed", "dev-full", "broken-pipe"])
@pytest.mark.parametrize("cmd", [CHECK, CHECK[:3] + ["emit"] + CHECK[4:],
                                 CHECK[:3] + ["discover"] + CHECK[4:10],
                                 # argparse prints these and swallowed the error: exit 0
                                 CHECK[:3] + ["--version"], CHECK[:4] + ["--help"]])
def test_output_errors_are_errors(tmp_path, how, cmd):
    if how == "closed":
        r = subprocess.run(cmd, env=env(), stdout=None, stderr=subprocess.PIPE, text=True,
                           timeout=60, pass_fds=(), close_fds=True,
                           preexec_fn=lambda: os.close(1))
        err, code = r.stderr, r.returncode
    elif how == "dev-full":
        with open("/dev/full", "w") as full:
            r = subprocess.run(cmd, env=env(), stdout=full, stderr=subprocess.PIPE, text=True,
                               timeout=60)
        err, code = r.stderr, r.returncode
    else:
        read_end, write_end = os.pipe()
        os.close(read_end)  # nobody will ever read: the first write gets EPIPE
        r = subprocess.run(cmd, env=env(), stdout=write_end, stderr=subprocess.PIPE, text=True,
                           timeout=60)
        os.close(write_end)
        err, code = r.stderr, r.returncode
    assert code == 74, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("migsync: cannot write to stdout"), err
    assert "Exception ignored" not in err and "Traceback" not in err


def test_a_character_stdout_cannot_encode_is_escaped_not_called_a_closed_stdout(tmp_path):
    """A GPU name with bytes that are not UTF-8 (shown as U+FFFD) and stdout in ASCII:
    'cannot write to stdout: it is closed', exit 74. The character is escaped instead."""
    smi = tmp_path / "node"
    shutil.copytree(node("seed"), smi, symlinks=True)
    csv = smi / "smi" / "query-gpu.csv"
    csv.unlink()  # (a symlink into the recorded node, maybe)
    csv.write_bytes(open(os.path.join(node("seed"), "smi", "query-gpu.csv"), "rb").read()
                    .replace(b"NVIDIA A100 80GB PCIe", b"NVIDIA A100 \xff PCIe"))
    r = subprocess.run([sys.executable, "-m", "migsync", "discover", "--backend", "nvidia-smi",
                        "--nvidia-smi", str(smi / "nvidia-smi"), "--root", str(smi / "root")],
                       env=env() | {"PYTHONIOENCODING": "ascii"}, capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"NVIDIA A100 \\ufffd PCIe" in r.stdout and r.stderr == b""


# --- issue 12: reading the real Slurm's answers -----------------------------------------

@pytest.mark.slurm
def test_reasons_read_back_equal_from_the_real_slurm_by_json_and_one_liner(tmp_path):
    """The real slurmctld: what drain() writes, status() reads back equal, by JSON and by
    `-o`, also with a Comment= after it; so the next run does not rewrite it."""
    import shutil
    import slurm_cluster
    from migsync import act, slurmctl
    from migsync.model import Finding

    why = slurm_cluster.available()
    if why:
        pytest.skip(why)
    cluster = slurm_cluster.Cluster(tmp_path / "slurm", "", "")
    cluster.start()
    try:
        n = slurm_cluster.NODE
        f = Finding("type-mismatch", 'gres.conf:3: Type="1g.10gb\x1b[31m" [x@y] \t does not match',
                    "type 1g.10gb")
        reason = act.reason_for_findings("migsync:", [f] * 3)
        one = slurmctl.ScontrolBackend(shutil.which("scontrol"), 10, cluster.slurm_conf)
        one.json = False
        js = slurmctl.ScontrolBackend(shutil.which("scontrol"), 10, cluster.slurm_conf)
        one.drain(n, reason)
        for comment in (None, "Reason=forged [root@2026-01-01T00:00:00] x"):
            if comment:
                cluster.scontrol("update", f"nodename={n}", f"comment={comment}")
            for backend in (one, js):
                st = backend.status(n)
                assert st.drained and st.reason == reason, (backend.json, st, reason)
                assert act.decide(st, reason, "migsync:").action == "none"  # no churn
        one.resume(n)
        cluster.wait_state("idle")
        assert not js.status(n).drained and not one.status(n).drained
    finally:
        cluster.stop()


def test_a_program_missing_from_the_search_path_is_never_run_from_the_working_directory(
        tmp_path, monkeypatch):
    """posix_spawn runs a bare name relative to the working directory: root running
    `migsync check` in /tmp must not start a /tmp/slurmd (or dpkg-query, rpm) planted there."""
    from migsync import runner
    from migsync.errors import CommandError

    marker = tmp_path / "ran"
    planted = tmp_path / "migsync-no-such-program"
    planted.write_text(f"#!/bin/sh\ntouch {marker}\n")
    planted.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError, match="not found"):
        runner.run(["migsync-no-such-program"], timeout=5)
    assert not marker.exists()
    # relative entries of a PATH are skipped too
    with pytest.raises(CommandError, match="not found"):
        runner.run(["migsync-no-such-program"], timeout=5, env={"PATH": ".:bin"})
    assert not marker.exists()
