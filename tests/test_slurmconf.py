"""slurm.conf as slurmctld reads the parts migsync needs: Gres= specs, NodeName lines with
DEFAULT, hostlists and Include, GresTypes. Expected values are written by hand from
slurm.conf(5)."""
import pytest

from migsync import slurmconf
from migsync.errors import ConfigError


@pytest.mark.parametrize("value,want", [
    ("gpu:1g.10gb:14,gpu:a100:2", [("gpu", "1g.10gb", 14), ("gpu", "a100", 2)]),
    ("gpu:2", [("gpu", None, 2)]),
    ("gpu", [("gpu", None, 1)]),
    # the name and Type as written: slurmd takes `GPU` for another GRES than `gpu`
    # (measured 29 Nov, 22.05-26.05: "Invalid GRES configured on node", corpus case 124)
    ("GPU:A100:2", [("GPU", "A100", 2)]),
    ("gpu:a100", [("gpu", "a100", 1)]),  # no count: one of that type (measured: corpus 126)
    ("gpu:a100:no_consume:2", [("gpu", "a100", 2)]),
    ("gpu:no_consume:2", [("gpu", None, 2)]),
    ("gpu:a100:1K", [("gpu", "a100", 1024)]),
    (" gpu:a100:2 , mps:100", [("gpu", "a100", 2), ("mps", None, 100)]),
    ("(null)", []),
    ("(NULL)", []),
    ("", []),
])
def test_parse_gres_table(value, want):
    assert [(s.name, s.type, s.count) for s in slurmconf.parse_gres(value, "slurm.conf:7")] == want


@pytest.mark.parametrize("value,message", [
    ("gpu:2,,gpu:1", "slurm.conf:7: empty Gres entry in 'gpu:2,,gpu:1' (in '')"),
    (":2", "slurm.conf:7: empty Gres entry in ':2' (in ':2')"),
    ("gpu:a:b:2", "slurm.conf:7: Gres entry has too many ':' fields (in 'gpu:a:b:2')"),
])
def test_parse_gres_refusals(value, message):
    with pytest.raises(ConfigError) as exc:
        slurmconf.parse_gres(value, "slurm.conf:7")
    assert str(exc.value) == message


CONF = """\
ClusterName=demo
GresTypes=gpu,mps
NodeName=DEFAULT CPUs=8 Gres=gpu:2
NodeName=a[1-3] RealMemory=100
PartitionName=p Nodes=a[1-3],b1 Gres=gpu:99
NodeSet=ns Nodes=a[1-3]
FrontendName=fe1 Port=1
DownNodes=a3 Reason=x
NodeName=a2 Gres=gpu:a100:4
nodename=default Gres=gpu:3
NodeName=b1 CPUs=4
ClusterName=later
"""


def test_node_lines_default_order_and_where():
    """slurm.conf(5): a NodeName=DEFAULT line applies to the node lines after it."""
    conf = slurmconf.parse(CONF, "/etc/slurm/slurm.conf")
    assert conf.gres_types == ["gpu", "mps"]
    # the last value wins; partition, nodeset, front-end and down-node lines are not settings
    assert conf.params == {"clustername": "later", "grestypes": "gpu,mps"}
    assert conf.node_keys("a1") == {"cpus": "8", "gres": "gpu:2", "realmemory": "100"}
    specs, where = conf.node_gres("a1")
    assert [(s.type, s.count) for s in specs] == [(None, 2)] and where == "slurm.conf:3"
    specs, where = conf.node_gres("a2")  # its own later line wins over the earlier DEFAULT
    assert [(s.type, s.count) for s in specs] == [("a100", 4)] and where == "slurm.conf:9"
    specs, where = conf.node_gres("b1")  # the second DEFAULT (line 10) applies to b1 only
    assert [(s.type, s.count) for s in specs] == [(None, 3)] and where == "slurm.conf:10"
    assert conf.node_keys("b1") == {"cpus": "4", "gres": "gpu:3"}
    assert conf.node_keys("a4") is None and conf.node_gres("zz") is None
    assert [nl.lineno for nl in conf.node_lines] == [3, 4, 9, 10, 11]  # PartitionName is not a node


