"""When nvidia-smi and procfs disagree, discovery stops with exit 3 and one line that names the
first disagreement and how many more there are (a node is never judged on partial data,
issue 12). Recorded node sxm-mixed (nvidia-smi index 2 is gpu6, whose GIs 9 and 10 hold one
1g.10gb CI each); its `nvidia-smi mig -lci` is edited to leave instances out. Expected texts
written by hand."""
import shutil

import pytest

from conftest import node, run_cli


@pytest.mark.parametrize("left_out,want", [
    (["|   2     10 "], "nvidia-smi and procfs disagree: gpu6/gi10/ci0 exists in procfs but "
                        "nvidia-smi does not list it"),
    (["|   2      9 ", "|   2     10 "],
     "nvidia-smi and procfs disagree: gpu6/gi9/ci0 exists in procfs but nvidia-smi does not "
     "list it (+1 more)"),
])
def test_disagreement_names_the_first_and_counts_the_rest(tmp_path, left_out, want):
    d = tmp_path / "n"
    shutil.copytree(node("sxm-mixed"), d, symlinks=True)
    lci = d / "smi" / "lci.txt"
    lci.write_text("".join(ln for ln in lci.read_text().splitlines(True)
                           if not ln.startswith(tuple(left_out))))
    (tmp_path / "g.conf").write_text("Name=gpu File=/dev/nvidia0\n")
    r = run_cli("check", "--root", d / "root", "--gres-conf", tmp_path / "g.conf", "--node",
                "g-sxm", "--backend", "nvidia-smi", "--nvidia-smi", d / "nvidia-smi")
    assert r.code == 3
    assert r.err.strip().endswith(want), r.err
    assert len(r.err.strip().splitlines()) == 1


def test_two_gpus_with_one_device_minor_stop_discovery(tmp_path):
    """A backend that reports one minor twice cannot be keyed on minors: exit 3, named."""
    import json
    import os

    import nvml_fake
    layout = json.load(open(os.path.join(node("seed"), "layout.json")))
    layout["gpus"][1]["minor"] = 0  # gpu index 1 claims gpu0's /dev/nvidia0
    (tmp_path / "layout.json").write_text(json.dumps(layout))
    fake = nvml_fake.make(str(tmp_path / "layout.json"))
    (tmp_path / "g.conf").write_text("Name=gpu File=/dev/nvidia0\n")
    r = run_cli("check", "--backend", "nvml", "--root", os.path.join(node("seed"), "root"),
                "--gres-conf", tmp_path / "g.conf", "--node", "c51-g002", nvml=fake)
    assert r.code == 3
    assert r.err.strip().endswith("nvml reports two GPUs with device minor 0"), r.err


@pytest.mark.parametrize("edit,want", [
    # gpu0 and gpu1 swap bus ids in the backend only: each minor names the other card
    ({0: {"bus": "0000:65:00.0"}, 1: {"bus": "0000:17:00.0"}},
     "nvml and procfs disagree: nvml reports GPU 0000:65:00.0 as device minor 0 but procfs "
     "has 0000:17:00.0 there (+1 more)"),
    # a bus id procfs does not list at all, on a minor procfs has
    ({1: {"bus": "0000:66:00.0"}},
     "nvml and procfs disagree: nvml reports GPU 0000:66:00.0 as device minor 1 but procfs "
     "has 0000:65:00.0 there"),
    # procfs's gpu0 reported under a minor procfs has no GPU for
    ({0: {"minor": 7}},
     "nvml and procfs disagree: nvml reports GPU 0000:17:00.0 as device minor 7 but procfs "
     "has no GPU with that minor (+1 more)"),
])
def test_backend_minor_and_bus_id_that_procfs_contradicts_stop_discovery(tmp_path, edit, want):
    """The backend's minor and bus id must name the GPU procfs has under that minor: if they
    do not, one source is wrong, and a verdict keyed on the minor (which /dev/nvidiaN a gres.conf
    line means) could drain a good node. Exit 3 (discovery failed, issue 12), never a mismatch.
    Node seed (procfs: minor 0 = 0000:17:00.0, 1 = 0000:65:00.0); expected texts by hand."""
    import json
    import os

    import nvml_fake
    layout = json.load(open(os.path.join(node("seed"), "layout.json")))
    for i, fields in edit.items():
        layout["gpus"][i].update(fields)
    (tmp_path / "layout.json").write_text(json.dumps(layout))
    fake = nvml_fake.make(str(tmp_path / "layout.json"))
    (tmp_path / "g.conf").write_text("Name=gpu File=/dev/nvidia0\n")
    r = run_cli("check", "--backend", "nvml", "--root", os.path.join(node("seed"), "root"),
                "--gres-conf", tmp_path / "g.conf", "--node", "c51-g002", nvml=fake)
    assert r.code == 3, (r.code, r.out, r.err)
    assert r.err.strip().endswith(want), r.err
    assert len(r.err.strip().splitlines()) == 1
