import os

import pytest
from hypothesis import given, settings, strategies as st

from conftest import CONF
from migsync import gresconf, slurmconf
from migsync.errors import ConfigError, MigsyncError


def parse(text, path="gres.conf"):
    return gresconf.parse(text, path)


def test_keys_are_case_insensitive_and_continuations_join():
    conf = gresconf.load(os.path.join(CONF, "continuation-case.gres.conf"))
    (ln,) = conf.for_node("g-7g")
    assert ln.type == "7g.80gb"
    assert ln.multiple_files == ["/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap3",
                                 "/dev/nvidia-caps/nvidia-cap4"]
    assert ln.lineno == 2 and ln.device_count == 1


def test_lines_for_other_nodes_are_skipped_and_unscoped_lines_apply_to_all():
    conf = gresconf.load(os.path.join(CONF, "other-nodes.gres.conf"))
    mine = conf.for_node("c51-g002")
    assert [ln.lineno for ln in mine] == [3, 4]
    assert sum(ln.device_count for ln in mine) == 16
    assert [ln.lineno for ln in conf.for_node("c51-g005")] == [2]
    assert conf.for_node("c51-g002", "mps")[0].count == 100


def test_comments_escaped_hash_and_blank_lines():
    conf = parse("\n# only a comment\nName=gpu Type=a\\#b File=/dev/nvidia0 # trailing\n\n")
    assert conf.lines[0].type == "a#b"
    assert conf.lines[0].files == ["/dev/nvidia0"]


def test_file_hostlist_keeps_written_order_and_count_defaults():
    (ln,) = parse("Name=gpu File=/dev/nvidia[3,1,0]").lines
    assert ln.files == ["/dev/nvidia3", "/dev/nvidia1", "/dev/nvidia0"]
    assert ln.device_count == 3
    (ln,) = parse("Name=gpu Count=4").lines
    assert ln.device_count == 4
    (ln,) = parse("Name=gpu Count=2K").lines
    assert ln.count == 2048


def test_crlf_and_bom_are_read(tmp_path):
    p = tmp_path / "gres.conf"
    p.write_bytes(b"\xef\xbb\xbfNodeName=n1 Name=gpu File=/dev/nvidia0\r\nName=gpu File=/dev/nvidia1\r\n")
    conf = gresconf.load(str(p))
    assert [ln.files for ln in conf.for_node("n1")] == [["/dev/nvidia0"], ["/dev/nvidia1"]]


def test_include_reads_relative_to_the_file(tmp_path):
    (tmp_path / "more.conf").write_text("Name=gpu File=/dev/nvidia1\n")
    (tmp_path / "gres.conf").write_text("Name=gpu File=/dev/nvidia0\nInclude more.conf\n")
    conf = gresconf.load(str(tmp_path / "gres.conf"))
    assert [ln.files[0] for ln in conf.lines] == ["/dev/nvidia0", "/dev/nvidia1"]


@pytest.mark.parametrize("text,needle", [
    ("Name=gpu Bogus=1", "unknown key 'Bogus'"),
    ("Name=gpu File=/dev/nvidia0 MultipleFiles=/dev/nvidia0,/dev/nvidia1", "exclude each other"),
    ("Name=gpu MultipleFiles=/dev/nvidia0", "at least two files"),
    ("Name=gpu File=/dev/nvidia[3-1]", "reversed range"),
    ("Name=gpu File=/dev/nvidia[0-", "unbalanced"),
    ("Name=gpu File=/dev/nvidia[0-1] Count=3", "does not match the number"),
    ("Name=gpu MultipleFiles=/dev/nvidia0,/dev/nvidia-caps/nvidia-cap1 Count=2", "does not match"),
    ("Type=a File=/dev/nvidia0", "must start with"),
    ("Name=gpu File=nvidia0", "absolute"),
    ("Name=gpu Count=lots", "whole number"),
    ("Name=gpu File", "expected key=value"),
])
def test_errors_name_file_line_and_fragment(text, needle):
    with pytest.raises(ConfigError) as exc:
        parse("# header\n" + text, "/etc/slurm/gres.conf")
    msg = str(exc.value)
    assert msg.startswith("/etc/slurm/gres.conf:2: ")
    assert needle in msg
    assert "(in '" in msg


