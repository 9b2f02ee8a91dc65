"""Cluster view: node reports merged into one gres.conf, diffed, written, and checked per node."""
import json
import os

import pytest

from conftest import CONF, run_cli, smi_args
from migsync import report

SAMPLE_GRES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "migsync", "sample", "seed-node", "gres.conf")

# Heterogeneous cluster: several MIG layouts, whole-GPU nodes, typed and untyped GPUs.
CLUSTER = {
    "gpu01": ("seed", SAMPLE_GRES), "gpu02": ("seed", SAMPLE_GRES), "gpu03": ("seed", SAMPLE_GRES),
    "gpu04": ("seed-lost", SAMPLE_GRES),
    "h200-01": ("h200-mixed", os.path.join(CONF, "h200-autodetect-style.gres.conf")),
    "h200-02": ("h200-mixed", os.path.join(CONF, "h200-autodetect-style.gres.conf")),
    "mig7g": ("seven-g", None),
    "minor1": ("minor-not-index", None),
}


def untyped_conf(tmp_path):
    p = tmp_path / "untyped.gres.conf"
    p.write_text("Name=gpu File=/dev/nvidia[0-1]\n")  # whole GPUs, no Type
    return str(p)


def node_report(name, layout, gres=None, tmp_path=None):
    args = ["report", "--no-hardware", *smi_args(layout, gres, nodename=name)]
    if gres is None:
        args += ["--gres-conf", os.path.join(CONF, "mig-empty.gres.conf")]
    r = run_cli(*args)
    assert r.code == 0, r.err
    return r.out.strip()


@pytest.fixture
def reports(tmp_path):
    h200 = tmp_path / "h200.gres.conf"  # the site's typed lines, for both H200 nodes
    h200.write_text(open(os.path.join(CONF, "h200-autodetect-style.gres.conf")).read()
                    .replace("NodeName=h200-01", "NodeName=h200-[01-02]"))
    out = {name: node_report(name, layout, str(h200) if name.startswith("h200") else gres)
           for name, (layout, gres) in CLUSTER.items()}
    out["plain01"] = node_report("plain01", "seed", untyped_conf(tmp_path))
    return out


def test_report_schema(reports):
    doc = json.loads(reports["gpu01"])
    assert doc["schema"] == "migsync-report" and doc["schema_version"] == 2
    assert doc["node"] == "gpu01" and doc["migsync_version"]
    kinds = [d["kind"] for d in doc["devices"]]
    assert kinds.count("gpu") == 2 and kinds.count("mig") == 14
    assert report.validate(doc) is doc


def merged(tmp_path, text, *args):
    src = tmp_path / "in.txt"
    src.write_text(text)
    return run_cli("merge", src, *args)


def test_identical_nodes_fold_into_one_hostlist_and_every_node_checks_clean(tmp_path, reports):
    pdsh = "".join(f"{n}: {line}\n" for n, line in reports.items())
    r = merged(tmp_path, pdsh)
    assert r.code == 0, r.err
    # plain01's untyped whole GPUs beside typed MIG lines would stop slurmd ("some records
    # have Type= specification while others do not"): they get a Type, so it folds in too
    assert "# gpu[01-03],plain01 (4 nodes): 2 x a100, 14 x 1g.10gb" in r.out
    assert "NodeName=gpu[01-03],plain01 Name=gpu Type=a100 File=/dev/nvidia[0-1]" in r.out
    assert "NodeName=h200-[01-02] Name=gpu Type=nvidia_h200_1c.3g.71gb MultipleFiles=" in r.out
    gres = tmp_path / "cluster.gres.conf"
    gres.write_text(r.out)
    for name, (layout, _) in list(CLUSTER.items()) + [("plain01", ("seed", None))]:
        c = run_cli("check", *smi_args(layout, gres, nodename=name))
        assert c.code == 0, (name, c.out)


def test_file_style_and_slurm_include(tmp_path, reports):
    pdsh = "".join(f"{n}: {line}\n" for n, line in reports.items())
    inc = tmp_path / "gres-nodes.conf"
    r = merged(tmp_path, pdsh, "--style", "file", "--slurm-include", inc)
    assert "NodeName=gpu[01-03],plain01 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337," in r.out
    text = inc.read_text()
    assert "NodeName=gpu[01-03],plain01 Gres=gpu:a100:2,gpu:1g.10gb:14" in text
    assert "NodeName=gpu04 Gres=gpu:a100:2,gpu:1g.10gb:13" in text


