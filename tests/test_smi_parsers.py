"""The nvidia-smi backend's hand parsers (issue 11: no regular expressions compiled at start-up)
read exactly what the expressions they replaced read. Expected values are written by hand, in
tables of the edge cases those expressions encoded: whitespace classes (tabs, no-break space,
CR from CRLF output), Unicode digits (\\d took any decimal digit and int() reads it; a
superscript is no decimal digit), case-insensitive profile letters, optional columns. The last
tests compare each parser with the expression it replaced on many generated strings."""
import os
import random
import subprocess
import sys

import pytest

from conftest import node
from migsync.backends import smi
from migsync.errors import DiscoveryError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = "|   0      7       MIG 1g.10gb          0         0          0:1     |"


def lci(*rows):
    return [(m.gpu_index, m.gi, m.ci, m.profile) for m in smi.parse_lci("\n".join(rows) + "\n")]


def lci_refused(row):
    with pytest.raises(DiscoveryError) as exc:
        smi.parse_lci(row + "\n")
    return str(exc.value)


# ---- mig -lci rows

@pytest.mark.parametrize("row,want", [
    (ROW, (0, 7, 0, "1g.10gb")),
    # R450 drivers print no placement column
    ("|   0      7       MIG 1g.10gb          0         0     |", (0, 7, 0, "1g.10gb")),
    ("|0 7 MIG 1g.10gb 0 0 0:1|", (0, 7, 0, "1g.10gb")),  # no space inside the frame
    ("|\t1\t9\tMIG\t1c.3g.40gb\t0\t2\t2:1\t|", (1, 9, 2, "1c.3g.40gb")),  # tabs
    ("|   0      7       MIG 1g.10gb          0         0          0:1     |\r",
     (0, 7, 0, "1g.10gb")),  # CRLF output
    ("   |  12     13   MIG 1g.10gb+me   0  4  6:1 |   ", (12, 13, 4, "1g.10gb+me")),
    ("|\u00a00\u00a07\u00a0MIG\u00a01g.10gb\u00a00\u00a00\u00a0|", (0, 7, 0, "1g.10gb")),
    # Arabic-Indic digits: \d matched them and int() reads them; kept as they were
    ("|   \u0663      7       MIG 1g.10gb          0         \u0661          0:1     |",
     (3, 7, 1, "1g.10gb")),
    ("|   0      7       MIG 1g.10gb          0         0     \u0660:\u0661  |",
     (0, 7, 0, "1g.10gb")),
])
def test_lci_rows_that_are_read(row, want):
    assert lci(row) == [want]


@pytest.mark.parametrize("row", [
    "| Compute instances:                                                 |",
    "| GPU     GPU       Name             Profile   Instance   Placement  |",
    "|====================================================================|",
    "+--------------------------------------------------------------------+",
    "|", "||", "", "   ",
    "No compute instances found: Not Found",
    # a superscript two is a digit to str.isdigit() but not a decimal digit (\d): the row
    # was never read as an instance row, nor refused as one
    "|   \u00b2      7       MIG 1g.10gb          0         0          0:1     |",
])
def test_lci_lines_that_are_not_rows_are_skipped(row):
    assert lci(row) == []


@pytest.mark.parametrize("row", [
    "|   0      7       MIG 1g.10gb          0         0          0:1",  # no closing frame
    "|   0      7       MIG 1g.10gb          0         0          0-1     |",
    "|   0      7       MIG 1g.10gb          0         0          0:1:2   |",
    "|   0      7       MIG 1g.10gb          0         0          :1      |",
    "|   0      7       MIG 1g.10gb          0         0          0:      |",
    "|   0      7       MIG 1g.10gb          0         0          0:1   x |",
    "|   0      7       mig 1g.10gb          0         0          0:1     |",
    "|   0      7       MIGx 1g.10gb         0         0          0:1     |",
    "|   0      7       MIG 1g.10gb          x         0          0:1     |",
    "|   0      7       MIG 1g.10gb          0         x          0:1     |",
    "|   0      x       MIG 1g.10gb          0         0          0:1     |",
    "|   0x     7       MIG 1g.10gb          0         0          0:1     |",
    "|   0      7       MIG                  0         0          0:1     |",
    "|   0      7       MIG 1g.10gb          0         0          \u00b2:1     |",
    "|   0      7       MIG 1g.10gb          0         0     |     0:1     |",
    "|\t0",
    "|0|",  # a digit right after the frame, then no row
    "|0x 7 MIG 1g.10gb 0 0 0:1 |",
])
def test_lci_rows_that_do_not_parse_are_refused(row):
    assert lci_refused(row) == ("nvidia-smi mig -lci: a row that does not parse: "
                                f"{row.strip()[:80]!r}")


