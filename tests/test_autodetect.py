"""gres.conf AutoDetect as slurmd understands it (issue 8 item 4).

The Slurm plugin directory is faked with empty files named like Slurm's plugins: migsync only
asks whether `gpu_nvml.so` / `gpu_nvidia.so` sit beside `gres_gpu.so`, as slurmd's plugin
loader does. What the real Debian slurmd does with AutoDetect=nvml is in test_slurm_emit.py.
"""
import os

import pytest

from conftest import run_cli, smi_args
from migsync import autodetect, gresconf

NODE = "c51-g002"


@pytest.fixture
def plugins(tmp_path):
    def make(*names):
        d = tmp_path / ("plugins-" + "-".join(names or ("none",)))
        d.mkdir()
        for n in ("gres_gpu.so",) + names:
            (d / n).write_text("")
        return str(d)
    return make


def files(tmp_path, gres, slurm_gres, plugin_dir=None, node=NODE):
    g = tmp_path / "gres.conf"
    g.write_text(gres)
    s = tmp_path / "slurm.conf"
    s.write_text("GresTypes=gpu\n" + (f"PluginDir={plugin_dir}\n" if plugin_dir else "")
                 + f"NodeName={node} CPUs=64 Gres={slurm_gres}\n")
    return g, s


def check(name, g, s):
    r = run_cli("check", "--json", *smi_args(name, g, s, NODE))
    return r.code, [(f["id"], f["message"]) for f in r.json()["findings"]]


def test_setting_node_line_overrides_the_global_line():
    conf = gresconf.parse("AutoDetect=off\nNodeName=n[1-2] AutoDetect=nvml\n", "gres.conf")
    assert autodetect.setting_for(conf.lines, "n1").value == "nvml"
    assert autodetect.setting_for(conf.lines, "n1").source == "gres.conf:2"
    assert autodetect.setting_for(conf.lines, "n3").value == "off"
    conf = gresconf.parse("NodeName=n1 AutoDetect=off\nAutoDetect=nvml\n", "gres.conf")
    assert autodetect.setting_for(conf.lines, "n1").value == "off"
    assert autodetect.setting_for(conf.lines, "n2").value == "nvml"


def test_nvml_autodetect_configures_every_device_and_counts_by_type_substring(tmp_path, plugins):
    g, s = files(tmp_path, "AutoDetect=nvml\n", "gpu:a100:2,gpu:1g.10gb:14",
                 plugins("gpu_nvml.so"))
    code, found = check("seed", g, s)
    assert (code, found) == (0, [])  # not 16 'unconfigured-device' findings


def test_nvml_autodetect_count_mismatch_names_what_slurmd_would_register(tmp_path, plugins):
    g, s = files(tmp_path, "AutoDetect=nvml\n", "gpu:a100:2,gpu:1g.10gb:14",
                 plugins("gpu_nvml.so"))
    code, found = check("seed-lost", g, s)  # one 1g.10gb instance is gone
    assert code == 1 and [i for i, _ in found] == ["gres-count-mismatch"]
    msg = found[0][1]
    assert "Gres=gpu:1g.10gb:14" in msg and "registers 13" in msg
    assert "nvidia_a100_80gb_pcie_1g.10gb" in msg


def test_nvml_autodetect_full_type_names_and_untyped_counts(tmp_path, plugins):
    d = plugins("gpu_nvml.so")
    g, s = files(tmp_path, "AutoDetect=nvml\n",
                 "gpu:nvidia_a100_80gb_pcie_1g.10gb:14,gpu:nvidia_a100_80gb_pcie:2", d)
    assert check("seed", g, s) == (0, [])
    g, s = files(tmp_path, "AutoDetect=nvml\n", "gpu:16", d)
    assert check("seed", g, s) == (0, [])
    g, s = files(tmp_path, "AutoDetect=nvml\n", "gpu:1g.10gb:14", d)
    code, found = check("seed", g, s)  # the two whole A100s match no Gres= type
    assert code == 1 and "registers 2 gpu of type nvidia_a100_80gb_pcie" in found[0][1]


def test_nvml_autodetect_on_h200_longest_matching_type_wins(tmp_path, plugins):
    d = plugins("gpu_nvml.so")
    g, s = files(tmp_path, "NodeName=h200-01 AutoDetect=nvml\n",
                 "gpu:1c.3g.71gb:3,gpu:2g.35gb:1,gpu:1g.18gb:2,gpu:h200:1", d, node="h200-01")
    r = run_cli("check", *smi_args("h200-mixed", g, s, "h200-01"))
    assert r.code == 0, r.out
    # 'h200' is a substring of every record's type (nvidia_h200_2g.35gb, ...): without the
    # profile types it takes the 3 MIG devices they would have had, plus the whole GPU
    g, s = files(tmp_path, "NodeName=h200-01 AutoDetect=nvml\n", "gpu:1c.3g.71gb:3,gpu:h200:1",
                 d, node="h200-01")
    r = run_cli("check", "--json", *smi_args("h200-mixed", g, s, "h200-01"))
    assert [f["message"].split(" but ")[1] for f in r.json()["findings"]] == [
        "AutoDetect=nvml registers 4 device(s) whose type contains 'h200' (e.g. nvidia_h200_2g.35gb)"]


