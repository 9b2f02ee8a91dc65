"""Which Type emit gives each device, and what it leaves out. Expected lines are written by
hand for the recorded seed node (GPUs 0,1 whole A100s; GPUs 2,3 with seven 1g.10gb each:
CI caps 337..391 step 9 on gpu2, 472,481,490,508,517,526,535 on gpu3)."""
import os

import pytest

import nvml_fake
from conftest import node, run_cli, smi_args
from migsync import emit
from migsync.model import Gpu, Inventory

GPU2_CAPS = "337,346,355,364,373,382,391"
GPU3_CAPS = "472,481,490,508,517,526,535"


def emit_file_style(tmp_path, gres_text, name="seed", nvml=None):
    (tmp_path / "gres.conf").write_text(gres_text)
    if nvml is not None:
        d = node(name)
        r = run_cli("emit", "--json", "--style", "file", "--backend", "nvml", "--root",
                    os.path.join(d, "root"), "--gres-conf", tmp_path / "gres.conf",
                    "--node", "c51-g002", nvml=nvml)
    else:
        r = run_cli("emit", "--json", "--style", "file",
                    *smi_args(name, tmp_path / "gres.conf", nodename="c51-g002"))
    assert r.code == 0, r.err
    return r.json()["suggested"]


def test_a_new_device_gets_the_sites_type_not_the_default(tmp_path):
    """Only gpu2's instances are configured, with a long Type; gpu3's (unconfigured) get it too."""
    doc = emit_file_style(tmp_path, "NodeName=c51-g002 Name=gpu Type=nvidia_a100 File=/dev/nvidia[0-1]\n"
                          "NodeName=c51-g002 Name=gpu Type=nvidia_a100_80gb_pcie_1g.10gb "
                          f"File=/dev/nvidia-caps/nvidia-cap[{GPU2_CAPS}]\n")
    assert doc["gres_conf"] == [
        "NodeName=c51-g002 Name=gpu Type=nvidia_a100 File=/dev/nvidia[0-1]",
        "NodeName=c51-g002 Name=gpu Type=nvidia_a100_80gb_pcie_1g.10gb "
        f"File=/dev/nvidia-caps/nvidia-cap[{GPU2_CAPS},{GPU3_CAPS}]"]


def test_the_longest_fitting_site_type_wins_for_a_new_device(tmp_path):
    doc = emit_file_style(tmp_path, "NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia[0-1]\n"
                          "NodeName=c51-g002 Name=gpu Type=pcie_1g.10gb File=/dev/nvidia-caps/nvidia-cap337\n"
                          "NodeName=c51-g002 Name=gpu Type=a100_80gb_pcie_1g.10gb "
                          "File=/dev/nvidia-caps/nvidia-cap346\n"
                          "NodeName=c51-g002 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap355\n")
    # configured devices keep their own Type; the other eleven take the longest that fits
    # (not the last in alphabetical order, which would be pcie_1g.10gb)
    assert doc["gres_conf"] == [
        "NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia[0-1]",
        "NodeName=c51-g002 Name=gpu Type=pcie_1g.10gb File=/dev/nvidia-caps/nvidia-cap337",
        "NodeName=c51-g002 Name=gpu Type=a100_80gb_pcie_1g.10gb File=/dev/nvidia-caps/nvidia-cap346",
        "NodeName=c51-g002 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap355",
        "NodeName=c51-g002 Name=gpu Type=a100_80gb_pcie_1g.10gb "
        f"File=/dev/nvidia-caps/nvidia-cap[364,373,382,391,{GPU3_CAPS}]"]


def test_lost_gpus_are_left_out_and_the_others_still_listed(tmp_path):
    fake = nvml_fake.make(os.path.join(node("seed"), "layout.json"), lost={0})
    doc = emit_file_style(tmp_path, "NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia[0-1]\n",
                          nvml=fake)
    assert doc["gres_conf"] == [
        "NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia1",
        f"NodeName=c51-g002 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[{GPU2_CAPS},{GPU3_CAPS}]"]


