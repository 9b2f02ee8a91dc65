"""gres.conf rules as gres.conf(5) and slurmd state them, word for word, and the per-node fast
path giving exactly what the full parse gives. Expected values written by hand."""
import pytest
from hypothesis import given, settings, strategies as st

from migsync import gresconf
from migsync.errors import ConfigError


def parse(text, node=None):
    return gresconf.parse(text, "gres.conf", node=node)


@pytest.mark.parametrize("text,message", [
    ("File=/dev/nvidia0 Name=gpu\n",
     "gres.conf:1: a gres.conf line must start with NodeName=, Name= or AutoDetect= (slurmd: Parsing "
     "error at unrecognized key: File) (in 'File=/dev/nvidia0 Name=gpu')"),
    ("\nName=gpu Flie=/dev/nvidia0\n", "gres.conf:2: unknown key 'Flie' (in 'Flie=/dev/nvidia0')"),
    ("NodeName=zz Name=gpu Flie=/dev/nvidia0\n", "gres.conf:1: unknown key 'Flie' (in 'Flie=/dev/nvidia0')"),
    ("Name=gpu File=/dev/nvidia0 MultipleFiles=/dev/nvidia0,/dev/nvidia1\n",
     "gres.conf:1: File= and MultipleFiles= exclude each other (in 'Name=gpu File=/dev/nvidia0 MultipleFiles=/dev/nvidia0,/dev/n')"),
    ("Name=gpu MultipleFiles=/dev/nvidia0\n",
     "gres.conf:1: MultipleFiles= needs at least two files (use File= for one) (in 'MultipleFiles=/dev/nvidia0')"),
    ("Name=gpu File=/dev/nvidia[0-1] Count=3\n",
     "gres.conf:1: Count= does not match the number of devices File=/MultipleFiles= gives "
     "(slurmd: Invalid GRES record for gpu, count does not match File value) (in 'Count=3')"),
    ("Name=gpu MultipleFiles=/dev/nvidia0,/dev/nvidia-caps/nvidia-cap3 Count=2\n",
     "gres.conf:1: Count= does not match the number of devices File=/MultipleFiles= gives "
     "(slurmd: Invalid GRES record for gpu, count does not match File value) (in 'Count=2')"),
    ("Name=gpu File=dev/nvidia0\n", "gres.conf:1: device files must be absolute paths (in 'dev/nvidia0')"),
    ("Name=gpu File=/dev/nvidia[1-0]\n", "gres.conf:1: File=: reversed range '1-0' in hostlist (in 'File=/dev/nvidia[1-0]')"),
    ("Name=gpu MultipleFiles=/dev/nvidia[0-\n", "gres.conf:1: MultipleFiles=: unbalanced '[' in hostlist (in 'MultipleFiles=/dev/nvidia[0-')"),
    ("NodeName=n1 NodeName=n1,n3 Name=gpu\n", "gres.conf:1: NodeName= must come first on its line "
     "(slurmd: Parsing error at unrecognized key: NodeName) (in 'NodeName=n1,n3')"),
    ("Name=gpu Count=two\n", "gres.conf:1: Count= needs a whole number, "
     "got 'two' (slurmd: Invalid GRES record for gpu, invalid count two) (in 'Count=two')"),
    ("Include\n", "gres.conf:1: Include needs a file name (in 'Include')"),
])
def test_refusals(text, message):
    with pytest.raises(ConfigError) as exc:
        parse(text)
    assert str(exc.value) == message


@pytest.mark.parametrize("node", [None, "n1"])
def test_lines_slurmd_skips_are_skipped_and_said_so(node):
    conf = parse("NodeName=n[1- Name=gpu File=/dev/nvidia0\n"
                 "NodeName=n1 Type=a100 File=/dev/nvidia0\n"
                 "NodeName=n1 Name=gpu File=/dev/nvidia1\n", node=node)
    assert [(ln.lineno, ln.files) for ln in conf.for_node("n1")] == [(3, ["/dev/nvidia1"])]
    assert conf.ignored[0] == ("gres.conf:1", "NodeName=n[1- is not a hostlist slurmd can read: "
                                              "slurmd skips the line")
    assert conf.ignored[1] == ("gres.conf:2", "no Name= (slurmd: Invalid GRES data, no type "
                                              "name): slurmd skips the line")