# ---- MIG profile names (mig -lci's Name column)

@pytest.mark.parametrize("name", [
    "1g.10gb", "7g.80gb", "1g.5gb", "12g.100gb", "1c.3g.40gb", "10c.7g.80gb", "1C.3G.40GB",
    "1g.10GB", "1G.10Gb", "1g.10gb+me", "1g.10gb-2", "1g.10gb+me.all", "1g.10gb+me-x+y",
    "1g.10gb+ME", "1g.10gb-.", "1g.10gb+0",
    "\u0663g.10gb", "1g.\u0661\u0660gb", "\u0661c.1g.10gb",  # Unicode digits where \d was
    # [a-z] with re.IGNORECASE took four non-ASCII letters whose case folds into a-z
    "1g.10gb+\u212a", "1g.10gb+\u0130\u0131\u017f",
])
def test_profile_names_that_are_read(name):
    assert lci(ROW.replace("1g.10gb   ", f"{name}   ")) == [(0, 7, 0, name)]


@pytest.mark.parametrize("name", [
    "g.10gb", "1g10gb", "1g.gb", "1g.10g", "1g.10gbx", "1g.10b", "1x.10gb", "1g,10gb",
    "1g.10gb+", "1g.10gb-", "1g.10gb+-me", "1g.10gb++me", "1g.10gb+me-", "1g.10gb+m_e",
    "1g.10gb+\u00e9", "1g.10gb+me\u0663",  # the suffix class was ASCII 0-9, not \d
    "c.1g.10gb", "1c1g.10gb", "1c.", "1c.g.10gb", "1c.1c.1g.10gb", "\u00b2g.10gb",
    "A100-SXM4-80GB", "1g.10gb.", "x1g.10gb",
])
def test_names_that_are_no_profile_are_refused(name):
    row = ROW.replace("1g.10gb   ", f"{name}   ")
    assert lci_refused(row) == f"nvidia-smi mig -lci: {name[:30]!r} is not a MIG profile name"


# ---- --query-gpu fields

def query(bus="00000000:17:00.0", uuid="GPU-8f2c1d90-3e5a-4b17-9c2e-5da9abb51760", index="0",
          name="NVIDIA H100 80GB HBM3", cur="Enabled", pend="Enabled"):
    return smi.parse_query_gpu(f"{index}, {bus}, {uuid}, {name}, {cur}, {pend}\n")


def query_refused(**fields):
    with pytest.raises(DiscoveryError) as exc:
        query(**fields)
    assert str(exc.value).startswith("nvidia-smi --query-gpu: unexpected line 1: ")
    return True


@pytest.mark.parametrize("bus,want", [
    ("00000000:17:00.0", "0000:17:00.0"),
    ("0000:ca:00.7", "0000:ca:00.7"),
    ("0000:CA:1F.3", "0000:ca:1f.3"),
    ("000ABCDE:0f:aB.0", "bcde:0f:ab.0"),  # 5-8 domain digits: the last four are kept
    ("0000a:17:00.0", "000a:17:00.0"),
])
def test_bus_ids_that_are_read(bus, want):
    assert query(bus=bus)[0].bus_id == want


@pytest.mark.parametrize("bus", [
    "000:17:00.0", "000000000:17:00.0", "0000:1:00.0", "0000:117:00.0", "0000:17:0.0",
    "0000:17:000.0", "0000:17:00.8", "0000:17:00", "0000:17:00.00", "0000:17:00.", "0000:17:00:0",
    "0000:17:00.0:1", "17:00.0", "0000:g7:00.0", "g000:17:00.0", "0000:17:0g.0",
    "0000:17:00,0", "0000-17:00.0", "0000:17:00.a",
    "0000:1\u0663:00.0", "\uff10000:17:00.0",  # Unicode digits: the class was ASCII hex
])
def test_bus_ids_that_are_refused(bus):
    assert query_refused(bus=bus)


