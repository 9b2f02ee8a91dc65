import os

import pytest

import nvml_fake
from conftest import node
from migsync import discovery, procfs
from migsync.backends import smi
from migsync.errors import DiscoveryError


def smi_inv(name, **kw):
    d = node(name)
    return discovery.discover(os.path.join(d, "root"), "nvidia-smi",
                              os.path.join(d, "nvidia-smi"), **kw)


def nvml_inv(name, **fault):
    d = node(name)
    fake = nvml_fake.make(os.path.join(d, "layout.json"), **fault)
    return discovery.discover(os.path.join(d, "root"), "nvml", nvml_module=fake)


def test_lci_reads_the_ci_id_column_not_the_ci_profile_id():
    with open(os.path.join(node("seven-g"), "smi", "lci.txt")) as fh:
        (row,) = smi.parse_lci(fh.read())
    assert (row.gi, row.ci, row.profile) == (0, 0, "7g.80gb")  # profile id column says 4


@pytest.mark.parametrize("make", [smi_inv, nvml_inv])
def test_seed_node_keys_devices_on_minor_and_caps_from_mig_minors(make):
    inv = make("seed")
    assert [g.minor for g in inv.gpus] == [0, 1, 2, 3]
    assert [g.mig_current for g in inv.gpus] == [False, False, True, True]
    caps = [m.ci_cap for m in inv.migs]
    assert caps == [337, 346, 355, 364, 373, 382, 391, 472, 481, 490, 508, 517, 526, 535]
    assert {m.profile for m in inv.migs} == {"1g.10gb"}
    assert not inv.disagreements


@pytest.mark.parametrize("make", [smi_inv, nvml_inv])
def test_device_minor_differs_from_nvidia_smi_index(make):
    inv = make("minor-not-index")
    by_minor = {g.minor: g.index for g in inv.gpus}
    assert by_minor == {0: 2, 1: 3, 2: 0, 3: 1}
    assert [(m.parent_minor, m.gi, m.ci_cap) for m in inv.migs] == [(0, 1, 13), (2, 7, 337), (2, 8, 346)]
    assert inv.gpu(0).mig_current and not inv.gpu(3).mig_current


@pytest.mark.parametrize("make", [smi_inv, nvml_inv])
def test_h200_mixed_profiles_with_split_gi(make):
    inv = make("h200-mixed")
    assert [(m.gi, m.ci, m.profile) for m in inv.migs] == [
        (2, 0, "1c.3g.71gb"), (2, 1, "1c.3g.71gb"), (2, 2, "1c.3g.71gb"),
        (3, 0, "2g.35gb"), (9, 0, "1g.18gb"), (10, 0, "1g.18gb")]
    assert inv.migs[0].gi_cap == 21 and [m.ci_cap for m in inv.migs[:3]] == [22, 23, 24]


def test_nvml_gives_mig_uuids_and_nvidia_smi_does_not_guess_them():
    assert nvml_inv("seven-g").migs[0].uuid.startswith("MIG-")
    # nvidia-smi -L: the GPU's only MIG device is certain; seven alike 1g.10gb are not
    assert smi_inv("seven-g").migs[0].uuid == "MIG-91012814-857d-e07f-142e-e06f3b95df71"  # smi/L.txt
    assert [m.uuid for m in smi_inv("seed").migs] == [None] * 14


@pytest.mark.parametrize("make", [smi_inv, nvml_inv])
def test_mig_enabled_with_no_instances(make):
    inv = make("mig-empty")
    assert inv.migs == []
    assert inv.gpu(1).mig_pending is False and inv.gpu(1).mig_current is True


def test_procfs_is_the_truth_for_existence():
    inv = smi_inv("seed-lost")
    assert 535 not in [m.ci_cap for m in inv.migs]
    assert len(inv.migs) == 13


