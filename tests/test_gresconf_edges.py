"""gres.conf rules the first tests left open (found by mutation testing, tests/mutation.sh).
Expected values are written by hand, from slurmd's recorded answers (tests/data/gres-corpus,
named per test) or from Slurm's source where it says so (src/common/parse_config.c, gres.c)."""
import pytest

from migsync import gresconf
from migsync.errors import ConfigError

NODE = "gpunode1"
PATH = "/etc/slurm/gres.conf"


class Spec:
    def __init__(self, name, type, count):
        self.name, self.type, self.count = name, type, count


def parse(text, node=NODE, version=None):
    return gresconf.parse(text, PATH, node=node, version=version)


def mine(text, node=NODE, version=None):
    return [(ln.lineno, ln.type, ln.files) for ln in parse(text, node, version).for_node(NODE)]


def refusal(text, node=NODE, version=None):
    with pytest.raises(ConfigError) as exc:
        parse(text, node, version).for_node(NODE)
    return str(exc.value)


def fatal(text, version=None):
    return [(ln.lineno, why) for ln, why in parse(text, version=version).fatal_for(NODE)]


# ---- which lines are this node's -----------------------------------------------------------

@pytest.mark.parametrize("node", [None, NODE])
def test_an_escaped_node_name_is_this_nodes_line(node):
    """slurmd strips every backslash from a line before it parses it (parse_config.c
    _strip_escapes; corpus 44-backslash for Type=), so NodeName=gpunode\\1 is gpunode1, whether
    or not migsync was told the node up front."""
    assert mine("NodeName=gpunode\\1 Name=gpu Type=a100 File=/dev/nvidia0\n", node) == [
        (1, "a100", ["/dev/nvidia0"])]


def test_a_node_listed_second_in_nodename():
    assert mine("NodeName=other,gpunode1 Name=gpu Type=a100 File=/dev/nvidia0\n") == [
        (1, "a100", ["/dev/nvidia0"])]


def test_other_nodes_values_are_not_read_also_in_included_files(tmp_path):
    """corpus 18-other-node-bad-file: slurmd accepts a File= it cannot parse on another node's
    line. The same for a NodeName= hostlist and for lines that come from an Include."""
    (tmp_path / "inc.conf").write_text("NodeName=other[1-2] Name=gpu Type=a File=/dev/nvidia[3-1]\n")
    main = tmp_path / "gres.conf"
    main.write_text("NodeName=other[3-4] Name=gpu Type=a File=/dev/nvidia[3-1]\n"
                    "Include inc.conf\n"
                    "NodeName=gpunode1 Name=gpu Type=a100 File=/dev/nvidia[0-1]\n")
    conf = gresconf.load(str(main), NODE)
    assert [(ln.lineno, ln.files) for ln in conf.for_node(NODE)] == [
        (3, ["/dev/nvidia0", "/dev/nvidia1"])]
    assert conf.fatal_for(NODE) == []


def test_an_unknown_key_on_another_nodes_line_is_refused():
    """corpus 51-other-node-unknown-key: slurmd checks the keys of every line."""
    assert refusal("NodeName=other Foo=1\nName=gpu File=/dev/nvidia0\n") == \
        f"{PATH}:1: unknown key 'Foo' (in 'Foo=1')"


# ---- File= lists ---------------------------------------------------------------------------

