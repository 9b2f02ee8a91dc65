"""The hooks against a real one-node Slurm cluster (every version in slurm_cluster), run by
slurmd itself.

The node's GPUs are the recorded seed node (procfs tree + fake nvidia-smi). Its device files
are created as regular files in the real /dev for the run (slurmd stats them) and removed
afterwards; the tests skip on a machine that has real /dev/nvidia* files.
"""
import json
import os
import shutil
import subprocess
import time

import pytest

import slurm_cluster
from conftest import node
from slurm_cluster import slurm_rt  # noqa: F401  (the version parametrisation)

why = slurm_cluster.available()
if not why and os.path.exists("/dev/nvidiactl"):
    why = "this machine has a real NVIDIA driver; the fake node's /dev files would clash"
DRIVER_ONLY = ("nvidiactl", "nvidia-uvm")  # the fake never creates these in the real /dev
pytestmark = [pytest.mark.slurm] + ([pytest.mark.skip(reason=why)] if why else [])

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOKS = os.path.join(REPO, "hooks")
N = slurm_cluster.NODE
SEED_GRES = ("NodeName={n} Name=gpu Type=a100 File=/dev/nvidia[0,1]\n"
             "NodeName={n} Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346,355,364,"
             "373,382,391,472,481,490,508,517,526,535]\n").format(n=N)
SEED_SLURM_GRES = "gpu:a100:2,gpu:1g.10gb:14"
GI14 = "proc/driver/nvidia/capabilities/gpu3/mig/gi14"


class FakeNode:
    """The seed node's procfs tree under tmp, its device files in the real /dev."""

    def __init__(self, tmp):
        self.dir = tmp / "gpunode"
        shutil.copytree(node("seed"), self.dir, symlinks=True)
        self.root = self.dir / "root"
        self.created = []
        if not os.path.isdir("/dev/nvidia-caps"):
            os.mkdir("/dev/nvidia-caps")
            self.created.append("/dev/nvidia-caps")
        for dirpath, _, files in os.walk(self.root / "dev"):
            for f in files:
                real = os.path.join("/dev", os.path.relpath(os.path.join(dirpath, f), self.root / "dev"))
                if f not in DRIVER_ONLY and not os.path.exists(real):
                    open(real, "w").close()
                    self.created.append(real)
        shutil.rmtree(self.root / "dev")
        os.symlink("/dev", self.root / "dev")  # migsync --root sees what slurmd sees
        self.saved = tmp / "saved-gi14"

    def lose_instance(self):
        """gpu3/gi14 vanishes (a reboot, a re-partition) while /dev/nvidia-cap535 stays."""
        shutil.move(str(self.root / GI14), str(self.saved))
        shutil.move(str(self.dir / "smi"), str(self.saved) + "-smi")
        shutil.copytree(os.path.join(node("seed-lost"), "smi"), self.dir / "smi")

    def restore_instance(self):
        shutil.move(str(self.saved), str(self.root / GI14))
        shutil.rmtree(self.dir / "smi")
        shutil.move(str(self.saved) + "-smi", str(self.dir / "smi"))

    def cleanup(self):
        for path in reversed(self.created):
            try:
                os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
            except OSError:
                pass


def write_config(tmp, fake, cluster, configless):
    cfg = tmp / "migsync.toml"
    lines = ['backend = "nvidia-smi"', f'nvidia_smi = "{fake.dir}/nvidia-smi"',
             f'root = "{fake.root}"', f'lock_file = "{tmp}/migsync.lock"',
             f'cache_file = "{tmp}/state.json"', f'prom_file = "{tmp}/migsync.prom"',
             "deadline = 20.0", "lock_wait = 5.0"]
    if not configless:
        lines.append(f'slurm_conf = "{cluster.slurm_conf}"')
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def hook_wrapper(tmp, hook, cfg):
    """slurmd runs this with its bare environment; it only adds where migsync.toml is."""
    w = tmp / f"{hook}-wrapper"
    w.write_text(f"#!/bin/sh\nenv > {tmp}/{hook}.env\n"
                 f"MIGSYNC_CONFIG={cfg} exec {HOOKS}/{hook} 2>>{tmp}/{hook}.log\n")
    w.chmod(0o755)
    return str(w)


@pytest.fixture
def make_cluster(tmp_path, slurm_rt):
    made = []

    def make(configless=False, health=True, prolog=False, interval=5):
        fake = FakeNode(tmp_path)
        cluster = slurm_cluster.Cluster(tmp_path / "slurm", SEED_GRES, SEED_SLURM_GRES,
                                        configless=configless, interval=interval,
                                        runtime=slurm_rt)
        cfg = write_config(tmp_path, fake, cluster, configless)
        cluster.health_check = hook_wrapper(tmp_path, "healthcheck", cfg) if health else None
        cluster.prolog = hook_wrapper(tmp_path, "prolog", cfg) if prolog else None
        cluster.write_slurm_conf()
        made.append((cluster, fake))
        cluster.cfg = cfg
        cluster.tmp = tmp_path
        cluster.start()
        return cluster, fake

    yield make
    for cluster, fake in made:
        cluster.stop()
        fake.cleanup()


def hook_runs(cluster):
    try:
        return open(cluster.tmp / "healthcheck.env").read()
    except OSError:
        return ""


