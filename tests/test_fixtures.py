"""The recorded nodes look like real ones, and migsync reads them right.

Expected values here are written by hand from NVIDIA's and Slurm's documented formats
(NVIDIA's MIG User Guide and published nvidia-smi output, slurm.conf(5)/gres.conf(5)), never computed by migsync
or by the fixture generator: caps by hand from the mig-minors table, Types by Slurm's rule.
"""
import os
import re
import subprocess

import pytest

import fakenode
import nvml_fake
from conftest import NODES, node, run_cli
from migsync import discovery
from migsync.errors import DiscoveryError

# Rows as nvidia-smi prints them (NVIDIA MIG User Guide, "Getting Started with MIG"; widths
# 57 and 70 including the frame).
REAL_LGI_ROW = "|   0  MIG 1g.10gb         19        7          0:1     |"
REAL_LCI_ROW = "|   0      7       MIG 1g.10gb          0         0          0:1     |"
REAL_LCI_ROW_SPLIT = "|   0      3       MIG 1c.2g.10gb       0         1          1:1     |"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def smi(name, *args):
    return subprocess.run([os.path.join(node(name), "nvidia-smi"), *args], capture_output=True,
                          text=True, timeout=30)


def test_generator_rows_match_published_nvidia_smi_rows():
    assert fakenode.lgi_row(0, "1g.10gb", 19, 7, "0:1") == REAL_LGI_ROW
    assert fakenode.lci_row(0, 7, "1g.10gb", 0, 0, "0:1") == REAL_LCI_ROW
    assert fakenode.lci_row(0, 3, "1c.2g.10gb", 0, 1, "1:1") == REAL_LCI_ROW_SPLIT


@pytest.mark.parametrize("name", sorted(os.listdir(NODES)))
def test_recorded_tables_have_nvidia_smis_widths_and_uuid_shapes(name):
    d = os.path.join(NODES, name, "smi")
    for table, width in (("lgi.txt", 57), ("lci.txt", 70)):
        for line in open(os.path.join(d, table)).read().splitlines():
            if line.startswith(("|", "+")):
                assert len(line) == width, (table, line)
    listing = open(os.path.join(d, "L.txt")).read()
    for line in listing.splitlines():
        assert (re.fullmatch(rf"GPU \d+: \S.* \(UUID: GPU-{UUID}\)", line)
                or re.fullmatch(rf"  MIG [0-9a-z.+]+ +Device +\d+: \(UUID: MIG-{UUID}\)", line)
                or line.startswith("Unable to determine the device handle for GPU")), line


@pytest.mark.parametrize("args", [
    ["-i", "0"],
    ["--query-gpu=index,pci.bus_id,uuid,name,mig.mode.current", "--format=csv,noheader"],
    ["--query-gpu=pci.bus_id,index,uuid,name,mig.mode.current,mig.mode.pending",
     "--format=csv,noheader"],
    ["--query-gpu=index,pci.bus_id,uuid,name,mig.mode.current,mig.mode.pending", "--format=csv"],
    ["mig", "-lci", "-i", "0"],
    ["mig", "-lgip"],
    [],
])
def test_fake_nvidia_smi_refuses_argument_lists_it_has_no_recording_for(args):
    r = smi("seed", *args)
    assert r.returncode == 2 and r.stdout == ""
    assert "no recorded output for arguments" in r.stderr


def test_fake_nvidia_smi_serves_the_recorded_argument_lists():
    r = smi("seed", "--query-gpu=index,pci.bus_id,uuid,name,mig.mode.current,mig.mode.pending",
            "--format=csv,noheader")
    assert r.returncode == 0 and r.stdout.splitlines()[3].startswith("3, 00000000:E3:00.0, GPU-")
    r = smi("lost-gpu", "mig", "-lci")
    assert r.returncode == 15  # nvidia-smi's "GPU has fallen off the bus"
    assert r.stdout.startswith("Unable to determine the device handle for GPU0000:4E:00.0: "
                               "Unknown Error\n")


