"""Drain/resume policy, the Slurm backends (scontrol output parsing, a pyslurm 25.11 fake),
metrics, the lock and the Prolog's cache. The real-cluster proof is in test_slurm_hooks.py."""
import os
import re
import shutil
import time

import pytest

import pyslurm_fake
from conftest import broken_nvidia_smi, node, run_cli, smi_args
from migsync import act, lock, prom, slurmctl
from migsync.errors import BusyError, SlurmError
from migsync.model import Finding
from migsync.slurmctl import NodeStatus

P = "migsync:"
SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "migsync", "sample", "seed-node")


def st(states, reason=""):
    return NodeStatus("n1", slurmctl.parse_states(states), reason)


def test_reason_puts_the_key_fact_in_the_first_20_characters():
    f = [Finding("unconfigured-device", "gpu3/gi14/ci0 ...", "gpu3/gi14/ci0 unconfigured"),
         Finding("stale-cap", "gres.conf:3: /dev/nvidia-caps/nvidia-cap535 is gpu3/gi14/ci0",
                 "stale cap535", "gres.conf:3")]
    reason = act.reason_for_findings(P, f)
    assert reason[:20] == "migsync: stale cap53"  # the most urgent finding leads
    assert "+1 [stale-cap]" in reason and "\n" not in reason and len(reason) <= act.MAX_REASON
    quoted = act.reason_for_findings(P, [Finding("type-mismatch", 'Type="x" does not match', "type x")])
    assert '"' not in quoted  # scontrol would strip it, and the reason would never read back


@pytest.mark.parametrize("states,reason,problem,want", [
    ("IDLE", "", "migsync: x", "drain"),
    ("MIXED", "", "migsync: x", "drain"),
    ("DOWN", "", "migsync: x", "none"),                      # DOWN nodes are left alone
    ("DOWN+DRAIN", "migsync: x", None, "none"),
    ("IDLE+DRAIN", "admin: PSU", "migsync: x", "none"),      # never overwrite others' reasons
    ("IDLE+DRAIN", "migsync: x", "migsync: x", "none"),      # same findings: no churn
    ("IDLE+DRAIN", "migsync: old", "migsync: new", "drain"), # findings changed: update
    ("IDLE+DRAIN", "migsync: x", None, "resume"),            # fixed: resume our own drain
    ("IDLE+DRAIN", "admin: PSU", None, "none"),              # never resume others' drains
    ("IDLE+DRAIN", "Prolog error", None, "none"),
    ("IDLE+DRAIN+INVALID_REG", "migsync: x", None, "none"),  # Slurm refuses resume there
    ("IDLE", "", None, "none"),
])
def test_decide_follows_nhc_etiquette(states, reason, problem, want):
    assert act.decide(st(states, reason), problem, P).action == want


def test_decide_settings_turn_off_drain_and_resume():
    assert act.decide(st("IDLE"), "migsync: x", P, drain=False).action == "none"
    assert act.decide(st("IDLE+DRAIN", "migsync: x"), None, P, resume=False).action == "none"


def test_parse_scontrol_show_node():
    text = ("NodeName=gpunode1 Arch=x86_64 State=IDLE+DRAIN ThreadsPerCore=1 Partitions=gpu "
            "Reason=migsync: stale cap535 [stale-cap] a [b] c [root@2026-11-28T13:34:31]\n")
    s = slurmctl.parse_show_node(text, "gpunode1")
    assert s.states == {"IDLE", "DRAIN"} and s.drained and not s.down
    assert s.reason == "migsync: stale cap535 [stale-cap] a [b] c" and s.reason_user == "root"
    s = slurmctl.parse_show_node("NodeName=n State=DOWN*+DRAIN Reason=x [slurm@t]", "n")
    assert s.down and "NOT_RESPONDING" in s.states
    with pytest.raises(SlurmError):
        slurmctl.parse_show_node("Node n not found", "n")


