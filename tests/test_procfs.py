"""What the NVIDIA driver shows in procfs, read from hand-built trees. Formats: NVIDIA's MIG
User Guide ("Device Nodes and Capabilities") and the driver's /proc/driver/nvidia files."""
import os

import pytest

from migsync import procfs
from migsync.errors import DiscoveryError


@pytest.mark.parametrize("bus,want", [
    ("00000000:CA:00.0", "0000:ca:00.0"),  # nvidia-smi: 8-digit domain, upper case
    ("0000:ca:00.0", "0000:ca:00.0"),  # procfs
    ("0000:CA:00.0", "0000:ca:00.0"),
    (" 00000000:17:00.0\n", "0000:17:00.0"),
    ("00000001:17:00.0", "0001:17:00.0"),
    ("garbage", "garbage"),
])
def test_bus_ids(bus, want):
    assert procfs.normalise_bus_id(bus) == want


def test_information_file_keys_and_values():
    info = procfs.parse_information("Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 140\n"
                                    "Bus Location: \t 0000:47:00.0\nDevice Minor: \t 6\n"
                                    "no colon here\nGPU Excluded:\t No\n")
    assert info == {"model": "NVIDIA H100 80GB HBM3", "irq": "140", "bus location": "0000:47:00.0",
                    "device minor": "6", "gpu excluded": "No"}


