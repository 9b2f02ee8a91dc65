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
SAMPLE_SLURM = os.path.join(SAMPLE, "slurm.conf")

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
    # slurmd reads a quote that never closes as part of a plain value (measured, corpus case
    # 80): this line gives gpu0 the Type `"a100`, which is a mismatch, not a parse error
    "gres-unterminated-quote.conf": (1, r"type-mismatch: gres-unterminated-quote\.conf:1: "
                                        r"Type=\"a100 does not match gpu0"),
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
    # not bad input to slurmd: it logs "Bad GRES configuration: gpu:1g.10gb", drops the entry
    # and registers no gpu (measured 22.05-26.05, gres corpus 127), so migsync finds that
    "slurm-gres-no-count.conf": (1, r"gres-count-mismatch: slurm-gres-no-count\.conf:2: gres\.conf "
                                    r"gives 16 gpu but the node's slurm\.conf line has no Gres=gpu"),
    "slurm-bad-nodename.conf": (2, r"^{f}:2: NodeName=: unbalanced"),
    "slurm-gres-too-many-fields.conf": (2, r"^{f}:\d+: Gres entry has too many ':' fields"),
}
TOML_CASES = {
    "migsync-unknown-key.toml": (2, r"^{f}: unknown key 'bakend' \(in 'bakend'\)"),
    "migsync-bad-toml.toml": (2, r"^{f}: invalid TOML"),
    "migsync-bad-type.toml": (2, r"^{f}: deadline must be a non-negative number"),
    "migsync-bad-choice.toml": (2, r"^{f}: backend must be one of auto, nvml, nvidia-smi"),
}


def healthcheck(tmp_path, scontrol, *args, seed="seed", smi=None, root=None):
    d = node(seed)
    # an explicit slurm.conf: another checkout's configless test may own /run/slurm/conf
    return run_cli("healthcheck", "--no-syslog", "--slurm-conf", SAMPLE_SLURM,
                   "--backend", "nvidia-smi",
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
    # cut short after gpu0: the driver prints every entry, so a missing one is corruption,
    # a discovery failure, never a mismatch
    ("mig-minors-truncated", 3, r"mig-minors: no entry for gpu2/gi7 \(the driver lists every"),
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
    # complete lines, but the table stops before the node's GPUs: the driver prints every
    # possible entry, so this table is corrupt
    shutil.copy(os.path.join(BAD, "mig-minors-truncated"), d / "root/proc/driver/nvidia-caps/mig-minors")
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    smi=d / "nvidia-smi", root=d / "root")
    assert_clean_failure(r, 3, r"mig-minors: no entry for gpu2/gi7", "", scontrol[1])


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
    r = run_cli("healthcheck", "--no-syslog", "--json", "--slurm-conf", SAMPLE_SLURM,
                "--backend", "nvml", "--root",
                os.path.join(node("seed"), "root"), "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                "--node", "c51-g002", "--lock-file", tmp_path / "lock", "--cache-file",
                tmp_path / "s.json", "--slurm-backend", "scontrol", "--scontrol", scontrol[0], nvml=fake)
    doc = r.json()
    assert r.code == 1
    assert [f["id"] for f in doc["findings"]] == ["gpu-lost"]
    assert doc["findings"][0]["message"].startswith("gpu2: NVML:")
    assert doc["drain_reason"].startswith("migsync: lost gpu2 [gpu-lost]")


def _nvml_failing(code, call="nvmlDeviceGetMigMode"):
    """The seed node's NVML fake whose ``call`` raises NVML's own error ``code`` on every GPU."""
    import pynvml

    fake = nvml_fake.make(os.path.join(node("seed"), "layout.json"))

    def failing(*args, **kwargs):
        raise pynvml.NVMLError(getattr(pynvml, "NVML_ERROR_" + code))

    setattr(fake, call, failing)
    return fake


@pytest.mark.parametrize("code,call,said", [
    # pynvml newer than the driver, NVML without root, a migsync bug: nothing is known about
    # the GPUs, which are fine. These once made every GPU `gpu-lost`, a finding that drained
    # the node as a mismatch even with drain_on_discovery_failure = false.
    ("NO_PERMISSION", "nvmlDeviceGetMigMode", "NVML: cannot read GPU 0: Insufficient Permissions"),
    ("FUNCTION_NOT_FOUND", "nvmlDeviceGetMigMode", "NVML: cannot read GPU 0: Function Not Found"),
    ("UNINITIALIZED", "nvmlDeviceGetMinorNumber", "NVML: cannot read GPU 0: Uninitialized"),
    ("ARGUMENT_VERSION_MISMATCH", "nvmlDeviceGetMaxMigDeviceCount", "NVML: cannot read GPU 2:"),
    ("NOT_SUPPORTED", "nvmlDeviceGetUUID", "NVML: cannot read GPU 0: Not Supported"),
])
def test_nvml_errors_that_are_not_gpu_faults_never_make_a_finding(tmp_path, scontrol, code,
                                                                   call, said):
    args = ["healthcheck", "--no-syslog", "--slurm-conf", SAMPLE_SLURM, "--root",
            os.path.join(node("seed"), "root"), "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
            "--node", "c51-g002", "--lock-file", tmp_path / "lock", "--cache-file",
            tmp_path / "s.json", "--slurm-backend", "scontrol", "--scontrol", scontrol[0]]
    r = run_cli(*args, "--backend", "nvml", "--no-drain-on-discovery-failure",
                nvml=_nvml_failing(code, call))
    assert r.code == 3, r.err
    assert r.err.splitlines()[0].startswith(f"migsync: {said}"), r.err
    assert "gpu-lost" not in r.err
    assert not scontrol[1].exists() or "update" not in scontrol[1].read_text()
    # backend auto: NVML cannot be asked, so nvidia-smi is, and the healthy node reads
    # healthy (not four lost GPUs)
    r = run_cli(*args, "--backend", "auto", "--nvidia-smi",
                os.path.join(node("seed"), "nvidia-smi"), nvml=_nvml_failing(code, call))
    assert r.code == 0 and "c51-g002: consistent" in r.err, r.err
    assert not scontrol[1].exists() or "update" not in scontrol[1].read_text()


