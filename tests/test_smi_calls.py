"""Which nvidia-smi calls each command makes (issue 11): `nvidia-smi -L` only adds MIG devices'
UUIDs, so it runs only where they are shown or used (--json inventories, the health check's
node map), and every other command is spared its start. A recorded node is served by its fake
nvidia-smi, changed to log each argument list it is called with.

minor-not-index: GPU index 2 (device minor 0) has one 3g.40gb instance, so -L ties a UUID to
it; the two 1g.10gb instances of GPU index 0 share a profile and stay without one. The UUID
below is the one recorded in tests/data/nodes/minor-not-index/smi/L.txt."""
import json
import os
import shutil

import pytest

from conftest import CONF, node, run_cli

QUERY = ("--query-gpu=index,pci.bus_id,uuid,name,mig.mode.current,mig.mode.pending "
         "--format=csv,noheader")
UUID_3G = "MIG-e9877050-262c-4ae4-56f8-ac7392521dc5"  # gpu0/gi1/ci0, from -L
GRES = os.path.join(CONF, "minor-right.gres.conf")
WITHOUT_L = [QUERY, "mig -lci"]
WITH_L = [QUERY, "mig -lci", "-L"]


class LoggedNode:
    def __init__(self, tmp_path, name="minor-not-index"):
        self.dir = tmp_path / name
        shutil.copytree(node(name), self.dir, symlinks=True)
        self.smi = self.dir / "nvidia-smi"
        self.log = self.dir / "calls"
        text = self.smi.read_text()
        assert text.startswith("#!/bin/sh\n")
        self.smi.write_text(text.replace("#!/bin/sh\n", f'#!/bin/sh\necho "$*" >> {self.log}\n', 1))

    def args(self, *extra):
        return ["--backend", "nvidia-smi", "--nvidia-smi", self.smi, "--root",
                self.dir / "root", *extra]

    def calls(self):
        """The argument lists nvidia-smi was started with (they start together: any order)."""
        return sorted(self.log.read_text().splitlines()) if self.log.exists() else []


def mig_uuids(inventory):
    return {(m["parent_minor"], m["gi"], m["ci"]): m["uuid"] for m in inventory["mig_devices"]}


@pytest.mark.parametrize("argv", [
    ["check", "--gres-conf", GRES, "--node", "g-minor"],
    ["check", "-q", "--gres-conf", GRES, "--node", "g-minor"],
    ["check", "--reason-only", "--gres-conf", GRES, "--node", "g-minor"],
    ["discover"],
    ["emit", "--node", "g-minor"],
    ["report", "--gres-conf", GRES, "--node", "g-minor", "--no-hardware"],
])
def test_commands_that_show_no_mig_uuid_do_not_run_nvidia_smi_L(tmp_path, argv):
    n = LoggedNode(tmp_path)
    r = run_cli(*argv, *n.args())
    assert r.code == 0, r.err
    assert n.calls() == sorted(WITHOUT_L)


def test_a_plain_check_gives_the_same_verdict_and_lines_as_one_with_uuids(tmp_path):
    """-L decides nothing: the findings and suggested lines on a mismatching config are the
    same whether it ran (--json) or not (the text report's lines)."""
    n = LoggedNode(tmp_path)
    gres = os.path.join(CONF, "minor-by-index.gres.conf")
    plain = run_cli("check", "--gres-conf", gres, "--node", "g-minor", *n.args())
    assert n.calls() == sorted(WITHOUT_L)
    n.log.unlink()
    doc = json.loads(run_cli("check", "--json", "--gres-conf", gres, "--node", "g-minor",
                             *n.args()).out)
    assert n.calls() == sorted(WITH_L)
    assert plain.code == 1 and doc["exit_code"] == 1
    # caps 67, 76 (gpu0/gi7, gi8) and 283 (gpu2/gi1) name no device: missing and stale;
    # the three real instances (caps 337, 346, 13) are unconfigured
    assert sorted(f["id"] for f in doc["findings"]) == (
        ["missing-file"] * 3 + ["stale-cap"] * 3 + ["unconfigured-device"] * 3)
    for f in doc["findings"]:
        assert f["message"] in plain.out
    for line in doc["suggested"]["gres_conf"]:
        assert f"  {line}\n" in plain.out