def write(root, rel, text=""):
    p = os.path.join(root, rel.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as fh:
        fh.write(text)


def gpu_info(root, bus, minor, model="NVIDIA H100 80GB HBM3", minor_line=None):
    write(root, f"/proc/driver/nvidia/gpus/{bus}/information",
          f"Model: \t\t {model}\nGPU UUID: \t GPU-{minor}\nBus Location: \t {bus}\n"
          + (minor_line if minor_line is not None else f"Device Minor: \t {minor}\n"))


def access(root, minor, gi, ci=None, dev=None):
    rel = f"/proc/driver/nvidia/capabilities/gpu{minor}/mig/gi{gi}" + (f"/ci{ci}" if ci is not None else "")
    write(root, rel + "/access", "" if dev is None else
          f"DeviceFileMinor: {dev}\nDeviceFileMode: 292\nDeviceFileModify: 1\n")


def mig_minors(root, entries):
    write(root, "/proc/driver/nvidia-caps/mig-minors",
          "config 1\nmonitor 2\n" + "".join(f"{k} {v}\n" for k, v in entries))


def test_gpus_are_keyed_on_the_device_minor(tmp_path):
    r = str(tmp_path)
    gpu_info(r, "0000:47:00.0", 6)
    gpu_info(r, "0000:07:00.0", 1, "NVIDIA A100-SXM4-80GB")
    gpus = procfs.read_gpus(r)
    assert {m: (g.bus_id, g.model, g.uuid) for m, g in gpus.items()} == {
        1: ("0000:07:00.0", "NVIDIA A100-SXM4-80GB", "GPU-1"),
        6: ("0000:47:00.0", "NVIDIA H100 80GB HBM3", "GPU-6")}


def test_no_driver_no_gpus_and_a_broken_information_file(tmp_path):
    r = str(tmp_path)
    with pytest.raises(DiscoveryError) as exc:
        procfs.read_gpus(r)
    assert str(exc.value) == "/proc/driver/nvidia not found: the NVIDIA driver is not loaded"
    write(r, "/proc/driver/nvidia/version", "NVRM version: 550.54.15\n")
    assert procfs.read_gpus(r) == {}  # the driver is loaded but sees no GPU
    gpu_info(r, "0000:47:00.0", 6, minor_line="Device Minor: \t ?\n")
    with pytest.raises(DiscoveryError) as exc:
        procfs.read_gpus(r)
    assert str(exc.value) == f"{r}/proc/driver/nvidia/gpus/0000:47:00.0/information: no 'Device Minor' line"


def test_mig_minors_for_some_gpus_and_the_whole_table():
    text = ("config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\n"
            "gpu1/gi1/access 147\ngpu1/gi1/ci0/access 148\ngpu10/gi1/access 1362\n")
    assert procfs.parse_mig_minors(text, "mm", gpus=[1]) == {147: (1, 1, None), 148: (1, 1, 0)}
    assert procfs.parse_mig_minors(text, "mm", gpus=[]) == {}
    assert procfs.parse_mig_minors(text, "mm") == {
        12: (0, 1, None), 13: (0, 1, 0), 147: (1, 1, None), 148: (1, 1, 0), 1362: (10, 1, None)}
    with pytest.raises(DiscoveryError) as exc:
        procfs.parse_mig_minors(text, "mm", gpus=[3, 2])
    assert str(exc.value) == "mm: empty or truncated (no entries for gpu 2, 3)"


@pytest.mark.parametrize("text,message", [
    ("config 1\nmonitor 2\n", "mm: empty or truncated (no gpu/gi entries)"),
    # issue 12: a last line without a newline is a cut-short table, said as such
    ("config 1\ngpu0/gi1/access 12\ngpu0/gi1/ci0/acc", "mm: truncated (the last line has no newline)"),
    ("config 1\ngpu0/gi1/access 12\ngpu0/gi1/ci0/acc\n", "mm:3: unexpected entry (in 'gpu0/gi1/ci0/acc')"),
    ("config 1\ngpu0/gi1/access twelve\n", "mm:2: unexpected entry (in 'gpu0/gi1/access twelve')"),
    ("config 1\nmonitor\ngpu0/gi1/access 12\n", "mm:2: expected '<name> <minor>' (in 'monitor')"),
    ("config one\ngpu0/gi1/access 12\n", "mm:1: expected '<name> <minor>' (in 'config one')"),
])
def test_whole_table_refusals_name_the_line(text, message):
    with pytest.raises(DiscoveryError) as exc:
        procfs.parse_mig_minors(text, "mm")
    assert str(exc.value) == message


@pytest.mark.parametrize("line", [
    "gpu0/gi1/access  12",  # two spaces: the driver prints one
    "gpu0/gi1/access\t12", "gpu0/gi1/access 12\r", "gpu0/gi1/access 12 x", "gpu0/gi1/access -12",
    "gpu0/gi1/access 1 2", "gpu0/gi/access 12", "gpu0/gix/access 12", "gpu0/gi1/ci/access 12",
    "gpu0/gi1/ci0/ci0/access 12", "gpu0/gi1/ci0/acces 12", "gpu0/gi1/ci0/access", "gpu/gi1/access 12",
    "gpu0 /gi1/access 12", "gpu0/gi1/cx0/access 12",
])
def test_an_entry_must_be_exactly_the_drivers_shape(line):
    """Each line is refused as an entry of GPU 0 when asked for GPU 0 (partial or odd data is
    never read as "the hardware differs")."""
    text = f"config 1\ngpu0/gi2/access 20\n{line}\n"
    with pytest.raises(DiscoveryError, match="unexpected entry"):
        procfs.parse_mig_minors(text, "mm", gpus=[0]) if line.startswith("gpu0/") else \
            procfs.parse_mig_minors(text, "mm")


def test_trailing_blanks_after_the_number_and_other_gpus_odd_lines_are_accepted():
    text = "config 1\ngpu0/gi2/access 20 \t\ngpu0/gi2/ci3/access 21\ngpu1/odd line\n"
    assert procfs.parse_mig_minors(text, "mm", gpus=[0]) == {20: (0, 2, None), 21: (0, 2, 3)}
    # gpu01 is not gpu 0 or 1 (the driver never pads); it is not read for either
    assert procfs.parse_mig_minors("gpu01/gi1/access 5\ngpu1/gi1/access 6\n", "mm",
                                   gpus=[1]) == {6: (1, 1, None)}


def test_snapshot_existence_comes_from_capability_files_and_numbers_from_mig_minors(tmp_path):
    r = str(tmp_path)
    gpu_info(r, "0000:07:00.0", 1)
    mig_minors(r, [("gpu1/gi1/access", 147), ("gpu1/gi1/ci0/access", 148),
                   ("gpu1/gi1/ci1/access", 149), ("gpu1/gi9/access", 219),
                   ("gpu1/gi9/ci0/access", 220), ("gpu1/gi10/access", 228),
                   ("gpu1/gi10/ci0/access", 229)])
    access(r, 1, 1)
    access(r, 1, 1, 0)
    access(r, 1, 10)
    access(r, 1, 10, 0)
    os.makedirs(f"{r}/proc/driver/nvidia/capabilities/gpu1/mig/gi9/ci0")  # no access files
    os.makedirs(f"{r}/proc/driver/nvidia/capabilities/gpu1/mig/gi2x")  # not an instance
    snap = procfs.read_snapshot(r)
    assert snap.gi_caps == {(1, 1): 147, (1, 10): 228}
    assert snap.ci_caps == {(1, 1, 0): 148, (1, 10, 0): 229}
    assert list(snap.ci_caps) == [(1, 1, 0), (1, 10, 0)]  # gi10 after gi1, numerically
    assert snap.cap_table[149] == (1, 1, 1)  # the table lists what could exist, too


def test_capability_files_give_the_number_when_mig_minors_lacks_it(tmp_path):
    """The driver prints every possible entry: a mig-minors that lacks a live instance is cut
    short or corrupt, a discovery failure since issue 12 (it used to fall back to the file)."""
    r = str(tmp_path)
    gpu_info(r, "0000:07:00.0", 1)
    mig_minors(r, [("gpu1/gi1/access", 147), ("gpu1/gi1/ci0/access", 148)])
    access(r, 1, 2, dev=156)
    access(r, 1, 2, 0, dev=157)
    with pytest.raises(DiscoveryError) as exc:
        procfs.read_snapshot(r)
    assert str(exc.value) == (f"{r}/proc/driver/nvidia-caps/mig-minors: no entry for gpu1/gi2 "
                              "(the driver lists every instance: the table is cut short or "
                              "corrupt)")


def test_without_mig_minors_the_capability_files_number_everything(tmp_path):
    r = str(tmp_path)
    gpu_info(r, "0000:07:00.0", 1)
    access(r, 1, 1, dev=147)
    access(r, 1, 1, 0, dev=148)
    snap = procfs.read_snapshot(r)
    assert snap.ci_caps == {(1, 1, 0): 148} and snap.cap_table == {147: (1, 1, None), 148: (1, 1, 0)}


def test_rooted_paths():
    assert procfs.rooted("/", "/proc/x") == "/proc/x"
    assert procfs.rooted("", "/proc/x") == "/proc/x"
    assert procfs.rooted("/tmp/n/root", "/proc/x") == "/tmp/n/root/proc/x"


def test_whole_table_refusal_after_a_blank_line_and_cut_at_60_characters():
    with pytest.raises(DiscoveryError) as exc:
        procfs.parse_mig_minors("config 1\n\ngpu0/gi1/access x\n", "mm")
    assert str(exc.value) == "mm:3: unexpected entry (in 'gpu0/gi1/access x')"
    long = "gpu0/gi1/access " + "9" * 70 + "x"
    with pytest.raises(DiscoveryError) as exc:
        procfs.parse_mig_minors(f"config 1\n{long}\n", "mm")
    assert str(exc.value) == f"mm:2: unexpected entry (in {long[:60]!r})"
    with pytest.raises(DiscoveryError) as exc:
        procfs.parse_mig_minors("config 1\n" + "x" * 70 + " 1 2\ngpu0/gi1/access 12\n", "mm")
    assert str(exc.value) == f"mm:2: expected '<name> <minor>' (in {('x' * 70 + ' 1 2')[:60]!r})"


def test_a_ci_without_any_number_is_named_with_its_ci(tmp_path):
    r = str(tmp_path)
    gpu_info(r, "0000:07:00.0", 1)
    mig_minors(r, [("gpu1/gi1/access", 147)])
    access(r, 1, 1, dev=147)
    access(r, 1, 1, 0)  # no DeviceFileMinor, and mig-minors lacks gpu1/gi1/ci0
    with pytest.raises(DiscoveryError) as exc:
        procfs.read_snapshot(r)
    assert "no entry for gpu1/gi1/ci0" in str(exc.value)


def test_an_unlistable_capability_directory_is_a_discovery_error(tmp_path):
    r = str(tmp_path)
    gpu_info(r, "0000:07:00.0", 1)
    mig = tmp_path / "proc/driver/nvidia/capabilities/gpu1/mig"
    mig.parent.mkdir(parents=True)
    os.symlink(mig, mig)  # a symlink loop: listing it fails with ELOOP
    with pytest.raises(DiscoveryError) as exc:
        procfs.read_snapshot(r)
    assert str(exc.value) == f"{mig}: cannot list: Too many levels of symbolic links"


def test_information_files_that_are_odd(tmp_path):
    r = str(tmp_path)
    base = tmp_path / "proc/driver/nvidia/gpus"
    (base / "0000:07:00.0").mkdir(parents=True)
    # not UTF-8 (a vendor string), and the bus id comes from the file, not the directory name
    (base / "0000:07:00.0" / "information").write_bytes(
        b"Model: \t\t NVIDIA \xff A100\nBus Location: \t 0000:07:00.0\nDevice Minor: \t 1\n")
    (base / "odd-name").mkdir()
    (base / "odd-name" / "information").write_text("Bus Location: \t 0000:0F:00.0\nDevice Minor: \t 3\n")
    gpus = procfs.read_gpus(r)
    assert gpus[1].model == "NVIDIA \ufffd A100" and gpus[3].bus_id == "0000:0f:00.0"
    assert gpus[3].model is None and gpus[3].uuid is None
    (base / "0000:47:00.0").mkdir()
    (base / "0000:47:00.0" / "information").write_text("Model: x\n")  # no Device Minor line
    with pytest.raises(DiscoveryError) as exc:
        procfs.read_gpus(r)
    assert str(exc.value) == f"{base}/0000:47:00.0/information: no 'Device Minor' line"
    (base / "0000:47:00.0" / "information").unlink()
    with pytest.raises(DiscoveryError) as exc:
        procfs.read_gpus(r)
    assert str(exc.value) == f"{base}/0000:47:00.0/information: file not found"
    (base / "0000:47:00.0" / "information").mkdir()
    with pytest.raises(DiscoveryError) as exc:
        procfs.read_gpus(r)
    assert str(exc.value) == f"{base}/0000:47:00.0/information: is a directory, not a file"


def test_a_gpus_path_that_is_not_a_directory(tmp_path):
    write(str(tmp_path), "/proc/driver/nvidia/gpus", "not a directory")
    with pytest.raises(DiscoveryError) as exc:
        procfs.read_gpus(str(tmp_path))
    assert str(exc.value) == f"{tmp_path}/proc/driver/nvidia/gpus: cannot list: Not a directory"


def test_capabilities_of_a_gpu_procfs_does_not_list_are_refused(tmp_path):
    r = str(tmp_path)
    gpu_info(r, "0000:07:00.0", 1)
    mig_minors(r, [("gpu1/gi1/access", 147), ("gpu1/gi1/ci0/access", 148),
                   ("gpu5/gi1/access", 687), ("gpu5/gi1/ci0/access", 688)])
    access(r, 1, 1)
    access(r, 1, 1, 0)
    assert procfs.read_snapshot(r).ci_caps == {(1, 1, 0): 148}
    access(r, 5, 1)
    access(r, 5, 1, 0)
    with pytest.raises(DiscoveryError) as exc:
        procfs.read_snapshot(r)
    assert str(exc.value) == (f"{r}/proc/driver/nvidia/capabilities/gpu5 exists but no GPU in "
                              f"{r}/proc/driver/nvidia/gpus has device minor 5")