def test_gres_names_are_taken_only_as_gres_types_spells_them():
    """Measured 29 Nov (22.05-26.05, corpus 124/125): `GresTypes=GPU` with `Gres=gpu:a100:2`,
    or `GresTypes=gpu` with `Gres=GPU:a100:2`, gives the node no gpu ("Invalid GRES configured
    on node"). Without GresTypes nothing is dropped (migsync cannot tell)."""
    for types, gres in (("GPU", "gpu:a100:2"), ("gpu", "GPU:a100:2")):
        conf = slurmconf.parse(f"GresTypes={types}\nNodeName=n1 Gres={gres},mps:5\n", "s.conf")
        assert conf.node_gres("n1") == ([], "s.conf:2")
    conf = slurmconf.parse("GresTypes=mps,gpu\nNodeName=n1 Gres=gpu:a100:2,mps:5\n", "s.conf")
    assert [(s.name, s.type, s.count) for s in conf.node_gres("n1")[0]] == [
        ("gpu", "a100", 2), ("mps", None, 5)]
    conf = slurmconf.parse("NodeName=n1 Gres=GPU:a100:2\n", "s.conf")
    assert [s.name for s in conf.node_gres("n1")[0]] == ["GPU"]


def test_node_without_gres_and_where_defaults_to_the_file():
    conf = slurmconf.parse("NodeName=n1 CPUs=4\n", "/etc/slurm/slurm.conf")
    assert conf.node_gres("n1") == ([], "/etc/slurm/slurm.conf")


def test_include_relative_to_the_including_file_and_depth_limit(tmp_path):
    (tmp_path / "nodes.conf").write_text("NodeName=n[1-2] Gres=gpu:a100:2\n")
    (tmp_path / "slurm.conf").write_text("GresTypes=gpu\nInclude nodes.conf\n")
    conf = slurmconf.load(str(tmp_path / "slurm.conf"))
    specs, where = conf.node_gres("n2")
    assert [(s.type, s.count) for s in specs] == [("a100", 2)] and where == "nodes.conf:1"
    (tmp_path / "loop.conf").write_text("Include loop.conf\n")
    with pytest.raises(ConfigError, match="bad or too deeply nested Include"):
        slurmconf.load(str(tmp_path / "loop.conf"))
    with pytest.raises(ConfigError) as exc:
        slurmconf.parse("Include\n", "s.conf")
    assert str(exc.value) == "s.conf:1: bad or too deeply nested Include (in 'Include')"


def test_include_nesting_up_to_the_limit_is_fine(tmp_path):
    for i in range(8):
        (tmp_path / f"{i}.conf").write_text(f"Include {i + 1}.conf\n")
    (tmp_path / "8.conf").write_text("NodeName=deep Gres=gpu:1\n")
    assert slurmconf.load(str(tmp_path / "0.conf")).node_gres("deep")[0][0].count == 1
    (tmp_path / "8.conf").write_text("Include 9.conf\n")
    (tmp_path / "9.conf").write_text("NodeName=deep Gres=gpu:1\n")
    with pytest.raises(ConfigError, match="too deeply nested"):
        slurmconf.load(str(tmp_path / "0.conf"))


def test_bad_nodename_hostlist_names_line_and_fragment():
    with pytest.raises(ConfigError) as exc:
        slurmconf.parse("GresTypes=gpu\nNodeName=n[1-\n", "slurm.conf")
    assert str(exc.value) == "slurm.conf:2: NodeName=: unbalanced '[' in hostlist (in 'n[1-')"


def test_include_keyword_any_case_and_file_names_with_spaces(tmp_path):
    (tmp_path / "my nodes.conf").write_text("NodeName=n1 Gres=gpu:a100:1\n")
    (tmp_path / "slurm.conf").write_text("INCLUDE my nodes.conf\n")
    conf = slurmconf.load(str(tmp_path / "slurm.conf"))
    assert conf.node_gres("n1") == (conf.node_gres("n1")[0], "my nodes.conf:1")
    assert [(s.type, s.count) for s in conf.node_gres("n1")[0]] == [("a100", 1)]
    (tmp_path / "abs.conf").write_text(f"include {tmp_path / 'my nodes.conf'}\n")
    assert slurmconf.load(str(tmp_path / "abs.conf")).node_keys("n1") == {"gres": "gpu:a100:1"}