def test_nvml_reset_required_is_still_a_lost_gpu(tmp_path, scontrol):
    r = run_cli("check", "--json", "--slurm-conf", SAMPLE_SLURM, "--backend", "nvml", "--root",
                os.path.join(node("seed"), "root"), "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                "--node", "c51-g002", nvml=_nvml_failing("RESET_REQUIRED"))
    assert r.code == 1
    assert {f["id"] for f in r.json()["findings"]} == {"gpu-lost"}


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


def test_the_corpus_has_at_least_30_cases():
    assert len(os.listdir(BAD)) >= 30
    for name in os.listdir(BAD):
        assert name in {**GRES_CASES, **SLURM_CASES, **TOML_CASES} or name.startswith("mig-minors"), name


# --- issue 12: partial or corrupt discovery data is a discovery failure, never a mismatch --

QUERY = "query-gpu.csv"
LCI = "lci.txt"


def smi_node(tmp_path, edit=None, script=None):
    """A copy of the consistent seed node whose nvidia-smi output (or script) is changed."""
    d = copy_node(tmp_path)
    if edit:
        for name, fn in edit.items():
            p = d / "smi" / name
            p.write_text(fn(p.read_text()))
    if script:
        (d / "nvidia-smi").write_text("#!/bin/sh\nd=${0%/*}/smi\n" + script + "\n")
        (d / "nvidia-smi").chmod(0o755)
    return d


def discovery_failure(tmp_path, scontrol, d, pattern, *extra):
    """exit 3 with one line, and the node drained only with the discovery reason (never a
    mismatch reason); with --no-drain-on-discovery-failure not touched at all."""
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    *extra, smi=d / "nvidia-smi", root=d / "root")
    assert r.code == 3, (r.code, r.err)
    assert "Traceback" not in r.err and "internal error" not in r.err
    assert re.search(pattern, r.err.splitlines()[0]), r.err
    updates = [ln for ln in scontrol[1].read_text().splitlines() if ln.startswith("update")] \
        if scontrol[1].exists() else []
    assert all("reason=migsync: no GPU info [discovery]" in u for u in updates), updates
    scontrol[1].unlink(missing_ok=True)
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    "--no-drain-on-discovery-failure", *extra, smi=d / "nvidia-smi",
                    root=d / "root")
    assert r.code == 3
    assert not scontrol[1].exists() or "update" not in scontrol[1].read_text()
    assert "consistent" not in r.err  # the log says what happened
    return r


ROWS_THEN = 'case "$1" in --query-gpu=*) cat "$d/query-gpu.csv";; mig) cat "$d/lci.txt";; esac\n'


@pytest.mark.parametrize("script,pattern", [
    (ROWS_THEN + "exit 15", r"--query-gpu exited 15"),                      # rows, then failure
    (ROWS_THEN + "kill -9 $$", r"killed by signal 9"),                     # rows, then a signal
    ('case "$1" in mig) cat "$d/lci.txt";; esac; exit 0', r"printed no GPUs"),  # exit 0, empty
    ('case "$1" in --query-gpu=*) echo "No devices were found";; mig) cat "$d/lci.txt";; esac',
     r"unexpected line 1"),
    ('case "$1" in --query-gpu=*) cat "$d/query-gpu.csv";; mig) cat "$d/lci.txt"; exit 6;; esac',
     r"mig -lci exited 6"),
    ('case "$1" in --query-gpu=*) cat "$d/query-gpu.csv";; mig) kill -TERM $$;; esac',
     r"mig -lci was killed by signal 15"),
    ('case "$1" in --query-gpu=*) cat "$d/query-gpu.csv";; mig) echo;; esac',
     r"no instance rows"),
])
def test_failing_or_empty_nvidia_smi_is_a_discovery_failure(tmp_path, scontrol, script, pattern):
    d = smi_node(tmp_path, script=script)
    discovery_failure(tmp_path, scontrol, d, pattern)


def _dup_line(text, needle):
    lines = text.splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if needle in ln)
    return "".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])


@pytest.mark.parametrize("edit,pattern", [
    ({QUERY: lambda t: t[:-20]}, r"output cut short"),                           # no final newline
    ({QUERY: lambda t: "".join(t.splitlines(True)[:3])}, r"disagree: procfs lists GPU 0000:e3"),
    ({QUERY: lambda t: _dup_line(t, "00000000:65")}, r"index 1 is listed twice"),
    ({QUERY: lambda t: t.replace("00000000:E3:00.0", "00000000:CA:00.0")}, r"bus 0000:ca:00.0 is listed twice"),
    ({QUERY: lambda t: t.replace("E3:00.0", "E4:00.0")}, r"disagree"),
    ({LCI: lambda t: t[:-30]}, r"output cut short"),
    ({LCI: lambda t: _dup_line(t, "|   2      8 ")}, r"GPU 2 GI 8 CI 0 is listed twice"),
    ({LCI: lambda t: t.replace("|   2      8       MIG 1g.10gb", "|   2      8       MIG 1g.10gB?")},
     r"a row that does not parse|is not a MIG profile"),
    ({LCI: lambda t: t.replace("|   2      8 ", "|   2      6 ")}, r"disagree"),
    ({LCI: lambda t: "".join(ln for ln in t.splitlines(True) if "|   3 " not in ln)}, r"disagree"),
])
def test_partial_or_inconsistent_nvidia_smi_output(tmp_path, scontrol, edit, pattern):
    d = smi_node(tmp_path, edit=edit)
    discovery_failure(tmp_path, scontrol, d, pattern)


def _info(d, minor):
    base = d / "root/proc/driver/nvidia/gpus"
    for bus in os.listdir(base):
        p = base / bus / "information"
        if f"Device Minor: \t {minor}\n" in p.read_text():
            return p
    raise AssertionError(minor)


