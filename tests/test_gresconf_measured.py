"""gres.conf / slurm.conf rules found in the fourth fidelity hunt (29 Nov), each measured with
the real `slurmd -G` of 22.05.8, 24.11.5 and 26.05.5 (the corpus case named in each test holds
the recording; a table entry without a case was measured by hand with the same slurmd
versions). Expected values are written by hand from those answers."""
import pytest

from migsync import gresconf, slurmconf
from migsync.errors import ConfigError

NODE = "gpunode1"
PATH = "/etc/slurm/gres.conf"
VERSIONS = ["22.05", "24.11", "26.05"]


def parse(text, version=None, gres_types=None):
    return gresconf.parse(text, PATH, node=NODE, version=version, gres_types=gres_types)


def count_of(value, version=None):
    return parse(f"Name=foo Count={value}\n", version).lines[0].count


def refusal(text, version=None):
    with pytest.raises(ConfigError) as exc:
        parse(text, version).for_node(NODE)
    return str(exc.value)


def fatal(text, version=None, gres_types=None):
    return [(ln.lineno, why) for ln, why in parse(text, version, gres_types).fatal_for(NODE)]


class Spec:
    def __init__(self, name, type, count):
        self.name, self.type, self.count = name, type, count


# ---- Count= -----------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("value,want", [
    # slurmd accepted each of these (measured, all three versions); the values are Slurm's
    # suffix table: K/KiB binary, KB decimal (corpus 87: `Count=1kb` is exactly 1000)
    ("+3", 3), (" 3", 3), ("010", 10), ("-0", 0), ("2K", 2048), ("1kb", 1000), ("1kB", 1000),
    ("1KiB", 1024), ("1kib", 1024), ("1mb", 1000 ** 2), ("1MiB", 1 << 20), ("1m", 1 << 20),
    ("1gb", 1000 ** 3), ("1G", 1 << 30), ("2tb", 2 * 1000 ** 4), ("1P", 1 << 50),
])
def test_counts_slurmd_accepts(value, want, version):
    assert count_of(value, version) == want


@pytest.mark.parametrize("value", [
    # slurmd: "Invalid GRES record for foo, invalid count ..." (measured, all three versions)
    "3k5", "0x10", "1e3", "1b", "99999999999999999999", "3 ", "1 k", "2.0", "lots",
])
def test_counts_slurmd_refuses_name_its_words(value):
    assert refusal(f'Name=foo Count="{value}"\n') == (
        f"{PATH}:1: Count= needs a whole number, got {value!r} "
        f"(slurmd: Invalid GRES record for foo, invalid count {value}) (in 'Count={value}')")


def test_a_negative_count_wraps_as_in_slurmd_and_minus_one_is_refused():
    """slurmd reads Count= with strtoll into an unsigned 64-bit count: -1 is
    18446744073709551615, which it refuses (corpus 56, word for word)."""
    assert refusal("Name=mps Count=-1 File=/dev/nvidia0\n").endswith(
        "(slurmd: GRES mps has invalid count value 18446744073709551615) (in 'Count=-1')")


def test_count_plus_two_matches_two_files():
    """corpus 86: `Count=+2 File=/dev/nvidia[0-1]` is accepted by every version."""
    lines = parse("Name=gpu Type=a100 Count=+2 File=/dev/nvidia[0-1]\n").for_node(NODE)
    assert [(ln.count, ln.files) for ln in lines] == [(2, ["/dev/nvidia0", "/dev/nvidia1"])]


# ---- NodeName= hostlists on 22.05 --------------------------------------------------------

def test_22_05_skips_a_line_whose_nodename_has_text_after_a_bracket():
    """corpus 82: `NodeName=gpu[1-2]x,gpunode1` is a hostlist 22.05 cannot parse (the line
    is skipped, with a log line); 24.11 and 26.05 read it and the line is this node's."""
    text = "NodeName=gpu[1-2]x,gpunode1 Name=gpu Type=a100 File=/dev/nvidia[0-1]\n"
    old = parse(text, "22.05")
    assert old.for_node(NODE) == []
    assert old.ignored == [("gres.conf:1", "NodeName=gpu[1-2]x,gpunode1 is not a hostlist "
                                           "slurmd can read: slurmd skips the line")]
    for version in ("24.11", "26.05"):
        assert [ln.lineno for ln in parse(text, version).for_node(NODE)] == [1]


# ---- Include ----------------------------------------------------------------------------

@pytest.mark.parametrize("version,where", [("22.05", "sub"), ("24.11", "top"),
                                           ("26.05", "top")])