# ---- sxm-mixed: minors 1, 3, 6, 7; SXM4/HBM3 names; a V100 (an instance hidden from the
# backend is a discovery failure since issue 12: shown on a copy below)

# (minor, gi, ci) -> (profile, GI cap, CI cap): caps from mig-minors, gi = 3 + 135*minor + 9*gi
SXM_MIGS = {(1, 1, 0): ("3g.40gb", 147, 148), (1, 2, 0): ("3g.40gb", 156, 157),
            (6, 1, 0): ("4g.40gb", 822, 823), (6, 9, 0): ("1g.10gb", 894, 895),
            (6, 10, 0): ("1g.10gb", 903, 904)}
SXM_GPUS = {1: (0, "NVIDIA A100-SXM4-80GB", True), 3: (1, "NVIDIA A100-SXM4-80GB", False),
            6: (2, "NVIDIA H100 80GB HBM3", True), 7: (3, "Tesla V100-SXM2-32GB", None)}
SXM_GRES = """\
NodeName=g-sxm Name=gpu Type=a100 File=/dev/nvidia3
NodeName=g-sxm Name=gpu Type=v100 File=/dev/nvidia7
NodeName=g-sxm Name=gpu Type=3g.40gb MultipleFiles=/dev/nvidia1,/dev/nvidia-caps/nvidia-cap147,/dev/nvidia-caps/nvidia-cap148
NodeName=g-sxm Name=gpu Type=3g.40gb MultipleFiles=/dev/nvidia1,/dev/nvidia-caps/nvidia-cap156,/dev/nvidia-caps/nvidia-cap157
NodeName=g-sxm Name=gpu Type=4g.40gb MultipleFiles=/dev/nvidia6,/dev/nvidia-caps/nvidia-cap822,/dev/nvidia-caps/nvidia-cap823
NodeName=g-sxm Name=gpu Type=1g.10gb MultipleFiles=/dev/nvidia6,/dev/nvidia-caps/nvidia-cap894,/dev/nvidia-caps/nvidia-cap895
NodeName=g-sxm Name=gpu Type=1g.10gb MultipleFiles=/dev/nvidia6,/dev/nvidia-caps/nvidia-cap903,/dev/nvidia-caps/nvidia-cap904
"""


def inventory(name, backend):
    d = node(name)
    if backend == "nvml":
        fake = nvml_fake.make(os.path.join(d, "layout.json"))
        return discovery.discover(os.path.join(d, "root"), "nvml", nvml_module=fake)
    return discovery.discover(os.path.join(d, "root"), "nvidia-smi", os.path.join(d, "nvidia-smi"))


def sxm_check(tmp_path, gres=SXM_GRES, backend="nvidia-smi", *extra):
    (tmp_path / "gres.conf").write_text(gres)
    d = node("sxm-mixed")
    args = ["check", "--json", "--root", os.path.join(d, "root"), "--gres-conf",
            tmp_path / "gres.conf", "--node", "g-sxm", *extra]
    if backend == "nvml":
        return run_cli(*args, "--backend", "nvml",
                       nvml=nvml_fake.make(os.path.join(d, "layout.json")))
    return run_cli(*args, "--backend", "nvidia-smi", "--nvidia-smi", os.path.join(d, "nvidia-smi"))


@pytest.mark.parametrize("backend", ["nvidia-smi", "nvml"])
def test_sxm_node_gaps_in_minors_no_mig_gpu_and_hidden_instance(backend):
    inv = inventory("sxm-mixed", backend)
    assert {g.minor: (g.index, g.name, g.mig_current) for g in inv.gpus} == SXM_GPUS
    assert {m.key: (m.profile, m.gi_cap, m.ci_cap) for m in inv.migs} == SXM_MIGS
    assert [m.files[0] for m in inv.migs] == ["/dev/nvidia1"] * 2 + ["/dev/nvidia6"] * 3
    name = "nvidia-smi" if backend == "nvidia-smi" else "nvml"
    assert name and inv.disagreements == []


