"""Differential test: migsync reads every corpus gres.conf record-for-record like the real slurmd.

Oracle: the real `slurmd -G` of every version in slurm_cluster (22.05 on the host, 24.11 and
26.05 in Debian chroots). Each case tests/data/gres-corpus/NAME.conf carries, in `#@` comment
lines slurmd ignores, the node's slurm.conf `Gres=` (and `GresTypes=`, extra device files).
`#@ Capped=yes` marks a case that names more devices than its Gres= on purpose (slurmd warns
and ignores the extra). NAME.slurmd.json holds what each slurmd did with it, RECORDED from the real slurmd
(MIGSYNC_RECORD_CORPUS=1 tests/run -k differential rewrites it), never written by hand:
the verdict (accept, or reject with slurmd's fatal line) and the gpu records in slurmd's
order. The test re-runs slurmd and asserts it still does exactly what was recorded, then
asserts migsync agrees with the recording:
  - reject: migsync exits 2 (ConfigError) or reports slurmd-fatal;
  - accept: no slurmd-fatal, and gresconf.slurmd_order gives the same records (type, count,
    files) in the same order. `slurmd -G` prints only records with device files, so
    file-less records are compared by the verdict alone.
A sample is also registered with a live slurmctld, where fewer GRES than configured makes the
node INVAL.
"""
import glob
import json
import os
import re

import pytest

import slurm_cluster
from slurm_cluster import slurm_rt  # noqa: F401  (the version parametrisation)
from conftest import corpus_headers, corpus_slurm_lines, write_corpus_texts
from migsync import gresconf, slurmconf
from migsync.check import registered_counts
from migsync.errors import ConfigError

pytestmark = pytest.mark.slurm
why = slurm_cluster.available()
if why:
    pytestmark = [pytest.mark.slurm, pytest.mark.skip(reason=why)]

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = sorted(glob.glob(os.path.join(HERE, "data", "gres-corpus", "*.conf")))
NODE = slurm_cluster.NODE
RECORD = os.environ.get("MIGSYNC_RECORD_CORPUS") == "1"
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


def materialise(src, devdir, dst):
    with open(src, encoding="utf-8", newline="") as fh:
        text = fh.read()
    for extra in filter(None, corpus_headers(text).get("Files", "").split(",")):
        (devdir / extra).write_text("")
    etc = os.path.dirname(str(dst))
    write_corpus_texts(text, etc, str(devdir))
    with open(dst, "w", encoding="utf-8", newline="") as fh:
        fh.write(text.replace("@D@", str(devdir)).replace("@E@", etc))
    return text


# ---- reading slurmd's answer (independent of migsync: a small bracket expander of its own) ---

def _expand(files):
    """Expand slurmd's printed File= (`/d/n[0-1]`, `/d/a,/d/b`) in the written order."""
    out = []
    for term in re.findall(r"[^,\s\[]*(?:\[[^\]]*\][^,\s\[]*)*", files):
        if not term:
            continue
        m = re.match(r"^(.*?)\[([^\]]*)\](.*)$", term)
        if not m:
            out.append(term)
            continue
        for part in m.group(2).split(","):
            lo, _, hi = part.partition("-")
            for v in range(int(lo), int(hi or lo) + 1):
                out.extend(_expand(f"{m.group(1)}{str(v).zfill(len(lo) if lo.startswith('0') else 0)}"
                                   f"{m.group(3)}"))
    return out


# File= may hold blanks (a quoted File="a b"); it ends at " (null)" or the next " Key="
RECORD_RE = re.compile(r"Gres Name=(\S+) Type=(.*?) Count=(\d+) Index=\S+ ID=\S+ "
                       r"File=(.*?)(?= \(null\)| [A-Z][A-Za-z]*=|$)", re.M)


def slurmd_says(cluster, devdir):
    """(verdict, fatal line, gpu records [type, count, files]) from `slurmd -G`."""
    r = cluster.slurmd_g()
    out = (r.stdout + r.stderr).replace(str(devdir), "@D@").replace(cluster.base, "@C@")
    fatal = [re.sub(r"^.*?fatal: ", "", ln) for ln in out.splitlines() if "fatal:" in ln]
    if r.returncode != 0 or fatal:
        return {"verdict": "reject", "fatal": fatal[0] if fatal else f"exit {r.returncode}",
                "records": []}, out
    records = []
    for m in RECORD_RE.finditer(out):
        if m.group(1) != "gpu":
            continue  # slurmd -G lists Name=GPU too, but slurmctld registers none of it
        gtype = None if m.group(2) == "(null)" else m.group(2)
        count, files = int(m.group(3)), ([] if m.group(4) == "(null)" else _expand(m.group(4)))
        if files and count == len(files) and count > 1:  # one File= record of n devices
            records.extend([gtype, 1, [f]] for f in files)
        else:
            records.append([gtype, count, files])
    return {"verdict": "accept", "fatal": None, "records": records}, out


# ---- migsync's answer --------------------------------------------------------------------