def test_binary_garbage_is_a_config_error(tmp_path):
    p = tmp_path / "gres.conf"
    p.write_bytes(b"Name=gpu\n\x00\x01\x02\xff")
    with pytest.raises(ConfigError, match="gres.conf:2: binary data"):
        gresconf.load(str(p))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        gresconf.load(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="is a directory"):
        gresconf.load(str(tmp_path))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("NnaAmMeE=Ffile/dev[]0123456789,-#\\ \n\"Typ.gG")),
               max_size=120))
def test_property_parsers_fail_with_one_line_naming_the_file(text):
    """Garbage in: either parsed lines that point back into the text, or a typed error whose
    message is one line starting with the file name (what the CLI prints)."""
    nlines = text.count("\n") + 1
    for mod in (gresconf, slurmconf):
        try:
            conf = mod.parse(text, "fuzz.conf")
        except MigsyncError as exc:
            msg = str(exc)
            assert msg.startswith("fuzz.conf") and "\n" not in msg, msg
            continue
        for ln in getattr(conf, "lines", []):
            assert 1 <= ln.lineno <= nlines and ln.path == "fuzz.conf"


def _case(draw, word):
    return "".join(ch.upper() if draw(st.booleans()) else ch.lower() for ch in word)


@st.composite
def gres_lines(draw):
    """A valid gres.conf line built from parts, and the parts: the expected parse result."""
    minors = draw(st.lists(st.integers(0, 15), min_size=1, max_size=4, unique=True))
    want = {"nodes": draw(st.sampled_from([None, "gpu01", "gpu[01-04]", "c51-g[001-002,010]"])),
            "type": draw(st.sampled_from([None, "a100", "1g.10gb", "nvidia_h100_80gb_hbm3_4g.40gb"])),
            "files": [f"/dev/nvidia{m}" for m in minors]}
    parts = []
    if want["nodes"]:
        parts.append(f"{_case(draw, 'NodeName')}={want['nodes']}")
    parts.append(f"{_case(draw, 'Name')}=gpu")
    if want["type"]:
        parts.append(f"{_case(draw, 'Type')}={want['type']}")
    parts.append(f"{_case(draw, 'File')}=" + ",".join(want["files"]))
    # slurmd wants NodeName= (or Name=) first; the other keys come in any order
    lead = 1 if want["nodes"] else 0
    parts = parts[:lead + 1] + list(draw(st.permutations(parts[lead + 1:])))
    seps = [draw(st.sampled_from([" ", "  ", "\t", " \\\n  "])) for _ in parts[1:]]
    text = parts[0] + "".join(sep + p for sep, p in zip(seps, parts[1:]))
    if draw(st.booleans()):
        text += " # a comment [with] Type=x"
    return text, want


@settings(max_examples=200, deadline=None)
@given(st.lists(gres_lines(), min_size=1, max_size=5))
def test_property_parse_gives_back_the_parts_a_line_was_built_from(items):
    text = "\n".join(t for t, _ in items) + "\n"
    conf = gresconf.parse(text, "gres.conf")
    assert len(conf.lines) == len(items)
    first_line = 1
    for ln, (t, want) in zip(conf.lines, items):
        assert (ln.nodes, ln.name, ln.type, ln.files) == (want["nodes"], "gpu", want["type"], want["files"])
        assert ln.lineno == first_line and ln.device_count == len(want["files"])
        first_line += t.count("\n") + 1