def test_include_has_complete_node_lines_from_slurmd_c(tmp_path, reports):
    docs = []
    for i, (n, mem) in enumerate([("gpu01", 515275), ("gpu02", 515200), ("gpu03", 515275)]):
        d = json.loads(reports[n])
        d["hardware"] = f"CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=16 ThreadsPerCore=2 RealMemory={mem}"
        docs.append(json.dumps(d))
    inc = tmp_path / "inc.conf"
    merged(tmp_path, "\n".join(docs) + "\n", "--slurm-include", inc)
    assert ("NodeName=gpu[01-03] CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=16 "
            "ThreadsPerCore=2 RealMemory=515200 Gres=gpu:a100:2,gpu:1g.10gb:14") in inc.read_text()


def test_clush_b_blocks_srun_lines_and_pretty_files(tmp_path, reports):
    clush_b = "".join(f"---------------\n{n}\n---------------\n{line}\n" for n, line in
                      list(reports.items())[:3])
    r = merged(tmp_path, clush_b)
    assert r.code == 0 and "NodeName=gpu[01-03]" in r.out
    srun = "\n".join(list(reports.values())[:3]) + "\n"
    assert "NodeName=gpu[01-03]" in merged(tmp_path, srun).out
    d = tmp_path / "reports"
    d.mkdir()
    for n, line in reports.items():
        (d / f"{n}.json").write_text(json.dumps(json.loads(line), indent=2))
    r = run_cli("merge", d)
    assert r.code == 0 and "NodeName=gpu[01-03]" in r.out and "NodeName=mig7g" in r.out


def test_broken_and_conflicting_reports_are_listed_and_skipped(tmp_path, reports):
    other = json.loads(reports["gpu04"])
    other["node"] = "gpu01"  # gpu01 reported twice, with different layouts
    lost = json.loads(reports["mig7g"])
    lost["gpus"][0]["lost"] = "NVML: GPU is lost"
    newer = json.loads(reports["minor1"])
    newer["schema_version"] = 99
    text = "".join([
        # srun output (no prefix) names no sender: its gpu01 report conflicts with clush's
        f"gpu01: {reports['gpu01']}\n", f"{json.dumps(other)}\n",
        f"gpu02: {reports['gpu02']}\n",
        "gpu05: ssh: connect to host gpu05 port 22: Connection timed out\n",
        'gpu06: {"schema": "migsync-report", "schema_version": 1, "node": "gpu06", "gpus": [\n',
        f"mig7g: {json.dumps(lost)}\n", f"minor1: {json.dumps(newer)}\n",
        'gpu08: {"hello": 1}\n'])
    r = merged(tmp_path, text)
    assert r.code == 0
    assert "NodeName=gpu02 " in r.out and "gpu01" not in r.out
    err = r.err
    assert f"skipped gpu01: conflicting reports from gpu01, {tmp_path / 'in.txt'}" in err
    assert "skipped gpu05: no report: ssh: connect" in err
    assert "skipped gpu06: no report: invalid JSON" in err
    assert "skipped mig7g: not a migsync report: GPU 0 was lost" in err
    assert "skipped minor1: not a migsync report: schema_version 99 is newer" in err
    assert "skipped gpu08: not a migsync report: schema is None" in err


def _mig(doc, i):
    return [d for d in doc["devices"] if d["kind"] == "mig"][i]


@pytest.mark.parametrize("edit,said", [
    # two MIG devices naming one CI cap: the merged file gave one device file to two GRES
    (lambda d: _mig(d, 1).update(ci_cap=_mig(d, 0)["ci_cap"]),
     "rejected report: cap 337 is given to two MIG devices"),
    (lambda d: _mig(d, 1).update(ci_cap=_mig(d, 1)["gi_cap"]),
     "rejected report: cap 345 is given to a GPU instance and a MIG device"),
    (lambda d: _mig(d, 1).update(gi_cap=_mig(d, 0)["gi_cap"]),
     "rejected report: cap 336 is given to two GPU instances"),
    (lambda d: _mig(d, 1).update(gi=_mig(d, 0)["gi"], ci=_mig(d, 0)["ci"]),
     "rejected report: gpu2/gi7 has two caps"),
    (lambda d: d["devices"].append(dict(_mig(d, 0))),
     "rejected report: device mig 2/7/0 is listed twice"),
    (lambda d: d["gpus"].append(dict(d["gpus"][0])), "rejected report: gpu0 is listed twice"),
    # these were dropped from the merged file without a word
    (lambda d: _mig(d, 0).update(minor=0),
     "rejected report: MIG device gpu0/gi7/ci0 on a GPU the report does not list with MIG on"),
    (lambda d: _mig(d, 0).update(minor=9),
     "rejected report: MIG device gpu9/gi7/ci0 on a GPU the report does not list with MIG on"),
    (lambda d: d["devices"].append({"kind": "gpu", "minor": 2, "type": "a100",
                                    "files": ["/dev/nvidia2"]}),
     "rejected report: gpu2 is listed as a whole GPU and with MIG on"),
    (lambda d: d.update(schema_version=0),
     "not a migsync report: schema_version 0 is not a version (they start at 1)"),
])
def test_a_report_describing_an_impossible_node_is_skipped(tmp_path, reports, edit, said):
    """A report is untrusted input to root on the controller: one that contradicts itself is
    listed and skipped like a broken one; the good reports are still merged."""
    bad = json.loads(reports["gpu01"])
    bad["node"] = "gpu09"
    edit(bad)
    r = merged(tmp_path, f"gpu02: {reports['gpu02']}\ngpu09: {json.dumps(bad)}\n")
    assert r.code == 0, r.err
    assert r.err.splitlines() == [f"migsync merge: skipped gpu09: {said}"]
    assert "NodeName=gpu02 " in r.out and "gpu09" not in r.out


