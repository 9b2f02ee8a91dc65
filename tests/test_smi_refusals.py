"""nvidia-smi output migsync must refuse or read as lost GPUs, message by message (a live
device must never silently drop out of the inventory). Rows in nvidia-smi's recorded format
(--query-gpu csv,noheader; `mig -lci` table); expected texts written by hand."""
import shutil

import pytest

from conftest import node, run_cli
from migsync.backends import smi
from migsync.errors import DiscoveryError

UUID0 = "GPU-b47b5667-cb38-f14e-4a0b-5b2369f0a0ca"
UUID1 = "GPU-44014a8a-2e73-7a7b-96bb-8c102548aa1e"
ROW0 = f"0, 00000000:17:00.0, {UUID0}, NVIDIA A100 80GB PCIe, Enabled, Enabled"
ROW1 = f"1, 00000000:65:00.0, {UUID1}, NVIDIA A100 80GB PCIe, Disabled, Disabled"
LOST17 = "Unable to determine the device handle for GPU0000:17:00.0: Unknown Error"


def refused(text, parse=smi.parse_query_gpu):
    with pytest.raises(DiscoveryError) as exc:
        parse(text)
    return str(exc.value)


@pytest.mark.parametrize("row", [
    ROW0.replace("Enabled, Enabled", "Maybe, Enabled"),  # a MIG mode that is no mode
    ROW0.replace("0, ", "x, ", 1),  # an index that is no number
    ROW0.replace("00000000:17:00.0", "17:00"),  # a bus id that is none
    ROW0.replace(UUID0, "MIG-" + UUID0[4:]),  # a UUID that is no GPU UUID
])
def test_a_malformed_row_is_refused_and_quoted_to_80_characters(row):
    assert len(row) > 80
    assert refused(f"{ROW1}\n{row}\n") == (
        f"nvidia-smi --query-gpu: unexpected line 2: {row[:80]!r}")


@pytest.mark.parametrize("text,message", [
    (f"{LOST17}\n{LOST17}\n", "nvidia-smi --query-gpu: GPU 0000:17:00.0 is listed twice"),
    (f"{ROW0}\n{LOST17}\n", "nvidia-smi --query-gpu: GPU 0000:17:00.0 is listed twice"),
    (f"{ROW0}\n[Unknown Error], 00000000:17:00.0, [Unknown Error], [Unknown Error], "
     "[Unknown Error], [Unknown Error]\n", "nvidia-smi --query-gpu: bus 0000:17:00.0 is listed twice"),
])
def test_one_gpu_listed_twice_is_refused(text, message):
    assert refused(text) == message


def test_two_lost_gpus_without_index_or_uuid_are_two_gpus():
    lost = "[Unknown Error], 00000000:{}:00.0, [Unknown Error], [Unknown Error], [N/A], [N/A]"
    gpus = smi.parse_query_gpu(f"{ROW0}\n{lost.format('65')}\n{lost.format('ca')}\n")
    assert [(g.bus_id, g.lost) for g in gpus] == [
        ("0000:17:00.0", None), ("0000:65:00.0", "nvidia-smi: [Unknown Error]"),
        ("0000:ca:00.0", "nvidia-smi: [Unknown Error]")]


def test_a_long_error_field_is_cut_to_40_characters_in_the_lost_reason():
    field = "[GPU requires reset: the long explanation of a driver]"
    gpus = smi.parse_query_gpu(f"{ROW0.replace(UUID0, field)}\n")
    assert gpus[0].lost == "nvidia-smi: [GPU requires reset: the long explanatio"


LCI_ROW = "|   0      1       MIG 3g.40gb          2         0          0:3     |"


@pytest.mark.parametrize("row,message", [
    ("|   0      1       MIG 3g.40gb          2         x          0:3     |" + " " * 20,
     "nvidia-smi mig -lci: a row that does not parse: "
     "'|   0      1       MIG 3g.40gb          2         x          0:3     |'"),
    ("|   1      2       MIG A100-SXM4-80GB-not-a-profile-name  2  0  0:3 |",
     "nvidia-smi mig -lci: 'A100-SXM4-80GB-not-a-profile-n' is not a MIG profile name"),
])
def test_lci_rows_that_are_not_instances_are_refused(row, message):
    assert refused(f"{LCI_ROW}\n{row}\n", smi.parse_lci) == message