@pytest.mark.parametrize("uuid", [
    "GPU-8f2c1d90-3e5a-4b17-9c2e-5da9abb51760", "GPU-x", "GPU--", "GPU-ABCxyz019",
])
def test_gpu_uuids_that_are_read(uuid):
    assert query(uuid=uuid)[0].uuid == uuid


@pytest.mark.parametrize("uuid", [
    "GPU-", "gpu-8f2c1d90", "MIG-8f2c1d90", "GPU_8f2c1d90", "GPU-8f2c_1d90", "GPU-8f2c 1d90",
    "GPU-8f2c1d90.", "GPU-\u0663", "GPU-\u00e9", "XGPU-8f2c1d90", "GPU",
])
def test_gpu_uuids_that_are_refused(uuid):
    assert query_refused(uuid=uuid)


@pytest.mark.parametrize("field,lost", [
    ("[N/A]", "nvidia-smi: [N/A]"), ("[]", "nvidia-smi: []"),
    ("[Unknown Error]", "nvidia-smi: [Unknown Error]"),
    ("[a]b]", "nvidia-smi: [a]b]"),
])
def test_bracketed_fields_are_error_text(field, lost):
    (g,) = query(name=field)
    assert (g.name, g.lost) == (None, lost)


@pytest.mark.parametrize("field", ["[", "]", "[x", "x]", "a[x]", "[x]b"])
def test_half_bracketed_fields_are_plain_text(field):
    (g,) = query(name=field)
    assert (g.name, g.lost) == (field, None)
    assert query_refused(uuid=field)  # and, where a field has a shape, not that shape


@pytest.mark.parametrize("mode", ["[", "x]", "[Maybe"])
def test_a_half_bracketed_mig_mode_is_refused(mode):
    assert query_refused(cur=mode)


@pytest.mark.parametrize("index,want", [("0", 0), ("17", 17), ("\u0663", 3)])
def test_gpu_indexes_that_are_read(index, want):
    assert query(index=index)[0].index == want


@pytest.mark.parametrize("index", ["x", "-1", "1.0", "\u00b2", "\u2460"])
def test_gpu_indexes_that_are_refused(index):
    """A superscript or circled digit passes str.isdigit() but int() cannot read it: it used
    to crash the check (exit 70, 'internal error'); it is a malformed row like any other."""
    assert query_refused(index=index)


# ---- nvidia-smi -L

@pytest.mark.parametrize("line,want", [
    ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-8f2c1d90)", 0),
    ("GPU 12: x", 12),
    ("GPU 3: ", 3),
    ("GPU \u0663: x", 3),
])
def test_list_gpu_lines_that_are_read(line, want):
    text = f"{line}\n  MIG 1g.10gb     Device  0: (UUID: MIG-a)\n"
    assert smi.parse_list(text) == {want: [("1g.10gb", "MIG-a")]}


@pytest.mark.parametrize("line", [
    "GPU0: x", "GPU 0 : x", "GPU 0:x", "GPU x: y", "GPU : x", "  GPU 0: x", "gpu 0: x",
    "GPU 0", "GPU \u00b2: x", "GPU 0a: x", "GPU  0: x",
])
def test_list_gpu_lines_that_are_not_read(line):
    assert smi.parse_list(f"{line}\n  MIG 1g.10gb     Device  0: (UUID: MIG-a)\n") == {}


@pytest.mark.parametrize("line,want", [
    ("  MIG 1g.10gb     Device  0: (UUID: MIG-b6ba6b2a-1cd4-5f1e-8a03-77d19e02c4b1)",
     ("1g.10gb", "MIG-b6ba6b2a-1cd4-5f1e-8a03-77d19e02c4b1")),
    ("\tMIG 3g.40gb\tDevice\t1: (UUID: MIG-x)", ("3g.40gb", "MIG-x")),
    (" MIG 1g.10gb Device 12: (UUID: MIG-x) and more", ("1g.10gb", "MIG-x")),
    ("\u00a0MIG 1g.10gb\u00a0Device\u00a0\u0663: (UUID: MIG-x)", ("1g.10gb", "MIG-x")),
    ("  MIG 1g.10gb     Device  0: (UUID: MIG-GPU-8f2c1d90/7/0)",  # R450's form
     ("1g.10gb", "MIG-GPU-8f2c1d90/7/0")),
    ("  MIG 1g.10gb     Device  0: (UUID: MIG-(x)", ("1g.10gb", "MIG-(x")),
])
def test_list_mig_lines_that_are_read(line, want):
    assert smi.parse_list(f"GPU 0: x\n{line}\n") == {0: [want]}