def test_untyped_site_lines_stay_untyped_and_count_as_plain_gpu(tmp_path):
    doc = emit_file_style(tmp_path, "NodeName=c51-g002 Name=gpu File=/dev/nvidia[0-1]\n"
                          f"NodeName=c51-g002 Name=gpu File=/dev/nvidia-caps/nvidia-cap[{GPU2_CAPS},{GPU3_CAPS}]\n")
    assert doc["gres_conf"] == [
        "NodeName=c51-g002 Name=gpu File=/dev/nvidia[0-1]",
        f"NodeName=c51-g002 Name=gpu File=/dev/nvidia-caps/nvidia-cap[{GPU2_CAPS},{GPU3_CAPS}]"]
    assert doc["slurm_conf"].endswith("Gres=gpu:16")


def inv_two_gpus(name1="NVIDIA A100 80GB PCIe", name2=None):
    return Inventory(gpus=[Gpu(0, 0, "0000:17:00.0", "GPU-a", name1, False, False),
                           Gpu(1, 1, "0000:65:00.0", "GPU-b", name2, False, False)])


def test_render_defaults_to_multiple_files_style_and_refuses_others():
    inv = inv_two_gpus(name2="NVIDIA A100 80GB PCIe")
    assert emit.render_gres(inv, "n1") == emit.render_gres(inv, "n1", "multiple-files") == [
        "NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia[0-1]"]
    with pytest.raises(ValueError, match="bogus"):
        emit.render_gres(inv, "n1", "bogus")


def test_a_gpu_whose_name_is_unknown_is_typed_unknown_beside_typed_lines():
    # an untyped line beside typed ones is fatal for slurmd ("some records have Type=
    # specification while others do not"), so the nameless GPU gets a Type too
    inv = inv_two_gpus(name2=None)
    assert emit.render_gres(inv, "n1", "file") == [
        "NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia0",
        "NodeName=n1 Name=gpu Type=unknown File=/dev/nvidia1"]


def test_gpus_whose_names_are_all_unknown_stay_untyped():
    inv = inv_two_gpus(name1=None, name2=None)
    assert emit.render_gres(inv, "n1", "file") == ["NodeName=n1 Name=gpu File=/dev/nvidia[0-1]"]


def test_render_keeps_the_types_of_the_current_lines_without_precomputed_types(tmp_path):
    from migsync import gresconf
    inv = inv_two_gpus(name2="NVIDIA A100 80GB PCIe")
    lines = gresconf.parse("NodeName=n1 Name=gpu Type=nvidia_a100 File=/dev/nvidia[0-1]\n",
                           "gres.conf").for_node("n1")
    assert emit.render_gres(inv, "n1", "file", current=lines) == [
        "NodeName=n1 Name=gpu Type=nvidia_a100 File=/dev/nvidia[0-1]"]


def test_slurm_line_without_devices_has_no_gres():
    assert emit.render_slurm_line("n1", {}) == "NodeName=n1"
    assert emit.render_slurm_line("n1", {("gpu", 0): "a100", ("gpu", 1): None}) == \
        "NodeName=n1 Gres=gpu:a100:1,gpu:1"


# ---- emit --write: what it refuses to replace, and the file it leaves

def test_write_keeps_the_files_mode_and_creates_new_files_0644(tmp_path):
    new = tmp_path / "new.conf"
    emit.write_gres_conf(str(new), "NodeName=n1 Name=gpu File=/dev/nvidia0\n", "n1")
    assert os.stat(new).st_mode & 0o777 == 0o644
    old = tmp_path / "old.conf"
    old.write_text("NodeName=n1 Name=gpu File=/dev/nvidia1\n")
    old.chmod(0o600)
    backup = emit.write_gres_conf(str(old), "NodeName=n1 Name=gpu File=/dev/nvidia0\n", "n1")
    assert os.stat(old).st_mode & 0o777 == 0o600
    assert old.read_text() == "NodeName=n1 Name=gpu File=/dev/nvidia0\n"
    assert open(backup).read() == "NodeName=n1 Name=gpu File=/dev/nvidia1\n"


@pytest.mark.parametrize("current,why", [
    ("NodeName=n1 Name=gpu File=/dev/nvidia0\nNodeName=n[1-2] Name=gpu File=/dev/nvidia1\n",
     "{p}:2 is for other nodes (NodeName=n[1-2])"),
    ("NodeName=n2 Name=gpu File=/dev/nvidia0\n", "{p}:1 is for other nodes (NodeName=n2)"),
    ("NodeName=n1 Name=mps Count=100\n", "{p}:1 configures Name=mps"),
    ("Include {inc}\n", "{inc}:1 comes from an Include"),
])
def test_write_refuses_to_replace_lines_emit_would_drop(tmp_path, current, why):
    inc = tmp_path / "inc.conf"
    inc.write_text("NodeName=n1 Name=gpu File=/dev/nvidia0\n")
    target = tmp_path / "gres.conf"
    target.write_text(current.format(inc=inc))
    with pytest.raises(Exception) as exc:
        emit.write_gres_conf(str(target), "NodeName=n1 Name=gpu File=/dev/nvidia0\n", "n1")
    assert str(exc.value) == (f"{target}: refusing to replace it: {why.format(p=target, inc=inc)}; "
                              "emit writes one node's gres.conf (use `migsync merge` for a shared one)")


