"""discovery.merge: a backend's view and procfs become one Inventory keyed on device minors.
Pure function, hand-built inputs, hand-written expected inventories."""
from migsync import discovery
from migsync.backends import BackendView, BGpu, BMig
from migsync.procfs import ProcGpu, ProcSnapshot


def snap(*gpus, ci=(), gi=()):
    s = ProcSnapshot()
    s.gpus = {g.minor: g for g in gpus}
    s.gi_caps = dict(gi)
    s.ci_caps = dict(ci)
    return s


def gpus_of(inv):
    return [(g.minor, g.index, g.bus_id, g.uuid, g.name, g.mig_current, g.lost) for g in inv.gpus]


P0 = ProcGpu(0, "0000:17:00.0", "NVIDIA A100 80GB PCIe", "GPU-proc-0")
P1 = ProcGpu(1, "0000:65:00.0", "NVIDIA A100 80GB PCIe", "GPU-proc-1")
P2 = ProcGpu(2, "0000:ca:00.0", "NVIDIA H100 80GB HBM3", "GPU-proc-2")


def test_backend_fields_win_and_procfs_fills_the_gaps():
    view = BackendView("nvidia-smi", gpus=[
        BGpu(0, None, "0000:ca:00.0", "GPU-smi-2", "NVIDIA H100 80GB HBM3", True, True),
        BGpu(1, None, "0000:17:00.0", None, None, False, False)])
    inv = discovery.merge(view, snap(P0, P2))
    assert inv.backend == "nvidia-smi"
    assert gpus_of(inv) == [
        (0, 1, "0000:17:00.0", "GPU-proc-0", "NVIDIA A100 80GB PCIe", False, None),
        (2, 0, "0000:ca:00.0", "GPU-smi-2", "NVIDIA H100 80GB HBM3", True, None)]
    assert inv.disagreements == []


def test_nvml_minor_is_used_as_given():
    """NVML knows the minor; procfs is not needed to place the GPU (nor consulted for it)."""
    view = BackendView("nvml", gpus=[BGpu(0, 1, "0000:65:00.0", "GPU-n", None, False, False)])
    inv = discovery.merge(view, snap(P1))
    assert gpus_of(inv) == [(1, 0, "0000:65:00.0", "GPU-n", "NVIDIA A100 80GB PCIe", False, None)]
    # without a bus id procfs cannot be matched: the fields stay as the backend gave them
    view = BackendView("nvml", gpus=[BGpu(0, 1, None, None, None, False, False)])
    assert gpus_of(discovery.merge(view, snap(P1))) == [(1, 0, None, None, None, False, None)]


def test_a_gpu_procfs_does_not_list_is_a_disagreement_and_not_a_device():
    view = BackendView("nvidia-smi", gpus=[BGpu(0, None, "0000:17:00.0", "u", "n", False, False),
                                           BGpu(1, None, "0000:99:00.0", "u", "n", False, False)])
    inv = discovery.merge(view, snap(P0))
    assert [g.minor for g in inv.gpus] == [0]
    assert inv.disagreements == ["GPU 0000:99:00.0 is listed by nvidia-smi but not in procfs"]
    view = BackendView("nvidia-smi", gpus=[BGpu(3, None, None, "u", "n", False, False)])
    assert discovery.merge(view, snap(P0)).disagreements[0] == \
        "GPU 3 is listed by nvidia-smi but not in procfs"


def test_unidentified_lost_gpus_pair_with_unclaimed_procfs_gpus_in_bus_order():
    """NVML could not even get a handle for indices 1 and 2: they take the procfs GPUs nobody
    claimed, lowest bus first; a procfs GPU nobody reports at all is lost too."""
    view = BackendView("nvml", gpus=[
        BGpu(0, 2, "0000:ca:00.0", "GPU-2", "NVIDIA H100 80GB HBM3", False, False),
        BGpu(1, lost="NVML: GPU is lost"), BGpu(-1, lost="NVML: Unknown Error")])
    inv = discovery.merge(view, snap(P1, P0, P2))
    assert gpus_of(inv) == [
        (0, 1, "0000:17:00.0", "GPU-proc-0", "NVIDIA A100 80GB PCIe", None, "NVML: GPU is lost"),
        (1, None, "0000:65:00.0", "GPU-proc-1", "NVIDIA A100 80GB PCIe", None, "NVML: Unknown Error"),
        (2, 0, "0000:ca:00.0", "GPU-2", "NVIDIA H100 80GB HBM3", False, None)]
    view = BackendView("nvml", gpus=[BGpu(0, 0, "0000:17:00.0", "u", "n", False, False)])
    inv = discovery.merge(view, snap(P0, P1))
    assert gpus_of(inv)[1] == (1, None, "0000:65:00.0", "GPU-proc-1", "NVIDIA A100 80GB PCIe", None,
                               "not reported by nvml")