@pytest.mark.parametrize("line", [
    "MIG 1g.10gb Device 0: (UUID: MIG-x)",  # not indented
    "  MIG\t1g.10gb Device 0: (UUID: MIG-x)",  # 'MIG' and one space, exactly
    "  MIG  1g.10gb Device 0: (UUID: MIG-x)",
    "  MIG 1g.10gb Device0: (UUID: MIG-x)",
    "  MIG 1g.10gbDevice 0: (UUID: MIG-x)",
    "  MIG 1g.10gb Device 0 : (UUID: MIG-x)",
    "  MIG 1g.10gb Device x: (UUID: MIG-x)",
    "  MIG 1g.10gb Device \u00b2: (UUID: MIG-x)",
    "  MIG 1g.10gb Device 0: (UUID:MIG-x)",
    "  MIG 1g.10gb Device 0: (UUID: GPU-x)",
    "  MIG 1g.10gb Device 0: (UUID: MIG-)",
    "  MIG 1g.10gb Device 0: (UUID: MIG-))",
    "  MIG 1g.10gb Device 0: (UUID: MIG- x)",
    "  MIG 1g.10gb Device 0: (UUID: MIG-x",
    "  MIG 1g.10gb Device 0: (UUID: MIG-x y)",
    "  MIG 1g.10gb Device 0: (UUID: MIG-x\t)",
    "  MIG 1g.10gb device 0: (UUID: MIG-x)",
    "  MIG 1g.10gb Devices 0: (UUID: MIG-x)",
    "  MIG 1g.10gb",
    "  MIG ",
    "  ",
])
def test_list_mig_lines_that_are_not_read(line):
    assert smi.parse_list(f"GPU 0: x\n{line}\n") == {0: []}


# ---- the rare paths keep their (lazily compiled) expressions

@pytest.mark.parametrize("message", [
    "No compute instances found: Not Found", "NO COMPUTE INSTANCE FOUND",
    "No GPU instances were found", "Error: no gpu instance found on GPU 0",
])
def test_no_instances_messages(message, tmp_path):
    from test_smi import fake_smi, row
    view = smi.probe(fake_smi(tmp_path, row(0, "17") + "\n", lci=message + "\n", lci_rc=6), 10)
    assert view.migs == []


@pytest.mark.parametrize("line,bus", [
    ("Unable to determine the device handle for GPU0000:4E:00.0: Unknown Error", "0000:4e:00.0"),
    ("Unable to determine the device handle for GPU 00000000:ca:00.1: Unknown Error",
     "0000:ca:00.1"),
    ("GPU 00000000:F1:00.0 is lost; reboot the system", "0000:f1:00.0"),
])
def test_lost_gpu_lines_name_their_bus_id(line, bus):
    (g,) = smi.parse_query_gpu(line + "\n")
    assert (g.index, g.bus_id) == (-1, bus)


def test_the_common_path_needs_no_regular_expressions():
    """The recorded 8-GPU, 56-instance node parsed, MIG UUIDs attached, in an interpreter
    where `re` cannot be imported once the backend's dependencies are in: the backend itself
    neither compiles nor imports an expression on this path."""
    if "MUTANT_UNDER_TEST" in os.environ:  # tests/mutation.sh: mutmut's wrappers import re
        pytest.skip("the mutants' trampolines need re")
    d = node("big")
    code = f"""
import sys
sys.path.insert(0, {REPO!r})
import migsync.runner, migsync.errors, migsync.procfs, migsync.backends
sys.modules["re"] = None  # any `import re` from here on raises ImportError
from migsync.backends import smi
read = lambda name: open({os.path.join(d, "smi")!r} + "/" + name).read()
gpus = smi.parse_query_gpu(read("query-gpu.csv"))
migs = smi.parse_lci(read("lci.txt"))
smi.attach_mig_uuids(migs, smi.parse_list(read("L.txt")))
print(len(gpus), len(migs), sum(1 for m in migs if m.uuid is None))
"""
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    # 8 GPUs, 7 instances each; all 1g.10gb, so -L cannot tie any UUID to one (see
    # attach_mig_uuids): all 56 stay without
    assert r.stdout.split() == ["8", "56", "56"]