def test_one_nodes_hostile_output_never_stops_the_merge_or_reaches_the_terminal(tmp_path,
                                                                               reports):
    """A report nested 100,000 deep made json raise RecursionError: exit 70 for the whole
    cluster's merge. ssh noise with terminal escapes went to the admin's terminal as sent."""
    deep = '{"schema": "migsync-report", "x": ' + "[" * 100000 + "]" * 100000 + "}"
    text = (f"gpu07: {deep}\n"
            "gpu05: \x1b]0;owned\x07ssh: \x1b[31mno route\n"
            f"gpu02: {reports['gpu02']}\n")
    r = merged(tmp_path, text)
    assert r.code == 0, r.err
    assert r.err.splitlines() == [
        "migsync merge: skipped gpu07: no report: invalid JSON (nested too deeply)",
        "migsync merge: skipped gpu05: no report: ?]0;owned?ssh: ?[31mno route"]
    assert "NodeName=gpu02 " in r.out


@pytest.mark.parametrize("flags", [("--write", "gres.conf"), ("--against", "gres.conf")])
def test_the_slurm_include_never_replaces_the_gres_conf(tmp_path, reports, flags):
    """--write PATH --slurm-include PATH wrote the merged gres.conf, then the slurm.conf
    include over it: configless would serve NodeName=... CPUs=... lines as gres.conf."""
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "gres.conf").write_text(open(SAMPLE_GRES).read())
    flag, name = flags
    r = merged(tmp_path, f"gpu02: {reports['gpu02']}\n", flag, conf / name,
               "--slurm-include", f"{conf}/../etc/{name}")
    assert r.code == 2
    assert r.err.splitlines() == [f"migsync: {conf}/../etc/{name}: --slurm-include and {flag} "
                                  "name the same file"]
    assert sorted(os.listdir(conf)) == ["gres.conf"]
    assert (conf / "gres.conf").read_text() == open(SAMPLE_GRES).read()


def test_against_narrows_every_nodename_form_slurmd_reads(tmp_path, reports):
    """Kept lines get NodeName= narrowed to the nodes that sent no report. A quoted value
    ('NodeName="n1 n2"', two names to slurmd) was cut in two: a broken merged file, exit 2.
    Blanks around '=' were not matched: the line was kept whole, so a reported node had its
    old lines beside its merged ones."""
    current = tmp_path / "gres.conf"
    current.write_text('NodeName="gpu02 old1" Name=gpu Type=a100 File=/dev/nvidia0\n'
                       "NodeName = gpu02,old2 Name=gpu Type=a100 File=/dev/nvidia1\n"
                       "  nodename=old3 Name=gpu File=/dev/nvidia0 Type=a100\n")
    out = tmp_path / "merged.conf"
    r = merged(tmp_path, f"gpu02: {reports['gpu02']}\n", "--against", current, "--write", out)
    assert r.code == 1, r.err
    kept = out.read_text().split("# kept from the current gres.conf (nodes that sent no "
                                 "report)\n")[1]
    assert kept == ("NodeName=old1 Name=gpu Type=a100 File=/dev/nvidia0\n"
                    "NodeName=old2 Name=gpu Type=a100 File=/dev/nvidia1\n"
                    "NodeName=old3 Name=gpu File=/dev/nvidia0 Type=a100\n")