def _mm(d):
    return d / "root/proc/driver/nvidia-caps/mig-minors"


def _access(d, path):
    return d / "root/proc/driver/nvidia/capabilities" / path / "access"


@pytest.mark.parametrize("mutate,pattern", [
    (lambda d: _mm(d).write_text(_mm(d).read_text()[:-3]), r"mig-minors: truncated"),
    (lambda d: _mm(d).write_text(_mm(d).read_text() + "gpu2/gi7/access 336\n"),
     r"gpu2/gi7 is listed twice"),
    (lambda d: _mm(d).write_text(_mm(d).read_text().replace("gpu2/gi7/ci0/access 337\n",
                                                            "gpu2/gi7/ci0/access 338\n")),
     r"cap number 338 is given to two entries"),
    (lambda d: _mm(d).write_text(_mm(d).read_text().replace("gpu2/gi7/ci0/access 337\n",
                                                            "gpu2/gi7/ci0/access 9337\n")),
     r"gives gpu2/gi7/ci0 cap 9337, but .* says DeviceFileMinor 337"),
    (lambda d: _mm(d).write_text(_mm(d).read_text().replace("gpu2/gi7/ci0/access 337\n",
                                                            "gpu2/gi7/ci0/acess 337\n")),
     r"unexpected entry"),
    (lambda d: _access(d, "gpu3/mig/gi14/ci0").write_text("DeviceFileMinor: 53")
     , r"truncated"),
    (lambda d: _info(d, 3).write_text(_info(d, 3).read_text().replace("Minor: \t 3", "Minor: \t 2")),
     r"two GPUs claim device minor 2"),
    (lambda d: _info(d, 3).write_text(_info(d, 3).read_text().replace("Minor: \t 3", "Minor: \t 7")),
     r"capabilities/gpu3 exists but no GPU .* has device minor 3"),
    (lambda d: _info(d, 1).write_text(_info(d, 1).read_text() + "Device Minor: \t 1\n"),
     r"'device minor' appears twice"),
])
def test_corrupt_procfs_is_a_discovery_failure(tmp_path, scontrol, mutate, pattern):
    d = copy_node(tmp_path)
    mutate(d)
    discovery_failure(tmp_path, scontrol, d, pattern)


@pytest.mark.parametrize("field", ["[Unknown Error]", "[GPU requires reset]", "[N/A]",
                                   "[GPU is lost]"])
@pytest.mark.parametrize("column", [1, 2, 3])
def test_error_fields_make_that_gpu_lost_and_name_nothing_after_the_error(tmp_path, scontrol,
                                                                          field, column):
    def edit(text):
        lines = text.splitlines()
        cols = lines[3].split(", ")
        cols[column] = field
        lines[3] = ", ".join(cols)
        return "\n".join(lines) + "\n"
    d = smi_node(tmp_path, edit={QUERY: edit})
    r = run_cli("check", "--json", *["--backend", "nvidia-smi", "--nvidia-smi", d / "nvidia-smi",
                                     "--root", d / "root", "--gres-conf",
                                     os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                                     "--slurm-conf", SAMPLE_SLURM])
    doc = r.json()
    assert r.code == 1 and [f["id"] for f in doc["findings"]] == ["gpu-lost"], doc["findings"]
    assert doc["findings"][0]["message"].startswith("gpu3:")
    text = json.dumps(doc["suggested"]) + json.dumps([g["name"] for g in doc["inventory"]["gpus"]])
    assert field.lower()[1:-1] not in text.lower()  # no Type or name built from the error text


