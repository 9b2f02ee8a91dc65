import os

import pytest
from hypothesis import given, settings, strategies as st

from conftest import CONF, run_cli, smi_args
from fakenode import LAYOUTS, ci_cap, gi_cap
from migsync import emit, gresconf, slurmconf
from migsync.check import check
from migsync.model import Gpu, Inventory, MigDevice

NODE_OF = {"seed": "c51-g002", "seed-lost": "c51-g002", "minor-not-index": "g-minor",
           "seven-g": "g-7g", "h200-mixed": "h200-01", "mig-empty": "g-empty", "big": "g-big"}


@pytest.mark.parametrize("style", ["multiple-files", "file"])
@pytest.mark.parametrize("name", sorted(NODE_OF))
def test_emitted_file_and_slurm_lines_fed_back_to_check_give_exit_0(tmp_path, name, style):
    """stdout is the gres.conf as it is (no editing), --slurm-lines the slurm.conf part."""
    node_name = NODE_OF[name]
    args = smi_args(name, os.path.join(CONF, "mig-empty.gres.conf"), nodename=node_name)
    r = run_cli("emit", "--style", style, *args)
    assert r.code == 0, r.err
    (tmp_path / "gres.conf").write_text(r.out)
    r = run_cli("emit", "--style", style, "--slurm-lines", *args)
    assert r.out.startswith("GresTypes=gpu\nNodeName=" + node_name)
    (tmp_path / "slurm.conf").write_text(r.out)
    r = run_cli("check", *smi_args(name, tmp_path / "gres.conf", tmp_path / "slurm.conf", node_name))
    if name == "mig-empty":
        assert r.code == 1 and "mig-no-instances" in r.out  # nothing to emit can fix that
    else:
        assert r.code == 0, r.out


def test_file_style_folds_ci_caps_and_whole_gpus():
    r = run_cli("emit", "--style", "file", *smi_args("seed", os.path.join(CONF, "mig-empty.gres.conf"),
                                                     nodename="c51-g002"))
    assert "NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia[0-1]" in r.out
    assert ("Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346,355,364,373,382,391,472,481,"
            "490,508,517,526,535]") in r.out
    assert "NodeName=c51-g002 Gres=gpu:a100:2,gpu:1g.10gb:14" in r.out


def test_multiple_files_style_is_what_nvml_autodetect_builds():
    r = run_cli("emit", *smi_args("seven-g", os.path.join(CONF, "mig-empty.gres.conf"), nodename="g-7g"))
    assert ("NodeName=g-7g Name=gpu Type=7g.80gb MultipleFiles=/dev/nvidia0,"
            "/dev/nvidia-caps/nvidia-cap3,/dev/nvidia-caps/nvidia-cap4") in r.out


def test_existing_type_names_are_kept_where_they_fit():
    r = run_cli("emit", *smi_args("h200-mixed", os.path.join(CONF, "h200-autodetect-style.gres.conf"),
                                  nodename="h200-01"))
    assert r.out.count("Type=nvidia_h200_1c.3g.71gb") == 3
    assert "Type=h200 File=/dev/nvidia1" in r.out
    assert "gpu:nvidia_h200_1c.3g.71gb:3" in r.out


def test_a_type_that_no_longer_fits_is_replaced():
    lines = gresconf.parse("NodeName=g-7g Name=gpu Type=3g.40gb File=/dev/nvidia-caps/nvidia-cap4\n"
                           "NodeName=g-7g Name=gpu Type=h100 File=/dev/nvidia0\n", "g").lines
    inv = layout_inventory(LAYOUTS["seven-g"]())
    types = emit.assign_types(inv, lines)
    assert list(types.values()) == ["7g.80gb"]  # not '3g.40gb', and never the whole-GPU 'h100'


def layout_inventory(layout):
    inv = Inventory(backend="layout")
    for g in layout["gpus"]:
        inv.gpus.append(Gpu(g["minor"], g["index"], g["bus"], g["uuid"], g["name"], g["mig"],
                            g.get("pending", g["mig"])))
        for i in g.get("instances", []):
            inv.gi_caps[(g["minor"], i["gi"])] = gi_cap(g["minor"], i["gi"])
            for c in i["cis"]:
                inv.migs.append(MigDevice(g["minor"], i["gi"], c["ci"], c["profile"],
                                          gi_cap(g["minor"], i["gi"]), ci_cap(g["minor"], i["gi"], c["ci"])))
    for m in range(32):
        for gi in range(15):
            inv.cap_table[gi_cap(m, gi)] = (m, gi, None)
            for ci in range(8):
                inv.cap_table[ci_cap(m, gi, ci)] = (m, gi, ci)
    return inv


PROFILES = ["1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb",
            "1c.3g.40gb", "2c.3g.40gb"]


@st.composite
def layouts(draw):
    n = draw(st.integers(1, 8))
    minors = draw(st.permutations(list(range(n))))
    gpus = []
    for index in range(n):
        minor = minors[index]
        mig = draw(st.booleans())
        g = {"index": index, "minor": minor, "bus": f"0000:{index + 16:02x}:00.0",
             "uuid": f"GPU-{minor}", "name": draw(st.sampled_from(
                 ["NVIDIA A100 80GB PCIe", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"])),
             "mig": mig, "instances": []}
        if mig:
            gis = draw(st.lists(st.integers(0, 14), unique=True, max_size=7))
            for gi in gis:
                cis = draw(st.lists(st.integers(0, 7), unique=True, min_size=1, max_size=3))
                g["instances"].append({"gi": gi, "cis": [
                    {"ci": ci, "profile": draw(st.sampled_from(PROFILES))} for ci in cis]})
        gpus.append(g)
    return {"gpus": gpus}


@settings(max_examples=150, deadline=None)
@given(layouts(), st.sampled_from(emit.STYLES))
def test_property_emit_then_check_is_clean(layout, style):
    inv = layout_inventory(layout)
    lines = emit.render_gres(inv, "n1", style)
    conf = gresconf.parse("\n".join(lines) + "\n", "gres.conf")
    types = emit.assign_types(inv, conf.for_node("n1"))
    sconf = slurmconf.parse("GresTypes=gpu\n" + emit.render_slurm_line("n1", types) + "\n", "s")
    existing = {f for m in inv.migs for f in m.files} | {g.path for g in inv.gpus}
    specs = sconf.node_gres("n1")[0]
    res = check(inv, conf.for_node("n1"), specs, exists=existing.__contains__)
    allowed = {"mig-no-instances"}
    assert [f for f in res.findings if f.id not in allowed] == []