@pytest.mark.parametrize("argv", [
    ["check", "--json", "--gres-conf", GRES, "--node", "g-minor"],
    ["discover", "--json"],
    ["emit", "--json", "--node", "g-minor"],
])
def test_json_inventories_run_nvidia_smi_L_and_carry_the_uuid(tmp_path, argv):
    n = LoggedNode(tmp_path)
    r = run_cli(*argv, *n.args())
    assert r.code == 0, r.err
    assert n.calls() == sorted(WITH_L)
    assert mig_uuids(json.loads(r.out)["inventory"]) == {
        (0, 1, 0): UUID_3G, (2, 7, 0): None, (2, 8, 0): None}


def test_auto_falling_back_to_nvidia_smi_passes_the_choice_on(tmp_path):
    """--backend auto on a node without NVML: nvidia-smi is asked after it, with or without -L
    as the command needs."""
    import nvml_fake

    n = LoggedNode(tmp_path)
    args = n.args()
    args[1] = "auto"
    fake = nvml_fake.make(str(n.dir / "layout.json"), no_library=True)
    r = run_cli("check", "--gres-conf", GRES, "--node", "g-minor", *args, nvml=fake)
    assert r.code == 0, r.err
    assert n.calls() == sorted(WITHOUT_L)
    n.log.unlink()
    r = run_cli("check", "--json", "--gres-conf", GRES, "--node", "g-minor", *args, nvml=fake)
    assert n.calls() == sorted(WITH_L)
    assert r.json()["inventory"]["backend"] == "nvidia-smi"
    assert mig_uuids(r.json()["inventory"])[(0, 1, 0)] == UUID_3G


def test_the_backend_asks_for_uuids_unless_told_not_to(tmp_path):
    from migsync.backends import smi

    n = LoggedNode(tmp_path)
    migs = smi.finish(smi.start(str(n.smi), 10)).migs
    assert n.calls() == sorted(WITH_L)
    assert [m.uuid for m in migs if m.gpu_index == 2] == [UUID_3G]
    n.log.unlink()
    migs = smi.probe(str(n.smi), 10, uuids=False).migs
    assert n.calls() == sorted(WITHOUT_L)
    assert [m.uuid for m in migs] == [None, None, None]


def test_probe_backend_passes_the_choice_on(tmp_path):
    from migsync import discovery

    n = LoggedNode(tmp_path)
    view = discovery.probe_backend("nvidia-smi", str(n.smi), 10)
    assert n.calls() == sorted(WITH_L)  # UUIDs unless told otherwise
    assert [m.uuid for m in view.migs if m.gpu_index == 2] == [UUID_3G]
    n.log.unlink()
    view = discovery.probe_backend("nvidia-smi", str(n.smi), 10, None, uuids=False)
    assert n.calls() == sorted(WITHOUT_L)
    assert len(view.migs) == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="the trust check applies to root only")
def test_an_untrusted_nvidia_smi_is_a_config_error_even_without_a_driver(tmp_path):
    """A named nvidia-smi that others may write is refused (exit 2) before anything is run or
    read: also where procfs has no driver, which would otherwise say exit 3."""
    n = LoggedNode(tmp_path)
    n.smi.chmod(0o777)
    empty = tmp_path / "no-driver"
    empty.mkdir()
    r = run_cli("check", "--gres-conf", GRES, "--node", "g-minor", "--slurm-version", "24.11",
                "--backend", "nvidia-smi", "--nvidia-smi", n.smi, "--root", empty)
    assert r.code == 2 and "writable by group or other" in r.err, r.err
    assert n.calls() == []


def test_the_health_check_runs_nvidia_smi_L_for_the_node_map(tmp_path, scontrol):
    """The map the TaskProlog reads gives each GRES index its UUID: the health check needs -L
    (minor-right.gres.conf: index 0-1 the a100s, 2-3 the 1g.10gb pair, 4 the 3g.40gb)."""
    n = LoggedNode(tmp_path)
    slurm = tmp_path / "slurm.conf"
    slurm.write_text("ClusterName=c\nSlurmctldHost=h\nGresTypes=gpu\nNodeName=g-minor CPUs=2 "
                     "Gres=gpu:a100:2,gpu:1g.10gb:2,gpu:3g.40gb:1\nPartitionName=p Nodes=g-minor\n")
    state = tmp_path / "run"
    state.mkdir(mode=0o755)
    r = run_cli("healthcheck", *n.args(), "--node", "g-minor", "--gres-conf", GRES,
                "--slurm-conf", slurm, "--cache-file", state / "state.json",
                "--lock-file", state / "lock", "--no-syslog", "--no-drain", "--no-resume",
                "--scontrol", scontrol[0])
    assert r.code == 0, r.err
    assert n.calls() == sorted(WITH_L)
    entries = dict(line.split("=", 1) for line in (state / "node-map").read_text().splitlines()
                   if line.startswith("MIGSYNC_UUID_"))
    assert entries["MIGSYNC_UUID_4"].strip("'") == UUID_3G
    assert entries["MIGSYNC_UUID_2"] == entries["MIGSYNC_UUID_3"] == "''"


