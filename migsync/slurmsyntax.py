"""Slurm's config-file syntax shared by gres.conf and slurm.conf: comments, continuations, key=value."""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Iterator, List, Tuple

from .errors import ConfigError
from .record import Record

MAX_LINE = 1 << 20  # a 1 MiB logical line is not a config file any more


class LogicalLine(Record):
    __slots__ = ("path", "lineno", "text")

    def __init__(self, path: str, lineno: int, text: str) -> None:
        self.path = path
        self.lineno = lineno  # first physical line
        self.text = text  # comments stripped, continuations joined


def read_text(path: str) -> str:
    """Read a config file as text, with one-line errors for the usual failures."""
    from .bounded import read_bytes  # regular files only, size cap, Include budget

    data = read_bytes(path, ConfigError)
    if b"\0" in data:
        raise ConfigError("binary data (NUL byte) in a text config file", path=path,
                          line=data[: data.index(b"\0")].count(b"\n") + 1)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8 text", path=path, line=line) from None


def _strip_comment(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] == "#":
            out.append("#")
            i += 2
            continue
        if ch == "#":
            break
        out.append(ch)
        i += 1
    return "".join(out)


# C's isspace() in the "C" locale: the only characters Slurm's parser treats as blanks.
# Python's str.split()/isspace() also split on U+0085, U+2028, \x1c-\x1f, ... which slurmd
# keeps inside a value.
BLANKS = " \t\n\r\f\v"


def logical_lines(text: str, path: str) -> Iterator[LogicalLine]:
    """Yield non-empty logical lines: comments removed, backslash continuations joined.

    Lines end at "\n" only, as slurmd reads them (fgets): a lone CR, form feed, NEL or U+2028
    stays inside the line (str.splitlines() would break there), and a comment runs to the end
    of the physical line."""
    pending: List[str] = []
    start = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        if len(raw) > MAX_LINE:
            raise ConfigError(f"line longer than {MAX_LINE} characters", path=path,
                              line=lineno, fragment=raw[:60])
        if raw.endswith("\r"):
            raw = raw[:-1]  # CRLF files: slurmd treats the CR as a blank
        line = _strip_comment(raw) if "#" in raw else raw
        stripped = line.rstrip(BLANKS)
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if not pending:
            start = lineno
        if trailing % 2 == 1:
            pending.append(stripped[:-1])
            continue
        pending.append(line)
        joined = "".join(pending).strip(BLANKS)
        pending = []
        if joined:
            yield LogicalLine(path, start, joined)
    if pending:
        joined = "".join(pending).strip(BLANKS)
        if joined:
            yield LogicalLine(path, start, joined)


def _unescape(value: str) -> str:
    """slurmd drops a backslash and keeps the character after it (measured: Type=a1\\00 is
    'a100', Type=a\\\\100 is 'a\\100')."""
    if "\\" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\":
            i += 1
            if i < len(value):
                out.append(value[i])
        else:
            out.append(value[i])
        i += 1
    return "".join(out)


def tokens(line: LogicalLine) -> List[Tuple[str, str]]:
    """Split a logical line into (key, value) pairs the way Slurm's parser does (measured on
    slurmd 22.05, 24.11 and 26.05): blanks may surround '=' (`Name = gpu`), a value is a
    double-quoted string (blanks kept) that ends the word, or runs to the next blank, and
    backslashes are dropped from values. `Type= File=x` gives Type the value 'File=x'."""
    out: List[Tuple[str, str]] = []
    text, i, n = line.text, 0, len(line.text)
    while True:
        while i < n and text[i] in BLANKS:
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in BLANKS and text[i] != "=":
            i += 1
        key = text[start:i]
        j = i
        while j < n and text[j] in BLANKS:
            j += 1
        if j >= n or text[j] != "=":
            raise ConfigError(f"expected key=value, got {key!r} (slurmd: Parse error)",
                              path=line.path, line=line.lineno, fragment=text[start:start + 60])
        if not key:
            raise ConfigError("'=' without a key", path=line.path, line=line.lineno,
                              fragment=text[start:start + 60])
        j += 1
        while j < n and text[j] in BLANKS:
            j += 1
        if j >= n:
            # `Flags=` (or `Type=`, `Name=`...) with nothing after it ends the line: slurmd
            # cannot parse that ("error opening/reading"; measured, 22.05-26.05: corpus 129)
            raise ConfigError(f"{key}= has no value (slurmd: Parse error)", path=line.path,
                              line=line.lineno, fragment=f"{key}=")
        end = text.find('"', j + 1) if j < n and text[j] == '"' else -1
        if end > 0 and (end + 1 == n or text[end + 1] in BLANKS):
            value = text[j + 1:end]
            i = end + 1
        else:
            # Not a quoted value unless the closing quote ends the word: `Type="a"File=x` and
            # an unclosed `Type="a` are plain values, quotes and all (measured, 22.05-26.05:
            # slurmd accepts both lines, with Type `"a"File=x` resp. `"a`: cases 79, 80).
            vstart = j
            while j < n and text[j] not in BLANKS:
                j += 1
            value = text[vstart:j]
            i = j
        out.append((key, _unescape(value)))
    return out


_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_count(value: str, line: LogicalLine, key: str) -> int:
    """A Slurm count: an integer with an optional K/M/G/T/P suffix."""
    v = value.strip()
    mult = 1
    if v and v[-1].lower() in _SUFFIX:
        mult = _SUFFIX[v[-1].lower()]
        v = v[:-1]
    if not v.isdigit():
        raise ConfigError(f"{key}= needs a whole number, got {value!r}", path=line.path,
                          line=line.lineno, fragment=f"{key}={value}")
    return int(v) * mult