def test_na_mig_mode_is_a_gpu_without_mig_not_a_lost_gpu(tmp_path, scontrol):
    d = smi_node(tmp_path, edit={QUERY: lambda t: t.replace("Disabled, Disabled", "[N/A], [N/A]")})
    r = run_cli("check", "--json", "--backend", "nvidia-smi", "--nvidia-smi", d / "nvidia-smi",
                "--root", d / "root", "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                "--node", "c51-g002", "--slurm-conf", SAMPLE_SLURM)
    assert r.code == 0, r.out
    gpus = r.json()["inventory"]["gpus"]
    assert [g["lost"] for g in gpus] == [None] * 4 and gpus[0]["mig_current"] is None
    d = smi_node(tmp_path / "b", edit={QUERY: lambda t: t.replace("Disabled, Disabled",
                                                                   "[Unknown Error], Disabled", 1)})
    r = run_cli("check", "--json", "--backend", "nvidia-smi", "--nvidia-smi", d / "nvidia-smi",
                "--root", d / "root", "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                "--node", "c51-g002", "--slurm-conf", SAMPLE_SLURM)
    assert r.code == 1 and [f["id"] for f in r.json()["findings"]] == ["gpu-lost"]


# --- issue 12: settings that could do harm are refused -----------------------------------

@pytest.mark.parametrize("flag,value,pattern", [
    ("--reason-prefix", "", r"reason_prefix must not be empty"),
    ("--reason-prefix", "   ", r"reason_prefix must not be empty"),
    ("--reason-prefix", 'mig"sync:', r"reason_prefix must contain 'migsync'"),
    ('--reason-prefix', 'my "migsync":', r"reason_prefix must be at most 64 printable"),
    # migsync resumes every drained node whose reason starts with the prefix: these would
    # resume NHC's drains for other checks, or an admin's "maintenance: PSU"
    ("--reason-prefix", "NHC:", r"reason_prefix must contain 'migsync': a node drained"),
    ("--reason-prefix", "m", r"reason_prefix must contain 'migsync'"),
    ("--reason-prefix", "migsync:\x1b[2J", r"reason_prefix must be at most 64 printable"),
    ("--node", "c51-g[001-002]", r"node: a node name cannot be a hostlist expression"),
    ("--node", "c51-g001,c51-g002", r"node: a node name cannot be a hostlist expression"),
    ("--node", "c51 g002", r"cannot contain spaces, '=' or quotes"),
    ("--node", "c51-g002 state=resume", r"cannot contain spaces"),
    ("--node", "x=y", r"cannot contain spaces, '=' or quotes"),
    ("--node", "'c51'", r"cannot contain spaces, '=' or quotes"),
    ("--node=-h", None, r"cannot start with '-'"),
    ("--node=--help", None, r"cannot start with '-'"),
    # a trailing newline passed the old regex check (its `$` matches before a final "\n")
    ("--node", "c51-g002\n", r"cannot contain spaces, '=' or quotes"),
    ("--node", "c51-g\u00e9", r"may hold only letters, digits, '-', '_' and '.' \(at most 128\)"),
    ("--node", "g" * 129, r"may hold only letters, digits, '-', '_' and '.' \(at most 128\)"),
    ("--timeout", "0", r"command_timeout must be a number of seconds from 1 to 86400"),
    # too short for any nvidia-smi: every run would time out and drain the node
    ("--timeout", "0.001", r"command_timeout must be a number of seconds from 1 to 86400 "
                           r"\(below 1 every run would time out"),
    # huge values overflowed the clock arithmetic (exit 70, OverflowError)
    ("--timeout", "1e300", r"command_timeout must be a number of seconds from 1 to 86400"),
    ("--timeout", "-1", r"command_timeout must be a non-negative number"),
    ("--timeout", "nan", r"command_timeout must be a non-negative number"),
    ("--timeout", "inf", r"command_timeout must be a non-negative number"),
    ("--deadline", "0", r"deadline must be a number of seconds from 1 to 86400"),
    ("--deadline", "0.01", r"deadline must be a number of seconds from 1 to 86400"),
    ("--deadline", "1e300", r"deadline must be a number of seconds from 1 to 86400"),
    ("--lock-wait", "1e300", r"lock_wait must be a number of seconds from 0 to 86400"),
    ("--deadline", "-0.5", r"deadline must be a non-negative number"),
    ("--deadline", "NaN", r"deadline must be a non-negative number"),
    ("--deadline", "Infinity", r"deadline must be a non-negative number"),
    ("--lock-wait", "inf", r"lock_wait must be a non-negative number"),
    ("--root", "/nonexistent/captured-node", r"root '/nonexistent/captured-node' is not a directory"),
])
def test_harmful_settings_are_refused(tmp_path, scontrol, flag, value, pattern):
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    *([flag] if value is None else [flag, value]))
    assert r.code == 2, (r.code, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    assert re.search(pattern, lines[0]), lines[0]
    assert not scontrol[1].exists(), "acted on harmful settings"


@pytest.mark.parametrize("toml,pattern", [
    ('reason_prefix = ""', r"reason_prefix must not be empty"),
    ('node = "gpu[1-2]"', r"hostlist expression"),
    ("deadline = nan", r"deadline must be a non-negative number"),
    ("command_timeout = inf", r"command_timeout must be a non-negative number"),
    ("command_timeout = 0", r"command_timeout must be a number of seconds from 1 to 86400"),
    ("command_timeout = 1e-9", r"command_timeout must be a number of seconds from 1 to 86400"),
    ("deadline = 1e308", r"deadline must be a number of seconds from 1 to 86400"),
    # a NUL byte in a path: os calls raised ValueError (exit 70)
    ('cache_file = "/run/migsync/state\\u0000.json"', r"cache_file must not contain a NUL byte"),
    ('gres_conf = "/etc/slurm/gres.conf\\u0000"', r"gres_conf must not contain a NUL byte"),
    ('lock_file = "/run/migsync/\\u0000"', r"lock_file must not contain a NUL byte"),
    # the settings file is read from slurmd's spool directory, from /, from a shell: a
    # relative path would name a different file in each
    ('gres_conf = "gres.conf"', r"gres_conf must be an absolute path in a settings file"),
    ('cache_file = "state.json"', r"cache_file must be an absolute path in a settings file"),
    ('root = "/no/such/root"', r"root '/no/such/root' is not a directory"),
])
def test_harmful_settings_in_the_file_are_refused(tmp_path, scontrol, toml, pattern):
    cfg = tmp_path / "migsync.toml"
    cfg.write_text(toml + "\n")
    r = healthcheck(tmp_path, scontrol[0], "--config", cfg,
                    "--gres-conf", os.path.join(SAMPLE, "gres.conf"))
    assert r.code == 2 and re.search(pattern, r.err) and str(cfg) in r.err, r.err
    assert not scontrol[1].exists()


def test_a_dangling_symlink_as_the_default_settings_file_is_an_error_not_no_settings(
        tmp_path, scontrol, search_root):
    """/etc/migsync/migsync.toml linked to a file that is gone (an unmounted share, a removed
    target): its ignore list, prefix or drain = false must not be dropped silently, which
    would make migsync drain with the defaults."""
    etc = search_root / "etc" / "migsync"
    etc.mkdir(parents=True)
    (etc / "migsync.toml").symlink_to(tmp_path / "gone.toml")
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    seed="seed-lost")
    assert r.code == 2, r.err
    assert r.err.splitlines()[0] == f"migsync: {etc / 'migsync.toml'}: file not found", r.err
    assert not scontrol[1].exists() or "update" not in scontrol[1].read_text()


def test_a_hostlist_node_name_from_the_environment_never_reaches_scontrol(tmp_path, scontrol,
                                                                         monkeypatch):
    monkeypatch.setenv("SLURMD_NODENAME", "c51-g[001-002]")
    d = node("seed-lost")
    r = run_cli("healthcheck", "--no-syslog", "--backend", "nvidia-smi", "--nvidia-smi",
                os.path.join(d, "nvidia-smi"), "--root", os.path.join(d, "root"),
                "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
                "--slurm-backend", "scontrol", "--scontrol", scontrol[0])
    assert r.code == 2 and "hostlist expression" in r.err
    assert not scontrol[1].exists()


# --- issue 12: Slurm's answers read strictly ---------------------------------------------

def show_node_scontrol(tmp_path, show, json_doc=None):
    """A recording scontrol that answers `show node -o` with ``show`` (and `--json show node`
    with ``json_doc`` when given, else fails like a Slurm without a JSON plugin)."""
    log = tmp_path / "scontrol.log"
    s = tmp_path / "scontrol"
    (tmp_path / "show.txt").write_text(show + "\n")
    body = f'echo "$*" >> {log}\n'
    if json_doc is not None:
        (tmp_path / "show.json").write_text(json.dumps(json_doc))
        body += f'[ "$1" = --json ] && cat {tmp_path}/show.json && exit 0\n'
    else:
        body += '[ "$1" = --json ] && echo "scontrol: unrecognized option --json" >&2 && exit 1\n'
    body += f'[ "$1" = show ] && cat {tmp_path}/show.txt\nexit 0\n'
    s.write_text("#!/bin/sh\n" + body)
    s.chmod(0o755)
    return s, log


def hc_lost(tmp_path, s, *extra):
    d = node("seed-lost")
    return run_cli("healthcheck", "--json", "--no-syslog", "--backend", "nvidia-smi",
                   "--nvidia-smi", os.path.join(d, "nvidia-smi"), "--root", os.path.join(d, "root"),
                   "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                   "--slurm-conf", SAMPLE_SLURM,
                   "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
                   "--slurm-backend", "scontrol", "--scontrol", s, *extra)


@pytest.mark.parametrize("show", [
    "NodeName=c51-g002 Arch=x86_64 CoresPerSocket=16",
    "NodeName=c51-g002 Arch=x86_64 Reason=State=IDLE [root@2026-11-28T10:00:00]",
    "",
    "slurm_load_node error: Invalid node name specified",
])
def test_show_node_without_state_is_exit_5_and_no_update(tmp_path, show):
    s, log = show_node_scontrol(tmp_path, show)
    r = hc_lost(tmp_path, s)
    assert r.code == 5, (r.code, r.err)
    assert "Traceback" not in r.err
    assert "update" not in log.read_text()


REASON = None  # filled from a first run: the reason migsync writes for seed-lost


def _our_reason(tmp_path):
    s, log = show_node_scontrol(tmp_path, "NodeName=c51-g002 State=IDLE")
    r = hc_lost(tmp_path, s)
    assert r.code == 1
    return r.json()["drain_reason"]


@pytest.mark.parametrize("fmt", [
    # 22.05: Reason= last
    "NodeName=c51-g002 Arch=x86_64 State=IDLE+DRAIN ThreadsPerCore=2 CurrentWatts=0 AveWatts=0 "
    "ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s Reason={r} [root@2026-11-28T10:00:00]",
    # 24.11: two spaces before Reason=, ResumeAfterTime, a Comment after the reason
    "NodeName=c51-g002 Arch=x86_64 State=IDLE+DRAIN ThreadsPerCore=2 LastBusyTime=2026-11-28T09:00:00 "
    "ResumeAfterTime=None CfgTRES=cpu=64 AllocTRES= CurrentWatts=0 AveWatts=0  Reason={r} "
    "[root@2026-11-28T10:00:00] Comment=rack 4 Extra=x",
    # 26.05: SuspendTime, a reservation after the reason
    "NodeName=c51-g002 State=DRAINED+DRAIN ResumeAfterTime=None SuspendTime=None "
    "CurrentWatts=0 AveWatts=0  Reason={r} [slurm@2026-11-28T10:00:00] ReservationName=maint",
    # no [user@time] marker, a Comment after it
    "NodeName=c51-g002 State=IDLE+DRAIN CurrentWatts=0 AveWatts=0 Reason={r} Comment=x y",
])
def test_our_reason_reads_back_equal_across_slurm_versions_no_churn(tmp_path, fmt):
    reason = _our_reason(tmp_path)
    s, log = show_node_scontrol(tmp_path, fmt.format(r=reason))
    log.unlink(missing_ok=True)
    r = hc_lost(tmp_path, s)
    assert r.code == 1 and r.json()["action"] == "none", r.json()["action_why"]
    assert "update" not in log.read_text()


def test_json_show_node_is_preferred_where_slurm_has_it(tmp_path):
    reason = _our_reason(tmp_path)
    for states, flags in ((["IDLE", "DRAIN"], None), ("idle", ["DRAIN"])):  # 23.02+ and 22.05
        node_doc = {"name": "c51-g002", "state": states, "reason": reason,
                    "reason_set_by_user": "root", "comment": "Reason=x"}
        if flags is not None:
            node_doc["state_flags"] = flags
        s, log = show_node_scontrol(tmp_path, "garbage that must not be read",
                                    {"nodes": [node_doc]})
        log.unlink(missing_ok=True)
        r = hc_lost(tmp_path, s)
        assert r.code == 1 and r.json()["action"] == "none", r.err
        assert log.read_text().splitlines() == ["--json show node c51-g002"]
    s, log = show_node_scontrol(tmp_path, "", {"nodes": [{"name": "c51-g002", "reason": "x"}]})
    r = hc_lost(tmp_path, s)
    assert r.code == 5 and "no state" in r.err and "update" not in log.read_text()


def test_24_11_keeps_the_old_reason_after_resume_and_that_is_not_a_drain(tmp_path):
    reason = _our_reason(tmp_path)
    (tmp_path / "scontrol.log").unlink()
    s, log = show_node_scontrol(tmp_path, f"NodeName=c51-g002 State=IDLE ResumeAfterTime=None "
                                          f"CurrentWatts=0 AveWatts=0  Reason={reason} "
                                          "[root@2026-11-28T10:00:00]")
    d = node("seed")  # consistent: nothing to resume, the leftover reason is not a drain
    r = run_cli("healthcheck", "--json", "--no-syslog", "--backend", "nvidia-smi",
                "--nvidia-smi", os.path.join(d, "nvidia-smi"), "--root", os.path.join(d, "root"),
                "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                   "--slurm-conf", SAMPLE_SLURM,
                "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
                "--slurm-backend", "scontrol", "--scontrol", s)
    assert r.code == 0 and r.json()["action"] == "none"
    assert "update" not in log.read_text()


# --- issue 12/14: bounded input -------------------------------------------------------------

def _fifo(path):
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("make,pattern", [
    (lambda t: _fifo(t / "gres.conf"), r"not a regular file"),
    (lambda t: "/dev/zero", r"not a regular file"),
    (lambda t: t, r"is a directory"),
    (lambda t: _big(t / "gres.conf", (64 << 20) + 1), r"larger than 64 MiB"),
    (lambda t: _write(t / "gres.conf", f"Include {_fifo(t / 'inc')}\n"), r"inc: not a regular file"),
    (lambda t: _write(t / "gres.conf", "Include /dev/zero\n"), r"/dev/zero: not a regular file"),
    (lambda t: _write(t / "gres.conf", "NodeName=c51-g002 Name=gpu File=/dev/x[0-65535][0-15]\n"),
     r"hostlist has more than 8192 names"),
    (lambda t: _write(t / "gres.conf", "NodeName=c51-g002 Name=gpu File=/dev/x[0-8000]\n" * 40),
     r"more than 262144 names in all"),
    (lambda t: _fanout(t), r"more than 256 files read for one configuration"),
])
def test_bounded_reads(tmp_path, scontrol, make, pattern):
    path = make(tmp_path)
    import time
    t = time.monotonic()
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", path,
                    "--slurm-conf", os.path.join(SAMPLE, "slurm.conf"))
    assert time.monotonic() - t < 20
    assert_clean_failure(r, 2, pattern, path, scontrol[1])
    assert len(r.err.splitlines()) <= 2  # the error, and "left as it is"


