import itertools
import math
import re

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


def near_misses(name):
    """Names that differ from ``name`` the way a wrong membership test would confuse them."""
    out = [name + "0", "x" + name, name[:-1]]
    digits = "".join(ch for ch in name if ch.isdigit())
    if digits:
        i = name.index(digits[0])
        out.append(name[:i] + name[i:].lstrip("0") if name[i] == "0" and len(digits) > 1 else
                   name[:i] + "0" + name[i:])  # padding differs
    return [m for m in out if m]


@settings(max_examples=300, deadline=None)
@given(names, st.data())
def test_property_membership_agrees_with_the_names_folded(xs, data):
    """Members are found, and near misses (padding, prefix, one digit more or less) are not;
    the expected answer is the input list itself."""
    folded = hostlist.fold(xs)
    member = data.draw(st.sampled_from(xs))
    assert hostlist.contains(folded, member)
    for probe in near_misses(member):
        assert hostlist.contains(folded, probe) == (probe in xs), (folded, probe)


def test_membership_table():
    # hand-written: (expression, name, member?)
    table = [("n[01-10]", "n1", False), ("n[01-10]", "n01", True), ("n[01-10]", "n10", True),
             ("n[01-10]", "n010", False), ("n[1-10]", "n01", False), ("n[8-12]", "n9", True),
             ("n[8-12]", "n13", False), ("n[8-12]", "n7", False), ("a[1-2]b[3-4]", "a2b3", True),
             ("a[1-2]b[3-4]", "a2b5", False), ("a[1-2]b", "a1", False), ("a[1-2]b", "a1bb", False),
             ("x,n[1,3]", "n2", False), ("x,n[1,3]", "n3", True), ("gpu[1-2]x", "gpu2x", True)]
    for expr, name, want in table:
        assert hostlist.contains(expr, name) is want, (expr, name)


def reference_expand(text):
    """Slurm's hostlist grammar written out separately from migsync.hostlist: the names, in
    written order, or None where the expression must be refused."""
    if not text:
        return None
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth not in (0, 1):
            return None
        if ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    if depth:
        return None
    terms.append(text[start:])
    choices_per_term = []
    for term in terms:
        pieces = re.findall(r"\[([^\[\]]*)\]|([^\[\]]+)", term)
        if not term or "".join(f"[{b}]" if not lit else lit for b, lit in pieces) != term:
            return None
        choices = []
        for body, lit in pieces:
            if lit:
                choices.append([lit])
                continue
            opts = []
            for part in body.split(","):
                m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
                if not m:
                    return None
                lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
                if hi < lo or hi - lo + 1 > 65536:
                    return None
                pad = len(m.group(1)) if m.group(1)[0] == "0" and len(m.group(1)) > 1 else 1
                opts += [str(v).rjust(pad, "0") for v in range(lo, hi + 1)]
            choices.append(opts)
        choices_per_term.append(choices)
    total = sum(math.prod(len(c) for c in cs) for cs in choices_per_term)
    if total > hostlist.MAX_EXPAND:
        return None
    return ["".join(p) for cs in choices_per_term for p in itertools.product(*cs)]


def test_reference_expand_agrees_with_hand_written_cases():
    assert reference_expand("n[01-3],x") == ["n01", "n02", "n03", "x"]
    assert reference_expand("n[3,1]") == ["n3", "n1"]
    assert reference_expand("n[3-1]") is None and reference_expand("n[[1]]") is None


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="n[]-,0123456789/", max_size=20))
def test_property_parser_agrees_with_a_reference_grammar(text):
    """Any text: refused with a typed error exactly where the grammar refuses it, otherwise
    the same names in the same order, and count() agrees without expanding."""
    want = reference_expand(text)
    if want is None:
        with pytest.raises(HostlistError):
            hostlist.expand(text)
        return
    assert hostlist.expand(text) == want
    assert hostlist.count(text) == len(want)