def test_a_nested_relative_include_is_read_against_the_right_directory(tmp_path, version, where):
    """corpus 84/85: sub/a.conf says `Include b.conf`. 22.05 reads sub/b.conf (beside the
    including file), 24.11 and 26.05 read b.conf beside gres.conf."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "gres.conf").write_text("Include sub/a.conf\n")
    (tmp_path / "sub" / "a.conf").write_text("Include b.conf\n")
    (tmp_path / "sub" / "b.conf").write_text("Name=gpu Type=sub File=/dev/nvidia0\n")
    (tmp_path / "b.conf").write_text("Name=gpu Type=top File=/dev/nvidia0\n")
    conf = gresconf.load(str(tmp_path / "gres.conf"), NODE, version)
    assert [ln.type for ln in conf.for_node(NODE)] == [where]


def test_a_missing_nested_include_names_the_including_line(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "gres.conf").write_text("Include sub/a.conf\n")
    (tmp_path / "sub" / "a.conf").write_text("# only sub/b.conf exists\nInclude b.conf\n")
    (tmp_path / "sub" / "b.conf").write_text("Name=gpu Type=sub File=/dev/nvidia0\n")
    with pytest.raises(ConfigError) as exc:
        gresconf.load(str(tmp_path / "gres.conf"), NODE, "24.11")
    assert str(exc.value) == (f"{tmp_path}/sub/a.conf:2: Include {tmp_path}/b.conf: file not "
                              "found (in 'Include b.conf')")


# ---- GRES names not in GresTypes -----------------------------------------------------------

def test_names_outside_gres_types_are_dropped_after_their_line_is_checked():
    """corpus 100/101: with GresTypes=gpu, two file-less `Name=foo` records are no duplicate
    (slurmd: "Ignoring gres.conf record, invalid name: foo"); a bad count on such a line is
    still fatal (measured: `Name=foo Count=lots`)."""
    text = "Name=foo Count=2\nName=foo Count=3\nName=gpu Type=a100 File=/dev/nvidia[0-1]\n"
    assert fatal(text, gres_types=["gpu"]) == []
    assert fatal(text, gres_types=["GPU", "Foo"]) == [(2, "gres.conf duplicate records for foo")]
    assert fatal(text) == [(2, "gres.conf duplicate records for foo")]  # GresTypes unknown
    conf = parse(text, gres_types=["gpu"])
    assert conf.ignored == [
        ("gres.conf:1", "Name=foo is not in slurm.conf's GresTypes (slurmd: Ignoring gres.conf "
                        "record, invalid name: foo)"),
        ("gres.conf:2", "Name=foo is not in slurm.conf's GresTypes (slurmd: Ignoring gres.conf "
                        "record, invalid name: foo)")]
    with pytest.raises(ConfigError):
        parse("Name=foo Count=lots\n", gres_types=["gpu"])


def test_type_mixing_of_a_name_outside_gres_types_is_no_error():
    text = "Name=nic Type=x Count=1\nName=nic Count=1\n"
    assert fatal(text, gres_types=["gpu"]) == []
    assert fatal(text, gres_types=["gpu", "nic"]) == [
        (2, 'gres.conf for nic, some records have "Type=" specification while others do not')]


# ---- Flags= ------------------------------------------------------------------------------

@pytest.mark.parametrize("version,want", [("22.05", []), ("24.11", []), ("26.05", [])])
def test_env_flags_are_found_by_substring_in_any_case(version, want):
    """corpus 88 (fl05) and the measured fl01: `NVIDIA_GPU_ENV` and `nvidia_gpu_envx` both set
    nvidia_gpu_env, so neither differs from a line with `nvidia_gpu_env`."""
    assert fatal("Name=gpu File=/dev/nvidia0 Flags=nvidia_gpu_env\n"
                 "Name=gpu File=/dev/nvidia1 Flags=nvidia_gpu_envx\n", version) == want
    assert fatal("Name=gpu File=/dev/nvidia0 Flags=NVIDIA_GPU_ENV\n"
                 "Name=gpu File=/dev/nvidia1 Flags=nvidia_gpu_env\n", version) == want


@pytest.mark.parametrize("version,bad", [("22.05", False), ("24.11", True), ("26.05", True)])
def test_countonly_beside_env_flags_counts_from_24_11(version, bad):
    """corpus 89: `nvidia_gpu_env` then `nvidia_gpu_env,CountOnly` is fatal on 24.11 and 26.05."""
    got = fatal("Name=gpu Type=a100 File=/dev/nvidia0 Flags=nvidia_gpu_env\n"
                "Name=gpu Type=a100 File=/dev/nvidia1 Flags=nvidia_gpu_env,CountOnly\n", version)
    assert got == ([(2, "Invalid GRES record name=gpu type=a100: Flags (nvidia_gpu_env,CountOnly) "
                        "does not match env flags for previous GRES of same node and name")]
                   if bad else [])


# ---- slurm.conf Gres= and slurmd's records ------------------------------------------------

def test_gres_with_a_socket_binding():
    """slurm.conf(5) `Gres=gpu:a100:2(S:0-1)`; corpus 96: slurmd accepts it."""
    got = slurmconf.parse_gres("gpu:a100:1(S:0),gpu:1g.10gb:1(S:0,1)")
    assert [(s.name, s.type, s.count) for s in got] == [("gpu", "a100", 1), ("gpu", "1g.10gb", 1)]


@pytest.mark.parametrize("value,bad", [("gpu:2,gpu:a100:2", True), ("gpu:a100:2,gpu:1", True),
                                       ("gpu:a100:2,gpu:0", False), ("gpu:a100:2,mps:100", False)])
def test_typed_and_untyped_gres_of_one_name_stop_slurmd(value, bad):
    """corpus 98: slurmd dies on `Gres=gpu:2,gpu:a100:2` ("Some gpu GRES in slurm.conf have a
    type while others do not"); an untyped count of 0 adds nothing (corpus 103)."""
    if not bad:
        slurmconf.parse_gres(value, "slurm.conf:9")
        return
    with pytest.raises(ConfigError) as exc:
        slurmconf.parse_gres(value, "slurm.conf:9")
    assert str(exc.value) == (f"slurm.conf:9: Gres= gives some gpu a type and others none "
                              "(slurmd: Some gpu GRES in slurm.conf have a type while others do "
                              f"not) (in '{value}')")


def records(text, gres, version="24.11"):
    return [(r.index, r.type, r.count, r.files)
            for r in gresconf.slurmd_order(parse(text, version), NODE, gres)]


def test_one_type_named_twice_in_gres_counts_both():
    """corpus 99: `Gres=gpu:a100:1,gpu:a100:1` gives both a100 devices, once each."""
    text = "Name=gpu Type=a100 File=/dev/nvidia[0-1]\n"
    assert records(text, [Spec("gpu", "a100", 1), Spec("gpu", "a100", 1)]) == [
        (0, "a100", 1, ("/dev/nvidia0",)), (1, "a100", 1, ("/dev/nvidia1",))]


def test_a_type_spelt_twice_takes_whole_lines():
    """corpus 104: `Gres=gpu:a100:1,gpu:1g.10gb:1,gpu:A100:1` with one `Type=a100
    File=nvidia[0-1]` line: a100 takes that line (nvidia0, the rest ignored), A100 finds no
    line left."""
    text = ("Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap337\n"
            "Name=gpu Type=a100 File=/dev/nvidia[0-1]\n")
    gres = [Spec("gpu", "a100", 1), Spec("gpu", "1g.10gb", 1), Spec("gpu", "A100", 1)]
    assert records(text, gres) == [(0, "a100", 1, ("/dev/nvidia0",)),
                                   (1, "1g.10gb", 1, ("/dev/nvidia-caps/nvidia-cap337",))]


@pytest.mark.parametrize("text,name", [
    ("Name=mps Name=gpu Type=a100 File=/dev/nvidia[0-1]\n", "mps"),  # corpus 105
    ("NodeName=gpunode1 Name=mps Name=gpu Type=a100 File=/dev/nvidia[0-1]\n", "gpu"),
])
def test_which_of_two_names_slurmd_takes(text, name):
    assert [ln.name for ln in parse(text).lines] == [name]


def test_an_untyped_gres_takes_typed_lines_without_their_type():
    """corpus 95: gres.conf says Type=a100, slurm.conf `Gres=gpu:2`: slurmd's records have no
    type."""
    text = "Name=gpu Type=a100 File=/dev/nvidia[0-1]\n"
    assert records(text, [Spec("gpu", None, 2)]) == [
        (0, None, 1, ("/dev/nvidia0",)), (1, None, 1, ("/dev/nvidia1",))]


@pytest.mark.parametrize("version,bad", [("22.05", False), ("24.11", True), ("26.05", True)])
def test_one_sharing_beside_env_flags_counts_from_24_11(version, bad):
    """corpus 90: `nvidia_gpu_env` then `nvidia_gpu_env,one_sharing`."""
    got = fatal("Name=gpu Type=a100 File=/dev/nvidia0 Flags=nvidia_gpu_env\n"
                "Name=gpu Type=a100 File=/dev/nvidia1 Flags=nvidia_gpu_env,one_sharing\n", version)
    assert bool(got) == bad


@pytest.mark.parametrize("version", VERSIONS)
def test_flags_are_compared_with_the_last_line_that_set_any(version):
    """corpus 97: gpu nvidia_gpu_env, then a foo line with opencl_env, then gpu amd_gpu_env:
    slurmd compares the third line with the foo line's (another name), so nothing is fatal."""
    text = ("Name=gpu Type=a100 File=/dev/nvidia0 Flags=nvidia_gpu_env\n"
            "Name=foo Count=1 Flags=opencl_env\n"
            "Name=gpu Type=a100 File=/dev/nvidia1 Flags=amd_gpu_env\n")
    assert fatal(text, version) == []
    # without the foo line in between the same two gpu lines are fatal (corpus 32)
    assert [n for n, _ in fatal(text.replace("Name=foo Count=1 Flags=opencl_env\n", ""),
                                version)] == [2]


@pytest.mark.parametrize("version", VERSIONS)
def test_no_gpu_env_beside_another_env_flag_is_fatal_in_slurmds_words(version):
    """corpus 108, word for word."""
    assert fatal("Name=gpu Type=a100 File=/dev/nvidia[0-1] Flags=nvidia_gpu_env,no_gpu_env\n",
                 version) == [
        (1, 'Invalid GRES record name=gpu type=a100: Flags (nvidia_gpu_env,no_gpu_env) contains '
            '"no_gpu_env", which must be mutually exclusive to all other GRES env flags of same '
            'node and name')]


# ---- node-local AutoDetect= -------------------------------------------------------------

CONFLICT = "gres.conf: duplicate node-local AutoDetect specification does not match the first"


@pytest.mark.parametrize("first,second,bad", [
    # measured on all three versions unless a version is named
    ("NVML", "nvml", {}), ("nvml", "nvml2", {}),  # corpus 111: found by substring
    ("bogus", "junk", {}),  # corpus 110: an unknown value sets nothing
    ("junk", "off", {}),  # ... so the next one is the first that counts
    ("off", "junk", {"22.05", "24.11", "26.05"}),
    ("nvml", "off", {"22.05", "24.11", "26.05"}),  # corpus 36
    ("nvidia", "off", {"24.11", "26.05"}),  # 22.05 has no AutoDetect=nvidia
    ("full", "off", {"26.05"}),  # AutoDetect=full is 26.05's
])
def test_two_node_local_autodetect_values(first, second, bad):
    text = (f"NodeName={NODE} AutoDetect={first}\nNodeName={NODE} AutoDetect={second}\n"
            "Name=gpu Type=a100 File=/dev/nvidia[0-1]\n")
    for version in VERSIONS:
        assert fatal(text, version) == ([(2, CONFLICT)] if version in bad else []), version


# ---- end to end: `check` reads slurm.conf's GresTypes ----------------------------------------

def test_check_passes_over_lines_of_names_outside_gres_types(tmp_path):
    """The sample node's slurm.conf says GresTypes=gpu: two file-less `Name=foo` lines are
    not slurmd's duplicate records (corpus 100), `check` lists them as lines slurmd ignores;
    with foo in GresTypes they are fatal again."""
    import os
    from conftest import SAMPLE, run_cli, smi_args

    gres = tmp_path / "gres.conf"
    text = open(os.path.join(SAMPLE, "gres.conf")).read()
    n = len(text.splitlines())
    gres.write_text(text + "Name=foo Count=2\nName=foo Count=3\n")
    slurm = tmp_path / "slurm.conf"
    slurm.write_text(open(os.path.join(SAMPLE, "slurm.conf")).read())
    args = smi_args("seed", gres=str(gres), slurm=str(slurm), nodename="c51-g002")
    r = run_cli("check", *args)
    assert "slurmd-fatal" not in r.out, r.out
    assert (f"  (slurmd ignores) gres.conf:{n + 1}: Name=foo is not in slurm.conf's GresTypes "
            "(slurmd: Ignoring gres.conf record, invalid name: foo)") in r.out.splitlines(), r.out
    doc = run_cli("check", "--json", *args).json()
    assert [i["source"] for i in doc["ignored_by_slurmd"]] == [f"gres.conf:{n + 1}",
                                                               f"gres.conf:{n + 2}"]
    slurm.write_text(slurm.read_text().replace("GresTypes=gpu", "GresTypes=gpu,foo"))
    r = run_cli("check", *args)
    assert "gres.conf duplicate records for foo" in r.out, r.out


def test_a_node_whose_gres_names_no_gpu_keeps_no_gpu_record():
    """corpus 122: the node's Gres= is `(null)` (an inherited NodeName=DEFAULT value undone):
    slurmd ignores every gres.conf gpu line ("more configured than expected"). Without a
    slurm.conf (gres None) every record is kept."""
    text = "Name=gpu Type=a100 File=/dev/nvidia[0-1]\n"
    assert records(text, []) == []
    assert records(text, [Spec("mps", None, 100)]) == []
    assert [r[3] for r in records(text, None)] == [("/dev/nvidia0",), ("/dev/nvidia1",)]