def test_slurm_conf_gres_default_and_repeated_node_lines():
    conf = slurmconf.parse(
        "GresTypes=gpu\nNodeName=DEFAULT Gres=gpu:2\nNodeName=a[1-3] CPUs=4\n"
        "NodeName=a2 Gres=gpu:1g.10gb:14,gpu:a100:2\n", "slurm.conf")
    assert conf.gres_types == ["gpu"]
    specs, where = conf.node_gres("a1")
    assert [(s.type, s.count) for s in specs] == [(None, 2)]
    specs, where = conf.node_gres("a2")
    assert [(s.type, s.count) for s in specs] == [("1g.10gb", 14), ("a100", 2)]
    assert where == "slurm.conf:4"
    assert conf.node_gres("zz") is None


def test_slurm_conf_gres_without_count_is_dropped_as_slurmd_does():
    """slurm-gres.md calls `gpu:1g.10gb` a config error; the real slurmd (22.05-26.05, corpus
    127) logs "Bad GRES configuration: gpu:1g.10gb" and drops the entry."""
    assert slurmconf.parse_gres("gpu:1g.10gb", "slurm.conf:3") == []
    assert slurmconf.parse_gres("gpu:a100:no_consume:2")[0].count == 2


def test_duplicate_key_latest_wins_like_slurmd():
    (ln,) = parse("Name=gpu Type=a Type=b File=/dev/nvidia0").lines
    assert ln.type == "b"


def test_mixing_lines_with_and_without_file_is_refused_for_the_node():
    conf = parse("NodeName=a Name=gpu File=/dev/nvidia0\nNodeName=a Name=gpu Count=2\n"
                 "NodeName=b Name=gpu Count=2\n", "gres.conf")
    with pytest.raises(ConfigError, match="gres.conf:2: some gpu lines"):
        conf.for_node("a")
    assert conf.for_node("b")[0].count == 2


# ---- slurmd's record order (expected values measured with `slurmd -G` on 22.05.8, 24.11.5
# and 26.05.5: tests/data/gres-corpus/*.slurmd.json) ----------------------------------------

class Spec:
    def __init__(self, name, type, count):
        self.name, self.type, self.count = name, type, count


def order(text, gres, node="gpunode1", version=None):
    conf = gresconf.parse(text, "/etc/slurm/gres.conf", version=version)
    return [(r.index, r.type, r.count, r.files, r.line)
            for r in gresconf.slurmd_order(conf, node, gres)]


def test_order_globals_first_then_grouped_by_slurm_conf_gres_types():
    text = ("NodeName=gpunode1 Name=gpu Type=1g.10gb File=/d/d[3,2]\n"
            "NodeName=gpunode1 Name=gpu Type=a100 File=/d/d1\n"
            "Name=gpu Type=1g.10gb File=/d/d4\n"
            "Name=gpu Type=a100 File=/d/d0\n")
    got = order(text, [Spec("gpu", "a100", 2), Spec("gpu", "1g.10gb", 3)])
    assert got == [(0, "a100", 1, ("/d/d0",), 4), (1, "a100", 1, ("/d/d1",), 2),
                   (2, "1g.10gb", 1, ("/d/d4",), 3), (3, "1g.10gb", 1, ("/d/d3",), 1),
                   (4, "1g.10gb", 1, ("/d/d2",), 1)]
    # swapping the Types in Gres= moves the a100s behind the slices
    swapped = order(text, [Spec("gpu", "1g.10gb", 3), Spec("gpu", "a100", 2)])
    assert [(i, t, f) for i, t, _, f, _ in swapped] == [
        (0, "1g.10gb", ("/d/d4",)), (1, "1g.10gb", ("/d/d3",)), (2, "1g.10gb", ("/d/d2",)),
        (3, "a100", ("/d/d0",)), (4, "a100", ("/d/d1",))]


