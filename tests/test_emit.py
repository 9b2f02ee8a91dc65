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


# Written by hand from Slurm's Type rule (lower-case, spaces to '_', cut at the first '-',
# then the short form drops 'nvidia_' and keeps the first word): the whole-GPU default Types.
SHORT_TYPE = {"NVIDIA A100 80GB PCIe": "a100", "NVIDIA H100 80GB HBM3": "h100",
              "NVIDIA A100-SXM4-80GB": "a100"}


def expected_devices(layout, style):
    """What emit must list, derived from the layout alone: (Type, files) per device, in
    Slurm's order (GPU minor, GI, CI); caps by the formula NVIDIA's mig-minors table follows."""
    out = []
    for g in sorted(layout["gpus"], key=lambda g: g["minor"]):
        m = g["minor"]
        if not g["mig"]:
            out.append((SHORT_TYPE[g["name"]], (f"/dev/nvidia{m}",)))
            continue
        for i in sorted(g["instances"], key=lambda i: i["gi"]):
            for c in sorted(i["cis"], key=lambda c: c["ci"]):
                gi, ci = 3 + 135 * m + 9 * i["gi"], 3 + 135 * m + 9 * i["gi"] + 1 + c["ci"]
                files = (f"/dev/nvidia{m}", f"/dev/nvidia-caps/nvidia-cap{gi}",
                         f"/dev/nvidia-caps/nvidia-cap{ci}")
                out.append((c["profile"], files if style == "multiple-files" else files[2:]))
    return out


def emitted_devices(lines):
    """The same list read back from emitted text by the gres.conf parser (not by emit/check)."""
    out = []
    for ln in gresconf.parse("\n".join(lines) + "\n", "gres.conf").for_node("n1"):
        if ln.multiple_files:
            out.append((ln.type, tuple(ln.multiple_files)))
        else:
            out += [(ln.type, (f,)) for f in ln.files]
    return out


@settings(max_examples=150, deadline=None)
@given(layouts(), st.sampled_from(emit.STYLES))
def test_property_emit_lists_every_device_once_with_its_type(layout, style):
    inv = layout_inventory(layout)
    lines = emit.render_gres(inv, "n1", style)
    want = expected_devices(layout, style)
    assert emitted_devices(lines) == want
    # consecutive whole GPUs / CI caps of one Type share one File= line in the file style
    if style == "file":
        runs = sum(1 for i, d in enumerate(want) if i == 0 or want[i - 1][0] != d[0]
                   or ("caps" in want[i - 1][1][0]) != ("caps" in d[1][0]))
        assert len(lines) == runs
    counts = {}
    for t, _ in want:
        counts[t] = counts.get(t, 0) + 1
    gres = ",".join(f"gpu:{t}:{n}" for t, n in counts.items())
    assert emit.render_slurm_line("n1", emit.assign_types(inv)) == (
        f"NodeName=n1 Gres={gres}" if gres else "NodeName=n1")
    # and check, fed what emit wrote, finds nothing (a round trip, on top of the above)
    conf = gresconf.parse("\n".join(lines) + "\n", "gres.conf")
    types = emit.assign_types(inv, conf.for_node("n1"))
    sconf = slurmconf.parse("GresTypes=gpu\n" + emit.render_slurm_line("n1", types) + "\n", "s")
    existing = {f for m in inv.migs for f in m.files} | {g.path for g in inv.gpus}
    res = check(inv, conf.for_node("n1"), sconf.node_gres("n1")[0], exists=existing.__contains__)
    assert [f for f in res.findings if f.id != "mig-no-instances"] == []