def test_write_refuses_text_that_does_not_parse_naming_the_target(tmp_path):
    target = tmp_path / "gres.conf"
    with pytest.raises(Exception) as exc:
        emit.write_gres_conf(str(target), "NodeName=n1 Name=gpu File=/dev/nvidia[\n", "n1")
    assert str(exc.value) == (f"{target}: refusing to write: the generated gres.conf does not parse "
                              f"({target}:1: File=: unbalanced '[' in hostlist "
                              "(in 'File=/dev/nvidia['))")
    assert not target.exists()


def test_an_untyped_line_beside_a_typed_one_is_typed_too():
    # the admin left gpu0 untyped and typed gpu1: slurmd refuses a node whose gpu lines are
    # partly typed, so emit types gpu0 as well (its default, 'a100'), and the two fold together
    from migsync import gresconf
    inv = inv_two_gpus(name2="NVIDIA A100 80GB PCIe")
    lines = gresconf.parse("NodeName=n1 Name=gpu File=/dev/nvidia0\n"
                           "NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia1\n",
                           "gres.conf").for_node("n1")
    assert emit.render_gres(inv, "n1", "file", current=lines) == [
        "NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia[0-1]"]


def inv_with_an_instance_of_unknown_profile():
    """gpu0 whole; gpu1 with MIG on and two instances: gpu1/gi1/ci0 (3g.40gb, CI cap 148) and
    gpu1/gi2/ci0 (CI cap 157), which procfs has but the backend did not list, so its profile
    is unknown (what the Prolog's procfs-only check sees before the cache knows it)."""
    from migsync.model import MigDevice
    return Inventory(gpus=[Gpu(0, 0, "0000:17:00.0", "GPU-a", "NVIDIA A100 80GB PCIe", False, False),
                           Gpu(1, 1, "0000:65:00.0", "GPU-b", "NVIDIA A100 80GB PCIe", True, True)],
                     migs=[MigDevice(1, 1, 0, "3g.40gb", 147, 148),
                           MigDevice(1, 2, 0, None, 156, 157)],
                     gi_caps={(1, 1): 147, (1, 2): 156},
                     cap_table={147: (1, 1, None), 148: (1, 1, 0), 156: (1, 2, None), 157: (1, 2, 0)})


def test_an_instance_of_unknown_profile_keeps_the_sites_type():
    # nothing can contradict the site's Type for an instance whose profile nobody knows
    from migsync import gresconf
    lines = gresconf.parse("NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia0\n"
                           "NodeName=n1 Name=gpu Type=3g.40gb File=/dev/nvidia-caps/nvidia-cap[148,157]\n",
                           "gres.conf").for_node("n1")
    assert emit.render_gres(inv_with_an_instance_of_unknown_profile(), "n1", "file",
                            current=lines) == [
        "NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia0",
        "NodeName=n1 Name=gpu Type=3g.40gb File=/dev/nvidia-caps/nvidia-cap[148,157]"]


def test_an_unconfigured_instance_of_unknown_profile_gets_its_gpus_short_type():
    # beside typed lines it needs a Type; its GPU's short type ('a100') is a substring of
    # whatever its full autodetect type turns out to be, so it cannot contradict slurmd
    from migsync import gresconf
    lines = gresconf.parse("NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia0\n"
                           "NodeName=n1 Name=gpu Type=3g.40gb File=/dev/nvidia-caps/nvidia-cap148\n",
                           "gres.conf").for_node("n1")
    assert emit.render_gres(inv_with_an_instance_of_unknown_profile(), "n1", "file",
                            current=lines) == [
        "NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia0",
        "NodeName=n1 Name=gpu Type=3g.40gb File=/dev/nvidia-caps/nvidia-cap148",
        "NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia-caps/nvidia-cap157"]
