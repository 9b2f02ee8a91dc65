"""Every finding id, on recorded nodes and real-format config files, through the CLI."""
import os
import shutil


import nvml_fake
from conftest import CONF, node, run_cli, smi_args
import pytest

from migsync import act
from migsync.model import FINDING_IDS, Finding

SEED_GRES = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "migsync", "sample",
                                          "seed-node", "gres.conf"))
SEED_SLURM = SEED_GRES.replace("gres.conf", "slurm.conf")


def check(name, gres_text=None, tmp_path=None, slurm_text=None, nodename=None, gres=None,
          slurm=None, extra=()):
    if gres_text is not None:
        gres = tmp_path / "gres.conf"
        gres.write_text(gres_text)
    if slurm_text is not None:
        slurm = tmp_path / "slurm.conf"
        slurm.write_text(slurm_text)
    r = run_cli("check", "--json", *smi_args(name, gres, slurm, nodename), *extra)
    return r, (r.json() if r.out.strip() else None)


def ids(doc):
    return sorted({f["id"] for f in doc["findings"]})


def test_seed_node_matches_the_seed_gres_conf():
    r, doc = check("seed", gres=SEED_GRES, slurm=SEED_SLURM, nodename="c51-g002")
    assert r.code == 0, r.out
    assert doc["ok"] is True and doc["node"] == "c51-g002"
    assert doc["files"]["gres_conf"] == SEED_GRES
    assert len(doc["inventory"]["mig_devices"]) == 14


def test_instance_destroyed_while_dev_cap_remains_is_stale_cap():
    r, doc = check("seed-lost", gres=SEED_GRES, slurm=SEED_SLURM, nodename="c51-g002")
    assert r.code == 1
    (f,) = doc["findings"]
    assert f["id"] == "stale-cap" and f["path"] == "/dev/nvidia-caps/nvidia-cap535"
    assert f["source"] == "gres.conf:3"
    assert "gpu3/gi14/ci0" in f["message"]
    # the suggestion drops the stale device and fixes the count
    assert doc["suggested"]["slurm_conf"] == "NodeName=c51-g002 Gres=gpu:a100:2,gpu:1g.10gb:13"


def test_configured_path_that_does_not_exist(tmp_path):
    r, doc = check("seed", "NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia[0-1]\n"
                   "NodeName=c51-g002 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346,355,364,373,382,391,472,481,490,508,517,526,535,9999]\n",
                   tmp_path, nodename="c51-g002")
    assert r.code == 1
    missing = [f for f in doc["findings"] if f["id"] == "missing-file"]
    assert [f["path"] for f in missing] == ["/dev/nvidia-caps/nvidia-cap9999"]
    assert "slurmd would fail to start" in missing[0]["message"]


def test_real_instance_no_line_configures(tmp_path):
    r, doc = check("seed", "NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia[0-1]\n"
                   "NodeName=c51-g002 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346,355,364,373,382,391,472,481,490,508,517,526]\n",
                   tmp_path, nodename="c51-g002")
    assert ids(doc) == ["unconfigured-device"]
    assert "gpu3/gi14/ci0" in doc["findings"][0]["message"]


def test_whole_gpu_left_out_is_unconfigured(tmp_path):
    r, doc = check("seed", "NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia0\n"
                   "NodeName=c51-g002 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346,355,364,373,382,391,472,481,490,508,517,526,535]\n",
                   tmp_path, nodename="c51-g002")
    assert ids(doc) == ["unconfigured-device"] and "gpu1 " in doc["findings"][0]["message"]


def test_type_that_does_not_match_the_profile(tmp_path):
    r, doc = check("seed", "NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia[0-1]\n"
                   "NodeName=c51-g002 Name=gpu Type=2g.20gb File=/dev/nvidia-caps/nvidia-cap[337,346,355,364,373,382,391]\n"
                   "NodeName=c51-g002 Name=gpu Type=NVIDIA_A100_80GB_PCIE_1G.10GB File=/dev/nvidia-caps/nvidia-cap[472,481,490,508,517,526,535]\n",
                   tmp_path, nodename="c51-g002")
    assert ids(doc) == ["type-mismatch"]
    assert len(doc["findings"]) == 7  # only the 2g.20gb line; the long upper-case Type fits


