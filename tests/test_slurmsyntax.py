"""Slurm's config syntax (gres.conf(5), slurm.conf(5)): comments, '\\#', backslash
continuations, key=value words, quoted values, counts. Expected values written by hand."""
import pytest

from migsync import slurmsyntax
from migsync.errors import ConfigError
from migsync.slurmsyntax import LogicalLine


def lines(text):
    return [(ln.lineno, ln.text) for ln in slurmsyntax.logical_lines(text, "g.conf")]


@pytest.mark.parametrize("text,want", [
    ("Name=gpu File=/dev/nvidia0\n", [(1, "Name=gpu File=/dev/nvidia0")]),
    ("# only a comment\n\n   \nName=gpu # trailing\n", [(4, "Name=gpu")]),
    ("Name=gpu Type=a\\#b\n", [(1, "Name=gpu Type=a#b")]),  # \# is a literal '#'
    ("Name=gpu Type=a\\#b # c\n", [(1, "Name=gpu Type=a#b")]),
    ("Name=gpu \\\n  File=/dev/nvidia0\n", [(1, "Name=gpu   File=/dev/nvidia0")]),
    ("Name=gpu\\\nFile=x\nName=b\n", [(1, "Name=gpuFile=x"), (3, "Name=b")]),
    ("A=1 \\\n\\\nB=2\n", [(1, "A=1 B=2")]),  # an empty continued line joins too
    ("A=1 \\\\\nB=2\n", [(1, "A=1 \\\\"), (2, "B=2")]),  # an even run of '\' is no continuation
    ("A=1 \\\\\\\nB=2\n", [(1, "A=1 \\\\B=2")]),  # odd: the last one continues
    ("A=1 \\ # comment after the backslash\nB=2\n", [(1, "A=1 B=2")]),
    ("A=1 \\", [(1, "A=1")]),  # a continuation at end of file still yields the line
    ("\n\nA=1 \\\n  B=2 \\\n  C=3\nD=4", [(3, "A=1   B=2   C=3"), (6, "D=4")]),
    ("A=1\r\nB=2\r\n", [(1, "A=1"), (2, "B=2")]),
])
def test_logical_lines(text, want):
    assert lines(text) == want


def tok(text):
    return slurmsyntax.tokens(LogicalLine("g.conf", 3, text))


@pytest.mark.parametrize("text,want", [
    ("Name=gpu File=/dev/nvidia[0-1]", [("Name", "gpu"), ("File", "/dev/nvidia[0-1]")]),
    ("A=  B=2", [("A", "B=2")]),  # slurmd: after 'key=' and blanks, the next word is the value
    ("A=x=y", [("A", "x=y")]),
    ('Name=gpu Type="a b" File=/dev/nvidia0', [("Name", "gpu"), ("Type", "a b"),
                                              ("File", "/dev/nvidia0")]),
    ('Type="" Name=gpu', [("Type", ""), ("Name", "gpu")]),
    ('  Type="x"   Name=gpu  ', [("Type", "x"), ("Name", "gpu")]),
    ('Type=a"b', [("Type", 'a"b')]),  # a quote inside a value is kept
    # a quoted value must end its word, else the word is a plain value, quotes and all
    # (measured: corpus cases 79 and 80, accepted by slurmd 22.05, 24.11 and 26.05)
    ('Type="a100"File=/d/nvidia0', [("Type", '"a100"File=/d/nvidia0')]),
    ('Type="a100 File=/d/nvidia0', [("Type", '"a100'), ("File", "/d/nvidia0")]),
    ('Type="a""b" Name=gpu', [("Type", '"a""b"'), ("Name", "gpu")]),
    ('Type="a b"\tName=gpu', [("Type", "a b"), ("Name", "gpu")]),
    ('Type=ab" Name=gpu', [("Type", 'ab"'), ("Name", "gpu")]),  # quotes only open a value
])
def test_tokens(text, want):
    assert tok(text) == want