def migsync_says(conf_path, slurm_conf_path, version):
    """The same shape from migsync alone, reading both files as check does: slurm.conf (the
    node's Gres=, its GresTypes), gres.conf, slurmd-fatal, slurmd_order."""
    try:
        sconf = slurmconf.load(slurm_conf_path)
        got = sconf.node_gres(NODE)
        specs = got[0] if got else []
        conf = gresconf.load(conf_path, NODE, version, sconf.gres_types)
        conf.for_node(NODE)  # raises for a node slurmd refuses outright
    except ConfigError as exc:
        return {"verdict": "reject", "why": f"exit 2: {exc}", "records": []}
    fatal = conf.fatal_for(NODE)
    if fatal:
        return {"verdict": "reject", "why": f"slurmd-fatal: {fatal[0][1]}", "records": []}
    records = [[r.type, r.count, list(r.files)]
               for r in gresconf.slurmd_order(conf, NODE, specs) if r.files]
    return {"verdict": "accept", "why": None, "records": records}


def dump_recording(recorded):
    """JSON, one version per block and one record per line (diffs stay readable)."""
    blocks = []
    for version, rec in sorted(recorded.items()):
        head = {k: rec[k] for k in ("slurmd", "verdict", "fatal")}
        recs = ",\n   ".join(json.dumps(r) for r in rec["records"])
        blocks.append(f' {json.dumps(version)}: {json.dumps(head)[:-1]}, "records": [' +
                      (f"\n   {recs}]" if recs else "]") + "}")
    return "{\n" + ",\n".join(blocks) + "\n}\n"


def recording_path(case):
    return case[:-len(".conf")] + ".slurmd.json"


def cluster_for(tmp_path, case, devdir, rt):
    cluster = slurm_cluster.Cluster(tmp_path / "c", "", "", runtime=rt)
    text = materialise(case, devdir, cluster.gres_conf)
    h = corpus_headers(text)
    cluster.extra_conf = "\n".join(corpus_slurm_lines(text))  # before the node's line
    cluster.write_slurm_conf(h.get("Gres", "gpu:1"))
    if "GresTypes" in h:
        conf = open(cluster.slurm_conf).read().replace("GresTypes=gpu\n",
                                                        f"GresTypes={h['GresTypes']}\n")
        open(cluster.slurm_conf, "w").write(conf)
    return cluster, text


@pytest.mark.parametrize("case", CORPUS, ids=[os.path.basename(p) for p in CORPUS])
def test_migsync_reads_each_case_like_the_real_slurmd(tmp_path, devdir, case, slurm_rt):
    cluster, text = cluster_for(tmp_path, case, devdir, slurm_rt)
    try:
        theirs, log = slurmd_says(cluster, devdir)
    finally:
        cluster.stop()  # 24.11+ needs munged for slurmd -G
    version = slurm_rt.version
    path = recording_path(case)
    recorded = json.load(open(path)) if os.path.exists(path) else {}
    if RECORD:
        recorded[version] = dict(theirs, slurmd=slurm_rt.full_version)
        with open(path, "w") as fh:
            fh.write(dump_recording(recorded))
    assert version in recorded, f"no recording for {version}: MIGSYNC_RECORD_CORPUS=1"
    want = {k: recorded[version][k] for k in ("verdict", "fatal", "records")}
    assert theirs == want, f"slurmd {slurm_rt.full_version} no longer does what was recorded:\n{log}"
    if want["verdict"] == "accept" and corpus_headers(text).get("Capped") != "yes":
        # a case that names more devices than its Gres= on purpose says `#@ Capped=yes`
        assert not re.search(r"for GRES gpu[: ]\S* ?has \d+ more configured than expected", log), \
            f"the case's #@ Gres= does not match what gres.conf gives:\n{log}"
    mine = migsync_says(cluster.gres_conf, cluster.slurm_conf, version)
    assert mine["verdict"] == want["verdict"], (
        f"slurmd {version}: {want['verdict']} ({want['fatal']}); migsync: {mine['verdict']} "
        f"({mine['why']})")
    if want["verdict"] == "reject":
        return
    got = [[t, c, [f.replace(str(devdir), "@D@") for f in files]] for t, c, files in mine["records"]]
    assert [[t.lower() if t else t, c, f] for t, c, f in got] == \
        [[t.lower() if t else t, c, f] for t, c, f in want["records"]]


def test_every_case_has_a_recording_for_every_version():
    """A corpus case without a recording from the real slurmd of each version is not a test."""
    missing = []
    for case in CORPUS:
        path = recording_path(case)
        have = json.load(open(path)) if os.path.exists(path) else {}
        missing += [f"{os.path.basename(case)}:{v}" for v in slurm_cluster.ALL_VERSIONS
                    if v not in have]
    assert not missing, missing


def gres_spec(counts):
    return ",".join(f"gpu:{t.replace('#', chr(92) + '#')}:{n}" if t else f"gpu:{n}"
                    for t, n in counts.items())


def migsync_counts(path):
    return registered_counts(gresconf.load(path, NODE).for_node(NODE))  # as check reads it


@pytest.mark.parametrize("name", ["03-mixed-case.conf", "10-multiplefiles.conf", "16-many-caps.conf"])
def test_live_registration_matches_migsync_counts(tmp_path, devdir, name, slurm_rt):
    path = next(p for p in CORPUS if p.endswith(name))
    cluster = slurm_cluster.Cluster(tmp_path / "c", "", "", runtime=slurm_rt)
    materialise(path, devdir, cluster.gres_conf)
    mine = migsync_counts(cluster.gres_conf)
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
