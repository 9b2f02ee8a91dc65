"""The core's data: Slurm's Type strings for GPU names, device paths, inventory look-ups and
the JSON round trip. Expected values written by hand (Slurm's gpu_nvml.c rule: lower case,
spaces to '_', cut at the first '-')."""
import pytest

from migsync import model
from migsync.model import Finding, Gpu, Inventory, MigDevice


@pytest.mark.parametrize("name,full,short", [
    ("NVIDIA A100 80GB PCIe", "nvidia_a100_80gb_pcie", "a100"),
    ("NVIDIA A100-SXM4-80GB", "nvidia_a100", "a100"),
    ("NVIDIA H100 80GB HBM3", "nvidia_h100_80gb_hbm3", "h100"),
    ("NVIDIA H200", "nvidia_h200", "h200"),
    ("Tesla V100-SXM2-32GB", "tesla_v100", "v100"),
    ("  NVIDIA A30 ", "nvidia_a30", "a30"),
    ("NVIDIA", "nvidia", "nvidia"),
    ("NVIDIA_", "nvidia_", "gpu"),  # nothing left after the vendor: a generic name
    ("GeForce RTX 4090", "geforce_rtx_4090", "geforce"),
])
def test_type_strings(name, full, short):
    assert model.autodetect_gpu_type(name) == full
    assert model.short_gpu_type(name) == short


def test_device_paths_and_labels():
    m = MigDevice(6, 9, 1, "1c.2g.20gb", 894, 896, "MIG-x")
    assert (m.key, m.label) == ((6, 9, 1), "gpu6/gi9/ci1")
    assert m.files == ("/dev/nvidia6", "/dev/nvidia-caps/nvidia-cap894", "/dev/nvidia-caps/nvidia-cap896")
    assert Gpu(7).path == "/dev/nvidia7"
    assert model.gpu_path(0) == "/dev/nvidia0" and model.cap_path(13) == "/dev/nvidia-caps/nvidia-cap13"


def test_inventory_lookups_follow_changes():
    a, b = MigDevice(1, 1, 0, "3g.40gb", 147, 148), MigDevice(6, 9, 0, "1g.10gb", 894, 895)
    inv = Inventory(gpus=[Gpu(1, 0), Gpu(6, 2)], migs=[a])
    assert inv.gpu(6).index == 2 and inv.gpu(3) is None
    assert inv.mig((1, 1, 0)) is a and inv.mig((6, 9, 0)) is None
    inv.migs.append(b)  # discovery appends: the look-up must see it
    assert inv.mig((6, 9, 0)) is b
    assert inv.migs_of(6) == [b] and inv.migs_of(1) == [a] and inv.migs_of(3) == []


def test_inventory_json_round_trip():
    inv = Inventory(gpus=[Gpu(1, 0, "0000:07:00.0", "GPU-u", "NVIDIA A100-SXM4-80GB", True, False)],
                    migs=[MigDevice(1, 1, 0, None, 147, 148)], backend="nvml",
                    disagreements=["gpu1/gi1/ci0 exists in procfs but nvml does not list it"])
    doc = inv.to_dict()
    assert doc == {
        "backend": "nvml",
        "gpus": [{"minor": 1, "index": 0, "bus_id": "0000:07:00.0", "uuid": "GPU-u",
                  "name": "NVIDIA A100-SXM4-80GB", "mig_current": True, "mig_pending": False,
                  "lost": None}],
        "mig_devices": [{"parent_minor": 1, "gi": 1, "ci": 0, "profile": None, "gi_cap": 147,
                         "ci_cap": 148, "uuid": None,
                         "files": ["/dev/nvidia1", "/dev/nvidia-caps/nvidia-cap147",
                                   "/dev/nvidia-caps/nvidia-cap148"]}],
        "disagreements": ["gpu1/gi1/ci0 exists in procfs but nvml does not list it"]}
    back = Inventory.from_dict(doc)
    assert back.to_dict() == doc
    assert Inventory.from_dict({}).to_dict() == {"backend": "", "gpus": [], "mig_devices": [],
                                                 "disagreements": []}


def test_finding_to_dict():
    assert Finding("stale-cap", "m", "s", "gres.conf:3", "/dev/x").to_dict() == {
        "id": "stale-cap", "message": "m", "short": "s", "source": "gres.conf:3", "path": "/dev/x"}
    assert Finding("gpu-lost", "m", "s").to_dict()["source"] is None


def test_a_new_inventory_is_empty_and_keeps_what_it_is_given():
    inv = Inventory()
    assert (inv.gpus, inv.migs, inv.backend, inv.gi_caps, inv.cap_table, inv.disagreements) == \
        ([], [], "", {}, {}, [])
    assert inv.mig((0, 0, 0)) is None  # an empty node has no MIG device, and no crash
    caps, table = {(2, 7): 336}, {337: (2, 7, 0)}
    inv = Inventory(gi_caps=caps, cap_table=table, backend="nvml")
    assert inv.gi_caps is caps and inv.cap_table is table and inv.backend == "nvml"


def test_a_mig_device_keeps_its_uuid():
    m = MigDevice(2, 7, 0, "1g.10gb", 336, 337, "MIG-5a1c0de0-1111-2222-3333-444455556666")
    assert m.uuid == "MIG-5a1c0de0-1111-2222-3333-444455556666"
    assert MigDevice(2, 7, 0, "1g.10gb", 336, 337).uuid is None


@pytest.mark.parametrize("text,named", [
    ("1g.10gb", True), ("a100_3G.40GB", True), ("2c.3g.20gb", True), ("x7c.1gbx", True),
    ("a100", False), ("1g.gb", False), ("g.10gb", False), ("1g10gb", False), ("1x.10gb", False),
    ("1g.10g", False), ("", False), ("...", False), ("1g.10gb"[1:], False),
])
def test_names_profile_by_hand(text, named):
    """The Type test emit uses (a whole GPU's Type may not name a MIG profile)."""
    assert model.names_profile(text) is named


@pytest.mark.parametrize("path,prefix,number", [
    ("/dev/nvidia-caps/nvidia-cap337", model.DEV_CAP, 337), ("/dev/nvidia3", model.DEV_NVIDIA, 3),
    ("/dev/nvidia-caps/nvidia-cap5", model.DEV_NVIDIA, None), ("/dev/nvidiactl", model.DEV_NVIDIA, None),
    ("/dev/nvidia", model.DEV_NVIDIA, None), ("/dev/nvidia3 ", model.DEV_NVIDIA, None),
    ("/dev/nvidia-3", model.DEV_NVIDIA, None), ("x/dev/nvidia3", model.DEV_NVIDIA, None),
])
def test_path_number_by_hand(path, prefix, number):
    assert model.path_number(path, prefix) == number
