"""The nvidia-smi backend on output as nvidia-smi prints it, faults included. Expected values
are written by hand; the fake commands here are shell scripts with fixed output."""
import os

import pytest

from migsync.backends import smi
from migsync.errors import DiscoveryError

Q = "{i}, 00000000:{b}:00.0, GPU-8f2c1d90-3e5a-4b17-9c2e-5da9abb5176{i}, NVIDIA A100-SXM4-80GB, {cur}, {pend}"


def row(i, b, cur="Enabled", pend="Enabled"):
    return Q.format(i=i, b=b, cur=cur, pend=pend)


def gpus(text):
    return [(g.index, g.bus_id, g.uuid, g.name, g.mig_current, g.mig_pending, g.lost)
            for g in smi.parse_query_gpu(text)]


def test_query_rows_lost_lines_and_mig_fields():
    text = "\n".join([
        row(0, "17"),
        "Unable to determine the device handle for GPU0000:4E:00.0: Unknown Error",
        row(1, "65", "Disabled", "Enabled"),
        "Unable to determine the device handle for GPU2: 0000:CA:00.0: Unknown Error",
        row(3, "E3", "[N/A]", "[N/A]"),
        "GPU 00000000:F1:00.0 is lost; reboot the system",
        row(4, "F3", "[Not Supported]", "[Not Supported]"),
        row(5, "F5", "[GPU requires reset]", "[GPU requires reset]"),
        "",
    ]) + "\n"
    u = "GPU-8f2c1d90-3e5a-4b17-9c2e-5da9abb5176"
    assert gpus(text) == [
        (0, "0000:17:00.0", u + "0", "NVIDIA A100-SXM4-80GB", True, True, None),
        (1, "0000:65:00.0", u + "1", "NVIDIA A100-SXM4-80GB", False, True, None),
        (3, "0000:e3:00.0", u + "3", "NVIDIA A100-SXM4-80GB", None, None, None),
        (4, "0000:f3:00.0", u + "4", "NVIDIA A100-SXM4-80GB", None, None, None),
        (5, "0000:f5:00.0", u + "5", "NVIDIA A100-SXM4-80GB", None, None,
         "nvidia-smi: [GPU requires reset]"),
        (-1, "0000:4e:00.0", None, None, None, None, "nvidia-smi: GPU is lost or unreadable"),
        (-1, "0000:ca:00.0", None, None, None, None, "nvidia-smi: GPU is lost or unreadable"),
        (-1, "0000:f1:00.0", None, None, None, None, "nvidia-smi: GPU is lost or unreadable")]


@pytest.mark.parametrize("cols,why", [
    ("0, 00000000:17:00.0, [Unknown Error], [Unknown Error], [Unknown Error], [Unknown Error]",
     "nvidia-smi: [Unknown Error]"),
    (row(0, "17", "Enabled", "[Unknown Error]"), "nvidia-smi: [Unknown Error]"),
    ("0, 00000000:17:00.0, GPU-x, [Unknown Error], [GPU requires reset], Enabled",
     "nvidia-smi: [Unknown Error]"),  # the first unreadable field is named
])
def test_an_unreadable_field_makes_the_gpu_lost(cols, why):
    (g,) = smi.parse_query_gpu(cols + "\n")
    assert g.lost == why and g.index == 0 and g.bus_id == "0000:17:00.0"


@pytest.mark.parametrize("line", [
    "0, 00000000:17:00.0, GPU-x, NVIDIA A100-SXM4-80GB, Enabled",  # five columns
    "x, 00000000:17:00.0, GPU-x, NVIDIA A100-SXM4-80GB, Enabled, Enabled",
    "0000:17:00.0: something else entirely",  # a bus id, but not a lost-GPU message
    "Unable to determine the device handle: Unknown Error",  # a lost message without a bus id
])
def test_unexpected_lines_are_refused_naming_line_number_and_text(line):
    with pytest.raises(DiscoveryError) as exc:
        smi.parse_query_gpu(row(0, "17") + "\n" + line + "\n")
    assert str(exc.value) == f"nvidia-smi --query-gpu: unexpected line 2: {line!r}"


