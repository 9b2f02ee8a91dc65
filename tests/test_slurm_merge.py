"""A merged cluster gres.conf and slurm.conf include, served by a real slurmctld in configless
mode, make the node register exactly its devices."""
import os
import sys

import pytest

import slurm_cluster
from conftest import node, run_cli
from slurm_cluster import slurm_rt  # noqa: F401  (the version parametrisation)
from test_slurm_hooks import FakeNode, why

pytestmark = [pytest.mark.slurm] + ([pytest.mark.skip(reason=why)] if why else [])
N = slurm_cluster.NODE


def test_merged_file_in_configless_mode_registers_exactly_the_nodes_devices(tmp_path, slurm_rt):
    fake = FakeNode(tmp_path)
    empty = tmp_path / "empty.gres.conf"
    empty.write_text("")
    mine = run_cli("report", "--backend", "nvidia-smi", "--nvidia-smi", fake.dir / "nvidia-smi",
                   "--root", fake.root, "--gres-conf", empty, "--node", N)
    assert mine.code == 0, mine.err
    d = node("h200-mixed")  # another node of the cluster, in the same file
    other = run_cli("report", "--no-hardware", "--backend", "nvidia-smi", "--nvidia-smi",
                    os.path.join(d, "nvidia-smi"), "--root", os.path.join(d, "root"),
                    "--gres-conf", empty, "--node", "h200-01")
    reports = tmp_path / "reports.txt"
    reports.write_text(f"{N}: {mine.out}h200-01: {other.out}")
    etc = tmp_path / "slurm" / "etc"
    etc.mkdir(parents=True)
    include = etc / "gpu-nodes.conf"
    r = run_cli("merge", reports, "--style", "multiple-files", "--write", etc / "gres.conf.merged",
                "--slurm-include", include)
    assert r.code == 0, r.err
    inc = include.read_text()
    assert f"NodeName={N} CPUs=" in inc and "Gres=gpu:a100:2,gpu:1g.10gb:14" in inc
    # Production nodes resolve by name; this one is reached at 127.0.0.1.
    include.write_text(inc.replace(f"NodeName={N} ", f"NodeName={N} NodeAddr=127.0.0.1 "))
    # relative: slurmd must read the copy configless shipped into its conf-cache
    cluster = slurm_cluster.Cluster(tmp_path / "slurm", (etc / "gres.conf.merged").read_text(),
                                    "", configless=True, node_include=include.name,
                                    runtime=slurm_rt)
    try:
        cluster.start()  # exactly 'idle': registered >= configured, not INVAL
        info = cluster.node_info()
        assert info["Gres"] == "gpu:a100:2,gpu:1g.10gb:14"
        link = cluster.path("/run/slurm/conf")
        assert os.path.realpath(os.path.join(link, "gres.conf")).startswith(str(tmp_path))
        cached = os.path.join(os.path.realpath(link), include.name)
        assert os.path.exists(cached), "configless did not ship the slurm.conf include"
        log = cluster.log("slurmd")
        assert "Gres Name=gpu Type=1g.10gb Count=1" in log and "h200" not in log.split("Gres Name")[1][:200]
        # and the node's own check, with only what configless gave it, is clean
        # (run where the node's programs run: a chroot version's /run is the chroot's)
        c = cluster.run([sys.executable, "-m", "migsync", "check", "--backend", "nvidia-smi",
                         "--nvidia-smi", str(fake.dir / "nvidia-smi"), "--root", str(fake.root),
                         "--node", N], env=dict(os.environ, PYTHONPATH=slurm_cluster.REPO),
                        capture_output=True, text=True, timeout=120)
        assert c.returncode == 0, c.stdout + c.stderr
        assert "found via configless" in c.stdout
    finally:
        cluster.stop()
        fake.cleanup()