def test_accepted_forms():
    conf = parse("AutoDetect=NVML\n"
                 "NodeName=n1 AutoDetect=off\n"
                 "Name=gpu Files=/dev/nvidia[0-1] Count=2 Cores=0-7 Links=-1,0 Flags=nvidia_gpu_env\n"
                 "Name=gpu MultipleFiles=/dev/nvidia2,/dev/nvidia-caps/nvidia-cap[3-4] Count=1\n"
                 "Name=mps Count=2K\n")
    a, b, c, d, e = conf.lines
    assert (a.autodetect, a.name, a.nodes) == ("nvml", None, None)
    assert (b.autodetect, b.nodes) == ("off", "n1")
    assert conf.autodetect_for("n1") == "off" and conf.autodetect_for("n2") == "nvml"
    assert c.files == ["/dev/nvidia0", "/dev/nvidia1"] and c.count == 2 and c.device_count == 2
    assert c.extra == {"Cores": "0-7", "Links": "-1,0", "Flags": "nvidia_gpu_env"}
    assert d.multiple_files == ["/dev/nvidia2", "/dev/nvidia-caps/nvidia-cap3",
                                "/dev/nvidia-caps/nvidia-cap4"] and d.device_count == 1
    assert e.count == 2048 and e.device_count == 2048 and e.source == "gres.conf:5"
    assert gresconf.GresLine("g", 1, "", name="gpu").device_count == 1  # no File, no Count


def test_include_errors_name_the_including_line(tmp_path):
    (tmp_path / "gres.conf").write_text("Name=gpu File=/dev/nvidia0\nInclude nope.conf\n")
    with pytest.raises(ConfigError) as exc:
        gresconf.load(str(tmp_path / "gres.conf"))
    assert str(exc.value) == (f"{tmp_path}/gres.conf:2: Include {tmp_path}/nope.conf: file not found "
                              "(in 'Include nope.conf')")
    (tmp_path / "loop.conf").write_text("Include loop.conf\n")
    with pytest.raises(ConfigError, match=r"loop.conf:1: Include nested too deeply \(a loop\?\)"):
        gresconf.load(str(tmp_path / "loop.conf"))


def test_include_depth_limit_is_eight(tmp_path):
    for i in range(8):
        (tmp_path / f"{i}.conf").write_text(f"include {i + 1}.conf\n")
    (tmp_path / "8.conf").write_text("Name=gpu File=/dev/nvidia0\n")
    assert gresconf.load(str(tmp_path / "0.conf")).lines[0].source == "8.conf:1"
    (tmp_path / "8.conf").write_text("Include 9.conf\n")
    (tmp_path / "9.conf").write_text("Name=gpu File=/dev/nvidia0\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        gresconf.load(str(tmp_path / "0.conf"))


# The fast path for a node (a 10,000-node configless gres.conf) must not change the answer:
# for any text, the lines for the node are the same with and without it.
WORDS = ["NodeName=n1", "NodeName=n2", "NodeName=n[1-2]", "NodeName=n1,n3", "NodeName=\"n1\"",
         "Name=gpu", "Name=GPU", "Type=a100", "File=/dev/nvidia0", "File=/dev/nvidia[0-1]",
         "Count=2", "Flie=x", "Cores=0-3", "MultipleFiles=/dev/nvidia0,/dev/nvidia1"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4), min_size=1, max_size=6),
       st.sampled_from(["n1", "n2", "n3"]))
def test_property_node_scoped_parse_gives_the_same_lines(rows, node):
    text = "\n".join(" ".join(r) for r in rows) + "\n"

    def outcome(scoped):
        try:
            conf = parse(text, node if scoped else None)
            return [(ln.lineno, ln.nodes, ln.name, ln.type, ln.files, ln.multiple_files, ln.count)
                    for ln in conf.for_node(node)]
        except ConfigError as exc:
            return str(exc)

    full, scoped = outcome(False), outcome(True)
    if scoped != full:
        # the only difference allowed: an error in ANOTHER node's line that slurmd does not
        # look at (its device list, Count, Name); unknown keys and bad NodeName= still count
        assert isinstance(full, str), (full, scoped)
        lineno = int(full.split(":")[1])
        words = rows[lineno - 1]
        nodes = [w.split("=", 1)[1].strip('"') for w in words if w.startswith("NodeName=")]
        assert words[0].startswith("NodeName=") and node not in nodes[-1]  # the latest wins
        assert "unknown key" not in full and "NodeName=" not in full.split(": ", 1)[1][:10]


def test_a_quoted_nodename_is_this_node_in_the_fast_path_too():
    text = 'NodeName="n1" Name=gpu File=/dev/nvidia0\n'
    assert [ln.files for ln in parse(text, node="n1").for_node("n1")] == [["/dev/nvidia0"]]


def test_a_nodename_given_twice_is_refused_in_the_fast_path_too():
    text = "NodeName=n2 NodeName=n1,n3 Name=gpu File=/dev/nvidia0\n"
    for scoped in (None, "n1", "n3"):
        with pytest.raises(ConfigError, match="NodeName= must come first on its line"):
            parse(text, node=scoped)