def _write(path, text):
    path.write_text(text)
    return path


def _big(path, size):
    with open(path, "wb") as fh:
        fh.truncate(size)  # sparse: no disk used
    return path


def _fanout(t):
    """Each level includes the next twice: 2^8 leaves (511 reads) from 9 small files, all
    within Slurm's nesting depth."""
    for i in range(8):
        _write(t / f"l{i}.conf", f"Include l{i + 1}.conf\nInclude l{i + 1}.conf\n")
    _write(t / "l8.conf", "# leaf\n")
    return t / "l0.conf"


def test_a_fifo_or_device_as_settings_or_slurm_conf_is_refused(tmp_path, scontrol):
    fifo = _fifo(tmp_path / "migsync.toml")
    r = healthcheck(tmp_path, scontrol[0], "--config", fifo,
                    "--gres-conf", os.path.join(SAMPLE, "gres.conf"))
    assert r.code == 2 and "not a regular file" in r.err
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    "--slurm-conf", "/dev/zero")
    assert r.code == 2 and ("not a regular file" in r.err or "slurm.conf not found" in r.err)
    assert not scontrol[1].exists()


import json  # noqa: E402  (used by the issue-12 tests above)


# --- issue 12: fuzzing recorded discovery data --------------------------------------------

from hypothesis import HealthCheck, given, settings as hsettings, strategies as hst  # noqa: E402