def test_without_the_gpu_nvml_plugin_autodetect_nvml_is_itself_a_finding(tmp_path, plugins):
    d = plugins()  # Debian's and Ubuntu's Slurm: gres_gpu.so but no gpu_nvml.so
    g, s = files(tmp_path, "AutoDetect=nvml\n", "gpu:a100:2,gpu:1g.10gb:14", d)
    code, found = check("seed", g, s)
    assert code == 1 and found[0][0] == "autodetect-unavailable"
    assert found[0][1].startswith("gres.conf:1: AutoDetect=nvml") and d in found[0][1]
    assert sum(1 for i, _ in found if i == "unconfigured-device") == 16  # slurmd registers none


def test_autodetect_nvidia_sees_whole_gpus_only(tmp_path, plugins):
    g, s = files(tmp_path, "AutoDetect=nvidia\n", "gpu:a100:4", plugins("gpu_nvidia.so"))
    code, found = check("seed", g, s)
    ids = [i for i, _ in found]
    assert code == 1 and ids[:2] == ["autodetect-no-mig", "autodetect-no-mig"]
    assert "gpu2" in found[0][1] and "gpu3" in found[1][1]
    # the whole GPUs are registered (Gres=gpu:a100:4 matches); the 14 MIG devices are not
    assert ids[2:] == ["unconfigured-device"] * 14
    g, s = files(tmp_path, "AutoDetect=nvidia\n", "gpu:a100:4", plugins())  # Slurm < 24.11
    code, found = check("seed", g, s)
    assert found[0][0] == "autodetect-unavailable" and "gpu_nvidia" in found[0][1]


@pytest.mark.parametrize("value", ["off", "rsmi", "oneapi"])
def test_off_and_other_vendors_leave_the_gres_conf_lines_alone(tmp_path, plugins, value):
    g, s = files(tmp_path, f"AutoDetect={value}\n", "gpu:a100:2,gpu:1g.10gb:14",
                 plugins("gpu_nvml.so"))
    code, found = check("seed", g, s)
    assert code == 1 and sum(1 for i, _ in found if i == "unconfigured-device") == 16
    assert not [i for i, _ in found if i.startswith("autodetect")]


def test_per_node_off_overrides_a_global_nvml(tmp_path, plugins):
    g, s = files(tmp_path, f"AutoDetect=nvml\nNodeName={NODE} AutoDetect=off\n",
                 "gpu:a100:2,gpu:1g.10gb:14", plugins("gpu_nvml.so"))
    code, found = check("seed", g, s)
    assert code == 1 and "unconfigured-device" in [i for i, _ in found]


def test_explicit_stale_lines_are_still_checked_under_autodetect(tmp_path, plugins):
    g, s = files(tmp_path, f"AutoDetect=nvml\nNodeName={NODE} Name=gpu Type=1g.10gb "
                           "File=/dev/nvidia-caps/nvidia-cap535\n",
                 "gpu:a100:2,gpu:1g.10gb:13", plugins("gpu_nvml.so"))
    code, found = check("seed-lost", g, s)
    assert code == 1 and [i for i, _ in found] == ["stale-cap"]


def test_plugin_dir_is_the_first_pluginDir_entry_holding_slurm_plugins(tmp_path, plugins):
    d = plugins("gpu_nvml.so")
    assert autodetect.find_plugin_dir(f"/nonexistent:{d}") == d
    assert autodetect.find_plugin_dir(None, root=str(tmp_path)) is None  # a captured node
    assert autodetect.has_plugin(d, "nvml") is True and autodetect.has_plugin(d, "nvidia") is False


def test_the_installed_slurm_plugin_directory_is_found_like_slurmd_does():
    found = autodetect.find_plugin_dir(None)
    if found is None:
        pytest.skip("no Slurm plugins installed here")
    assert os.path.isfile(os.path.join(found, "gres_gpu.so"))


def test_emit_over_an_autodetect_file_says_it_lists_the_devices_instead(tmp_path, plugins):
    g, s = files(tmp_path, "AutoDetect=nvml\n", "gpu:a100:2,gpu:1g.10gb:14", plugins("gpu_nvml.so"))
    r = run_cli("emit", *smi_args("seed", g, s, NODE))
    assert r.code == 0 and "gres.conf:1 had AutoDetect=nvml" in r.out
    conf = gresconf.parse(r.out, "emitted")
    assert not [ln for ln in conf.lines if ln.autodetect]
    assert sum(ln.device_count for ln in conf.for_node(NODE)) == 16