@pytest.mark.parametrize("text,message", [
    ("Name=gpu junk", "g.conf:3: expected key=value, got 'junk' (slurmd: Parse error) (in 'junk')"),
    ("=gpu", "g.conf:3: '=' without a key (in '=gpu')"),
    ('Type="x" junk', "g.conf:3: expected key=value, got 'junk' (slurmd: Parse error) (in 'junk')"),
    ('Type="x" =y', "g.conf:3: '=' without a key (in '=y')"),
    # a quote that never closes is a plain value (`"a`), so `b` is a word without '=' (the
    # same reading slurmd has: corpus case 80 shows it accepting `Type="a100 File=...`)
    ('Name=gpu Type="a b', "g.conf:3: expected key=value, got 'b' (slurmd: Parse error) (in 'b')"),
    ('Type="x" Name', "g.conf:3: expected key=value, got 'Name' (slurmd: Parse error) (in 'Name')"),
])
def test_token_refusals(text, message):
    with pytest.raises(ConfigError) as exc:
        tok(text)
    assert str(exc.value) == message


@pytest.mark.parametrize("value,want", [("0", 0), ("7", 7), (" 7 ", 7), ("2k", 2048),
                                        ("2K", 2048), ("1m", 1 << 20), ("1G", 1 << 30),
                                        ("1t", 1 << 40), ("1P", 1 << 50)])
def test_counts(value, want):
    assert slurmsyntax.parse_count(value, LogicalLine("g.conf", 4, ""), "Count") == want


@pytest.mark.parametrize("value", ["", "k", "-1", "1.5", "2x", "1kb", "two"])
def test_count_refusals_name_key_value_and_line(value):
    with pytest.raises(ConfigError) as exc:
        slurmsyntax.parse_count(value, LogicalLine("g.conf", 4, ""), "Count")
    assert str(exc.value) == f"g.conf:4: Count= needs a whole number, got {value!r} (in 'Count={value}')"