def test_sxm_instance_hidden_from_the_backend_is_a_discovery_failure(tmp_path):
    """A GI procfs has but nvidia-smi does not list (created while it was queried): one of the
    two is partial, so no verdict is built on it (issue 12): exit 3, not backend-disagrees."""
    import shutil
    d = tmp_path / "n"
    shutil.copytree(node("sxm-mixed"), d, symlinks=True)
    lci = d / "smi" / "lci.txt"
    lci.write_text("".join(ln for ln in lci.read_text().splitlines(True)
                           if not ln.startswith("|   2     10 ")))
    (tmp_path / "gres.conf").write_text(SXM_GRES)
    r = run_cli("check", "--json", "--root", d / "root", "--gres-conf", tmp_path / "gres.conf",
                "--node", "g-sxm", "--backend", "nvidia-smi", "--nvidia-smi", d / "nvidia-smi")
    assert r.code == 3 and "gpu6/gi10/ci0 exists in procfs but nvidia-smi does not list it" in r.err


@pytest.mark.parametrize("backend", ["nvidia-smi", "nvml"])
def test_sxm_site_config_matches(tmp_path, backend):
    r = sxm_check(tmp_path, backend=backend)
    assert r.code == 0 and r.json()["findings"] == []


def test_sxm_suggestion_keeps_the_sites_types_including_the_hidden_instances(tmp_path):
    r = sxm_check(tmp_path, SXM_GRES, "nvidia-smi", "--style", "file")
    assert r.json()["suggested"]["gres_conf"] == [
        "NodeName=g-sxm Name=gpu Type=3g.40gb File=/dev/nvidia-caps/nvidia-cap[148,157]",
        "NodeName=g-sxm Name=gpu Type=a100 File=/dev/nvidia3",
        "NodeName=g-sxm Name=gpu Type=4g.40gb File=/dev/nvidia-caps/nvidia-cap823",
        "NodeName=g-sxm Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[895,904]",
        "NodeName=g-sxm Name=gpu Type=v100 File=/dev/nvidia7"]
    assert r.json()["suggested"]["slurm_conf"] == (
        "NodeName=g-sxm Gres=gpu:3g.40gb:2,gpu:a100:1,gpu:4g.40gb:1,gpu:1g.10gb:2,gpu:v100:1")


# Slurm's Type rule: the autodetect type is lower(name) with spaces -> '_' cut at the first
# '-', then '_<profile>' for MIG; a configured Type matches as a case-insensitive substring.
# 'NVIDIA A100-SXM4-80GB' -> 'nvidia_a100'; 'NVIDIA H100 80GB HBM3' -> 'nvidia_h100_80gb_hbm3'.
@pytest.mark.parametrize("line,fits", [
    ("Type=a100 File=/dev/nvidia3", True),
    ("Type=nvidia_a100 File=/dev/nvidia3", True),
    ("Type=A100-SXM4 File=/dev/nvidia3", False),  # the part after '-' is cut off
    ("Type=a100-sxm4-80gb File=/dev/nvidia3", False),
    ("Type=sxm4 File=/dev/nvidia3", False),
    ("Type=v100 File=/dev/nvidia7", True),
    ("Type=tesla_v100 File=/dev/nvidia7", True),
    ("Type=v100-sxm2 File=/dev/nvidia7", False),
    ("Type=nvidia_a100_3g.40gb File=/dev/nvidia-caps/nvidia-cap148", True),
    ("Type=nvidia_h100_80gb_hbm3_4g.40gb File=/dev/nvidia-caps/nvidia-cap823", True),
    ("Type=h100_80gb_hbm3_4g File=/dev/nvidia-caps/nvidia-cap823", True),
    ("Type=nvidia_a100_4g.40gb File=/dev/nvidia-caps/nvidia-cap823", False),  # that one is an H100
    ("Type=hbm3_1g.10gb File=/dev/nvidia-caps/nvidia-cap895", True),
    ("Type=3g.40gb File=/dev/nvidia-caps/nvidia-cap823", False),
])
def test_type_rule_on_names_with_dashes(tmp_path, line, fits):
    r = sxm_check(tmp_path, f"NodeName=g-sxm Name=gpu {line}\n")
    ids = {f["id"] for f in r.json()["findings"]}
    assert ("type-mismatch" not in ids) is fits, r.json()["findings"]