def test_lci_row_longer_than_80_characters_is_quoted_to_80():
    row = "|   0      1       MIG 3g.40gb          2         x          0:3     | trailing junk here"
    assert refused(f"{row}\n", smi.parse_lci) == (
        f"nvidia-smi mig -lci: a row that does not parse: {row[:80]!r}")


def test_nvidia_smi_printing_no_gpus_is_a_discovery_failure(tmp_path):
    d = tmp_path / "n"
    shutil.copytree(node("seed"), d, symlinks=True)
    (d / "smi" / "query-gpu.csv").write_text("")
    (tmp_path / "g.conf").write_text("Name=gpu File=/dev/nvidia0\n")
    r = run_cli("check", "--root", d / "root", "--gres-conf", tmp_path / "g.conf", "--node",
                "c51-g002", "--backend", "nvidia-smi", "--nvidia-smi", d / "nvidia-smi")
    assert r.code == 3
    assert r.err.strip().endswith(
        "nvidia-smi --query-gpu printed no GPUs (exit 0, empty output)"), r.err


def test_an_instance_listed_twice_by_lci_is_refused():
    assert refused(f"{LCI_ROW}\n{LCI_ROW}\n", smi.parse_lci) == (
        "nvidia-smi mig -lci: GPU 0 GI 1 CI 0 is listed twice")


def test_error_text_never_becomes_a_bus_id_or_a_name():
    gpus = smi.parse_query_gpu(ROW0.replace("00000000:17:00.0", "[Unknown Error]") + "\n"
                               + ROW1.replace("NVIDIA A100 80GB PCIe", "[GPU is lost]") + "\n")
    assert [(g.index, g.bus_id, g.name, g.lost) for g in gpus] == [
        (0, None, "NVIDIA A100 80GB PCIe", "nvidia-smi: [Unknown Error]"),
        (1, "0000:65:00.0", None, "nvidia-smi: [GPU is lost]")]


@pytest.mark.parametrize("how,said", [
    ("kill -9 $$", "nvidia-smi --query-gpu was killed by signal 9: "),
    ("echo 'Failed to initialize NVML: Driver/library version mismatch'; exit 18",
     "nvidia-smi --query-gpu exited 18: Failed to initialize NVML: Driver/library version mismatch"),
])
def test_a_query_that_fails_or_is_killed_is_a_discovery_failure(tmp_path, how, said):
    d = tmp_path / "n"
    shutil.copytree(node("seed"), d, symlinks=True)
    script = d / "nvidia-smi"
    text = script.read_text()
    script.write_text(text.replace('case "$*" in\n', f'case "$*" in\n  --query-gpu*) {how} ;;\n', 1))
    (tmp_path / "g.conf").write_text("Name=gpu File=/dev/nvidia0\n")
    r = run_cli("check", "--root", d / "root", "--gres-conf", tmp_path / "g.conf", "--node",
                "c51-g002", "--backend", "nvidia-smi", "--nvidia-smi", script)
    assert r.code == 3
    assert said in r.err, r.err


def test_output_without_its_final_newline_is_cut_short(tmp_path):
    d = tmp_path / "n"
    shutil.copytree(node("seed"), d, symlinks=True)
    csv = d / "smi" / "query-gpu.csv"
    csv.write_text(csv.read_text().rstrip("\n"))
    (tmp_path / "g.conf").write_text("Name=gpu File=/dev/nvidia0\n")
    r = run_cli("check", "--root", d / "root", "--gres-conf", tmp_path / "g.conf", "--node",
                "c51-g002", "--backend", "nvidia-smi", "--nvidia-smi", d / "nvidia-smi")
    assert r.code == 3
    assert r.err.strip().endswith("nvidia-smi --query-gpu: output cut short (no final newline)"), r.err


@pytest.mark.parametrize("field", ["[Insufficient Permissions]", "[insufficient permissions]"])
def test_a_field_nvidia_smi_may_not_read_is_no_lost_gpu(field):
    """`migsync check` as a user: nvidia-smi printed the field as [Insufficient Permissions],
    which made the GPU `gpu-lost` (a finding, exit 1) though nothing is wrong with it."""
    row = f"0, 00000000:17:00.0, GPU-b47b5667-cb38-f14e-4a0b-5b2369f0a0ca, {field}, Disabled, Disabled\n"
    with pytest.raises(DiscoveryError) as exc:
        smi.parse_query_gpu(row)
    assert str(exc.value) == f"nvidia-smi --query-gpu: line 1 reads {field} (run as root)"
