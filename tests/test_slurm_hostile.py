"""Hostile-input cases whose harm is a drain or a failed job, against a real Slurm cluster
(every version in slurm_cluster), run by slurmd itself."""
import os
import time

import pytest

import slurm_cluster
from slurm_cluster import slurm_rt  # noqa: F401  (the version parametrisation)
from test_slurm_hooks import hook_wrapper

why = slurm_cluster.available()
pytestmark = [pytest.mark.slurm] + ([pytest.mark.skip(reason=why)] if why else [])
N = slurm_cluster.NODE


def test_a_cpu_node_without_the_driver_stays_idle_and_runs_jobs(tmp_path, slurm_rt):
    """HealthCheckProgram= and Prolog= are cluster-wide, so a cluster with GPU nodes runs the
    hooks on its CPU nodes too. This node has no Gres= and no gres.conf line, and no NVIDIA
    driver (an empty procfs): it was drained 'no GPU info [discovery] ... the NVIDIA driver is
    not loaded', and the Prolog failed its jobs."""
    root = tmp_path / "cpu-root"
    (root / "proc").mkdir(parents=True)
    (root / "dev").mkdir()
    cfg = tmp_path / "migsync.toml"
    cluster = slurm_cluster.Cluster(tmp_path / "slurm", "", "", interval=5, runtime=slurm_rt)
    cfg.write_text("\n".join([f'root = "{root}"', f'lock_file = "{tmp_path}/migsync.lock"',
                              f'cache_file = "{tmp_path}/state.json"',
                              f'slurm_conf = "{cluster.slurm_conf}"', "deadline = 20.0", ""]))
    cluster.tmp = tmp_path
    cluster.health_check = hook_wrapper(tmp_path, "healthcheck", cfg)
    cluster.prolog = hook_wrapper(tmp_path, "prolog", cfg)
    cluster.write_slurm_conf()
    cluster.start()
    try:
        runs = tmp_path / "healthcheck.env"
        cluster.wait_for(runs.exists, 30, "slurmd never ran the health check")
        end = time.time() + 12  # more than two HealthCheckIntervals
        while time.time() < end:
            assert cluster.state() == "idle", cluster.node_info().get("Reason")
            time.sleep(1)
        marker = tmp_path / "job-ran"
        r = cluster.run(["sbatch", "-o", "/dev/null", "--wrap", f"touch {marker}"],
                        capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        cluster.wait_for(marker.exists, 40, "the job never ran on the CPU node")
        assert cluster.state() in ("idle", "mixed", "allocated", "completing")
        assert cluster.node_info().get("Reason", "") == ""
        log = (tmp_path / "healthcheck.log").read_text()
        assert "driver" not in log and "drained" not in log, log
    finally:
        cluster.stop()