def test_pyslurm_backend_against_the_25_11_api_fake():
    nodes = {"n1": {"state": "MIXED+DRAIN", "reason": "admin: PSU", "reason_user": "alice"}}
    fake = pyslurm_fake.make(nodes)
    b = slurmctl.PyslurmBackend(fake)
    s = b.status("n1")  # what Slurm holds, read back field by field
    assert (s.states, s.reason, s.reason_user) == ({"MIXED", "DRAIN"}, "admin: PSU", "alice")
    assert s.drained and not s.down
    b.drain("n1", "migsync: stale cap535")
    b.resume("n1")
    # what migsync asked Slurm for, in order: DRAIN with the exact reason, then RESUME
    assert fake.calls == [("n1", {"state": "DRAIN", "reason": "migsync: stale cap535"}),
                          ("n1", {"state": "RESUME"})]
    with pytest.raises(SlurmError, match="does not exist"):
        b.status("nope")


def test_backend_selection(monkeypatch, tmp_path):
    fake = pyslurm_fake.make({"n1": {"state": "IDLE", "reason": ""}})
    assert slurmctl.select("auto", "n1", pyslurm_module=fake).name == "pyslurm"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\necho NodeName=n1 State=IDLE\n")
    scontrol.chmod(0o755)
    # pyslurm present but this node unknown to it (e.g. another cluster): fall back
    assert slurmctl.select("auto", "zz", str(scontrol), pyslurm_module=fake).name == "scontrol"
    # pyslurm missing: the real import fails here, so auto means scontrol
    assert slurmctl.select("auto", "n1", str(scontrol)).name == "scontrol"
    with pytest.raises(SlurmError, match="pyslurm not usable"):
        slurmctl.select("pyslurm", "n1")
    old = type("old", (), {})()  # a pyslurm without the >= 23 API
    with pytest.raises(SlurmError, match="too old"):
        slurmctl.select("pyslurm", "n1", pyslurm_module=old)
    assert slurmctl.select("scontrol", "n1", str(scontrol)).name == "scontrol"


def fake_scontrol(tmp_path, state="IDLE", reason="", hang=False, refuse=False):
    """A scontrol stand-in that records its updates (the real one is in test_slurm_hooks)."""
    log = tmp_path / "scontrol.log"
    body = "sleep 60\n" if hang else ""
    if refuse:
        body += 'echo "slurm_update error: Access/permission denied" >&2; exit 1\n'
    s = tmp_path / "scontrol"
    s.write_text("#!/bin/sh\n" + body +
                 f'echo "SLURM_CONF=$SLURM_CONF $*" >> {log}\n'
                 f'[ "$1" = show ] && echo "NodeName=c51-g002 State={state} Reason={reason} [root@t]"\n'
                 "exit 0\n")
    s.chmod(0o755)
    return s, log


def hc(tmp_path, *extra, name="seed-lost"):
    return run_cli("healthcheck", "--json", "--no-syslog", *smi_args(
        name, os.path.join(SAMPLE, "gres.conf"), os.path.join(SAMPLE, "slurm.conf"), "c51-g002"),
        "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
        "--slurm-backend", "scontrol", *extra)