def test_gpu_without_mig_support_configured_by_its_caps(tmp_path):
    """A V100 has no MIG: a cap in gpu7's range (gpu7/gi1/ci0 = 3 + 135*7 + 9 + 1 = 958) names
    an instance that cannot exist, and no such /dev node exists either."""
    r = sxm_check(tmp_path, "NodeName=g-sxm Name=gpu Type=v100 File=/dev/nvidia7\n"
                            "NodeName=g-sxm Name=gpu Type=v100 File=/dev/nvidia-caps/nvidia-cap958\n")
    mine = [(f["id"], f["path"]) for f in r.json()["findings"] if f["source"] == "gres.conf:2"]
    assert mine == [("missing-file", "/dev/nvidia-caps/nvidia-cap958"),
                    ("stale-cap", "/dev/nvidia-caps/nvidia-cap958")]
    assert "gpu7/gi1/ci0" in str(r.json()["findings"])


# ---- lost-gpu: GPU 1 fell off the bus, GPU 2 needs a reset; GPU 0 is fine

LOST_GRES = """\
NodeName=g-lost Name=gpu Type=4g.40gb MultipleFiles=/dev/nvidia0,/dev/nvidia-caps/nvidia-cap12,/dev/nvidia-caps/nvidia-cap13
NodeName=g-lost Name=gpu Type=4g.40gb MultipleFiles=/dev/nvidia1,/dev/nvidia-caps/nvidia-cap147,/dev/nvidia-caps/nvidia-cap148
NodeName=g-lost Name=gpu Type=4g.40gb MultipleFiles=/dev/nvidia2,/dev/nvidia-caps/nvidia-cap282,/dev/nvidia-caps/nvidia-cap283
"""


def _exit_0_copy(tmp_path):
    """lost-gpu with every recorded nvidia-smi exit code 0 (same output)."""
    import shutil
    d = tmp_path / "lost-exit-0"
    shutil.copytree(node("lost-gpu"), d, symlinks=True)
    for rc in (d / "smi").glob("*.rc"):
        rc.write_text("0\n")
    return d


@pytest.mark.parametrize("backend", ["nvidia-smi", "nvml"])
def test_lost_and_reset_needing_gpus_are_gpu_lost_not_mig_off(tmp_path, backend):
    (tmp_path / "gres.conf").write_text(LOST_GRES)
    d = node("lost-gpu")
    args = ["check", "--json", "--root", os.path.join(d, "root"), "--gres-conf",
            tmp_path / "gres.conf", "--node", "g-lost", "--backend", backend]
    if backend == "nvml":
        r = run_cli(*args, nvml=nvml_fake.make(os.path.join(d, "layout.json")))
    else:
        # As recorded, nvidia-smi exits 15 beside the lost GPU's line: since issue 12 a
        # command that fails is a discovery failure, whatever rows it printed ...
        r = run_cli(*args, "--nvidia-smi", os.path.join(d, "nvidia-smi"))
        assert r.code == 3 and "--query-gpu exited 15" in r.err
        # ... and the same rows from an nvidia-smi that exits 0 are data: two lost GPUs
        d = _exit_0_copy(tmp_path)
        args[3] = os.path.join(d, "root")
        r = run_cli(*args, "--nvidia-smi", os.path.join(d, "nvidia-smi"))
    doc = r.json()
    assert r.code == 1
    # no unconfigured-device / whole-GPU advice for gpu2 (it has MIG instances), no stale-cap
    # for the lost GPUs' caps (procfs still has them)
    assert [(f["id"], f["message"].split(":")[0]) for f in doc["findings"]] == [
        ("gpu-lost", "gpu1"), ("gpu-lost", "gpu2")]
    inv = inventory("lost-gpu", "nvml") if backend == "nvml" else discovery.discover(
        os.path.join(d, "root"), "nvidia-smi", os.path.join(d, "nvidia-smi"))
    assert [(g.minor, bool(g.lost)) for g in inv.gpus] == [(0, False), (1, True), (2, True)]
    assert [m.ci_cap for m in inv.migs] == [13, 148, 283]