_LCI_PROFILE = re.compile(r"MIG \S+")
FUZZ_FILES = [
    "root/proc/driver/nvidia-caps/mig-minors",
    "root/proc/driver/nvidia/gpus/0000:17:00.0/information",
    "root/proc/driver/nvidia/gpus/0000:ca:00.0/information",
    "root/proc/driver/nvidia/gpus/0000:e3:00.0/information",
    "root/proc/driver/nvidia/capabilities/gpu2/mig/gi7/access",
    "root/proc/driver/nvidia/capabilities/gpu2/mig/gi7/ci0/access",
    "root/proc/driver/nvidia/capabilities/gpu3/mig/gi14/access",
    "smi/query-gpu.csv",
    "smi/lci.txt",
]


def _minor(info):
    """The Device Minor an information file states, if it states exactly one number."""
    found = re.findall(rb"^Device Minor:[ \t]*(\d+)[ \t]*$", info, re.M)
    return int(found[0]) if len(found) == 1 else None


def _zones(rel, data):
    """Byte ranges a flip may touch: everything but free text whose change is a different,
    self-consistent GPU (a GPU name, a MIG profile name), which may rightly be a mismatch."""
    text = data.decode("latin-1")
    if rel.endswith("query-gpu.csv"):  # index, bus id, UUID: not the name or modes
        out, pos = [], 0
        for line in text.splitlines(keepends=True):
            parts = line.split(", ")
            n = len(", ".join(parts[:3])) if len(parts) >= 4 else len(line)
            out.append((pos, pos + n))
            pos += len(line)
        return out
    if rel.endswith("lci.txt"):  # rows, except the profile name
        out, pos = [], 0
        for line in text.splitlines(keepends=True):
            m = _LCI_PROFILE.search(line)
            if m and line.startswith("|"):
                out += [(pos, pos + m.start()), (pos + m.end(), pos + len(line))]
            pos += len(line)
        return out
    if rel.endswith("information"):  # all but the Model line
        out, pos = [], 0
        for line in text.splitlines(keepends=True):
            if not line.startswith("Model:"):
                out.append((pos, pos + len(line)))
            pos += len(line)
        return out
    return [(0, len(data))]


