"""The bad-input corpus (tests/data/bad/): every case ends with its documented exit code and a
one-line message naming the file, line and fragment where there is one; never a traceback,
never a drain for migsync's own errors, never a half-written file.

Each case runs `migsync healthcheck` (the command that acts) against the seed node with a
recording scontrol, so 'never drains' is checked, not assumed.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

import nvml_fake
from conftest import hermetic_env, node, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))
BAD = os.path.join(HERE, "data", "bad")
SAMPLE = os.path.join(os.path.dirname(HERE), "migsync", "sample", "seed-node")

# name -> (exit code, message regex). {f} is the bad file's path.
GRES_CASES = {
    "gres-binary.conf": (2, r"^{f}:1: binary data \(NUL byte\)"),
    "gres-latin1.conf": (2, r"^{f}:1: not valid UTF-8 text"),
    "gres-unbalanced.conf": (2, r"^{f}:1: File=: unbalanced '\[' in hostlist \(in 'File=/dev/nvidia\[0-1'\)"),
    "gres-close-only.conf": (2, r"^{f}:1: File=: '\]' without '\['"),
    "gres-reversed.conf": (2, r"^{f}:1: File=: reversed range '1-0'"),
    "gres-range-too-big.conf": (2, r"^{f}:1: File=: range '0-70000' has more than 65536 names"),
    "gres-nested.conf": (2, r"^{f}:1: File=: nested '\['"),
    "gres-empty-brackets.conf": (2, r"^{f}:1: File=: empty brackets"),
    "gres-unknown-key.conf": (2, r"^{f}:1: unknown key 'Flie' \(in 'Flie=/dev/nvidia0'\)"),
    "gres-file-and-multiple.conf": (2, r"^{f}:1: File= and MultipleFiles= exclude each other"),
    "gres-multiple-one-file.conf": (2, r"^{f}:1: MultipleFiles= needs at least two files"),
    "gres-count-mismatch.conf": (2, r"^{f}:1: Count= does not match .* \(in 'Count=3'\)"),
    "gres-bad-count.conf": (2, r"^{f}:1: Count= needs a whole number, got 'two'"),
    "gres-no-name.conf": (2, r"^{f}:1: a gres.conf line must start with NodeName="),
    "gres-relative-path.conf": (2, r"^{f}:1: device files must be absolute paths \(in 'dev/nvidia0'\)"),
    "gres-unterminated-quote.conf": (2, r"^{f}:1: unterminated quote"),
    "gres-no-equals.conf": (2, r"^{f}:1: expected key=value, got '/dev/nvidia0'"),
    # slurmd skips a line whose NodeName= it cannot parse (measured on 22.05/24.11/26.05):
    # the node's GPUs are then configured by no line, a mismatch like slurmd's own count
    "gres-bad-nodename.conf": (1, None),
    "gres-include-loop.conf": (2, r"Include nested too deeply \(a loop\?\)"),
    "gres-include-missing.conf": (2, r"^{f}:1: Include /nonexistent/gres-extra.conf: file not found"),
    "gres-mixed-file-nofile.conf": (2, r"^{f}:2: some gpu lines for c51-g002 have File="),
    # a file cut after a continuation: slurmd reads a gpu line without File=, so do we
    "gres-truncated-continuation.conf": (1, None),
    # valid input in awkward encodings: read like slurmd reads it
    "gres-crlf.conf": (0, None),
    "gres-bom.conf": (0, None),
    "gres-duplicated-key.conf": (0, None),  # slurmd: 'specified more than once, latest value used'
}
SLURM_CASES = {
    "slurm-gres-no-count.conf": (2, r"^{f}:2: Gres entry 'gpu:1g.10gb' has no count"),
    "slurm-bad-nodename.conf": (2, r"^{f}:2: NodeName=: unbalanced"),
    "slurm-gres-too-many-fields.conf": (2, r"^{f}:\d+: Gres entry has too many ':' fields"),
}
TOML_CASES = {
    "migsync-unknown-key.toml": (2, r"^{f}: unknown key 'bakend' \(in 'bakend'\)"),
    "migsync-bad-toml.toml": (2, r"^{f}: invalid TOML"),
    "migsync-bad-type.toml": (2, r"^{f}: deadline must be a non-negative number"),
    "migsync-bad-choice.toml": (2, r"^{f}: backend must be one of auto, nvml, nvidia-smi"),
}


@pytest.fixture
def scontrol(tmp_path):
    log = tmp_path / "scontrol.log"
    s = tmp_path / "scontrol"
    s.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                 '[ "$1" = show ] && echo "NodeName=c51-g002 State=IDLE"\nexit 0\n')
    s.chmod(0o755)
    return s, log


def healthcheck(tmp_path, scontrol, *args, seed="seed", smi=None, root=None):
    d = node(seed)
    return run_cli("healthcheck", "--no-syslog", "--backend", "nvidia-smi",
                   "--nvidia-smi", smi or os.path.join(d, "nvidia-smi"),
                   "--root", root or os.path.join(d, "root"), "--node", "c51-g002",
                   "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
                   "--prom-file", tmp_path / "m.prom", "--slurm-backend", "scontrol",
                   "--scontrol", scontrol, *args)


def assert_clean_failure(r, code, pattern, path, log):
    assert r.code == code, (r.code, r.err)
    assert "Traceback" not in r.err and "internal error" not in r.err
    if pattern:
        msg = r.err.splitlines()[0][len("migsync: "):]
        assert re.search(pattern.format(f=re.escape(str(path))), msg), msg
    if code == 2:
        assert not log.exists() or "update" not in log.read_text(), "drained for its own error"


@pytest.mark.parametrize("name", sorted(GRES_CASES))
def test_bad_gres_conf(tmp_path, scontrol, name):
    code, pattern = GRES_CASES[name]
    path = os.path.join(BAD, name)
    if name == "gres-include-loop.conf":  # Include is relative to the including file
        path = str(tmp_path / name)
        shutil.copy(os.path.join(BAD, name), path)
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", path,
                    "--slurm-conf", os.path.join(SAMPLE, "slurm.conf"))
    assert_clean_failure(r, code, pattern, path, scontrol[1])
    leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert not leftovers


@pytest.mark.parametrize("name", sorted(SLURM_CASES))
def test_bad_slurm_conf(tmp_path, scontrol, name):
    code, pattern = SLURM_CASES[name]
    path = os.path.join(BAD, name)
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    "--slurm-conf", path)
    assert_clean_failure(r, code, pattern, path, scontrol[1])


@pytest.mark.parametrize("name", sorted(TOML_CASES))
def test_bad_migsync_toml(tmp_path, scontrol, name):
    code, pattern = TOML_CASES[name]
    path = os.path.join(BAD, name)
    r = healthcheck(tmp_path, scontrol[0], "--config", path,
                    "--gres-conf", os.path.join(SAMPLE, "gres.conf"))
    assert_clean_failure(r, code, pattern, path, scontrol[1])


def test_a_10_mb_line(tmp_path, scontrol):
    path = tmp_path / "gres.conf"
    path.write_text("NodeName=c51-g002 Name=gpu Type=" + "a" * (10 << 20) + "\n")
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", path)
    assert_clean_failure(r, 2, r"^{f}:1: line longer than 1048576 characters", path, scontrol[1])


def copy_node(tmp_path, seed="seed"):
    d = tmp_path / "node"
    shutil.copytree(node(seed), d, symlinks=True)
    return d


@pytest.mark.parametrize("name,code,pattern", [
    ("mig-minors-empty", 3, r"mig-minors: empty or truncated"),
    ("mig-minors-garbage", 3, r"mig-minors: empty or truncated"),
    ("mig-minors-truncated", 0, None),  # the capability files still carry DeviceFileMinor
])
def test_bad_mig_minors(tmp_path, scontrol, name, code, pattern):
    d = copy_node(tmp_path)
    shutil.copy(os.path.join(BAD, name), d / "root/proc/driver/nvidia-caps/mig-minors")
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    smi=d / "nvidia-smi", root=d / "root")
    assert_clean_failure(r, code, pattern, "", scontrol[1])


def strip_device_file_minor(root):
    for dirpath, _, files in os.walk(root / "proc/driver/nvidia/capabilities"):
        for f in files:
            p = os.path.join(dirpath, f)
            text = open(p).read()
            open(p, "w").write("".join(ln + "\n" for ln in text.splitlines()
                                       if not ln.startswith("DeviceFileMinor")))


def test_capability_files_without_device_file_minor(tmp_path, scontrol):
    d = copy_node(tmp_path)
    strip_device_file_minor(d / "root")
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    smi=d / "nvidia-smi", root=d / "root")
    assert r.code == 0, r.err  # mig-minors has the numbers
    shutil.copy(os.path.join(BAD, "mig-minors-truncated"), d / "root/proc/driver/nvidia-caps/mig-minors")
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    smi=d / "nvidia-smi", root=d / "root")
    assert_clean_failure(r, 3, r"no entry for gpu2/gi7, and .*access has no DeviceFileMinor", "",
                         scontrol[1])


def test_unreadable_gres_conf(tmp_path):
    path = tmp_path / "gres.conf"
    shutil.copy(os.path.join(SAMPLE, "gres.conf"), path)
    path.chmod(0)
    cmd = [sys.executable, "-m", "migsync", "check", "--gres-conf", str(path),
           "--root", os.path.join(node("seed"), "root"), "--backend", "nvidia-smi",
           "--nvidia-smi", os.path.join(node("seed"), "nvidia-smi")]
    kwargs = {}
    if os.geteuid() == 0:  # root reads anything: drop to nobody for this run
        if not os.path.exists("/usr/bin/python3"):
            pytest.skip("needs /usr/bin/python3 to run as nobody")
        cmd[0] = "/usr/bin/python3"  # a per-user interpreter (pyenv) may be closed to nobody
        kwargs["user"] = "nobody"
        for d in (tmp_path, tmp_path.parent, tmp_path.parent.parent):
            os.chmod(d, 0o755)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd="/", **kwargs,
                       env=hermetic_env(PYTHONPATH=os.path.dirname(HERE),
                                        MIGSYNC_CONFIG=os.devnull, PATH="/usr/bin:/bin"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"migsync: {path}: permission denied"


@pytest.mark.parametrize("make", ["loop", "dangling"])
def test_symlink_loop_or_missing_spool_dir_at_run_slurm_conf(tmp_path, search_root, make):
    link = search_root / "run/slurm/conf"  # /run/slurm/conf under $MIGSYNC_SEARCH_ROOT
    link.parent.mkdir(parents=True)
    if make == "loop":
        os.symlink(link, link)
    else:  # /run/slurm/conf points into a SlurmdSpoolDir that is gone
        os.symlink(tmp_path / "spool" / "conf-cache", link)
    r = run_cli("check", "--root", os.path.join(node("seed"), "root"))
    assert r.code == 2 and "gres.conf not found" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("body,code,pattern", [
    ("echo 'Segmentation fault ??? @@@'", 3, r"unexpected line 1"),
    ("echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9",
     3, r"--query-gpu exited 9: NVIDIA-SMI has failed"),
    ("exec sleep 300", 3, r"nvidia-smi timed out after 1.0s"),
])
def test_nvidia_smi_garbage_failure_and_hang(tmp_path, scontrol, body, code, pattern):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\n{body}\n")
    smi.chmod(0o755)
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    "--timeout", "1", smi=smi)
    assert_clean_failure(r, code, None, "", scontrol[1])
    assert re.search(pattern, r.err), r.err
    # a node fault: drained, with the discovery reason
    assert "reason=migsync: no GPU info [discovery]" in scontrol[1].read_text()


def test_nvml_gpu_is_lost_for_one_gpu(tmp_path, scontrol):
    fake = nvml_fake.make(os.path.join(node("seed"), "layout.json"), lost={2})
    r = run_cli("healthcheck", "--no-syslog", "--json", "--backend", "nvml", "--root",
                os.path.join(node("seed"), "root"), "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                "--node", "c51-g002", "--lock-file", tmp_path / "lock", "--cache-file",
                tmp_path / "s.json", "--slurm-backend", "scontrol", "--scontrol", scontrol[0], nvml=fake)
    doc = r.json()
    assert r.code == 1
    assert [f["id"] for f in doc["findings"]] == ["gpu-lost"]
    assert doc["findings"][0]["message"].startswith("gpu2: NVML:")
    assert doc["drain_reason"].startswith("migsync: lost gpu2 [gpu-lost]")


@pytest.mark.parametrize("body,pattern", [
    ("sleep 300", r"scontrol show node: scontrol timed out"),
    ("echo 'slurm_load_node error: Unable to contact slurm controller' >&2; exit 1",
     r"Unable to contact slurm controller"),
])
def test_scontrol_hanging_or_refusing(tmp_path, body, pattern):
    s = tmp_path / "scontrol"
    s.write_text(f"#!/bin/sh\n{body}\n")
    s.chmod(0o755)
    r = healthcheck(tmp_path, s, "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--timeout", "1",
                    seed="seed-lost")
    assert r.code == 5 and re.search(pattern, r.err) and "Traceback" not in r.err