def test_lines_after_an_include_are_read_and_a_missing_include_names_the_line(tmp_path):
    (tmp_path / "nodes.conf").write_text("NodeName=n1 Gres=gpu:1\n")
    (tmp_path / "slurm.conf").write_text("Include nodes.conf\nNodeName=n2 Gres=gpu:2\n")
    conf = slurmconf.load(str(tmp_path / "slurm.conf"))
    assert [(nl.nodes, nl.lineno) for nl in conf.node_lines] == [("n1", 1), ("n2", 2)]
    (tmp_path / "slurm.conf").write_text("ClusterName=c\nInclude nope.conf\n")
    with pytest.raises(ConfigError) as exc:
        slurmconf.load(str(tmp_path / "slurm.conf"))
    assert str(exc.value) == (f"{tmp_path}/slurm.conf:2: Include {tmp_path}/nope.conf: file not "
                              "found (in 'Include nope.conf')")


def test_a_bad_gres_names_the_file_and_line_it_came_from(tmp_path):
    (tmp_path / "slurm.conf").write_text("NodeName=DEFAULT CPUs=4\nNodeName=n1 Gres=gpu:a:b:2\n")
    conf = slurmconf.load(str(tmp_path / "slurm.conf"))
    with pytest.raises(ConfigError) as exc:
        conf.node_gres("n1")
    assert str(exc.value) == (f"{tmp_path}/slurm.conf:2: Gres entry has too many ':' fields "
                              "(in 'gpu:a:b:2')")


@pytest.mark.parametrize("value,want", [
    # measured 29 Nov, slurmd 22.05-26.05 (corpus 126-128): a count that starts with a digit
    # but is no number drops the entry ("Bad GRES configuration"); a last field that does not
    # start with a digit leaves a count of one
    ("gpu:1g.10gb", []),
    ("gpu:1g.10gb,gpu:a100:2", [("gpu", "a100", 2)]),
    ("gpu:a100:2x", []),
    ("gpu:a100:x2", [("gpu", "a100", 1)]),
    ("gpu:a100,gpu:1g.10gb:1", [("gpu", "a100", 1), ("gpu", "1g.10gb", 1)]),
])
def test_gres_entries_without_a_proper_count(value, want):
    assert [(s.name, s.type, s.count) for s in slurmconf.parse_gres(value, "s.conf:2")] == want


def test_a_syntax_error_names_the_slurm_conf_and_line():
    with pytest.raises(ConfigError) as exc:
        slurmconf.parse("ClusterName=c\nNodeName=n1 junk\n", "/etc/slurm/slurm.conf")
    assert str(exc.value).startswith("/etc/slurm/slurm.conf:2: expected key=value, got 'junk'")


def test_gres_entries_slurmd_drops_are_listed_with_slurmds_words():
    """`check` shows them as `(slurmd ignores)` lines: what slurmd logs for each (measured,
    corpus 124 and 127), once per entry even when node_gres is asked twice."""
    conf = slurmconf.parse("GresTypes=gpu\nNodeName=n1 Gres=gpu:1g.10gb,GPU:a100:2,gpu:a100:1\n",
                           "/etc/slurm/slurm.conf")
    for _ in range(2):
        specs, where = conf.node_gres("n1")
    assert [(s.name, s.type, s.count) for s in specs] == [("gpu", "a100", 1)]
    assert conf.ignored == [
        ("slurm.conf:2", "Gres entry gpu:1g.10gb: '1g.10gb' is no count (slurmd: Bad GRES "
                         "configuration: gpu:1g.10gb)"),
        ("slurm.conf:2", "Gres entry GPU:a100:2: 'GPU' is not spelt as in GresTypes=gpu "
                         "(slurmd: Invalid GRES configured on node n1)")]