@pytest.mark.parametrize("files", ['"/dev/nvidia[0-1] /dev/nvidia3"', "/dev/nvidia[0-1],,/dev/nvidia3"])
def test_file_list_elements_after_a_bracket_group(files):
    """corpus 43-quoted-files (a blank separates files) and 26-empty-list-element (an empty
    element is dropped): the same after a bracket group."""
    assert mine(f"Name=gpu Type=a100 File={files}\n") == [
        (1, "a100", ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia3"])]


def test_slurm_22_05_reads_text_after_a_bracket_that_another_group_follows():
    """22.05's hostlist takes text after ']' only before another '[' group (corpus 40/41 for
    the refusal)."""
    assert mine("Name=gpu File=/dev/d[0-1]x[0-0]\n", version="22.05") == [
        (1, None, ["/dev/d0x0", "/dev/d1x0"])]
    assert refusal("Name=gpu File=/dev/nvidia[0-1]x\n", version="22.05") == (
        f"{PATH}:1: File=: text after ']' (Slurm 22.05 cannot parse it) (in 'File=/dev/nvidia[0-1]x')")


@pytest.mark.parametrize("text,message", [
    ("Name=gpu File=,\n", "File=: empty file list (in 'File=,')"),
    ("Name=gpu File=/dev/nvidia[0-9000]\n",  # one node's devices: capped at 8192 (issue 12)
     "File=: hostlist has more than 8192 names (in 'File=/dev/nvidia[0-9000]')"),
    ("Name=mps Count=-1 File=/dev/nvidia0\n",
     "Count= is negative or too large (slurmd: GRES mps has invalid count value "
     "18446744073709551615) (in 'Count=-1')"),
    ("AutoDetect=off Name=gpu\n", "a global AutoDetect= line takes nothing else (slurmd: Parse "
     "error; put the keys on a NodeName= or Name= line) (in 'AutoDetect=off Name=gpu')"),
])
def test_refusals_word_for_word(text, message):
    assert refusal(text) == f"{PATH}:1: {message}"


def test_long_lines_are_quoted_to_60_characters():
    tail = " Cores=0-15,32-47 Links=-1,0,0,0"
    autodetect = "AutoDetect=off Name=gpu Type=a100 File=/dev/nvidia[0-1]" + tail
    assert refusal(autodetect + "\n").endswith(f"(in '{autodetect[:60]}')")
    first = "Type=a100 Name=gpu File=/dev/nvidia[0-1]" + tail
    assert refusal(first + "\n").endswith(f"(in '{first[:60]}')")
    count_only = "NodeName=gpunode1 Name=gpu Type=a100 Count=1" + tail
    assert refusal("NodeName=gpunode1 Name=gpu Type=a100 File=/dev/nvidia0\n" + count_only + "\n") == (
        f"{PATH}:2: some gpu lines for gpunode1 have File= and this one does not (slurmd: "
        'gres.conf for gpu, some records have "File" specification while others do not) '
        f"(in '{count_only[:60]}')")


# ---- AutoDetect ----------------------------------------------------------------------------

def test_autodetect_found_after_other_lines_and_node_local_on_a_name_line():
    assert parse("Name=gpu File=/dev/nvidia0\nAutoDetect=nvml\n").autodetect_for(NODE) == "nvml"
    text = "NodeName=gpunode1 Name=gpu AutoDetect=off Type=a100 File=/dev/nvidia0\n"
    assert parse(text).autodetect_for(NODE) == "off"
    assert fatal(text) == []


def test_conflicting_node_local_autodetect_names_the_line_that_differs():
    """corpus 36-autodetect-conflict (the text); one node-local line alone is fine."""
    assert fatal("NodeName=gpunode1 AutoDetect=off\nName=gpu File=/dev/nvidia0\n") == []
    assert fatal("NodeName=gpunode1 AutoDetect=off\nNodeName=gpunode1 AutoDetect=nvml\n"
                 "Name=gpu File=/dev/nvidia0\n") == [
        (2, "gres.conf: duplicate node-local AutoDetect specification does not match the first")]


# ---- slurmd's fatal errors -----------------------------------------------------------------

def test_mixed_type_names_the_untyped_line():
    """corpus 30-mixed-type (the text)."""
    assert fatal("Name=gpu Type=a100 File=/dev/nvidia0\nName=gpu File=/dev/nvidia1\n") == [
        (2, 'gres.conf for gpu, some records have "Type=" specification while others do not')]


def test_flags_conflict_on_an_untyped_line_prints_null_as_slurmd_does():
    """corpus 32-flags-conflict (the text); slurmd prints a missing type with %s: '(null)'."""
    assert fatal("Name=gpu File=/dev/nvidia0 Flags=nvidia_gpu_env\n"
                 "Name=gpu File=/dev/nvidia1 Flags=amd_gpu_env\n") == [
        (2, "Invalid GRES record name=gpu type=(null): Flags (amd_gpu_env) does not match env "
            "flags for previous GRES of same node and name")]


@pytest.mark.parametrize("version", ["22.05", "24.11", "26.05"])
def test_flags_is_a_comma_list_and_a_line_without_flags_inherits(version):
    """gres.conf(5): Flags= is a comma list; gres.c: a line without Flags= inherits the env
    flags of the previous line of that name, so a third line with the same flags is fine.
    CountOnly beside env flags is no env flag on 22.05, but 24.11 and 26.05 compare it too
    (measured 29 Nov, the reverse order is corpus 89)."""
    assert fatal("Name=gpu Type=a100 File=/dev/nvidia0 Flags=nvidia_gpu_env,CountOnly\n"
                 "Name=gpu Type=a100 File=/dev/nvidia1 Flags=nvidia_gpu_env\n", version) == (
        [] if version == "22.05" else
        [(2, "Invalid GRES record name=gpu type=a100: Flags (nvidia_gpu_env) does not match "
             "env flags for previous GRES of same node and name")])
    assert fatal("Name=gpu Type=a100 File=/dev/nvidia0 Flags=nvidia_gpu_env\n"
                 "Name=gpu Type=a100 File=/dev/nvidia1\n"
                 "Name=gpu Type=a100 File=/dev/nvidia2 Flags=nvidia_gpu_env\n", version) == []


# ---- slurmd's records ----------------------------------------------------------------------

def order(text, version, name="gpu", gres=None):
    conf = parse(text, version=version)
    return [(r.index, r.type, r.count, r.files, r.line)
            for r in gresconf.slurmd_order(conf, NODE, gres, name)]


def test_file_less_gpu_records_count_in_22_05_and_are_dropped_from_24_11():
    text = "Name=gpu Type=a100 Count=2\nName=gpu Type=a100\n"
    assert order(text, "22.05") == [(0, "a100", 2, (), 1), (2, "a100", 1, (), 2)]
    assert order(text, "24.11") == []  # slurmd: "Ignoring file-less GPU"
    assert order(text, "26.05") == []
    # only gpu records are dropped
    assert order("Name=mps Count=100\n", "24.11", "mps") == [(0, None, 100, (), 1)]


def test_mps_count_is_spread_over_its_files_the_remainder_to_the_first():
    assert order("Name=mps Count=10 File=/dev/nvidia[0-2]\n", "24.11", "mps") == [
        (0, None, 4, ("/dev/nvidia0",), 1), (4, None, 3, ("/dev/nvidia1",), 1),
        (7, None, 3, ("/dev/nvidia2",), 1)]
    # without Count= each file is one record (no division by a missing count)
    got = order("Name=mps File=/dev/nvidia[0-1]\n", "24.11", "mps")
    assert [files for _, _, _, files, _ in got] == [("/dev/nvidia0",), ("/dev/nvidia1",)]


def test_an_include_loop_names_the_line_that_includes(tmp_path):
    (tmp_path / "loop.conf").write_text("Include loop.conf\n")
    with pytest.raises(ConfigError) as exc:
        gresconf.load(str(tmp_path / "loop.conf"))
    assert str(exc.value) == (f"{tmp_path}/loop.conf:1: Include nested too deeply (a loop?) "
                              "(in 'Include loop.conf')")


# ---- Count=0 -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["22.05", "24.11", "26.05"])
def test_a_count_0_line_gives_no_device(version):
    """`Count=0` registers nothing, with no error (measured with the real slurmd of the three
    versions, README "Read like slurmd"): slurmd's order has no record for it, even on 22.05,
    which keeps other file-less gpu records."""
    conf = parse("NodeName=gpunode1 Name=gpu Type=a100 Count=0\n", version=version)
    assert gresconf.slurmd_order(conf, NODE, [Spec("gpu", "a100", 1)]) == []
    assert fatal("NodeName=gpunode1 Name=gpu Type=a100 Count=0\n", version) == []


# ---- Include takes one word ------------------------------------------------------------------

@pytest.mark.parametrize("rest", ["{d}/inc1.conf {d}/inc2.conf", "{d}/my dir.conf"])
def test_include_with_more_than_one_word_is_refused_even_when_the_files_exist(tmp_path, rest):
    """slurmd cannot read a gres.conf whose Include has blanks after it (corpus cases 78 and
    81: 'error opening/reading', though every file named exists)."""
    for name in ("inc1.conf", "inc2.conf", "my dir.conf", "my"):
        (tmp_path / name).write_text("")
    line = "Include " + rest.format(d=tmp_path)
    top = tmp_path / "gres.conf"
    top.write_text(line + "\nNodeName=gpunode1 Name=gpu Type=a100 File=/dev/nvidia0\n")
    with pytest.raises(ConfigError) as exc:
        gresconf.load(str(top), NODE).for_node(NODE)
    assert str(exc.value) == (f"{top}:1: Include takes one file name without blanks (slurmd "
                              f"cannot read this line) (in '{line[:77]}...')")  # cut at 80
