"""procfs files migsync must refuse rather than read as "the hardware differs", message by
message (the NVIDIA driver's formats: `Key: value` information files, the mig-minors table).
Expected texts written by hand."""
import os

import pytest

from migsync import procfs
from migsync.errors import DiscoveryError

INFO = "Model: \t NVIDIA A100 80GB PCIe\nIRQ: \t 42\nGPU UUID: \t GPU-b47b5667-cb38-f14e-4a0b-5b2369f0a0ca\n"


def refused(fn, *args):
    with pytest.raises(DiscoveryError) as exc:
        fn(*args)
    return str(exc.value)


def test_a_key_twice_in_an_information_file():
    line = "Device Minor: " + "1" * 70
    assert refused(procfs.parse_information, f"Device Minor: 0\n{line}\n", "/p/information") == (
        f"/p/information: 'device minor' appears twice (in '{line[:60]}')")


def gpu_dir(root, bus, text):
    d = root / "proc" / "driver" / "nvidia" / "gpus" / bus
    d.mkdir(parents=True)
    (d / "information").write_text(text)
    return str(d / "information")


def test_two_gpus_claiming_one_minor(tmp_path):
    gpu_dir(tmp_path, "0000:17:00.0", INFO + "Device Minor: \t 0\n")
    second = gpu_dir(tmp_path, "0000:65:00.0", INFO + "Device Minor: \t 0\n")
    assert refused(procfs.read_gpus, str(tmp_path)) == (
        f"{second}: two GPUs claim device minor 0: 0000:17:00.0 and 0000:65:00.0")


def test_bus_id_from_the_directory_name_when_the_file_has_none(tmp_path):
    gpu_dir(tmp_path, "0000:CA:00.0", INFO + "Device Minor: \t 2\n")
    gpus = procfs.read_gpus(str(tmp_path))
    assert [(m, g.bus_id, g.model) for m, g in gpus.items()] == [
        (2, "0000:ca:00.0", "NVIDIA A100 80GB PCIe")]


def test_an_information_file_cut_short(tmp_path):
    path = gpu_dir(tmp_path, "0000:17:00.0", INFO + "Device Minor: \t 0")
    assert refused(procfs.read_gpus, str(tmp_path)) == (
        f"{path}: truncated (the last line has no newline)")


@pytest.mark.parametrize("text,message", [
    ("gpu0/gi1/access 12\ngpu0/gi1/access 13\n", "/m: gpu0/gi1 is listed twice"),
    ("gpu0/gi1/ci0/access 13\ngpu0/gi1/ci0/access 14\n", "/m: gpu0/gi1/ci0 is listed twice"),
    ("gpu0/gi1/access 12\ngpu0/gi1/ci0/access 12\n",
     "/m: cap number 12 is given to two entries (gpu0/gi1/ci0 and another)"),
])
@pytest.mark.parametrize("gpus", [None, [0]])
def test_mig_minors_entries_named_twice_or_sharing_a_number(text, message, gpus):
    assert refused(procfs.parse_mig_minors, "config 1\nmonitor 2\n" + text, "/m", gpus) == message


def test_mig_minors_ci_zero_and_gi_entries_are_told_apart():
    table = procfs.parse_mig_minors("config 1\nmonitor 2\ngpu0/gi1/access 12\n"
                                    "gpu0/gi1/ci0/access 13\n", "/m", [0])
    assert table == {12: (0, 1, None), 13: (0, 1, 0)}


def seed_root(tmp_path, drop_table=False):
    import shutil
    from conftest import node
    root = tmp_path / "root"
    shutil.copytree(os.path.join(node("seed"), "root"), root, symlinks=True)
    if drop_table:  # an old driver: no mig-minors, the capability files number the caps
        os.remove(root / "proc" / "driver" / "nvidia-caps" / "mig-minors")
    return root, root / "proc" / "driver" / "nvidia" / "capabilities" / "gpu2" / "mig"


def test_a_corrupt_device_file_minor_line(tmp_path):
    root, mig = seed_root(tmp_path)
    line = "DeviceFileMinor: " + "x" * 70
    (mig / "gi7" / "access").write_text(line + "\nDeviceFileMode: 292\n")
    assert refused(procfs.read_snapshot, str(root)) == (
        f"{mig / 'gi7' / 'access'}: corrupt DeviceFileMinor line (in '{line[:60]}')")


def test_without_mig_minors_a_capability_file_must_number_its_cap(tmp_path):
    root, mig = seed_root(tmp_path, drop_table=True)
    (mig / "gi7" / "access").write_text("DeviceFileMode: 292\nDeviceFileModify: 1\n")
    assert refused(procfs.read_snapshot, str(root)) == (
        f"{root}/proc/driver/nvidia-caps/mig-minors: no entry for gpu2/gi7, and "
        f"{mig / 'gi7' / 'access'} has no DeviceFileMinor")


