import pytest
from hypothesis import given, settings, strategies as st

from migsync import hostlist
from migsync.errors import HostlistError


def test_expand_keeps_written_order_and_padding():
    assert hostlist.expand("/dev/nvidia[3,1]") == ["/dev/nvidia3", "/dev/nvidia1"]
    assert hostlist.expand("n[01-03]") == ["n01", "n02", "n03"]
    assert hostlist.expand("n[01-3]") == ["n01", "n02", "n03"]
    assert hostlist.expand("n[08-10]") == ["n08", "n09", "n10"]


def test_expand_several_bracket_groups_and_terms():
    assert hostlist.expand("r[1-2]n[01-02],x") == ["r1n01", "r1n02", "r2n01", "r2n02", "x"]
    assert hostlist.expand("c51-g[001-002,010]") == ["c51-g001", "c51-g002", "c51-g010"]


@pytest.mark.parametrize("bad", ["n[3-1]", "n[1-", "n1-]", "n[]", "n[a-b]", "n[[1]]",
                                 "n[1-70000]", "a,,b", ""])
def test_malformed_hostlists_raise_typed_error(bad):
    with pytest.raises(HostlistError):
        hostlist.expand(bad)


def test_membership_without_expansion():
    expr = "n[000001-065536]"
    assert hostlist.contains(expr, "n000001")
    assert hostlist.contains(expr, "n065536")
    assert not hostlist.contains(expr, "n65536")  # padding matters
    assert not hostlist.contains(expr, "n065537")
    assert hostlist.count(expr) == 65536
    assert hostlist.contains("r[1-2]n[01-03]", "r2n03")
    assert not hostlist.contains("r[1-2]n[01-03]", "r3n01")
    assert hostlist.contains("a,b,c", "b") and not hostlist.contains("a,b,c", "d")


def test_fold_is_order_preserving():
    assert hostlist.fold(["n1", "n2", "n3", "n5"]) == "n[1-3,5]"
    assert hostlist.fold(["n3", "n1"]) == "n[3,1]"
    assert hostlist.fold(["n01", "n02", "n10"]) == "n[01-02,10]"
    assert hostlist.fold(["only"]) == "only"
    caps = [f"/dev/nvidia-caps/nvidia-cap{c}" for c in (337, 346, 355)]
    assert hostlist.fold(caps) == "/dev/nvidia-caps/nvidia-cap[337,346,355]"


names = st.lists(st.builds(lambda p, n, w, s: f"{p}{str(n).zfill(w)}{s}",
                           st.sampled_from(["n", "gpu", "r1n", "/dev/nvidia"]),
                           st.integers(0, 300), st.integers(0, 4), st.sampled_from(["", "x"])),
                 min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(names)
def test_property_expand_of_fold_is_identity(xs):
    folded = hostlist.fold(xs)
    assert hostlist.expand(folded) == xs
    for x in xs:
        assert hostlist.contains(folded, x)


@settings(max_examples=300, deadline=None)
@given(names, st.text(alphabet="nrgpux0123456789", min_size=1, max_size=8))
def test_property_membership_agrees_with_expansion(xs, probe):
    folded = hostlist.fold(xs)
    assert hostlist.contains(folded, probe) == (probe in hostlist.expand(folded))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="n[]-,0123456789/", max_size=20))
def test_property_parser_raises_only_typed_errors(text):
    try:
        hostlist.expand(text)
    except HostlistError:
        pass
