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