def test_healthcheck_drains_with_scontrol_and_points_it_at_the_found_slurm_conf(tmp_path):
    s, log = fake_scontrol(tmp_path)
    r = hc(tmp_path, "--scontrol", s, "--prom-file", tmp_path / "m.prom")
    assert r.code == 1
    doc = r.json()
    assert doc["action"] == "drain" and doc["drain_reason"].startswith("migsync: stale cap535")
    calls = log.read_text().splitlines()  # --json show (this fake has none), show -o, update
    assert calls[-1].startswith(f"SLURM_CONF={SAMPLE}/slurm.conf update nodename=c51-g002 "
                                "state=drain reason=migsync: stale cap535")
    text = (tmp_path / "m.prom").read_text()
    assert 'migsync_consistent{node="c51-g002"} 0' in text
    assert 'migsync_findings{node="c51-g002",id="stale-cap"} 1' in text
    assert 'migsync_devices{node="c51-g002",type="1g.10gb"} 13' in text
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_config_error_never_drains(tmp_path):
    s, log = fake_scontrol(tmp_path)
    bad = tmp_path / "gres.conf"
    bad.write_text("Name=gpu File=/dev/nvidia[\n")
    r = run_cli("healthcheck", "--no-syslog", *smi_args("seed-lost", bad, nodename="c51-g002"),
                "--lock-file", tmp_path / "lock", "--slurm-backend", "scontrol", "--scontrol", s)
    assert r.code == 2
    assert not log.exists()  # scontrol was never even asked
    assert "never drains for its own errors" in r.err


def test_discovery_failure_drains_with_its_own_reason_unless_disabled(tmp_path, monkeypatch):
    s, log = fake_scontrol(tmp_path)
    args = ["healthcheck", "--json", "--no-syslog", "--backend", "nvidia-smi", "--nvidia-smi",
            broken_nvidia_smi(tmp_path), "--root", os.path.join(node("seed"), "root"),
            "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
            "--lock-file", tmp_path / "lock", "--slurm-backend", "scontrol", "--scontrol", s]
    r = run_cli(*args)
    assert r.code == 3 and r.json()["drain_reason"].startswith("migsync: no GPU info [discovery]")
    r = run_cli(*args, "--no-drain-on-discovery-failure")
    assert r.code == 3 and r.json()["action"] == "none"


@pytest.mark.parametrize("how", ["settings file", "flag"])
def test_a_named_nvidia_smi_that_is_not_there_is_a_settings_error_never_a_drain(tmp_path, how):
    """A typo in nvidia_smi, deployed to every node, must not drain every node: the driver
    shows its GPUs, so the setting is wrong, not the node. Exit 2, one line, Slurm untouched."""
    s, log = fake_scontrol(tmp_path)
    typo = "/usr/bin/nvidia-smmi"
    args = ["healthcheck", "--json", "--no-syslog", "--backend", "nvidia-smi",
            "--root", os.path.join(node("seed"), "root"),
            "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
            "--lock-file", tmp_path / "lock", "--slurm-backend", "scontrol", "--scontrol", s]
    if how == "flag":
        args += ["--nvidia-smi", typo]
    else:
        cfg = tmp_path / "migsync.toml"
        cfg.write_text(f'nvidia_smi = "{typo}"\n')
        args += ["--config", cfg]
    r = run_cli(*args)
    assert r.code == 2, r.err
    first, second = r.err.splitlines()
    assert f"names {typo}, which is not an executable file" in first
    assert "left as it is: migsync never drains for its own errors" in second
    assert "update" not in (log.read_text() if log.exists() else "")  # never drained


