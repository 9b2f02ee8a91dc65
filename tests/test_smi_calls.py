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