def test_a_hanging_nvidia_smi_L_no_longer_fails_a_plain_check(tmp_path):
    """-L is waited for like the other calls: when it hangs, a run that needs it times out
    (exit 3); a plain check does not start it and gives its verdict."""
    n = LoggedNode(tmp_path)
    text = n.smi.read_text()
    n.smi.write_text(text.replace('case "$*" in\n', 'case "$*" in\n  -L) exec sleep 30 ;;\n', 1))
    r = run_cli("check", "-q", "--gres-conf", GRES, "--node", "g-minor", "--timeout", "1",
                *n.args())
    assert r.code == 0, r.err
    r = run_cli("check", "--json", "--gres-conf", GRES, "--node", "g-minor", "--timeout", "1",
                *n.args())
    assert r.code == 3 and "timed out" in r.err, r.err


# ---- slurmd -V runs beside nvidia-smi, and a config error still comes first

@pytest.fixture
def slurmd_after_smi(tmp_path, monkeypatch):
    """A fake slurmd that answers its version only once nvidia-smi has started (the fake
    nvidia-smi touches a file first): run one after the other, as before issue 11, it gives
    up after 5 s without a version and migsync falls back to the packages."""
    from migsync import runner

    n = LoggedNode(tmp_path)
    started = tmp_path / "smi-started"
    n.smi.write_text(n.smi.read_text().replace("#!/bin/sh\n", f"#!/bin/sh\n: > {started}\n", 1))
    prog = tmp_path / "slurmd"
    prog.write_text(f"#!/bin/sh\nfor i in $(seq 100); do [ -e {started} ] && break; sleep 0.05; done\n"
                    f'[ -e {started} ] && echo "slurm 24.11.5" || echo "nvidia-smi did not run"\n')
    prog.chmod(0o755)
    monkeypatch.setattr(runner, "lookup", lambda name, search=runner.SAFE_PATH: str(prog)
                        if name == "slurmd" else name)
    return n


def test_slurmd_V_runs_while_nvidia_smi_runs(slurmd_after_smi):
    n = slurmd_after_smi
    r = run_cli("check", "--json", "--gres-conf", GRES, "--node", "g-minor", *n.args())
    assert r.code == 0, r.err
    assert r.json()["slurm_version"] == {"series": "24.11", "rules": "24.11", "how": "slurmd -V"}


def test_a_config_error_comes_first_and_kills_the_calls_started_beside_it(tmp_path):
    """nvidia-smi starts before the config is parsed; when the config is wrong the check
    says so (exit 2, not a discovery failure) and leaves no nvidia-smi running."""
    n = LoggedNode(tmp_path)
    token = f"31.{os.getpid()}"  # marks this test's processes in /proc
    n.smi.write_text(n.smi.read_text().replace('case "$*" in\n',
                                               f'exec sleep {token}\ncase "$*" in\n', 1))
    bad = tmp_path / "gres.conf"
    bad.write_text("NodeName=g-minor Name=gpu File=/dev/nvidia[3,1\n")
    r = run_cli("check", "--gres-conf", bad, "--node", "g-minor", "--slurm-version", "24.11",
                *n.args())
    assert r.code == 2 and str(bad) in r.err, r.err
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if token.encode() in fh.read():
                    left.append(pid)
        except OSError:
            pass
    assert left == []


@pytest.mark.parametrize("gres_text,code,said", [
    ("NodeName=g-minor Name=gpu File=/dev/nvidia[3,1\n", 2, "gres.conf"),
    # the driver shows its GPUs, so an nvidia-smi path that is not there is the setting's fault
    (None, 2, "nvidia_smi (--nvidia-smi) names "),
])
def test_a_missing_nvidia_smi_is_said_after_the_config(tmp_path, gres_text, code, said):
    gres = GRES
    if gres_text is not None:
        gres = tmp_path / "gres.conf"
        gres.write_text(gres_text)
    r = run_cli("check", "--gres-conf", gres, "--node", "g-minor", "--slurm-version", "24.11",
                "--backend", "nvidia-smi", "--nvidia-smi", tmp_path / "absent", "--root",
                os.path.join(node("minor-not-index"), "root"))
    assert r.code == code and said in r.err, r.err
