"""Slurm's config-file syntax shared by gres.conf and slurm.conf: comments, continuations, key=value."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Tuple

from .errors import ConfigError

MAX_LINE = 1 << 20  # a 1 MiB logical line is not a config file any more


@dataclass
class LogicalLine:
    path: str
    lineno: int  # first physical line
    text: str  # comments stripped, continuations joined


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


def logical_lines(text: str, path: str) -> Iterator[LogicalLine]:
    """Yield non-empty logical lines: comments removed, backslash continuations joined."""
    pending: List[str] = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        if len(raw) > MAX_LINE:
            raise ConfigError(f"line longer than {MAX_LINE} characters", path=path,
                              line=lineno, fragment=raw[:60])
        raw = raw.rstrip("\r")
        line = _strip_comment(raw) if "#" in raw else raw
        stripped = line.rstrip()
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if not pending:
            start = lineno
        if trailing % 2 == 1:
            pending.append(stripped[:-1])
            continue
        pending.append(line)
        joined = "".join(pending).strip()
        pending = []
        if joined:
            yield LogicalLine(path, start, joined)
    if pending:
        joined = "".join(pending).strip()
        if joined:
            yield LogicalLine(path, start, joined)


def tokens(line: LogicalLine) -> List[Tuple[str, str]]:
    """Split a logical line into (key, value) pairs; values may be double-quoted."""
    out: List[Tuple[str, str]] = []
    text, i, n = line.text, 0, len(line.text)
    if '"' not in text:  # the common case: plain key=value words
        for word in text.split():
            key, sep, value = word.partition("=")
            if not sep:
                raise ConfigError(f"expected key=value, got {key!r}", path=line.path,
                                  line=line.lineno, fragment=key)
            if not key:
                raise ConfigError("'=' without a key", path=line.path, line=line.lineno,
                                  fragment=word)
            out.append((key, value))
        return out
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        start = i
        while i < n and not text[i].isspace() and text[i] != "=":
            i += 1
        key = text[start:i]
        if i >= n or text[i] != "=":
            raise ConfigError(f"expected key=value, got {key!r}", path=line.path,
                              line=line.lineno, fragment=key)
        i += 1
        if i < n and text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise ConfigError("unterminated quote", path=line.path, line=line.lineno,
                                  fragment=text[start:])
            value = text[i + 1:end]
            i = end + 1
        else:
            vstart = i
            while i < n and not text[i].isspace():
                i += 1
            value = text[vstart:i]
        if not key:
            raise ConfigError("'=' without a key", path=line.path, line=line.lineno,
                              fragment=text[start:i])
        out.append((key, value))
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