def wait_reason(cluster, pred, timeout=30):
    cluster.wait_for(lambda: pred(cluster.node_info().get("Reason", "")), timeout,
                     lambda: f"reason is {cluster.node_info().get('Reason')!r}, state "
                             f"{cluster.state()!r}; hook log: {_log(cluster)}")


def _log(cluster):
    try:
        return open(cluster.tmp / "healthcheck.log").read()[-2000:]
    except OSError:
        return ""


def test_matching_node_stays_idle_across_health_checks(make_cluster):
    cluster, fake = make_cluster()
    prom = cluster.tmp / "migsync.prom"
    cluster.wait_for(prom.exists, 20, "the health check never wrote its metrics")
    first = prom.stat().st_mtime
    end = time.time() + 12  # more than two HealthCheckIntervals
    while time.time() < end:
        assert cluster.state() == "idle", cluster.node_info().get("Reason")
        time.sleep(1)
    assert prom.stat().st_mtime > first, "the health check did not run again"
    assert 'migsync_consistent{node="gpunode1"} 1' in prom.read_text()
    env = hook_runs(cluster)
    assert "SLURMD_NODENAME=gpunode1" in env
    assert "SLURM_CONF" not in env and "\nPATH=" not in "\n" + env  # the bare environment


def test_mismatch_is_drained_by_slurmd_running_the_hook_and_fixed_node_resumes(make_cluster):
    cluster, fake = make_cluster()
    fake.lose_instance()
    wait_reason(cluster, lambda r: r.startswith("migsync:"))
    reason = cluster.node_info()["Reason"]
    assert "stale-cap" in reason and "nvidia-cap535" in reason
    assert cluster.state() == "drained"
    shown = cluster.sinfo_reason_20()
    assert "migsync: stale cap53" in shown  # the key fact fits sinfo -R's 20 characters
    fake.restore_instance()
    cluster.wait_state("idle", timeout=30)
    if cluster.version != "24.11":  # 24.11.5 keeps the old Reason= after a resume (measured)
        assert cluster.node_info().get("Reason", "") == ""


def test_admin_drain_is_never_resumed_and_its_reason_is_kept(make_cluster):
    cluster, fake = make_cluster()
    cluster.scontrol("update", f"nodename={N}", "state=drain", "reason=admin: swapping PSU")
    fake.lose_instance()  # a mismatch must not overwrite the admin's reason
    time.sleep(12)
    assert cluster.node_info()["Reason"] == "admin: swapping PSU"
    fake.restore_instance()  # consistent again: still not resumed
    time.sleep(12)
    assert cluster.state() == "drained"
    assert cluster.node_info()["Reason"] == "admin: swapping PSU"


def test_batch_job_does_not_run_on_a_mismatched_node(make_cluster):
    cluster, fake = make_cluster(health=False, prolog=True)
    cluster.run(["env", f"MIGSYNC_CONFIG={cluster.cfg}", "SLURMD_NODENAME=" + N,
                 os.path.join(HOOKS, "healthcheck"), "--no-drain"], check=False, timeout=60)
    fake.lose_instance()
    marker = cluster.tmp / "job-ran"
    r = cluster.run(["sbatch", "-o", "/dev/null", "--wrap", f"touch {marker}"],
                    capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    job = r.stdout.split()[-1]
    wait_reason(cluster, lambda r: r.startswith("migsync:"))
    time.sleep(3)
    assert not marker.exists(), "the job ran on the mismatched node"
    assert "stale-cap" in cluster.node_info()["Reason"]  # not 'Prolog error'
    q = cluster.run(["squeue", "-h", "-j", job, "-o", "%T %r"],
                    capture_output=True, text=True, timeout=30).stdout
    assert "PENDING" in q


def test_configless_hook_finds_run_slurm_conf_with_bare_environment(make_cluster):
    cluster, fake = make_cluster(configless=True)
    assert os.path.islink(cluster.path("/run/slurm/conf"))
    cluster.wait_for((cluster.tmp / "migsync.prom").exists, 20, "the health check never ran")
    assert cluster.state() == "idle"
    fake.lose_instance()
    wait_reason(cluster, lambda r: r.startswith("migsync:"))
    r = cluster.run([os.path.join(HOOKS, "healthcheck"), "--json", "--no-syslog"],
                    env={"SLURMD_NODENAME": N, "MIGSYNC_CONFIG": str(cluster.cfg)},
                    capture_output=True, text=True, timeout=60)
    doc = json.loads(r.stdout)
    assert doc["files"]["found_by"] == "configless"
    assert doc["files"]["gres_conf"] == "/run/slurm/conf/gres.conf"
    assert doc["action"] == "none" and "same findings" in doc["action_why"]
    fake.restore_instance()
    cluster.wait_state("idle", timeout=30)


def test_prestart_hook_drains_for_missing_device_files_without_blocking(make_cluster):
    cluster, fake = make_cluster(health=False)
    with open(cluster.gres_conf, "a") as fh:
        fh.write(f"NodeName={N} Name=gpu Type=a100 File=/dev/nvidia-caps/nvidia-cap9999\n")
    r = cluster.run([os.path.join(HOOKS, "slurmd-prestart")],
                    env={"SLURMD_NODENAME": N, "MIGSYNC_CONFIG": str(cluster.cfg)},
                    capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "nvidia-cap9999" in r.stderr and "do not exist" in r.stderr
    reason = cluster.node_info()["Reason"]
    assert reason.startswith("migsync: no devfile nvidia-cap9999") and "[missing-file]" in reason