# ---- each parser against the expression it replaced (the behaviour before issue 11)

def _old():
    import re
    return {
        "lci": re.compile(r"^\|\s*(\d+)\s+(\d+)\s+MIG\s+(\S+)\s+(\d+)\s+(\d+)(?:\s+\d+:\d+)?\s*\|\s*$"),
        "error": re.compile(r"^\[.*\]$"),
        "uuid": re.compile(r"^GPU-[0-9A-Za-z-]+$"),
        "bus": re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$"),
        "profile": re.compile(r"^(\d+c\.)?\d+g\.\d+gb([+-][a-z0-9.]+)*$", re.I),
        "list_gpu": re.compile(r"^GPU (\d+): "),
        "list_mig": re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^)\s]+)\)"),
    }


ALPHABET = (list("0123456789abcdefgABCDEFG.:-+|[]() MIGcCbBUIDevXx") +
            ["\t", "\r", "\u00a0", "\u0663", "\u00b2", "\u0130", "\u017f", "\u212a", "\u00e9",
             "\x1f", "\u3000"])
SEEDS = [ROW, "|   0      7       MIG 1g.10gb          0         0     |", "1c.3g.40gb+me-2.x",
         "00000000:17:00.0", "0000:ca:00.7", "GPU-8f2c1d90-3e5a", "[N/A]",
         "GPU 0: NVIDIA A100 (UUID: GPU-x)", "GPU 12: x",
         "  MIG 1g.10gb     Device  0: (UUID: MIG-b6ba6b2a-1cd4)", "1g.10gb", "7g.80gb+me"]


def _variants(n, seed):
    rnd = random.Random(seed)
    for _ in range(n):
        s = list(rnd.choice(SEEDS))
        for _ in range(rnd.randint(0, 4)):
            at = rnd.randint(0, len(s))
            op = rnd.randint(0, 2)
            if op == 0:
                s.insert(at, rnd.choice(ALPHABET))
            elif s:
                at = min(at, len(s) - 1)
                if op == 1:
                    del s[at]
                else:
                    s[at] = rnd.choice(ALPHABET)
        yield "".join(s)


def test_the_parsers_read_what_the_expressions_they_replaced_read():
    old = _old()
    seen = {k: 0 for k in old}
    for text in _variants(40000, 11):
        st = text.strip()
        m = old["lci"].match(st)
        assert smi._lci_row(st) == (m.group(1, 2, 3, 5) if m else None), text
        m = old["list_gpu"].match(text)
        assert smi._list_gpu(text) == (int(m.group(1)) if m else None), text
        m = old["list_mig"].match(text)
        assert smi._list_mig(text) == (m.group(1, 3) if m else None), text
        for name, parse in (("error", smi._error_field), ("uuid", smi._uuid),
                            ("bus", smi._bus)):
            assert parse(st) == bool(old[name].match(st)), (name, text)
            seen[name] += parse(st)
        if not any(c.isspace() for c in text):  # a profile is one word of a row
            assert smi._profile(text) == bool(old["profile"].match(text)), text
            seen["profile"] += smi._profile(text)
        seen["lci"] += smi._lci_row(st) is not None
        seen["list_gpu"] += smi._list_gpu(text) is not None
        seen["list_mig"] += smi._list_mig(text) is not None
    assert min(seen.values()) > 300, seen  # each parser also said yes, many times


def test_whitespace_and_digits_are_what_the_expressions_meant():
    """The parsers use str.isspace()/split() for \\s and str.isdecimal() for \\d: the same
    sets of characters, checked over all of Unicode in this interpreter."""
    import re
    space, digit = re.compile(r"\s"), re.compile(r"\d")
    for c in map(chr, range(0x110000)):
        assert c.isspace() == bool(space.match(c)), hex(ord(c))
        assert c.isdecimal() == bool(digit.match(c)), hex(ord(c))
    suffix = re.compile(r"[a-z0-9.]", re.I)
    assert smi._SUFFIX_CHARS == {c for c in map(chr, range(0x110000)) if suffix.match(c)}