@hsettings(max_examples=150, deadline=None, database=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(which=hst.sampled_from(FUZZ_FILES), kind=hst.sampled_from(["flip", "truncate", "duplicate"]),
       at=hst.integers(min_value=0, max_value=1 << 20),
       byte=hst.sampled_from(b"0123456789abcdefxX:,.| \n/-["))
def test_fuzzed_discovery_data_never_yields_a_mismatch(which, kind, at, byte):
    """The consistent seed node (exit 0), one recorded file mutated by a byte flip,
    truncation or a duplicated line: the verdict is consistent (0) or a discovery failure
    (3), never a mismatch (1), never a crash."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "node")
        shutil.copytree(node("seed"), d, symlinks=True)
        path = os.path.join(d, which)
        data = open(path, "rb").read()
        if kind == "flip":
            zones = [z for z in _zones(which, data) if z[1] > z[0]]
            lo, hi = zones[at % len(zones)]
            i = lo + (at // len(zones)) % (hi - lo)
            if data[i] == byte:
                return
            flipped = data[:i] + bytes([byte]) + data[i + 1:]
            if which.endswith("information") and _minor(flipped) not in (None, _minor(data)):
                return  # 'Device Minor: 0' -> '10': a different, self-consistent GPU (a mismatch)
            data = flipped
        elif kind == "truncate":
            data = data[:at % len(data)]
        else:
            lines = data.splitlines(keepends=True)
            i = at % len(lines)
            data = b"".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])
        with open(path, "wb") as fh:
            fh.write(data)
        r = run_cli("check", "--quiet", "--backend", "nvidia-smi", "--nvidia-smi",
                    os.path.join(d, "nvidia-smi"), "--root", os.path.join(d, "root"),
                    "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                   "--slurm-conf", SAMPLE_SLURM)
        assert r.code in (0, 3), (which, kind, r.code, r.err, data[-200:])
        assert "Traceback" not in r.err and "internal error" not in r.err


def test_missing_directories_of_prom_and_lock_files_are_named_never_created(tmp_path, scontrol):
    d = node("seed")
    r = run_cli("healthcheck", "--no-syslog", "--backend", "nvidia-smi", "--nvidia-smi",
                os.path.join(d, "nvidia-smi"), "--root", os.path.join(d, "root"),
                "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                   "--slurm-conf", SAMPLE_SLURM,
                "--lock-file", tmp_path / "lock", "--prom-file", tmp_path / "no" / "dir" / "m.prom",
                "--cache-file", tmp_path / "state.json",
                "--slurm-backend", "scontrol", "--scontrol", scontrol[0])
    assert r.code == 0 and f"{tmp_path}/no/dir: directory does not exist" in r.err
    assert not (tmp_path / "no").exists()
    r = run_cli("healthcheck", "--no-syslog", "--backend", "nvidia-smi", "--nvidia-smi",
                os.path.join(d, "nvidia-smi"), "--root", os.path.join(d, "root"),
                "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                   "--slurm-conf", SAMPLE_SLURM,
                "--lock-file", tmp_path / "run" / "lock", "--slurm-backend", "scontrol",
                "--scontrol", scontrol[0])
    assert r.code == 2 and f"{tmp_path}/run: cannot open the lock file" in r.err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("tail", ["", "  Comment=Reason=forged [root@2026-01-01T00:00:00] x",
                                  " Extra=a [b@c]", " ReservationName=maint"])
def test_a_bracketed_at_inside_a_reason_is_not_its_stamp(tail):
    """Measured on the real 22.05 (test_faults): a reason holding '[x@y]' was cut there."""
    from migsync import slurmctl
    reason = "migsync: type x +2 [type-mismatch] gres.conf:3: Type='a' [x@y] does not match"
    line = (f"NodeName=c51-g002 State=IDLE+DRAIN CurrentWatts=0 AveWatts=0  Reason={reason} "
            f"[root@2026-11-28T21:00:00]{tail}")
    st = slurmctl.parse_show_node(line, "c51-g002")
    assert st.reason == reason and st.reason_user == "root" and st.drained


@pytest.mark.parametrize("where", ["/proc/migsync-demo", "/dev/null/demo"])
def test_demo_keep_where_nothing_can_be_written_is_one_line(where):
    """FileNotFoundError / NotADirectoryError from copying the sample escaped as 'internal
    error', exit 70."""
    r = run_cli("demo", "--keep", where)
    assert r.code == 2, r.err
    assert r.err.splitlines()[0].startswith(f"migsync: {where}: cannot copy the sample node "
                                            "there: "), r.err
    assert "internal error" not in r.err


def _cpu_node(tmp_path, gres_text="", gres_spec=""):
    """A node without the NVIDIA driver (no /proc/driver/nvidia) in a cluster whose other
    nodes have GPUs: slurm.conf, gres.conf for both."""
    root = tmp_path / "cpu-root"
    (root / "proc").mkdir(parents=True)
    (root / "dev").mkdir()
    slurm = tmp_path / "slurm.conf"
    slurm.write_text("ClusterName=c\nSlurmctldHost=head\nGresTypes=gpu\n"
                     f"NodeName=cpu01 CPUs=4{' Gres=' + gres_spec if gres_spec else ''}\n"
                     "NodeName=c51-g002 CPUs=64 Gres=gpu:a100:2,gpu:1g.10gb:14\n"
                     "PartitionName=all Nodes=ALL\n")
    gres = tmp_path / "gres.conf"
    gres.write_text(open(os.path.join(SAMPLE, "gres.conf")).read() + gres_text)
    return ["--root", root, "--slurm-conf", slurm, "--gres-conf", gres, "--node", "cpu01"]


@pytest.mark.parametrize("cmd", ["healthcheck", "prolog", "check"])
def test_a_cpu_node_without_the_driver_is_consistent_not_drained(tmp_path, cmd):
    """Prolog= and HealthCheckProgram= are cluster-wide in slurm.conf, so the hooks run on
    CPU nodes too. There, no NVIDIA driver is the expected state: it was a discovery
    failure, which drained every CPU node and failed every job on it (Prolog exit 1)."""
    log = tmp_path / "scontrol.log"
    s = tmp_path / "scontrol"
    s.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                 '[ "$1" = show ] && echo "NodeName=cpu01 State=IDLE"\nexit 0\n')
    s.chmod(0o755)
    acting = ["--no-syslog", "--lock-file", tmp_path / "lock", "--cache-file",
              tmp_path / "state.json", "--slurm-backend", "scontrol", "--scontrol", s]
    r = run_cli(cmd, *_cpu_node(tmp_path), *(acting if cmd != "check" else []))
    assert r.code == 0, r.err
    assert "driver" not in r.err and "Traceback" not in r.err
    if cmd == "check":
        assert r.out.startswith("node cpu01: OK")
    assert not log.exists() or "update" not in log.read_text()