def test_without_mig_minors_two_instances_cannot_share_a_cap(tmp_path):
    root, mig = seed_root(tmp_path, drop_table=True)
    (mig / "gi8" / "access").write_text("DeviceFileMinor: 336\nDeviceFileMode: 292\n")
    msg = refused(procfs.read_snapshot, str(root))
    assert msg.endswith("DeviceFileMinor 336 is also another instance's"), msg
    assert "/gpu2/mig/gi" in msg


def test_an_unexpected_mig_minors_entry_of_a_gpu_is_named():
    bad = "gpu0/gi2/access " + "x" * 70
    assert refused(procfs.parse_mig_minors, f"config 1\ngpu0/gi1/access 12\n{bad}\n", "/m", [0]) == (
        f"/m:3: unexpected entry (in {bad[:60]!r})")  # the line, as the whole-table read names it


def test_a_key_twice_names_the_information_file(tmp_path):
    path = gpu_dir(tmp_path, "0000:17:00.0", INFO + "Device Minor: \t 0\nDevice Minor: \t 0\n")
    assert refused(procfs.read_gpus, str(tmp_path)) == (
        f"{path}: 'device minor' appears twice (in 'Device Minor: \\t 0')")


def test_a_procfs_file_over_4_mib_is_not_read(tmp_path):
    """procfs files are read to EOF (they report size 0), capped: a bind-mounted or fake
    file must not fill memory. 4 MiB is far above the largest real one (mig-minors, ~110 KB)."""
    path = gpu_dir(tmp_path, "0000:17:00.0", INFO + "Device Minor: \t 0\n" + "x" * (4 << 20) + "\n")
    assert refused(procfs.read_gpus, str(tmp_path)) == f"{path}: larger than 4 MiB: not read"


def test_only_the_gpus_asked_for_are_read(tmp_path):
    root, _ = seed_root(tmp_path)
    snap = procfs.read_snapshot(str(root), [3])
    assert sorted({key[0] for key in snap.ci_caps}) == [3]
    assert len(snap.ci_caps) == 7


def test_a_full_mig_minors_table_without_a_live_instance_is_corrupt(tmp_path):
    root, mig = seed_root(tmp_path)
    mm = root / "proc" / "driver" / "nvidia-caps" / "mig-minors"
    mm.write_text("".join(ln for ln in mm.read_text().splitlines(True)
                          if not ln.startswith("gpu2/gi7/ci0/access ")))
    assert refused(procfs.read_snapshot, str(root)) == (
        f"{mm}: no entry for gpu2/gi7/ci0 (the driver lists every instance: the table is cut "
        "short or corrupt)")


def _loop(path):
    """Replace ``path`` with a symlink to itself: stat() then fails with ELOOP, as it would
    with EACCES or EIO; only ENOENT says the file is not there."""
    os.remove(path)
    os.symlink(os.path.basename(path), path)


@pytest.mark.parametrize("which", ["gi7/access", "gi7/ci0/access"])
def test_an_access_file_that_cannot_be_looked_at_is_no_missing_instance(tmp_path, which):
    root, mig = seed_root(tmp_path)
    _loop(mig / which)
    assert refused(procfs.read_snapshot, str(root)) == (
        f"{mig / which}: cannot stat: Too many levels of symbolic links")


def test_a_mig_minors_that_cannot_be_looked_at_is_no_missing_table(tmp_path):
    root, _ = seed_root(tmp_path)
    mm = root / "proc" / "driver" / "nvidia-caps" / "mig-minors"
    _loop(mm)
    assert refused(procfs.read_snapshot, str(root)) == (
        f"{mm}: cannot stat: Too many levels of symbolic links")


def test_the_prolog_neither_drains_nor_blocks_a_job_for_an_unreadable_access_file(tmp_path):
    """Read as "gone", the unreadable access file made gpu2/gi7/ci0 a stale cap: the Prolog
    drained the node and failed the job. It is a discovery failure: with
    drain_on_discovery_failure = false the job runs and the node is left alone."""
    from conftest import SAMPLE_GRES, SAMPLE, run_cli

    root, mig = seed_root(tmp_path)
    _loop(mig / "gi7" / "access")
    log = tmp_path / "scontrol.log"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                        '[ "$1" = show ] && echo "NodeName=c51-g002 State=IDLE"\nexit 0\n')
    scontrol.chmod(0o755)
    r = run_cli("prolog", "--no-syslog", "--root", root, "--gres-conf", SAMPLE_GRES,
                "--slurm-conf", os.path.join(SAMPLE, "slurm.conf"), "--node", "c51-g002",
                "--lock-file", tmp_path / "lock", "--cache-file", tmp_path / "state.json",
                "--slurm-backend", "scontrol", "--scontrol", scontrol,
                "--no-drain-on-discovery-failure")
    assert r.code == 0, r.err
    assert f"{mig / 'gi7' / 'access'}: cannot stat: Too many levels of symbolic links" in r.err
    assert "stale-cap" not in r.err
    assert not log.exists() or "update" not in log.read_text()
