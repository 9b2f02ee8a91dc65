"""Every recorded answer of the real slurmd, replayed against migsync without running Slurm.

tests/data/gres-corpus/NAME.slurmd.json holds what `slurmd -G` of 22.05.8, 24.11.5 and 26.05.5
did with NAME.conf (recorded by tests/test_slurm_differential.py, never written by hand). That
test needs the real Slurm and takes minutes; this one reads the same recordings in a second, so
the quick suite (and the mutation runs, tests/mutation.sh) hold gresconf, slurmsyntax and
slurmconf to what the real slurmd does:
  - accept: migsync reports nothing fatal and gives the same gpu records with device files
    (type, count, files) in slurmd's order;
  - reject: migsync refuses too, either as the slurmd-fatal finding, whose text must be slurmd's
    recorded fatal line word for word, or as a ConfigError (exit 2) that names the file and the
    line below (read off the case files by hand) and, where slurmd names the text it could not
    parse or says why in its own words, that text too.
"""
import glob
import json
import os

import pytest

from conftest import corpus_slurm_conf, write_corpus_texts
from migsync import gresconf, slurmconf
from migsync.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = sorted(glob.glob(os.path.join(HERE, "data", "gres-corpus", "*.conf")))
NODE = "gpunode1"  # the node name the recordings were made on (tests/slurm_cluster.py)
DEV = "/srv/dev"  # stands for the recording's @D@ (migsync does not stat the device files)

# The line of each case that a refusal must name, read off the case files by hand.
REFUSED_LINE = {
    "38-autodetect-line-with-keys.conf": 3, "39-first-key-type.conf": 3,
    "40-suffix-after-bracket.conf": 4, "41-suffix-p0.conf": 4, "50-junk-word.conf": 3,
    "51-other-node-unknown-key.conf": 3, "55-nodename-not-first.conf": 3,
    "56-count-negative.conf": 3, "57-count-garbage.conf": 3, "58-site-gres-count-files.conf": 3,
    "59-mps-bad-file.conf": 3, "63-count-only-beside-files.conf": 3,
    "bad-01-unknown-key.conf": 2, "bad-02-count-mismatch.conf": 2,
    "bad-03-file-and-multiple.conf": 2, "bad-04-multiple-one-file.conf": 2,
    "bad-05-reversed-range.conf": 2, "bad-06-mixed-file-nofile.conf": 3,
    "72-untyped-file-then-fileless.conf": 4, "77-multiplefiles-suffix-after-bracket.conf": 3,
    "78-include-path-with-blank.conf": 4, "81-include-two-words.conf": 4,
    "91-include-glob.conf": 4, "106-count-overflow.conf": 4,
    "107-count-trailing-blank.conf": 4, "112-count-minus-two.conf": 4,
    # a refusal inside an included file names that file (relative to gres.conf's directory)
    "84-include-nested-relative-sub.conf": "sub/a.conf:1",
    "85-include-nested-relative-top.conf": "sub/a.conf:1",
    "114-include-nested-three.conf": "sub/a.conf:1",
}
# What slurmd's "error opening/reading" (a parse error it does not explain) was about, by case:
# the fragment migsync's message must quote. Written by hand from the case files.
PARSE_FRAGMENT = {
    "38-autodetect-line-with-keys.conf": "AutoDetect=off Name=gpu",
    "39-first-key-type.conf": "Type=a100 Name=gpu",
    "50-junk-word.conf": "(in 'junk')",
    "51-other-node-unknown-key.conf": "(in 'Foo=1')",
    "55-nodename-not-first.conf": "(in 'NodeName=other')",
    "bad-01-unknown-key.conf": "(in 'Flie=/srv/dev/nvidia0')",
    "78-include-path-with-blank.conf": "(in 'Include /srv/dev/my dir.conf')",
    "81-include-two-words.conf": "(in 'Include /srv/dev/inc1.conf /srv/dev/inc2.conf')",
    "84-include-nested-relative-sub.conf": "(in 'Include b.conf')",
    "85-include-nested-relative-top.conf": "(in 'Include b.conf')",
    "91-include-glob.conf": "/inc-*.conf: file not found",
    "114-include-nested-three.conf": "(in 'Include sub/deeper/b.conf')",
}

# Cases whose slurm.conf Gres= slurmd itself refuses: the words of its fatal line migsync's
# message must carry. Written by hand from the recordings.
SLURM_CONF_FATAL = {
    "98-gres-typed-and-untyped.conf": "Some gpu GRES in slurm.conf have a type while others do not",
    "121-default-gres-mixed.conf": "Some gpu GRES in slurm.conf have a type while others do not",
}