def test_whole_gpu_configured_while_mig_is_on(tmp_path):
    r, doc = check("seed", "NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia[0-3]\n",
                   tmp_path, nodename="c51-g002")
    assert "whole-gpu-mig-on" in ids(doc)
    assert sum(f["id"] == "whole-gpu-mig-on" for f in doc["findings"]) == 2


def test_mig_on_with_no_instances_and_pending_mode():
    r, doc = check("mig-empty", gres=os.path.join(CONF, "mig-empty.gres.conf"), nodename="g-empty")
    assert r.code == 1
    assert ids(doc) == ["mig-no-instances", "mig-pending", "missing-file", "stale-cap"]
    pending = [f for f in doc["findings"] if f["id"] == "mig-pending"]
    assert "gpu1" in pending[0]["message"] and "disable" in pending[0]["message"]


def test_device_configured_twice(tmp_path):
    r, doc = check("seven-g", "NodeName=g-7g Name=gpu Type=7g.80gb File=/dev/nvidia-caps/nvidia-cap4\n"
                   "NodeName=g-7g Name=gpu Type=7g.80gb MultipleFiles=/dev/nvidia0,/dev/nvidia-caps/nvidia-cap3,/dev/nvidia-caps/nvidia-cap4\n",
                   tmp_path, nodename="g-7g")
    assert ids(doc) == ["duplicate-device"]
    assert "already configured at gres.conf:1" in doc["findings"][0]["message"]


def test_slurm_conf_gres_count_differs(tmp_path):
    slurm = open(SEED_SLURM).read().replace("gpu:1g.10gb:14", "gpu:1g.10gb:15")
    r, doc = check("seed", gres=SEED_GRES, tmp_path=tmp_path, slurm_text=slurm, nodename="c51-g002")
    (f,) = doc["findings"]
    assert f["id"] == "gres-count-mismatch"
    assert "gpu:1g.10gb:15 but gres.conf gives 14, hardware 14" in f["message"]


def test_slurm_conf_without_gres_for_a_gpu_node(tmp_path):
    r, doc = check("seed", gres=SEED_GRES, tmp_path=tmp_path,
                   slurm_text="GresTypes=gpu\nNodeName=c51-g002 CPUs=4\n", nodename="c51-g002")
    assert ids(doc) == ["gres-count-mismatch"]


def test_seed_recipe_wrong_column_on_a_7g_gi():
    """The recipe reads CI profile id 4 as the CI id and names gpu0/gi0/ci4's cap."""
    r, doc = check("seven-g", gres=os.path.join(CONF, "seed-recipe-wrong-column.gres.conf"),
                   nodename="g-7g")
    assert r.code == 1
    assert "stale-cap" in ids(doc) and "unconfigured-device" in ids(doc)
    r, doc = check("seven-g", gres=os.path.join(CONF, "seven-g-file.gres.conf"), nodename="g-7g")
    assert r.code == 0


def test_gres_conf_written_from_nvidia_smi_indices_is_caught():
    r, doc = check("minor-not-index", gres=os.path.join(CONF, "minor-by-index.gres.conf"),
                   nodename="g-minor")
    assert r.code == 1
    assert {"stale-cap", "unconfigured-device"} <= set(ids(doc))
    r, doc = check("minor-not-index", gres=os.path.join(CONF, "minor-right.gres.conf"),
                   nodename="g-minor")
    assert r.code == 0, doc["findings"]


def test_h200_mixed_profiles_autodetect_style_with_slurm_conf():
    r, doc = check("h200-mixed", gres=os.path.join(CONF, "h200-autodetect-style.gres.conf"),
                   slurm=os.path.join(CONF, "h200.slurm.conf"), nodename="h200-01")
    assert r.code == 0, doc["findings"]