def test_backend_listing_an_instance_procfs_lacks_is_a_disagreement(tmp_path):
    import shutil
    d = tmp_path / "n"
    shutil.copytree(node("seed"), d, symlinks=True)
    shutil.rmtree(d / "root/proc/driver/nvidia/capabilities/gpu2/mig/gi9")
    with pytest.raises(DiscoveryError, match=r"disagree: nvidia-smi lists gpu2/gi9/ci0 but its "
                       r"procfs capability files do not exist"):
        discovery.discover(str(d / "root"), "nvidia-smi", str(d / "nvidia-smi"))


def test_nvml_gpu_is_lost_for_one_gpu_keeps_the_others():
    inv = nvml_inv("seed", lost={3})
    lost = [g for g in inv.gpus if g.lost]
    assert [g.minor for g in lost] == [3]
    assert len([m for m in inv.migs if m.parent_minor == 2]) == 7


def test_nvml_gpu_lost_after_handle():
    inv = nvml_inv("seed", lost={2}, lost_after_handle=True)
    assert inv.gpu(2).lost and "lost" in inv.gpu(2).lost.lower()


def test_no_nvml_library_auto_falls_back_to_nvidia_smi():
    d = node("seed")
    fake = nvml_fake.make(os.path.join(d, "layout.json"), no_library=True)
    with pytest.raises(DiscoveryError, match="NVML: init failed"):
        discovery.discover(os.path.join(d, "root"), "nvml", nvml_module=fake)
    inv = discovery.discover(os.path.join(d, "root"), "auto", os.path.join(d, "nvidia-smi"),
                             nvml_module=fake)
    assert inv.backend == "nvidia-smi" and len(inv.migs) == 14


def test_no_driver_is_a_discovery_error(tmp_path):
    with pytest.raises(DiscoveryError, match="driver is not loaded"):
        procfs.read_snapshot(str(tmp_path))


@pytest.mark.parametrize("mode,needle", [("fail", "exited 9"), ("garbage", "unexpected line"),
                                         ("hang", "timed out")])
def test_nvidia_smi_faults_are_discovery_errors(monkeypatch, mode, needle):
    monkeypatch.setenv("FAKE_SMI_MODE", mode)
    from migsync import runner
    monkeypatch.setattr(runner, "SAFE_PATH", runner.SAFE_PATH)
    orig = runner.start_all

    def start_with_mode(argvs, timeout=10.0, env=None):
        return orig(argvs, timeout=timeout, env={"FAKE_SMI_MODE": mode})
    monkeypatch.setattr(runner, "start_all", start_with_mode)
    with pytest.raises(DiscoveryError, match=needle):
        smi_inv("seed", timeout=0.5)


def test_bus_ids_are_normalised():
    assert procfs.normalise_bus_id("00000000:CA:00.0") == "0000:ca:00.0"
    assert procfs.normalise_bus_id("0000:ca:00.0") == "0000:ca:00.0"


def test_empty_mig_minors_is_a_discovery_error():
    with pytest.raises(DiscoveryError, match="empty or truncated"):
        procfs.parse_mig_minors("config 1\nmonitor 2\n", "mig-minors")
    with pytest.raises(DiscoveryError, match="mig-minors: truncated"):
        procfs.parse_mig_minors("config 1\ngpu0/gi1/acc", "mig-minors")
    with pytest.raises(DiscoveryError, match="mig-minors:2"):
        procfs.parse_mig_minors("config 1\ngpu0/gi1/acc\n", "mig-minors")


@pytest.mark.parametrize("name,rows", [
    # drivers before the placement column; a 3g GI split into three 1c CIs
    ("lci-old-driver-no-placement.txt", [(0, 1, 0, "1c.3g.20gb"), (0, 1, 1, "1c.3g.20gb"),
                                         (0, 1, 2, "1c.3g.20gb")]),
    # H100: a 1g CI whose CI profile id is 7, not 0
    ("lci-h100-profile-id-7.txt", [(0, 6, 0, "1g.24gb")]),
])
def test_lci_formats_seen_in_the_wild(name, rows):
    path = os.path.join(os.path.dirname(__file__), "data", "smi", name)
    got = smi.parse_lci(open(path).read())
    assert [(m.gpu_index, m.gi, m.ci, m.profile) for m in got] == rows