def test_unexpected_line_text_is_cut_at_80_characters():
    line = "z" * 100
    with pytest.raises(DiscoveryError) as exc:
        smi.parse_query_gpu(line + "\n")
    assert str(exc.value) == f"nvidia-smi --query-gpu: unexpected line 1: {'z' * 80!r}"


# ---- probe: the commands' exit codes and messages

LCI_ONE = """\
+--------------------------------------------------------------------+
| Compute instances:                                                 |
| GPU     GPU       Name             Profile   Instance   Placement  |
|       Instance                       ID        ID       Start:Size |
|         ID                                                         |
|====================================================================|
|   0      7       MIG 1g.10gb          0         0          0:1     |
+--------------------------------------------------------------------+
"""


def fake_smi(tmp_path, query, qrc=0, lci="", lci_rc=0, lci_err="", listing="", lrc=0):
    d = tmp_path / "smi"
    d.mkdir(exist_ok=True)
    for name, text in (("q", query), ("lci", lci), ("lci.err", lci_err), ("L", listing)):
        (d / name).write_text(text)
    script = tmp_path / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
d={d}
case "$1" in
  --query-gpu=*) cat $d/q; exit {qrc} ;;
  mig) cat $d/lci; cat $d/lci.err >&2; exit {lci_rc} ;;
  -L) cat $d/L; exit {lrc} ;;
