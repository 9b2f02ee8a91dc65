"""Slurm hostlists: expand, order-preserving fold, and membership without expansion.

Slurm keeps the written order (``/dev/nvidia[3,1]`` is 3 then 1), keeps zero padding
(``n[01-10]``), accepts ``n[01-3]`` and several bracket groups (``r[1-2]n[01-03]``), and
caps one range at 65,536 names. ClusterShell sorts and rejects some of these, so we keep
our own small parser.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Iterable, Iterator, List, Sequence, Tuple, Union

    # A range is (low, high, width); width 0 means unpadded.
    Range = Tuple[int, int, int]
    Segment = Union[str, Tuple[Range, ...]]  # literal text, or a bracket group
    Pattern = Tuple[Segment, ...]

from .errors import HostlistError

MAX_RANGE = 65536
MAX_EXPAND = 1 << 20  # refuse to materialise more names than this
# One gres.conf File=/MultipleFiles= value names devices of ONE node: a node has at most 32
# GPUs, and mig-minors holds 4,322 capability numbers in all. Far below Slurm's per-range cap.
MAX_DEVICE_NAMES = 8192



def _split_top(expr: str) -> List[str]:
    """Split on commas that are outside brackets."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise HostlistError("nested '[' in hostlist", fragment=expr)
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise HostlistError("']' without '[' in hostlist", fragment=expr)
        elif ch == "," and depth == 0:
            terms.append(expr[start:i])
            start = i + 1
    if depth != 0:
        raise HostlistError("unbalanced '[' in hostlist", fragment=expr)
    terms.append(expr[start:])
    return terms


def _parse_ranges(body: str, expr: str) -> Tuple[Range, ...]:
    if not body:
        raise HostlistError("empty brackets in hostlist", fragment=expr)
    ranges = []
    for part in body.split(","):
        lo_s, sep, hi_s = part.partition("-")
        if not lo_s.isdecimal() or (sep and not hi_s.isdecimal()):
            raise HostlistError(f"bad range {part!r} in hostlist", fragment=expr)
        if not sep:
            hi_s = lo_s
        lo, hi = int(lo_s), int(hi_s)
        if hi < lo:
            raise HostlistError(f"reversed range {part!r} in hostlist", fragment=expr)
        if hi - lo + 1 > MAX_RANGE:
            raise HostlistError(f"range {part!r} has more than {MAX_RANGE} names", fragment=expr)
        width = len(lo_s) if len(lo_s) > 1 and lo_s[0] == "0" else 0
        ranges.append((lo, hi, width))
    return tuple(ranges)


_PARSED: dict = {}  # expr -> patterns: one config names the same few hostlists many times
_PARSED_MAX = 4096


def parse(expr: str) -> Tuple[Pattern, ...]:
    """Parse a hostlist expression into patterns (one per top-level comma term).
    Memoised (a plain dict, not functools.lru_cache: functools is not imported for this)."""
    found = _PARSED.get(expr)
    if found is None:
        found = _parse(expr)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[expr] = found
    return found


parse.cache_clear = _PARSED.clear  # type: ignore[attr-defined]  # as lru_cache's (tests)


def _parse(expr: str) -> Tuple[Pattern, ...]:
    expr = expr.strip()
    if not expr:
        raise HostlistError("empty hostlist", fragment=expr)
    patterns = []
    for term in _split_top(expr):
        if not term:
            raise HostlistError("empty name in hostlist", fragment=expr)
        segs: List[Segment] = []
        pos = 0
        while pos < len(term):
            open_at = term.find("[", pos)
            if open_at < 0:
                segs.append(term[pos:])
                break
            if open_at > pos:
                segs.append(term[pos:open_at])
            close_at = term.find("]", open_at)
            segs.append(_parse_ranges(term[open_at + 1:close_at], expr))
            pos = close_at + 1
        patterns.append(tuple(segs))
    return tuple(patterns)


def _fmt(value: int, width: int) -> str:
    return str(value).zfill(width)