def test_read_text_failures_are_one_line_and_name_the_file(tmp_path):
    cases = {"bom": b"\xef\xbb\xbfName=gpu\n", "nul": b"Name=gpu\nA=1\x00\n",
             "latin": b"Name=gpu\nType=caf\xe9\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert slurmsyntax.read_text(str(tmp_path / "bom")) == "Name=gpu\n"
    with pytest.raises(ConfigError) as exc:
        slurmsyntax.read_text(str(tmp_path / "nul"))
    assert str(exc.value) == f"{tmp_path / 'nul'}:2: binary data (NUL byte) in a text config file"
    with pytest.raises(ConfigError) as exc:
        slurmsyntax.read_text(str(tmp_path / "latin"))
    assert str(exc.value) == f"{tmp_path / 'latin'}:2: not valid UTF-8 text"
    with pytest.raises(ConfigError) as exc:
        slurmsyntax.read_text(str(tmp_path / "absent"))
    assert str(exc.value) == f"{tmp_path / 'absent'}: file not found"
    with pytest.raises(ConfigError) as exc:
        slurmsyntax.read_text(str(tmp_path))
    assert str(exc.value) == f"{tmp_path}: is a directory, not a file"


# ---- edges the first tests missed (each found by a surviving mutant, tests/mutation.sh) -------

@pytest.mark.parametrize("text,want", [
    # '\#' as the very last characters of a line is still a literal '#'
    ("Name=gpu Type=a\\#\n", [(1, "Name=gpu Type=a#")]),
    # a line holding an escaped '#' can still end in a continuation backslash
    ("Name=gpu Type=a\\#b \\\nFile=x\n", [(1, "Name=gpu Type=a#b File=x")]),
    # continued twice up to the end of the file: the pieces join without anything between
    ("A=1 \\\nB=2 \\", [(1, "A=1 B=2")]),
    # slurmd's blanks are C's isspace() (parse_config.c's _strip_continuation, keyvalue regex
    # [[:space:]]): \x1c is no blank, so a backslash before it does not continue the line
    # and a trailing \x1c stays in the value, also at the end of the file
    ("A=1 \\\x1c\nB=2\n", [(1, "A=1 \\\x1c"), (2, "B=2")]),
    ("A=1\x1c\n", [(1, "A=1\x1c")]),
    ("A=1 \\\nB=2\x1c \\", [(1, "A=1 B=2\x1c")]),
])
def test_logical_line_edges(text, want):
    assert lines(text) == want


def test_a_line_of_one_mebibyte_is_read_and_a_longer_one_refused():
    limit = 1048576  # MAX_LINE, written out
    ok = "A=" + "x" * (limit - 2)
    assert lines(f"B=1\n{ok}\n") == [(1, "B=1"), (2, ok)]
    with pytest.raises(ConfigError) as exc:
        lines(f"B=1\n{ok}y\n")
    assert str(exc.value) == f"g.conf:2: line longer than 1048576 characters (in 'A={'x' * 58}')"


def test_nul_byte_error_names_the_first_line_with_one(tmp_path):
    (tmp_path / "nul").write_bytes(b"A=1\nB=\x00\nC=3\nD=\x00\n")
    with pytest.raises(ConfigError) as exc:
        slurmsyntax.read_text(str(tmp_path / "nul"))
    assert str(exc.value) == f"{tmp_path / 'nul'}:2: binary data (NUL byte) in a text config file"


@pytest.mark.parametrize("text,want", [
    ('Type="a" Name="b"', [("Type", "a"), ("Name", "b")]),  # each quote closes at the next '"'
    ('Type="a\\"', [("Type", "a")]),  # a backslash with nothing after it is dropped too
])
def test_token_quotes(text, want):
    assert tok(text) == want


@pytest.mark.parametrize("text,message", [
    ("Name=gpu " + "j" * 70,
     f"g.conf:3: expected key=value, got '{'j' * 70}' (slurmd: Parse error) (in '{'j' * 60}')"),
    ("=" + "v" * 70, f"g.conf:3: '=' without a key (in '={'v' * 59}')"),
    ('Type="q" ' + "q" * 70,
     f"g.conf:3: expected key=value, got '{'q' * 70}' (slurmd: Parse error) (in '{'q' * 60}')"),
])
def test_token_refusals_quote_at_most_60_characters(text, message):
    with pytest.raises(ConfigError) as exc:
        tok(text)
    assert str(exc.value) == message


@pytest.mark.parametrize("value,want", [("10k", 10240), ("12M", 12 << 20), ("100", 100)])
def test_counts_of_several_digits(value, want):
    assert slurmsyntax.parse_count(value, LogicalLine("g.conf", 4, ""), "Count") == want


@pytest.mark.parametrize("text,key", [
    # measured 29 Nov, slurmd 22.05-26.05 (corpus 129-131): a key with nothing after it at the
    # end of the line is a parse error ("error opening/reading"); blanks after '=' do not help
    ("Name=gpu Type=a100 File=/dev/nvidia[0-1] Flags=", "Flags"),
    ("Name=gpu File=/dev/nvidia[0-1] Type=a100 Type=", "Type"),
    ("NodeName=gpunode1 Name=", "Name"),
    ("Name=gpu Count =  ", "Count"),
])
def test_a_key_without_a_value_at_the_end_of_the_line(text, key):
    with pytest.raises(ConfigError) as exc:
        tok(text.rstrip())
    assert str(exc.value) == f"g.conf:3: {key}= has no value (slurmd: Parse error) (in '{key}=')"


def test_an_empty_quoted_value_and_a_value_after_blanks_are_values():
    """Measured 29 Nov (22.05-26.05): `Type=""` is accepted; README: `Type= File=x`
    gives Type 'File=x'."""
    assert tok('Name=gpu Type=""') == [("Name", "gpu"), ("Type", "")]
    assert tok("Name=gpu Type= File=x") == [("Name", "gpu"), ("Type", "File=x")]