esac
exit 99
""")
    script.chmod(0o755)
    return str(script)


def test_probe_reads_gpus_and_instances(tmp_path):
    view = smi.probe(fake_smi(tmp_path, row(0, "17") + "\n", lci=LCI_ONE), 10)
    assert view.name == "nvidia-smi"
    assert [(m.gpu_index, m.gi, m.ci, m.profile) for m in view.migs] == [(0, 7, 0, "1g.10gb")]


def test_probe_skips_lci_when_no_gpu_has_mig_on(tmp_path):
    view = smi.probe(fake_smi(tmp_path, row(0, "17", "Disabled", "Disabled") + "\n",
                              lci="garbage", lci_rc=3), 10)
    assert len(view.gpus) == 1 and view.migs == []


def test_probe_missing_binary_names_the_path(tmp_path):
    with pytest.raises(DiscoveryError) as exc:
        smi.probe(str(tmp_path / "nope"), 10)
    assert str(exc.value) == f"nvidia-smi not found at {tmp_path / 'nope'}"


@pytest.mark.parametrize("rc", [1, 9, 15])
def test_probe_query_failing_with_no_readable_gpu_is_an_error(tmp_path, rc):
    s = fake_smi(tmp_path, "NVIDIA-SMI has failed because it could not communicate with the "
                 "NVIDIA driver.\nsecond line\n", qrc=rc)
    with pytest.raises(DiscoveryError) as exc:
        smi.probe(s, 10)
    assert str(exc.value) == (f"nvidia-smi --query-gpu exited {rc}: NVIDIA-SMI has failed "
                              "because it could not communicate with the NVIDIA driver.")


@pytest.mark.parametrize("rc", [1, 15])
def test_probe_query_failing_with_one_lost_gpu_keeps_the_others(tmp_path, rc):
    # Issue 12: a command that exits non-zero is a discovery failure even when some rows
    # parsed (partial data never becomes a mismatch); with exit 0 the lost GPU is data.
    s = fake_smi(tmp_path, row(0, "17", "Disabled", "Disabled") + "\nUnable to determine the "
                 "device handle for GPU0000:4E:00.0: Unknown Error\n", qrc=rc)
    with pytest.raises(DiscoveryError, match=f"exited {rc}: 0, 00000000:17:00.0"):
        smi.probe(s, 10)
    s = fake_smi(tmp_path, row(0, "17", "Disabled", "Disabled") + "\nUnable to determine the "
                 "device handle for GPU0000:4E:00.0: Unknown Error\n", qrc=0)
    view = smi.probe(s, 10)
    assert [(g.index, bool(g.lost)) for g in view.gpus] == [(0, False), (-1, True)]
    s = fake_smi(tmp_path, "Unable to determine the device handle for GPU0000:4E:00.0: "
                 "Unknown Error\n", qrc=rc)
    with pytest.raises(DiscoveryError, match=f"exited {rc}: Unable to determine"):
        smi.probe(s, 10)  # every GPU lost: nothing to check


@pytest.mark.parametrize("rc", [0, 6])
def test_probe_no_compute_instances_message_is_an_empty_list(tmp_path, rc):
    view = smi.probe(fake_smi(tmp_path, row(0, "17") + "\n",
                              lci="No compute instances found: Not Found\n", lci_rc=rc), 10)
    assert view.migs == []


@pytest.mark.parametrize("rc", [1, 2])
def test_probe_lci_failing_names_its_exit_code_and_stderr(tmp_path, rc):
    s = fake_smi(tmp_path, row(0, "17") + "\n", lci="stdout line\n", lci_rc=rc,
                 lci_err="Insufficient Permissions\n")
    with pytest.raises(DiscoveryError) as exc:
        smi.probe(s, 10)
    assert str(exc.value) == f"nvidia-smi mig -lci exited {rc}: Insufficient Permissions"
    s = fake_smi(tmp_path, row(0, "17") + "\n", lci="only stdout\n", lci_rc=rc)
    with pytest.raises(DiscoveryError, match=f"exited {rc}: only stdout"):
        smi.probe(s, 10)


def test_probe_lci_with_neither_rows_nor_the_no_instances_message(tmp_path):
    s = fake_smi(tmp_path, row(0, "17") + "\n", lci="Some new table format\nrow\n")
    with pytest.raises(DiscoveryError) as exc:
        smi.probe(s, 10)
    assert str(exc.value) == ("nvidia-smi mig -lci: no instance rows and no 'No compute "
                              "instances found' message: Some new table format")


def test_probe_listing_failure_never_fails_discovery(tmp_path):
    view = smi.probe(fake_smi(tmp_path, row(0, "17") + "\n", lci=LCI_ONE,
                              listing="garbage", lrc=4), 10)
    assert [m.uuid for m in view.migs] == [None]
    listing = ("GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-8f2c1d90-3e5a-4b17-9c2e-5da9abb51760)\n"
               "  MIG 1g.10gb     Device  0: (UUID: MIG-b6ba6b2a-1cd4-5f1e-8a03-77d19e02c4b1)\n")
    view = smi.probe(fake_smi(tmp_path, row(0, "17") + "\n", lci=LCI_ONE, listing=listing), 10)
    assert [m.uuid for m in view.migs] == ["MIG-b6ba6b2a-1cd4-5f1e-8a03-77d19e02c4b1"]


def test_probe_finds_nvidia_smi_on_path(tmp_path, monkeypatch):
    s = fake_smi(tmp_path, row(0, "17", "Disabled", "Disabled") + "\n")
    monkeypatch.setenv("PATH", os.path.dirname(s) + os.pathsep + os.environ.get("PATH", ""))
    if os.geteuid() == 0 and not os.path.exists("/usr/bin/nvidia-smi"):
        # issue 14: root never takes a program from an inherited PATH (fixed /usr/sbin:...)
        with pytest.raises(DiscoveryError, match="nvidia-smi not found"):
            smi.probe(None, 10)
        return
    assert len(smi.probe(None, 10).gpus) == 1


def test_a_blank_line_inside_the_query_output_does_not_end_it():
    assert [g.index for g in smi.parse_query_gpu(row(0, "17") + "\n\n" + row(1, "65") + "\n")] == [0, 1]


def test_listing_lines_before_any_gpu_line_are_ignored():
    text = ("  MIG 1g.10gb     Device  0: (UUID: MIG-00000000-0000-0000-0000-000000000000)\n"
            "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-8f2c1d90-3e5a-4b17-9c2e-5da9abb51760)\n"
            "  MIG 3g.40gb     Device  0: (UUID: MIG-b6ba6b2a-1cd4-5f1e-8a03-77d19e02c4b1)\n")
    assert smi.parse_list(text) == {0: [("3g.40gb", "MIG-b6ba6b2a-1cd4-5f1e-8a03-77d19e02c4b1")]}


def test_uuids_are_attached_only_where_one_device_and_one_uuid_share_a_profile():
    from migsync.backends import BMig
    migs = [BMig(0, 1, 0, "3g.40gb"), BMig(0, 2, 0, "1g.10gb"), BMig(0, 3, 0, "1g.10gb"),
            BMig(1, 1, 0, "4g.40gb")]
    listing = {0: [("3g.40gb", "MIG-a"), ("1g.10gb", "MIG-b")],  # two 1g devices, one UUID
               1: [("4g.40gb", "MIG-c"), ("4g.40gb", "MIG-d")]}  # one device, two UUIDs
    smi.attach_mig_uuids(migs, listing)
    assert [m.uuid for m in migs] == ["MIG-a", None, None, None]


def test_probe_without_nvidia_smi_anywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(smi, "EXTRA_DIRS", ())
    monkeypatch.setenv("PATH", str(tmp_path))
    from migsync import runner
    monkeypatch.setattr(runner, "SAFE_PATH", str(tmp_path), raising=False)
    with pytest.raises(DiscoveryError) as exc:
        smi.probe(None, 10)
    assert str(exc.value) == "nvidia-smi not found"


def test_probe_that_times_out_names_nvidia_smi(tmp_path):
    s = tmp_path / "nvidia-smi"
    s.write_text("#!/bin/sh\nexec sleep 30\n")
    s.chmod(0o755)
    with pytest.raises(DiscoveryError) as exc:
        smi.probe(str(s), 0.5)
    assert str(exc.value).startswith("nvidia-smi: ") and "timed out" in str(exc.value)


def test_an_nvidia_smi_that_cannot_be_executed_is_named_with_the_reason(tmp_path):
    """A file that passes find_program's checks (a regular, root-owned, executable file) but
    is no program (garbage bytes, no '#!': a truncated or wrong-architecture download): the
    kernel refuses exec with ENOEXEC, and the user must read which file and why."""
    s = tmp_path / "nvidia-smi"
    s.write_bytes(b"\x7fELG not an executable\x00\x01\x02\n")
    s.chmod(0o755)
    with pytest.raises(DiscoveryError) as exc:
        smi.probe(str(s), 10)
    assert str(exc.value) == f"nvidia-smi: cannot run {s}: Exec format error"


def test_old_driver_exiting_1_with_no_compute_instances_is_no_instances(tmp_path):
    """Older drivers print "No compute instances found" for `mig -lci` and exit non-zero; the
    recorded mig-empty node (MIG on, no instances) exits 6. The same recording served with
    exit 1 must give the same verdict (no instances: findings, exit 1), not a discovery
    failure. Findings written by hand (as test_check.test_mig_on_with_no_instances...)."""
    import json
    import shutil

    from conftest import CONF, node, run_cli
    d = tmp_path / "mig-empty"
    shutil.copytree(node("mig-empty"), d, symlinks=True)
    assert (d / "smi" / "lci.txt").read_text() == "No compute instances found: Not Found\n"
    (d / "smi" / "lci.rc").write_text("1\n")
    r = run_cli("check", "--json", "--backend", "nvidia-smi", "--nvidia-smi", d / "nvidia-smi",
                "--root", d / "root", "--gres-conf", os.path.join(CONF, "mig-empty.gres.conf"),
                "--node", "g-empty")
    assert r.code == 1, (r.code, r.err)
    # both GPUs have MIG on and no instance; gpu1's MIG disable is pending; the config's one
    # CI cap is stale and has no device file
    assert sorted(f["id"] for f in json.loads(r.out)["findings"]) == [
        "mig-no-instances", "mig-no-instances", "mig-pending", "missing-file", "stale-cap"]