def test_more_lost_gpus_than_procfs_has_is_a_disagreement():
    view = BackendView("nvml", gpus=[BGpu(0, 0, "0000:17:00.0", "u", "n", False, False),
                                     BGpu(5, lost="NVML: GPU is lost")])
    inv = discovery.merge(view, snap(P0))
    assert [g.minor for g in inv.gpus] == [0]
    assert inv.disagreements == [
        "nvml reports a lost GPU (index 5) that procfs does not list: NVML: GPU is lost"]


def test_mig_devices_keyed_on_minor_via_the_index_and_disagreements_both_ways():
    view = BackendView("nvidia-smi", gpus=[
        BGpu(0, None, "0000:ca:00.0", "u2", "NVIDIA H100 80GB HBM3", True, True),
        BGpu(1, None, "0000:17:00.0", "u0", "NVIDIA A100 80GB PCIe", True, True)],
        migs=[BMig(7, 1, 0, "4g.40gb"),  # an index no GPU has: reported, the rest still read
              BMig(0, 1, 0, "4g.40gb", "MIG-a"), BMig(1, 9, 0, "1g.10gb"), BMig(1, 10, 0, "1g.10gb")])
    s = snap(P0, P2, gi={(2, 1): 282, (0, 9): 84, (0, 11): 102},
             ci={(2, 1, 0): 283, (0, 9, 0): 85, (0, 11, 0): 103})
    inv = discovery.merge(view, s)
    assert [(m.key, m.profile, m.gi_cap, m.ci_cap, m.uuid) for m in inv.migs] == [
        ((0, 9, 0), "1g.10gb", 84, 85, None), ((0, 11, 0), None, 102, 103, None),
        ((2, 1, 0), "4g.40gb", 282, 283, "MIG-a")]
    assert inv.disagreements == [
        "nvidia-smi lists a MIG device on unknown GPU index 7",
        "gpu0/gi11/ci0 exists in procfs but nvidia-smi does not list it",
        "nvidia-smi lists gpu0/gi10/ci0 but its procfs capability files do not exist"]
    assert inv.gi_caps == {(2, 1): 282, (0, 9): 84, (0, 11): 102}


def test_instances_of_a_lost_gpu_are_kept_without_a_disagreement():
    view = BackendView("nvml", gpus=[BGpu(0, 0, None, "u", "n", None, None, lost="NVML: GPU is lost")])
    inv = discovery.merge(view, snap(P0, gi={(0, 1): 12}, ci={(0, 1, 0): 13}))
    assert [(m.key, m.profile, m.ci_cap) for m in inv.migs] == [((0, 1, 0), None, 13)]
    assert inv.disagreements == []


# ---- probe_backend: which backend, and what the error says when none works

def test_unknown_backend_is_named_with_the_choices():
    import pytest
    from migsync.errors import DiscoveryError
    with pytest.raises(DiscoveryError) as exc:
        discovery.probe_backend("cuda")
    assert str(exc.value) == "unknown backend 'cuda' (choose from auto, nvml, nvidia-smi)"


def test_auto_uses_the_given_nvml_and_reports_both_failures(tmp_path):
    import os
    import pytest
    import nvml_fake
    from conftest import node
    from migsync.errors import DiscoveryError
    layout = os.path.join(node("seed"), "layout.json")
    view = discovery.probe_backend("auto", str(tmp_path / "nope"), 10, nvml_fake.make(layout))
    assert view.name == "nvml" and len(view.gpus) == 4
    view = discovery.probe_backend("nvml", None, 10, nvml_fake.make(layout))
    assert view.name == "nvml"
    with pytest.raises(DiscoveryError) as exc:
        discovery.probe_backend("auto", str(tmp_path / "nope"), 10,
                                nvml_fake.make(layout, no_library=True))
    assert str(exc.value).startswith("NVML: init failed: ")
    assert str(exc.value).endswith(f"; and nvidia-smi not found at {tmp_path / 'nope'}")


def test_index_zero_and_minus_one_and_a_mig_device_whose_minor_is_known():
    view = BackendView("nvml", gpus=[BGpu(0, lost="NVML: GPU is lost"),  # index 0 is an index
                                     BGpu(-1, None, "0000:65:00.0", lost="nvidia-smi: lost")],
                       migs=[BMig(9, 1, 0, "4g.40gb", minor=2)])  # no GPU has index 9
    s = snap(P0, P1, P2, gi={(2, 1): 282}, ci={(2, 1, 0): 283})
    inv = discovery.merge(view, s)
    assert [(g.minor, g.index, g.lost) for g in inv.gpus] == [
        (0, 0, "NVML: GPU is lost"), (1, None, "nvidia-smi: lost"), (2, None, "not reported by nvml")]
    assert [(m.key, m.profile) for m in inv.migs] == [((2, 1, 0), "4g.40gb")]
    assert "unknown GPU index" not in " ".join(inv.disagreements)


def test_probe_backend_nvidia_smi_uses_the_given_binary(tmp_path):
    import os
    from conftest import node
    view = discovery.probe_backend("nvidia-smi", os.path.join(node("seed"), "nvidia-smi"), 10)
    assert view.name == "nvidia-smi" and [g.index for g in view.gpus] == [0, 1, 2, 3]