def test_untyped_site_and_an_unlisted_instance_count_as_one_plain_gpu_total(tmp_path):
    """Every device configured without Type except one instance the site left out. That
    instance has a profile (the backend lists it: an instance it did not list is a discovery
    failure since issue 12), so it is typed, and since slurmd refuses typed and untyped lines
    for one GRES on a node, the suggestion types every device."""
    untyped = "\n".join(ln.replace(ln.split()[2] + " ", "") for ln in SXM_GRES.splitlines()[:-1])
    r = sxm_check(tmp_path, untyped + "\n")
    assert r.json()["suggested"]["slurm_conf"] == (
        "NodeName=g-sxm Gres=gpu:3g.40gb:2,gpu:a100:1,gpu:4g.40gb:1,gpu:1g.10gb:2,gpu:v100:1")


# ---- cap numbers come from the files, never from the observed formula

SEED_CI_CAPS = [337, 346, 355, 364, 373, 382, 391, 472, 481, 490, 508, 517, 526, 535]


def _copy_seed(tmp_path):
    import shutil
    d = tmp_path / "seed"
    shutil.copytree(node("seed"), d, symlinks=True)
    return d


def test_cap_numbers_are_read_from_mig_minors_and_the_capability_files(tmp_path):
    """A driver whose table is numbered differently (every cap + 1000): migsync follows it."""
    d = _copy_seed(tmp_path)
    mm = d / "root/proc/driver/nvidia-caps/mig-minors"
    mm.write_text("".join(f"{name} {int(n) + 1000 if name.startswith('gpu') else n}\n"
                          for name, n in (ln.split() for ln in mm.read_text().splitlines())))
    for access in (d / "root/proc/driver/nvidia/capabilities").rglob("gi*/**/access"):
        text = access.read_text()
        n = int(text.split("DeviceFileMinor: ")[1].split()[0])
        access.write_text(text.replace(f"DeviceFileMinor: {n}\n", f"DeviceFileMinor: {n + 1000}\n"))
    inv = discovery.discover(str(d / "root"), "nvidia-smi", str(d / "nvidia-smi"))
    assert [m.ci_cap for m in inv.migs] == [c + 1000 for c in SEED_CI_CAPS]
    assert inv.migs[0].files == ("/dev/nvidia2", "/dev/nvidia-caps/nvidia-cap1336",
                                 "/dev/nvidia-caps/nvidia-cap1337")


def test_a_short_mig_minors_falls_back_to_the_capability_files(tmp_path):
    """The driver prints every possible entry: a mig-minors without gpu3's is cut short or
    corrupt, a discovery failure since issue 12 (it used to fall back to the files)."""
    d = _copy_seed(tmp_path)
    mm = d / "root/proc/driver/nvidia-caps/mig-minors"
    mm.write_text("".join(ln + "\n" for ln in mm.read_text().splitlines()
                          if not ln.startswith("gpu3/")))
    with pytest.raises(DiscoveryError, match=r"mig-minors: no entry for gpu3/gi7"):
        discovery.discover(str(d / "root"), "nvidia-smi", str(d / "nvidia-smi"))


def test_instances_of_lost_gpus_are_not_reported_unconfigured(tmp_path):
    """gpu1 and gpu2 cannot be read: gpu-lost says so once each; their instances (still in
    procfs) are not also 'unconfigured' when gres.conf leaves them out."""
    (tmp_path / "gres.conf").write_text(LOST_GRES.splitlines()[0] + "\n")
    d = node("lost-gpu")
    d = _exit_0_copy(tmp_path)  # recorded exit 15 would be a discovery failure (issue 12)
    r = run_cli("check", "--json", "--root", os.path.join(d, "root"), "--gres-conf",
                tmp_path / "gres.conf", "--node", "g-lost", "--backend", "nvidia-smi",
                "--nvidia-smi", os.path.join(d, "nvidia-smi"))
    assert [f["id"] for f in r.json()["findings"]] == ["gpu-lost", "gpu-lost"]
