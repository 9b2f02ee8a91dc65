"""Differential test: migsync's per-type GRES counts for a node equal what the real slurmd registers.

Oracle: the real slurmd of every version in slurm_cluster (22.05 on the host, 24.11 and 26.05
in Debian chroots). `slurmd -G` prints the GRES it would register after reading
slurm.conf and gres.conf; slurm.conf is given exactly migsync's counts, so slurmd agrees only
if it neither finds more ("more configured than expected") nor fewer. A sample is also
registered with a live slurmctld, where fewer GRES than configured makes the node INVAL.
"""
import glob
import os
import re
import subprocess

import pytest

import slurm_cluster
from slurm_cluster import slurm_rt  # noqa: F401  (the version parametrisation)
from migsync import gresconf
from migsync.check import registered_counts
from migsync.errors import ConfigError

pytestmark = pytest.mark.slurm
why = slurm_cluster.available()
if why:
    pytestmark = [pytest.mark.slurm, pytest.mark.skip(reason=why)]

CORPUS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "data", "gres-corpus", "*.conf")))
NODE = slurm_cluster.NODE
DEVICES = ["nvidia0", "nvidia1", "nvidia2", "nvidia3"] + [
    f"nvidia-caps/nvidia-cap{c}" for c in (336, 337, 345, 346, 355, 364, 373, 382, 391, 471, 472,
                                           481, 490, 508, 517, 526, 535)]


@pytest.fixture
def devdir(tmp_path):
    d = tmp_path / "dev"
    for name in DEVICES:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("")
    return d


def migsync_counts(path):
    return registered_counts(gresconf.load(path, NODE).for_node(NODE))  # as check reads it


def gres_spec(counts):
    return ",".join(f"gpu:{t.replace('#', chr(92) + '#')}:{n}" if t else f"gpu:{n}"
                    for t, n in counts.items())


def slurmd_g(cluster):
    r = cluster.slurmd_g()
    out = r.stdout + r.stderr
    counts = {}
    for m in re.finditer(r"Gres Name=(\S+) Type=(\S+) Count=(\d+)", out):
        if m.group(1) != "gpu":
            continue  # slurmd -G lists Name=GPU, but slurmctld registers none of it
        t = None if m.group(2) == "(null)" else m.group(2).lower()
        counts[t] = counts.get(t, 0) + int(m.group(3))
    return out, counts


def materialise(src, devdir, dst):
    text = open(src).read().replace("@D@", str(devdir))
    with open(dst, "w") as fh:
        fh.write(text)
    return dst


@pytest.mark.parametrize("path", CORPUS, ids=[os.path.basename(p) for p in CORPUS])
def test_counts_equal_slurmd_and_rejections_agree(tmp_path, devdir, path, slurm_rt):
    base = tmp_path / "c"
    cluster = slurm_cluster.Cluster(base, "", "", runtime=slurm_rt)
    conf = materialise(path, devdir, cluster.gres_conf)
    try:
        mine = migsync_counts(conf)
    except ConfigError as exc:
        mine, err = None, exc
    cluster.write_slurm_conf(gres_spec(mine) if mine else "gpu:1")
    try:
        out, theirs = slurmd_g(cluster)
    finally:
        cluster.stop()  # 24.11+ needs munged for slurmd -G
    if mine is None:
        assert "fatal" in out, f"migsync rejected ({err}) but slurmd accepted:\n{out}"
        assert os.path.basename(path).startswith("bad-")
        return
    assert "fatal" not in out and "Parse error" not in out, out
    assert not re.search(r"for GRES gpu\S* has \d+ more configured than expected", out), out
    assert theirs == mine, out
    assert not os.path.basename(path).startswith("bad-")


@pytest.mark.parametrize("name", ["03-mixed-case.conf", "10-multiplefiles.conf", "16-many-caps.conf"])
def test_live_registration_matches_migsync_counts(tmp_path, devdir, name, slurm_rt):
    path = next(p for p in CORPUS if p.endswith(name))
    cluster = slurm_cluster.Cluster(tmp_path / "c", "", "", runtime=slurm_rt)
    conf = materialise(path, devdir, cluster.gres_conf)
    mine = migsync_counts(conf)
    cluster.write_slurm_conf(gres_spec(mine))
    try:
        cluster.start()  # waits for exactly 'idle': registered >= configured for every type
        first = next(iter(mine))
        bumped = dict(mine)
        bumped[first] += 1
        cluster.stop()
        cluster.write_slurm_conf(gres_spec(bumped))
        cluster.start(wait_idle=False)
        cluster.wait_for(lambda: "count reported lower than configured"
                         in cluster.node_info().get("Reason", ""), 30,
                         "slurmctld did not notice one GRES too many")
        reason = cluster.node_info()["Reason"]
        total = sum(mine.values())  # slurmctld's reason counts all gpus, not one type
        assert f"({total} < {total + 1})" in reason
    finally:
        cluster.stop()