def _expand_pattern(pattern: Pattern) -> Iterator[str]:
    if not pattern:
        yield ""
        return
    head, rest = pattern[0], pattern[1:]
    tails = list(_expand_pattern(rest)) if rest else [""]
    if isinstance(head, str):
        for tail in tails:
            yield head + tail
        return
    for lo, hi, width in head:
        for value in range(lo, hi + 1):
            text = _fmt(value, width)
            for tail in tails:
                yield text + tail


def count(expr: str) -> int:
    """Number of names in the hostlist, without expanding it."""
    total = 0
    for pattern in parse(expr):
        n = 1
        for seg in pattern:
            if not isinstance(seg, str):
                n *= sum(hi - lo + 1 for lo, hi, _ in seg)
        total += n
    return total


def expand(expr: str, limit: int = MAX_EXPAND) -> List[str]:
    """All names, in written order (duplicates kept, as Slurm keeps them for File=).

    At most ``limit`` names; all expansions of one configuration load also share its budget
    (bounded.session), so many lines cannot add up to millions of names either."""
    from .bounded import charge_names

    if "[" not in expr and "]" not in expr:
        names = [n.strip() for n in expr.split(",")]
        if not expr.strip() or any(not n for n in names):
            raise HostlistError("empty name in hostlist", fragment=expr)
        charge_names(len(names), lambda m: HostlistError(m, fragment=expr))
        return names
    n = count(expr)
    if n > limit:
        raise HostlistError(f"hostlist has more than {limit} names", fragment=expr)
    charge_names(n, lambda m: HostlistError(m, fragment=expr))
    out: List[str] = []
    for pattern in parse(expr):
        out.extend(_expand_pattern(pattern))
    return out


def _match(pattern: Pattern, name: str, pos: int) -> bool:
    if not pattern:
        return pos == len(name)
    head, rest = pattern[0], pattern[1:]
    if isinstance(head, str):
        return name.startswith(head, pos) and _match(rest, name, pos + len(head))
    end = pos
    while end < len(name) and name[end].isdigit():
        end += 1
    for stop in range(end, pos, -1):
        digits = name[pos:stop]
        value = int(digits)
        for lo, hi, width in head:
            if lo <= value <= hi and _fmt(value, width) == digits:
                if _match(rest, name, stop):
                    return True
    return False


def contains(expr: str, name: str) -> bool:
    """True if ``name`` is in the hostlist; never expands it."""
    if "[" not in expr and "]" not in expr:
        for part in expr.split(","):
            if part.strip() == name:
                return True
        parse(expr)  # still reject malformed input such as empty names
        return False
    return any(_match(p, name, 0) for p in parse(expr))


def _tail_number(name: str):
    """(prefix, digits, suffix) around the name's last run of digits, or None without one."""
    end = len(name)
    while end and not name[end - 1].isdecimal():
        end -= 1
    start = end
    while start and name[start - 1].isdecimal():
        start -= 1
    return (name[:start], name[start:end], name[end:]) if end else None


def fold(names: Iterable[str]) -> str:
    """Fold names into a hostlist, keeping their order: expand(fold(x)) == x."""
    groups: List[Tuple[str, str, int, List[int]]] = []  # prefix, suffix, width, values
    for name in names:
        split = _tail_number(name)
        if not split or "[" in name or "]" in name or "," in name:
            groups.append((name, "", -1, []))
            continue
        prefix, digits, suffix = split
        value = int(digits)
        if groups:
            gp, gs, gw, gv = groups[-1]
            if gw >= 0 and gp == prefix and gs == suffix and _fmt(value, gw) == digits:
                gv.append(value)
                continue
        width = len(digits) if len(digits) > 1 and digits[0] == "0" else 0
        groups.append((prefix, suffix, width, [value]))
    parts = []
    for prefix, suffix, width, values in groups:
        if width < 0:
            parts.append(prefix)
        elif len(values) == 1:
            parts.append(f"{prefix}{_fmt(values[0], width)}{suffix}")
        else:
            parts.append(f"{prefix}[{_ranges_text(values, width)}]{suffix}")
    return ",".join(parts)


def _ranges_text(values: Sequence[int], width: int) -> str:
    out, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j > i:
            out.append(f"{_fmt(values[i], width)}-{_fmt(values[j], width)}")
        else:
            out.append(_fmt(values[i], width))
        i = j + 1
    return ",".join(out)