def test_order_caps_each_type_at_its_gres_count_and_drops_unlisted_types():
    text = ("NodeName=gpunode1 Name=gpu Type=1g.10gb File=/d/d[3,2]\n"
            "Name=gpu Type=1g.10gb File=/d/d4\nName=gpu Type=h100 File=/d/d5\n")
    got = order(text, [Spec("gpu", "1g.10gb", 2)])  # slurmd: "1 more configured than expected"
    assert [r[3] for r in got] == [("/d/d4",), ("/d/d3",)]


def test_order_multiple_files_is_one_device_and_other_nodes_are_skipped():
    text = ("NodeName=other Name=gpu Type=a100 File=/d/d7\n"
            "Name=gpu Type=a100 MultipleFiles=/d/d0,/d/d1\nName=gpu Type=a100 File=/d/d2\n")
    got = order(text, [Spec("gpu", "a100", 2)])
    assert got == [(0, "a100", 1, ("/d/d0", "/d/d1"), 2), (1, "a100", 1, ("/d/d2",), 3)]


def test_order_name_is_exact_and_other_gres_keep_their_own_indices():
    text = ("Name=mps Count=100 File=/d/d0\nName=GPU Type=a100 File=/d/d1\n"
            "Name=gpu Type=a100 File=/d/d0\n")
    assert [r[3] for r in order(text, None)] == [("/d/d0",)]
    conf = gresconf.parse(text, "g")
    (mps,) = gresconf.slurmd_order(conf, "n1", None, name="mps")
    assert (mps.index, mps.count, mps.files) == (0, 100, ("/d/d0",))


def test_check_json_reports_the_version_used_and_records_in_slurmd_order(tmp_path):
    from conftest import run_cli, smi_args
    sample = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "migsync", "sample", "seed-node")
    g = tmp_path / "gres.conf"
    # the slices first in the file, the whole GPUs as a global line last: slurmd still puts
    # the a100s first (global lines first, then Gres=gpu:a100:2,gpu:1g.10gb:14's order)
    lines = open(os.path.join(sample, "gres.conf")).read().splitlines()
    g.write_text(lines[2] + "\n" + lines[1].replace("NodeName=c51-g002 ", "") + "\n")
    r = run_cli("check", "--json", "--slurm-version", "24.11.5",
                *smi_args("seed", g, os.path.join(sample, "slurm.conf"), "c51-g002"))
    doc = r.json()
    assert r.code == 0, doc["findings"]
    assert doc["slurm_version"] == {"series": "24.11", "rules": "24.11", "how": "setting"}
    recs = doc["records"]
    assert [x["index"] for x in recs] == list(range(16))
    assert [(x["type"], x["files"], x["line"]) for x in recs[:3]] == [
        ("a100", ["/dev/nvidia0"], 2), ("a100", ["/dev/nvidia1"], 2),
        ("1g.10gb", ["/dev/nvidia-caps/nvidia-cap337"], 1)]
    assert recs[-1]["files"] == ["/dev/nvidia-caps/nvidia-cap535"]
    assert recs[0]["source_file"] == str(g) and recs[0]["name"] == "gpu"
    assert recs[0]["count"] == 1


def test_slurm_version_setting_is_validated(tmp_path):
    from conftest import run_cli, smi_args
    r = run_cli("check", "--slurm-version", "latest", *smi_args("seed"))
    assert r.code == 2 and "not a Slurm version: 'latest'" in r.err


# ---- issue 12.2: lines end at \n only (slurmd reads with fgets); expectations measured with
# slurmd -G (corpus cases 45-49) --------------------------------------------------------------

@pytest.mark.parametrize("sep", ["\r", "\f", "\x85", "\u2028", "\x1c", "\v"])
def test_only_newline_ends_a_line(sep):
    conf = parse(f"Name=gpu Type=a100 File=/dev/nvidia0{sep}Name=gpu Type=a100 File=/dev/nvidia1\n")
    assert len(conf.lines) == 1  # one line: the second File= wins ("latest value used")
    assert conf.lines[0].files == ["/dev/nvidia1"]