def test_a_named_nvidia_smi_missing_on_a_node_without_its_driver_is_a_discovery_failure(tmp_path):
    """No driver in procfs either: the node is at fault (a driver removed with its tools),
    so it is drained as a discovery failure, as before."""
    s, log = fake_scontrol(tmp_path)
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    r = run_cli("healthcheck", "--json", "--no-syslog", "--backend", "nvidia-smi",
                "--nvidia-smi", "/usr/bin/nvidia-smmi", "--root", root,
                "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                "--lock-file", tmp_path / "lock", "--slurm-backend", "scontrol", "--scontrol", s)
    assert r.code == 3, r.err
    assert r.json()["drain_reason"].startswith("migsync: no GPU info [discovery]")
    assert "update" in log.read_text()


@pytest.mark.parametrize("mode", ["healthcheck", "prolog", "check --drain"])
def test_a_node_name_that_is_not_slurmds_never_acts_on_that_node(tmp_path, monkeypatch, mode):
    """`node = "c51-g002"` copied into the migsync.toml every node shares: on node c51-g007
    (slurmd says so in $SLURMD_NODENAME) migsync must not drain or resume c51-g002 for
    c51-g007's hardware. Exit 2 (the Prolog: 0, its own trouble never blocks a job)."""
    monkeypatch.setenv("SLURMD_NODENAME", "c51-g007")
    s, log = fake_scontrol(tmp_path)
    cfg = tmp_path / "migsync.toml"
    cfg.write_text('node = "c51-g002"\n')
    args = [*mode.split(), "--config", cfg, *smi_args("seed-lost", os.path.join(SAMPLE, "gres.conf"),
                                                    os.path.join(SAMPLE, "slurm.conf")),
            "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
            "--slurm-backend", "scontrol", "--scontrol", s, "--no-syslog"]
    r = run_cli(*args)
    assert r.code == (0 if mode == "prolog" else 2), r.err
    assert "node name c51-g002 is not the node slurmd runs this on (c51-g007" in r.err
    assert not log.exists()  # Slurm never asked, so nothing drained or resumed
    monkeypatch.setenv("SLURMD_NODENAME", "c51-g002")  # the right node: it acts (drains)
    r = run_cli(*args)
    assert r.code == 1 and "update" in log.read_text(), r.err


def test_scontrol_refusing_or_hanging_is_exit_5_within_the_deadline(tmp_path):
    s, _ = fake_scontrol(tmp_path, refuse=True)
    r = hc(tmp_path, "--scontrol", s)
    assert r.code == 5 and "permission denied" in r.json()["error"]
    s, _ = fake_scontrol(tmp_path, hang=True)
    t = time.monotonic()
    r = hc(tmp_path, "--scontrol", s, "--timeout", "1")
    assert r.code == 5 and "timed out" in r.json()["error"]
    assert time.monotonic() - t < 10


def test_resume_only_our_own_drain(tmp_path):
    s, log = fake_scontrol(tmp_path, "IDLE+DRAIN", "migsync: stale cap535")
    r = hc(tmp_path, "--scontrol", s, name="seed")
    assert r.code == 0 and r.json()["action"] == "resume"
    log.unlink()
    s, log = fake_scontrol(tmp_path, "IDLE+DRAIN", "admin: PSU")
    r = hc(tmp_path, "--scontrol", s, name="seed")
    assert r.json()["action"] == "none" and "update" not in log.read_text()


def test_a_second_run_waits_a_bounded_time_then_exits_busy(tmp_path):
    path = str(tmp_path / "lock")
    with lock.RunLock(path, 1):
        t = time.monotonic()
        with pytest.raises(BusyError, match="another migsync run"):
            with lock.RunLock(path, 0.3):
                pass
        assert 0.25 < time.monotonic() - t < 3
        s, log = fake_scontrol(tmp_path)
        r = hc(tmp_path, "--scontrol", s, "--lock-wait", "0.2")
        assert r.code == 4 and not log.exists()
    with lock.RunLock(path, 0):  # released
        pass


def test_prolog_uses_the_cache_and_no_nvidia_smi(tmp_path):
    s, log = fake_scontrol(tmp_path)
    d = tmp_path / "n"
    shutil.copytree(node("seed"), d, symlinks=True)
    base = ["--root", d / "root", "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
            "--slurm-conf", os.path.join(SAMPLE, "slurm.conf"), "--node", "c51-g002",
            "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
            "--slurm-backend", "scontrol", "--scontrol", s, "--no-syslog", "--json"]
    r = run_cli("healthcheck", "--backend", "nvidia-smi", "--nvidia-smi", d / "nvidia-smi", *base)
    assert r.code == 0
    (d / "nvidia-smi").unlink()  # the Prolog must not need it
    r = run_cli("prolog", *base)
    assert r.code == 0 and r.json()["from_cache"] is True
    shutil.rmtree(d / "root/proc/driver/nvidia/capabilities/gpu3/mig/gi14")
    r = run_cli("prolog", *base)
    doc = r.json()
    assert r.code == 1 and doc["from_cache"] is False
    assert doc["drain_reason"].startswith("migsync: stale cap535")


def test_prolog_never_blocks_a_job_for_migsyncs_own_errors(tmp_path):
    bad = tmp_path / "gres.conf"
    bad.write_text("Name=gpu Flie=/dev/nvidia0\n")
    r = run_cli("prolog", "--no-syslog", "--root", os.path.join(node("seed"), "root"),
                "--gres-conf", bad, "--node", "c51-g002", "--lock-file", tmp_path / "lock",
                "--cache-file", tmp_path / "state.json")
    assert r.code == 0 and "unknown key 'Flie'" in r.err


def test_prom_render_is_textfile_format():
    text = prom.render('n"1', True, {"stale-cap": 2}, {"1g.10gb": 3}, 0.1234, 1700000000, "ok")
    assert 'migsync_consistent{node="n\\"1"} 1' in text
    assert 'migsync_findings{node="n\\"1",id="stale-cap"} 2' in text
    assert 'migsync_findings{node="n\\"1",id="gpu-lost"} 0' in text  # every id, zeros too
    assert 'migsync_devices{node="n\\"1",type="1g.10gb"} 3' in text
    assert 'migsync_run_status{node="n\\"1",status="ok"} 1' in text
    assert 'migsync_run_status{node="n\\"1",status="mismatch"} 0' in text
    assert 'migsync_run_duration_seconds{node="n\\"1"} 0.123' in text
    assert 'migsync_last_run_timestamp_seconds{node="n\\"1"} 1700000000' in text
    # the exposition format node_exporter's textfile collector parses: every sample is
    # name{labels} value, and each metric has its HELP and TYPE lines before its samples
    sample = re.compile(r'^(migsync_[a-z_]+)\{node="(?:[^"\\]|\\.)*"(?:,[a-z]+="[^"]*")?\} -?[0-9.]+$')
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            assert line.split()[3] == "gauge"
        elif not line.startswith("# HELP "):
            m = sample.match(line)
            assert m, line
            assert m.group(1) in typed, line
    assert typed == {"migsync_consistent", "migsync_findings", "migsync_devices", "migsync_run_status",
                     "migsync_run_duration_seconds", "migsync_last_run_timestamp_seconds"}
    unknown = prom.render("n1", None, {}, {}, 0, 0, "discovery_failed")
    assert 'migsync_consistent{node="n1"} -1' in unknown


def test_prolog_still_stops_the_job_when_the_drain_itself_fails(tmp_path):
    s, _ = fake_scontrol(tmp_path, refuse=True)
    r = run_cli("prolog", "--no-syslog", *smi_args("seed-lost", os.path.join(SAMPLE, "gres.conf"),
                                                   nodename="c51-g002"),
                "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
                "--slurm-backend", "scontrol", "--scontrol", s)
    assert r.code == 1  # Slurm then drains with 'Prolog error': the job still does not run


def test_prolog_does_not_reuse_a_verdict_made_under_other_settings(tmp_path):
    s, _ = fake_scontrol(tmp_path)
    base = ["--root", os.path.join(node("seed-lost"), "root"),
            "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
            "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
            "--slurm-backend", "scontrol", "--scontrol", s, "--no-syslog", "--json"]
    r = run_cli("healthcheck", "--backend", "nvidia-smi", "--nvidia-smi",
                os.path.join(node("seed-lost"), "nvidia-smi"), *base)
    assert r.code == 1
    r = run_cli("prolog", *base, "--ignore", "stale-cap")
    assert r.code == 0 and r.json()["from_cache"] is False


def test_a_lock_file_that_cannot_be_opened_is_a_config_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    r = hc(tmp_path, "--lock-file", blocker / "lock", name="seed")
    assert r.code == 2 and "cannot open the lock file" in r.err


def test_metrics_count_devices_by_the_sites_own_type_names(tmp_path):
    s, _ = fake_scontrol(tmp_path)
    from conftest import CONF
    r = run_cli("healthcheck", "--no-syslog", *smi_args(
        "h200-mixed", os.path.join(CONF, "h200-autodetect-style.gres.conf"), nodename="h200-01"),
        "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
        "--slurm-backend", "scontrol", "--scontrol", s, "--prom-file", tmp_path / "m.prom")
    assert r.code == 0, r.err
    text = (tmp_path / "m.prom").read_text()
    assert 'migsync_devices{node="h200-01",type="nvidia_h200_1c.3g.71gb"} 3' in text


# What the log says for each decision (the one line an admin reads to learn why migsync did
# or did not touch the node), word for word, and the reason a drain sets (NHC's etiquette).
@pytest.mark.parametrize("states,reason,problem,kw,action,why", [
    ("DOWN", "", "migsync: x", {}, "none", "node is DOWN: left alone"),
    ("DOWN+DRAIN", "", None, {}, "none", "node is DOWN+DRAIN: left alone"),
    ("IDLE", "", "migsync: x", {"drain": False}, "none",
     "mismatch, but draining is disabled (drain = false)"),
    ("IDLE+DRAIN", "admin: PSU", "migsync: x", {}, "none",
     "already drained by someone else; their reason is kept: 'admin: PSU'"),
    ("IDLE+DRAIN", "migsync: x", "migsync: x", {}, "none",
     "already drained by migsync for the same findings"),
    ("IDLE+DRAIN", "migsync: old", "migsync: new", {}, "drain",
     "findings changed: updating migsync's reason"),
    ("MIXED", "", "migsync: new", {}, "drain", "draining"),
    ("IDLE+DRAIN", "migsync: x", None, {"resume": False}, "none",
     "consistent again, but resume = false: left drained"),
    ("IDLE+DRAIN+INVALID_REG", "migsync: x", None, {}, "none",
     "consistent, but Slurm holds the node INVALID_REG (fix slurm.conf Gres= and restart slurmd)"),
    ("IDLE+DRAIN", "migsync: x", None, {}, "resume",
     "consistent again: resuming the node migsync drained"),
    ("IDLE+DRAIN", "admin: PSU", None, {}, "none",
     "consistent; node drained by someone else ('admin: PSU'): not resumed"),
    ("IDLE", "", None, {}, "none", "consistent"),
])
def test_decide_explains_itself_and_drains_with_the_problem(states, reason, problem, kw, action,
                                                            why):
    d = act.decide(st(states, reason), problem, P, **kw)
    assert (d.action, d.why) == (action, why)
    assert d.reason == (problem if action == "drain" else "")


def test_reason_text_exactly():
    f = [Finding("type-mismatch", 'gres.conf:2: Type="1g" does not match\\nsecond line',
                 "bad Type 1g", "gres.conf:2")]
    assert act.reason_for_findings(P, f) == \
        "migsync: bad Type 1g [type-mismatch] gres.conf:2: Type='1g' does not match\\nsecond line"
    f = [Finding("future-id", "m1", "s1"), Finding("stale-cap", "m2", "s2")]
    assert act.reason_for_findings(P, f) == "migsync: s2 +1 [stale-cap] m2"  # unknown ids rank last
    assert act.reason_for_findings(P, [Finding("x", "y " * 300, "z")]) == \
        ("migsync: z [x] " + "y " * 300)[:act.MAX_REASON]
    assert act.reason_for_discovery(P, 'NVML: "init" failed\n  twice') == \
        "migsync: no GPU info [discovery] NVML: 'init' failed twice"
    assert act.summary([Finding("a", "m1", "s"), Finding("b", "m2", "s")]) == "a: m1; b: m2"