def test_multiple_files_missing_its_gi_cap_is_incomplete(tmp_path):
    r, doc = check("seven-g", "NodeName=g-7g Name=gpu MultipleFiles=/dev/nvidia0,/dev/nvidia-caps/nvidia-cap4\n",
                   tmp_path, nodename="g-7g")
    assert ids(doc) == ["incomplete-device"]
    assert "lacks /dev/nvidia-caps/nvidia-cap3" in doc["findings"][0]["message"]


def test_unknown_device_path(tmp_path):
    r, doc = check("seven-g", "NodeName=g-7g Name=gpu Type=7g File=/dev/nvidia-uvm\n"
                   "NodeName=g-7g Name=gpu Type=7g File=/dev/nvidia-caps/nvidia-cap4\n",
                   tmp_path, nodename="g-7g")
    assert ids(doc) == ["unknown-device"]


def test_other_nodes_lines_are_ignored_for_this_node():
    r, doc = check("seed", gres=os.path.join(CONF, "other-nodes.gres.conf"), slurm=SEED_SLURM,
                   nodename="c51-g002")
    assert r.code == 0, doc["findings"]


def test_backend_disagrees_and_gpu_lost_via_nvml(tmp_path):
    fake = nvml_fake.make(os.path.join(node("seed"), "layout.json"), lost={3})
    r = run_cli("check", "--json", "--backend", "nvml", "--root", os.path.join(node("seed"), "root"),
                "--gres-conf", SEED_GRES, "--node", "c51-g002", nvml=fake)
    doc = r.json()
    assert r.code == 1
    assert "gpu-lost" in ids(doc)
    lost = [f for f in doc["findings"] if f["id"] == "gpu-lost"]
    assert lost[0]["message"].startswith("gpu3:")
    # the lost GPU's devices still exist in procfs: no stale-cap for them
    assert "stale-cap" not in ids(doc)

    d = tmp_path / "n"
    shutil.copytree(node("seed"), d, symlinks=True)
    shutil.rmtree(d / "root/proc/driver/nvidia/capabilities/gpu2/mig/gi9")
    r = run_cli("check", "--json", "--backend", "nvidia-smi", "--nvidia-smi", d / "nvidia-smi",
                "--root", d / "root", "--gres-conf", SEED_GRES, "--node", "c51-g002")
    # inconsistent sources: a discovery failure (exit 3), never a mismatch ("backend-disagrees"
    # stays a finding id for compatibility; issue 12 made it a discovery error)
    assert r.code == 3 and "nvidia-smi and procfs disagree: nvidia-smi lists gpu2/gi9/ci0" in r.err


def test_ignore_setting_drops_a_finding_id():
    r, doc = check("seed-lost", gres=SEED_GRES, nodename="c51-g002",
                   extra=("--ignore", "stale-cap"))
    assert r.code == 0 and doc["ignored"][0]["id"] == "stale-cap"


# Written by hand from the README's "What check finds" table: most urgent first, and a drain
# reason names the first (sinfo -R shows 20 characters of it).
URGENCY = ["slurmd-fatal", "missing-file", "stale-cap", "gpu-lost", "whole-gpu-mig-on", "mig-no-instances",
           "autodetect-unavailable", "autodetect-no-mig", "unconfigured-device", "type-mismatch", "gres-count-mismatch", "duplicate-device",
           "incomplete-device", "unknown-device", "gres-name-case", "mig-pending",
           "backend-disagrees"]


@pytest.mark.parametrize("i", range(len(URGENCY)))
def test_drain_reason_names_the_most_urgent_finding(i):
    """Findings from URGENCY[i] down, given least urgent first: the reason leads with URGENCY[i]."""
    findings = [Finding(fid, f"{fid} message", f"short-{fid}") for fid in reversed(URGENCY[i:])]
    reason = act.reason_for_findings("migsync:", findings)
    more = f" +{len(findings) - 1}" if len(findings) > 1 else ""
    assert reason.startswith(f"migsync: short-{URGENCY[i]}{more} [{URGENCY[i]}] {URGENCY[i]} message")