def test_c_blanks_split_keys_but_unicode_separators_stay_in_the_value():
    (ln,) = parse("Name=gpu Type=a100\rFile=/dev/nvidia0\n").lines
    assert ln.files == ["/dev/nvidia0"]
    (ln,) = parse("Name=gpu File=/dev/nvidia0\u2028x Type=a100\n").lines
    assert ln.files == ["/dev/nvidia0\u2028x"] and ln.type == "a100"


def test_a_comment_runs_to_the_end_of_the_physical_line():
    conf = parse("Name=gpu Type=a100 File=/dev/nvidia0 # note\rName=gpu File=/dev/nvidia1\n")
    assert [ln.files for ln in conf.lines] == [["/dev/nvidia0"]]


def test_slurmd_accepts_what_migsync_used_to_refuse():
    text = ("Name = gpu  Type =a100 File= /dev/nvidia0,,/dev/nvidia1\n"  # blanks around '='
            "NodeName=n1 Type=a100 File=/dev/nvidia3\n"                # no Name=: skipped
            "NodeName=other[1- Name=gpu File=/dev/nvidia9\n"           # unparseable: skipped
            "Name=mps Count=3 File=/dev/nvidia[0-1]\n"                 # shared: no Count rule
            "Name=gpu Type=a1\\00 File=\"/dev/nvidia4 /dev/nvidia5\"\n")
    conf = parse(text)
    gpu = conf.for_node("n1")
    assert [ln.files for ln in gpu] == [["/dev/nvidia0", "/dev/nvidia1"],
                                        ["/dev/nvidia4", "/dev/nvidia5"]]
    assert [ln.type for ln in gpu] == ["a100", "a100"]
    assert len(conf.ignored) == 2 and conf.for_node("n1", "mps")[0].count == 3


@pytest.mark.parametrize("text,fatal", [
    ("Name=gpu Type=a100 File=/d/0\nName=gpu File=/d/1\n",
     'gres.conf for gpu, some records have "Type=" specification while others do not'),
    ("NodeName=n1 Name=gpu Type=b File=/d/1\nName=gpu Type=a File=/d/0 Flags=nvidia_gpu_env\n",
     "Invalid GRES record name=gpu type=a: Flags (nvidia_gpu_env) does not match env flags for "
     "previous GRES of same node and name"),
    ("NodeName=n1 AutoDetect=nvml\nNodeName=n1 AutoDetect=off\n",
     "gres.conf: duplicate node-local AutoDetect specification does not match the first"),
])
def test_slurmd_fatal_texts(text, fatal):
    assert [t for _, t in parse(text).fatal_for("n1")] == [fatal]


@pytest.mark.parametrize("text", [
    "Name=gpu Type=a File=/d/0 Flags=nvidia_gpu_env\nNodeName=n1 Name=gpu Type=b File=/d/1\n",
    "NodeName=other Name=gpu File=/d/1\nNodeName=n1 Name=gpu Type=a File=/d/0\n",
    "NodeName=n1 AutoDetect=off\nNodeName=n1 AutoDetect=off\nAutoDetect=nvml\n",
])
def test_slurmd_starts(text):
    assert parse(text).fatal_for("n1") == []


def test_flags_without_env_flags_are_fatal_on_24_11_only():
    text = "Name=gpu Type=a File=/d/0 Flags=nvidia_gpu_env\nName=gpu Type=a File=/d/1 Flags=CountOnly\n"
    assert [v for v in ("22.05", "24.11", "26.05")
            if gresconf.parse(text, "g", version=v).fatal_for("n1")] == ["24.11"]


def test_text_after_a_bracket_is_a_parse_error_on_22_05_only():
    text = "Name=gpu File=/d/n[0-1]x\n"
    assert gresconf.parse(text, "g", version="24.11").lines[0].files == ["/d/n0x", "/d/n1x"]
    with pytest.raises(ConfigError):
        gresconf.parse(text, "g", version="22.05")