# Every refusal, word for word as the user reads it (str(error) is what the CLI prints after
# the file and line): the reason and the whole expression.
@pytest.mark.parametrize("expr,message", [
    ("n[[1]]", "nested '[' in hostlist (in 'n[[1]]')"),
    ("n1]", "']' without '[' in hostlist (in 'n1]')"),
    ("n[1", "unbalanced '[' in hostlist (in 'n[1')"),
    ("n[]", "empty brackets in hostlist (in 'n[]')"),
    ("n[a-b]", "bad range 'a-b' in hostlist (in 'n[a-b]')"),
    ("n[1-x]", "bad range '1-x' in hostlist (in 'n[1-x]')"),
    ("n[3-1]", "reversed range '3-1' in hostlist (in 'n[3-1]')"),
    ("n[0-65536]", "range '0-65536' has more than 65536 names (in 'n[0-65536]')"),
    ("a,,b", "empty name in hostlist (in 'a,,b')"),
    ("a,[1],", "empty name in hostlist (in 'a,[1],')"),
    ("n[0-1023]m[0-1024]", "hostlist has more than 1048576 names (in 'n[0-1023]m[0-1024]')"),
])
def test_refusals_name_the_reason_and_the_expression(expr, message):
    with pytest.raises(HostlistError) as exc:
        hostlist.expand(expr)
    assert str(exc.value) == message


def test_limits_are_inclusive():
    assert hostlist.count("n[1-65536]") == 65536  # one range may hold exactly 65,536 names
    assert len(hostlist.expand("n[1-65536]")) == 65536
    assert hostlist.count("n[0-1023]m[0-1023]") == 1 << 20  # and a hostlist 2**20
    assert hostlist.expand("n[0-1023]m[0-1023]")[-1] == "n1023m1023"


def test_count_multiplies_bracket_groups_and_adds_terms():
    assert hostlist.count("r[1-2]n[01-03]") == 6
    assert hostlist.count("r[1-2]n[01-03],x,y[1-4]") == 11
    assert hostlist.count("r[1-2]n[01-03]s[5,7]") == 12


def test_contains_tries_every_split_of_a_digit_run():
    assert hostlist.contains("n[1-2]0", "n10")  # '1' from the range, '0' literal
    assert hostlist.contains("n[1-2][0-5]", "n15")
    assert not hostlist.contains("n[1-2][0-5]", "n16")


@pytest.mark.parametrize("expr", ["n[1", "n]1", "n1]", "a,,b"])
def test_contains_refuses_malformed_expressions_even_when_the_text_matches(expr):
    with pytest.raises(HostlistError):
        hostlist.contains(expr, expr)


def test_fold_keeps_names_it_cannot_fold_and_goes_on():
    assert hostlist.fold(["x", "n1", "n2"]) == "x,n[1-2]"
    assert hostlist.fold(["gpu-a", "gpu-b"]) == "gpu-a,gpu-b"
    assert hostlist.fold(["n10", "n9"]) == "n[10,9]"  # unpadded: 10 then 9 stay one group
    assert hostlist.fold(["n10", "n09"]) == "n10,n09"  # padding differs: two groups
    assert hostlist.fold(["n08", "n9"]) == "n08,n9"
    assert hostlist.fold(["n0", "n1"]) == "n[0-1]"


def test_fold_never_folds_names_that_hold_hostlist_syntax():
    assert hostlist.fold(["a[1", "a[2"]) == "a[1,a[2"
    assert hostlist.fold(["a]1", "a]2"]) == "a]1,a]2"
    assert hostlist.fold(["a,1", "a,2"]) == "a,1,a,2"
    assert hostlist.fold(["a[1]", "a[2]"]) == "a[1],a[2]"


def test_a_blank_hostlist_is_refused_as_empty():
    with pytest.raises(HostlistError) as exc:
        hostlist.contains("   ", "n1")
    assert str(exc.value) == "empty hostlist (in '')"


@pytest.mark.parametrize("expr,patterns", [
    ("n[1-2]", (("n", ((1, 2, 0),)),)),
    ("[1-2]x", ((((1, 2, 0),), "x"),)),
    ("r[1]n[01-03],m", (("r", ((1, 1, 0),), "n", ((1, 3, 2),)), ("m",))),
])
def test_parse_gives_literal_text_and_bracket_groups_and_nothing_else(expr, patterns):
    """No empty literal before a bracket or after the last one: a pattern is what was written."""
    assert hostlist.parse(expr) == patterns