def test_every_finding_id_is_documented_in_urgency_order():
    assert list(FINDING_IDS) == URGENCY


def test_upper_case_gres_name_registers_nothing(tmp_path):
    r, doc = check("seven-g", "NodeName=g-7g Name=GPU Type=7g.80gb File=/dev/nvidia-caps/nvidia-cap4\n",
                   tmp_path, nodename="g-7g")
    assert ids(doc) == ["gres-name-case", "unconfigured-device"]


def test_slurmd_fatal_carries_slurmds_own_error_text(tmp_path):
    """Lines of one name, some with Type= and some without: slurmd 22.05-26.05 exits with
    this text (recorded: tests/data/gres-corpus/30-mixed-type.slurmd.json)."""
    r, doc = check("seven-g", "NodeName=g-7g Name=gpu Type=7g.80gb MultipleFiles=/dev/nvidia0,"
                   "/dev/nvidia-caps/nvidia-cap3,/dev/nvidia-caps/nvidia-cap4\n"
                   "NodeName=g-7g Name=gpu File=/dev/nvidia1\n", tmp_path, nodename="g-7g")
    assert r.code == 1
    f = doc["findings"][0]
    assert f["id"] == "slurmd-fatal" and f["source"] == "gres.conf:2"
    assert ('gres.conf for gpu, some records have "Type=" specification while others do not'
            in f["message"])


# slurm.conf Gres= against the seed gres.conf (2 x a100, 14 x 1g.10gb; 16 in all), by hand:
# typed specs are compared per type (case-insensitively, as Slurm does); an untyped
# 'gpu:N' is compared with the total only when no typed spec exists.
@pytest.mark.parametrize("gres,want", [
    ("gpu:a100:2,gpu:1g.10gb:14", []),
    ("gpu:A100:2,gpu:1G.10GB:14", []),
    ("gpu:16", []),
    ("gpu:15", ["Gres=gpu:15 but gres.conf gives 16"]),
    ("gpu:17", ["Gres=gpu:17 but gres.conf gives 16"]),
    ("gpu:a100:2", ["gres.conf gives 14 gpu:1g.10gb but slurm.conf Gres= has no such type"]),
    ("gpu:a100:1,gpu:1g.10gb:14", ["Gres=gpu:a100:1 but gres.conf gives 2, hardware 2"]),
    ("gpu:a100:2,gpu:1g.10gb:14,gpu:2g.20gb:1", ["Gres=gpu:2g.20gb:1 but gres.conf gives 0"]),
    ("mps:100", ["gres.conf gives 16 gpu but the node's slurm.conf line has no Gres=gpu"]),
])
def test_slurm_conf_gres_counts_table(tmp_path, gres, want):
    slurm = f"GresTypes=gpu,mps\nNodeName=c51-g002 CPUs=64 Gres={gres}\n"
    r, doc = check("seed", gres=SEED_GRES, tmp_path=tmp_path, slurm_text=slurm, nodename="c51-g002")
    got = [f["message"] for f in doc["findings"]]
    assert [m.split(": ", 1)[1] for m in got] == want
    assert all(f["id"] == "gres-count-mismatch" for f in doc["findings"])
    assert r.code == (1 if want else 0)


def test_typed_and_untyped_gres_of_one_name_is_slurmds_fatal_error(tmp_path):
    """The real slurmd dies on `Gres=gpu:a100:2,gpu:1g.10gb:14,gpu:3` ("Some gpu GRES in
    slurm.conf have a type while others do not"; measured on 22.05-26.05, corpus case 98),
    so check refuses it as bad input (exit 2) instead of comparing counts."""
    slurm = "GresTypes=gpu,mps\nNodeName=c51-g002 CPUs=64 Gres=gpu:a100:2,gpu:1g.10gb:14,gpu:3\n"
    r, _ = check("seed", gres=SEED_GRES, tmp_path=tmp_path, slurm_text=slurm, nodename="c51-g002")
    assert r.code == 2
    assert "Some gpu GRES in slurm.conf have a type while others do not" in r.err
