"""How check names each configured unit it cannot bind to a live device (check.resolve), every
field written out by hand, on the recorded seed node c51-g002 (tests/data/nodes/seed):
gpu0 and gpu1 whole A100s; gpu2 with GIs 7-13 and gpu3 with GIs 7-9 and 11-14, one 1g.10gb CI
each. Cap minors read off the node's own mig-minors table: gpu2/gi7 336 (its CI 337),
gpu2/gi8 345 (CI 346), gpu3/gi10 498 (CI 499, an instance that does not exist), gpu3/gi14/ci0
535. Found missing by mutation testing (tests/mutation-survivors.md): stale-cap detection for
GPU-instance caps, and the rarer unbindable shapes."""

from test_check_findings import findings

N = "NodeName=c51-g002 Name=gpu"
CAPS = "/dev/nvidia-caps/nvidia-cap"


def ci_caps_except(*left_out):
    caps = [337, 346, 355, 364, 373, 382, 391, 472, 481, 490, 508, 517, 526, 535]
    return ",".join(str(c) for c in caps if c not in left_out)


def test_gpu_instance_caps_live_and_stale_and_a_stale_compute_instance_cap(tmp_path):
    got = findings(tmp_path, "seed", "c51-g002",
                   f"{N} Type=a100 File=/dev/nvidia[0-1]\n"
                   f"{N} Type=1g.10gb File={CAPS}[{ci_caps_except(337, 535)}]\n"
                   f"{N} Type=1g.10gb File={CAPS}[336,337]\n"  # a live GI cap, then its CI cap
                   f"{N} Type=1g.10gb File={CAPS}[499,535]\n"  # a CI cap of no instance, then a live one
                   f"{N} Type=1g.10gb File={CAPS}498\n")  # the GI cap of a GI that does not exist
    assert sorted(got) == sorted([
        ("unknown-device", f"g.conf:3: {CAPS}336 is the GPU-instance cap of gpu2/gi7; configure "
         "its compute-instance cap", "unknown dev GI cap336", "g.conf:3", f"{CAPS}336"),
        ("stale-cap", f"g.conf:4: {CAPS}499 is gpu3/gi10/ci0, which does not exist (stale "
         "capability device)", "stale cap499", "g.conf:4", f"{CAPS}499"),
        ("stale-cap", f"g.conf:5: {CAPS}498 is the GPU-instance cap of gpu3/gi10, which does not "
         "exist; configure its compute-instance cap", "stale GI cap498", "g.conf:5", f"{CAPS}498"),
        # the fixture's /dev has no node for them (on a real node a stale cap's node remains)
        ("missing-file", f"g.conf:4: {CAPS}499 does not exist (slurmd would fail to start)",
         "no devfile nvidia-cap499", "g.conf:4", f"{CAPS}499"),
        ("missing-file", f"g.conf:5: {CAPS}498 does not exist (slurmd would fail to start)",
         "no devfile nvidia-cap498", "g.conf:5", f"{CAPS}498"),
    ])  # 337 and 535, after the bad caps on their lines, are configured: no unconfigured-device


def test_multiple_files_devices_that_bind_to_nothing_or_to_the_wrong_caps(tmp_path):
    got = findings(tmp_path, "seed", "c51-g002",
                   f"{N} Type=a100 File=/dev/nvidia[0-1]\n"
                   f"{N} Type=1g.10gb File={CAPS}[{ci_caps_except(337, 346)}]\n"
                   f"{N} Type=1g.10gb MultipleFiles=/dev/nvidia2,{CAPS}345,{CAPS}337\n"
                   f"{N} Type=1g.10gb MultipleFiles=/dev/nvidia2,{CAPS}337,{CAPS}346\n"
                   f"{N} Type=a100 MultipleFiles=/dev/nvidia0,/dev/nvidia1\n")
    assert sorted(got) == sorted([
        ("incomplete-device", f"g.conf:3: gpu2/gi7/ci0: lacks {CAPS}336, has foreign {CAPS}345",
         "incomplete gpu2/gi7/ci0", "g.conf:3", None),
        ("unknown-device", "g.conf:4: one device names 2 compute-instance caps",
         "unknown dev 2 CIs", "g.conf:4", None),
        ("unknown-device", "g.conf:5: /dev/nvidia0, /dev/nvidia1 matches no GPU or MIG compute "
         "instance on this node", "unknown dev", "g.conf:5", "/dev/nvidia0"),
        # line 4 binds to nothing, so gi8's instance is named by no line that works
        ("unconfigured-device", f"gpu2/gi8/ci0 (1g.10gb, {CAPS}346) is named by no gres.conf line",
         "unconf gpu2/gi8/ci0", None, None),
    ])


def test_gpu_minor_0_left_out_is_unconfigured(tmp_path):
    got = findings(tmp_path, "seed", "c51-g002",
                   f"{N} Type=a100 File=/dev/nvidia1\n"
                   f"{N} Type=1g.10gb File={CAPS}[{ci_caps_except()}]\n")
    assert got == [("unconfigured-device", "gpu0 (/dev/nvidia0) is named by no gres.conf line",
                    "unconf gpu0", None, None)]


def test_every_file_less_line_is_named(tmp_path):
    # typed: two untyped file-less lines would be slurmd's own fatal "duplicate records" (gres.c)
    got = findings(tmp_path, "seven-g", "g-7g", "NodeName=g-7g Name=gpu Type=7g.80gb Count=1\n"
                   "NodeName=g-7g Name=gpu Type=7g.80gb Count=2\n")
    no_file = ("gpu line has no File= or MultipleFiles=, so Slurm cannot bind it to a device")
    assert sorted(got) == sorted([
        ("unknown-device", f"g.conf:1: {no_file}", "unknown dev no File=", "g.conf:1", None),
        ("unknown-device", f"g.conf:2: {no_file}", "unknown dev no File=", "g.conf:2", None),
        ("unconfigured-device", "gpu0/gi0/ci0 (7g.80gb, /dev/nvidia-caps/nvidia-cap4) is named by "
         "no gres.conf line", "unconf gpu0/gi0/ci0", None, None)])


def test_slurmd_fatal_finding_fields(tmp_path):
    """Lines of one name, some typed, some not: slurmd's own text (gres-corpus 30-mixed-type)."""
    got = findings(tmp_path, "seven-g", "g-7g",
                   "NodeName=g-7g Name=gpu Type=7g.80gb MultipleFiles=/dev/nvidia0,"
                   "/dev/nvidia-caps/nvidia-cap3,/dev/nvidia-caps/nvidia-cap4\n"
                   "NodeName=g-7g Name=gpu File=/dev/nvidia1\n")
    assert ("slurmd-fatal", 'g.conf:2: slurmd would not start: gres.conf for gpu, some records '
            'have "Type=" specification while others do not', "slurmd fatal g.conf:2", "g.conf:2",
            None) in got


def test_an_instance_whose_profile_is_unknown_is_still_named():
    from migsync.check import check
    from migsync.model import Gpu, Inventory, MigDevice
    inv = Inventory(gpus=[Gpu(0, 0, "0000:17:00.0", "GPU-a", "NVIDIA A100 80GB PCIe", True, True)],
                    migs=[MigDevice(0, 1, 0, None, 12, 13)])
    got = check(inv, [], exists=lambda p: True).findings
    assert [(f.id, f.message, f.short) for f in got] == [
        ("unconfigured-device", "gpu0/gi1/ci0 (profile unknown, /dev/nvidia-caps/nvidia-cap13) is "
         "named by no gres.conf line", "unconf gpu0/gi1/ci0")]
