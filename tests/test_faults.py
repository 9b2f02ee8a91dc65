"""Concurrency, signals and deadlines, with real processes and hanging fakes."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import hermetic_env, node

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "migsync", "sample", "seed-node")


def env():
    return hermetic_env(PYTHONPATH=REPO, MIGSYNC_CONFIG=os.devnull, PATH="/usr/bin:/bin")


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


def test_sigterm_mid_run_leaves_no_partial_state_and_kills_the_child(tmp_path, fakes):
    scontrol, hang, log = fakes
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    (prom_dir / "migsync.prom").write_text("# from the last run\n")
    proc = subprocess.Popen(hc_argv(tmp_path, hang, scontrol, "--timeout", "60"), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (tmp_path / "smi.pids").exists())
    child = int((tmp_path / "smi.pids").read_text().split()[0])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert wait_for(lambda: not alive(child), 10), "the hanging nvidia-smi survived"
    assert (prom_dir / "migsync.prom").read_text() == "# from the last run\n"
    assert [f for f in os.listdir(prom_dir)] == ["migsync.prom"]
    assert not (tmp_path / "state.json").exists()
    assert not log.exists()


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