def test_a_cpu_node_sends_no_report_to_merge(tmp_path):
    """A report from a CPU node would put it into merge's slurm.conf include beside the
    site's own line for it (slurmctld: 'Duplicated NodeHostName'): as before the CPU-node
    rule, it sends none (exit 3, which merge lists as 'no report')."""
    r = run_cli("report", "--no-hardware", *_cpu_node(tmp_path))
    assert r.code == 3 and r.out == "", r.out
    assert r.err.splitlines() == ["migsync: the NVIDIA driver is not loaded and Slurm gives "
                                  "this node no GPU: nothing to report"]


@pytest.mark.parametrize("gres_text,gres_spec", [
    ("NodeName=cpu01 Name=gpu Type=a100 File=/dev/nvidia0\n", ""),  # gres.conf gives it one
    ("", "gpu:1"),  # slurm.conf does
    ("NodeName=cpu01 AutoDetect=nvml\n", ""),  # slurmd would look for GPUs
])
def test_a_gpu_node_without_the_driver_is_still_a_discovery_failure(tmp_path, scontrol,
                                                                    gres_text, gres_spec):
    args = _cpu_node(tmp_path, gres_text, gres_spec)
    r = run_cli("healthcheck", "--no-syslog", *args, "--lock-file", tmp_path / "lock",
                "--cache-file", tmp_path / "state.json", "--slurm-backend", "scontrol",
                "--scontrol", scontrol[0])
    assert r.code == 3, r.err
    assert r.err.splitlines()[0] == ("migsync: /proc/driver/nvidia not found: the NVIDIA driver "
                                     "is not loaded")
    assert "reason=migsync: no GPU info [discovery] /proc/driver/nvidia not found" in \
        scontrol[1].read_text()


def test_backend_nvml_without_pynvml_is_migsyncs_own_error_not_a_node_fault(tmp_path, scontrol,
                                                                          monkeypatch):
    """pynvml missing from migsync's environment said nothing about the node, but with
    backend = nvml it was a discovery failure: every node drained."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    args = ["healthcheck", "--no-syslog", "--slurm-conf", SAMPLE_SLURM, "--root",
            os.path.join(node("seed"), "root"), "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
            "--node", "c51-g002", "--lock-file", tmp_path / "lock", "--cache-file",
            tmp_path / "s.json", "--slurm-backend", "scontrol", "--scontrol", scontrol[0]]
    r = run_cli(*args, "--backend", "nvml")
    assert r.code == 2, r.err
    assert r.err.splitlines()[0].startswith("migsync: NVML: module pynvml not installed")
    assert r.err.splitlines()[0].endswith("(backend = nvml: install it beside migsync, or use "
                                          "backend auto)")
    assert not scontrol[1].exists() or "update" not in scontrol[1].read_text()
    # auto: nvidia-smi answers, and the healthy node reads healthy
    r = run_cli(*args, "--backend", "auto", "--nvidia-smi", os.path.join(node("seed"), "nvidia-smi"))
    assert r.code == 0 and "c51-g002: consistent" in r.err, r.err


@pytest.mark.parametrize("name", ["NVIDIA A100 80GB PCIe", "", "NVIDIA A100 80GB PCIe MIG "])
def test_an_nvml_mig_name_without_a_profile_is_unreadable_data_not_a_type_mismatch(
        tmp_path, scontrol, name):
    """The whole name became the profile, so every Type= was a type-mismatch: the healthy
    node was drained 'bad Type 1g.10gb +13'."""
    fake = nvml_fake.make(os.path.join(node("seed"), "layout.json"))
    real = fake.nvmlDeviceGetName
    fake.nvmlDeviceGetName = lambda h: name if h[0] == "mig" else real(h)
    args = ["healthcheck", "--no-syslog", "--slurm-conf", SAMPLE_SLURM, "--root",
            os.path.join(node("seed"), "root"), "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
            "--node", "c51-g002", "--lock-file", tmp_path / "lock", "--cache-file",
            tmp_path / "s.json", "--slurm-backend", "scontrol", "--scontrol", scontrol[0]]
    r = run_cli(*args, "--backend", "nvml", "--no-drain-on-discovery-failure", nvml=fake)
    assert r.code == 3, r.err
    assert r.err.splitlines()[0] == (f"migsync: NVML: MIG device gpu index 2/gi7/ci0 is named "
                                     f"{name!r}, which holds no MIG profile"), r.err
    assert "type-mismatch" not in r.err
    assert not scontrol[1].exists() or "update" not in scontrol[1].read_text()
    r = run_cli(*args, "--backend", "auto", "--nvidia-smi",
                os.path.join(node("seed"), "nvidia-smi"), nvml=fake)
    assert r.code == 0 and "c51-g002: consistent" in r.err, r.err


@pytest.mark.parametrize("what", ["directory", "not executable"])
def test_an_nvidia_smi_setting_naming_no_program_is_a_setting_error(tmp_path, scontrol, what):
    """`nvidia_smi = "/etc/nvidia"` or a file without the x bit: a wrong setting (a driver
    that is gone takes its nvidia-smi along), so it must not drain like a discovery failure
    on every node the setting reaches. An absent file stays a discovery failure."""
    target = tmp_path / "nvidia"
    if what == "directory":
        target.mkdir()
    else:
        target.write_text("#!/bin/sh\n")
        target.chmod(0o644)
    r = healthcheck(tmp_path, scontrol[0], "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                    smi=str(target))
    assert r.code == 2, r.err
    assert r.err.splitlines()[0] == (f"migsync: {target}: nvidia_smi / --nvidia-smi: not an "
                                     "executable file")
    assert not scontrol[1].exists() or "update" not in scontrol[1].read_text()