def cases():
    for case in CORPUS:
        recorded = json.load(open(case[:-len(".conf")] + ".slurmd.json"))
        for version, rec in sorted(recorded.items()):
            yield pytest.param(case, version, rec, id=f"{os.path.basename(case)}-{version}")


def replay(tmp_path, case, version):
    with open(case, encoding="utf-8", newline="") as fh:
        text = fh.read()
    write_corpus_texts(text, str(tmp_path), DEV)  # the files the case's Include lines read
    text = text.replace("@D@", DEV).replace("@E@", str(tmp_path))
    path = tmp_path / "gres.conf"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    (tmp_path / "slurm.conf").write_text(corpus_slurm_conf(text, NODE))
    sconf = slurmconf.load(str(tmp_path / "slurm.conf"))  # GresTypes, the node's Gres=
    conf = gresconf.load(str(path), NODE, version, sconf.gres_types)
    conf.for_node(NODE)
    return conf, sconf, str(path)


def slurm_conf_gres(sconf):
    """The node's slurm.conf Gres= as check reads it (NodeName=DEFAULT lines included)."""
    got = sconf.node_gres(NODE)
    return got[0] if got else []


@pytest.mark.parametrize("case,version,rec", list(cases()))
def test_migsync_agrees_with_the_recorded_slurmd(tmp_path, case, version, rec):
    name = os.path.basename(case)
    try:
        conf, sconf, path = replay(tmp_path, case, version)
    except ConfigError as exc:
        assert rec["verdict"] == "reject", f"slurmd {version} accepts {name}; migsync: {exc}"
        msg = str(exc)
        assert "\n" not in msg
        where = REFUSED_LINE[name]
        where = f"{tmp_path / 'gres.conf'}:{where}" if isinstance(where, int) else f"{tmp_path}/{where}"
        assert msg.startswith(f"{where}: "), msg
        fatal = rec["fatal"].replace("@D@", DEV)
        if fatal.startswith("can't parse "):  # slurmd names the value: so must migsync
            value = fatal[len("can't parse "):]
            # slurmd says File= for a MultipleFiles= value too; migsync names the key written
            assert "(in '%s')" % value in msg or "(in 'Multiple%s')" % value.replace("File=", "Files=", 1) in msg, msg
        elif fatal.startswith("error opening/reading"):
            assert PARSE_FRAGMENT[name] in msg, msg
        elif "invalid count" in fatal:
            assert f"(slurmd: {fatal})" in msg and "(in 'Count=" in msg, msg  # slurmd's words
        elif fatal.startswith(("Invalid GRES record for", "gres.conf for")):
            assert f"(slurmd: {fatal})" in msg, msg
        return
    fatal = conf.fatal_for(NODE)
    try:
        specs = slurm_conf_gres(sconf)
    except ConfigError as exc:  # slurmd dies on the node's slurm.conf Gres= itself
        assert rec["verdict"] == "reject", f"slurmd {version} accepts {name}; migsync: {exc}"
        assert f"(slurmd: {SLURM_CONF_FATAL[name]})" in str(exc)
        assert SLURM_CONF_FATAL[name] in rec["fatal"]
        return
    if rec["verdict"] == "reject":
        assert fatal, f"slurmd {version} refuses {name} ({rec['fatal']}); migsync accepts it"
        assert fatal[0][1] == rec["fatal"]
        return
    assert fatal == [], f"slurmd {version} accepts {name}; migsync: {fatal}"
    got = [[r.type, r.count, [f.replace(DEV, "@D@") for f in r.files]]
           for r in gresconf.slurmd_order(conf, NODE, specs) if r.files]
    # slurmd prints Type as written in gres.conf or slurm.conf (case differs by version)
    assert [[t.lower() if t else t, c, f] for t, c, f in got] == \
        [[t.lower() if t else t, c, f] for t, c, f in rec["records"]]


def test_the_replay_covers_every_case_and_version():
    """A case without recordings, or a refusal the tables above miss, is no test at all."""
    versions = {}
    for case in CORPUS:
        rec = json.load(open(case[:-len(".conf")] + ".slurmd.json"))
        versions[os.path.basename(case)] = sorted(rec)
    assert len(versions) >= 60
    assert all(v == ["22.05", "24.11", "26.05"] for v in versions.values()), versions