def test_a_report_naming_another_node_than_its_sender_is_said(tmp_path, reports):
    """pdsh/clush name the host that printed each line. gpu03 printing a report for gpu02 (a
    cloned image, a stale SLURMD_NODENAME) gave gpu02 gpu03's layout, silently. It is right
    where NodeName differs from the hostname (`node =` in migsync.toml), so it is merged, and
    said."""
    other = json.loads(reports["gpu04"])
    other["node"] = "gpu02"
    block = json.loads(reports["gpu01"])
    r = merged(tmp_path, f"gpu03: {json.dumps(other)}\n"
                         "---------------\ngpu[05-06] (2)\n---------------\n"
                         f"{json.dumps(block)}\n")
    assert r.code == 0, r.err
    tail = "not the host that printed it (right only if NodeName differs from the hostname)"
    assert r.err.splitlines() == [
        f"migsync merge: note: gpu03: its report names node 'gpu02', {tail}",
        f"migsync merge: note: gpu[05-06]: its report names node 'gpu01', {tail}"]
    assert "NodeName=gpu02 " in r.out and "NodeName=gpu01 " in r.out
    # a block that holds the node, a prefix that is the node: nothing to say
    r = merged(tmp_path, "---------------\ngpu[01-02] (2)\n---------------\n"
                         f"{json.dumps(block)}\ngpu04: {reports['gpu04']}\n")
    assert r.code == 0 and r.err == "", r.err


def test_no_usable_reports_is_exit_2(tmp_path):
    r = merged(tmp_path, "gpu01: Permission denied\n")
    assert r.code == 2 and "no usable node reports" in r.err


def test_against_prints_which_nodes_change_and_keeps_unreported_nodes(tmp_path, reports):
    current = tmp_path / "gres.conf"
    current.write_text(
        "NodeName=gpu[01-04] Name=gpu Type=a100 File=/dev/nvidia[0-1]\n"
        "NodeName=gpu[01-04] Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346,355,"
        "364,373,382,391,472,481,490,508,517,526,535]\n"
        "NodeName=gpu[05-06] Name=gpu Type=a100 File=/dev/nvidia[0-3]\n"
        "Name=mps Count=100\n")
    pdsh = "".join(f"{n}: {reports[n]}\n" for n in ("gpu01", "gpu02", "gpu03", "gpu04"))
    out = tmp_path / "new.gres.conf"
    r = merged(tmp_path, pdsh, "--style", "file", "--against", current, "--write", out)
    assert r.code == 1
    assert "gpu04 (1 node):\n  - Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap535\n" in r.out
    assert "gpu[01-03]" not in r.out.split("4 node(s)")[0]  # unchanged nodes are not listed
    text = out.read_text()
    assert "NodeName=gpu[05-06] Name=gpu Type=a100 File=/dev/nvidia[0-3]" in text  # kept
    assert "Name=mps Count=100" in text
    # nothing changes the second time
    r = merged(tmp_path, pdsh, "--style", "file", "--against", out)
    assert r.code == 0 and "no changes" in r.out


def test_write_is_atomic_and_keeps_a_backup(tmp_path, reports):
    target = tmp_path / "gres.conf"
    target.write_text("# the old file\n")
    r = merged(tmp_path, reports["gpu01"] + "\n", "--write", target)
    assert r.code == 0 and "previous file kept as" in r.err
    backups = [f for f in os.listdir(tmp_path) if f.startswith("gres.conf.bak-")]
    assert len(backups) == 1 and (tmp_path / backups[0]).read_text() == "# the old file\n"
    assert "NodeName=gpu01" in target.read_text()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    deep = tmp_path / "nodir" / "x" / "g.conf"
    r = merged(tmp_path, reports["gpu01"] + "\n", "--write", deep)
    # issue 14: a missing directory is named, never created silently
    assert r.code == 2 and "nodir/x: directory does not exist" in r.err
    os.makedirs(deep.parent)
    r = merged(tmp_path, reports["gpu01"] + "\n", "--write", deep)
    assert r.code == 0, r.err
    lines = [ln for ln in deep.read_text().splitlines() if ln and not ln.startswith("#")]
    # ... and the file holds gpu01's devices (the seed node, hand-counted: 2 whole A100s,
    # 14 x 1g.10gb as one MultipleFiles= line each)
    assert lines[0] == "NodeName=gpu01 Name=gpu Type=a100 File=/dev/nvidia[0-1]"
    assert len(lines) == 15 and all(ln.startswith("NodeName=gpu01 Name=gpu Type=1g.10gb MultipleFiles="
                                                  "/dev/nvidia") for ln in lines[1:])
    assert lines[1].endswith("MultipleFiles=/dev/nvidia2,/dev/nvidia-caps/nvidia-cap336,"
                             "/dev/nvidia-caps/nvidia-cap337")
