"""slurm.conf: the few keys migsync needs (GresTypes, NodeName lines and their Gres=)."""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

from . import hostlist
from .errors import ConfigError, HostlistError
from .slurmsyntax import LogicalLine, logical_lines, parse_count, read_text, tokens
from .record import Record

MAX_INCLUDE_DEPTH = 8


class NodeLine(Record):
    __slots__ = ("path", "lineno", "nodes", "keys")

    def __init__(self, path: str, lineno: int, nodes: str, keys: Dict[str, str]) -> None:
        self.path = path
        self.lineno = lineno
        self.nodes = nodes
        self.keys = keys  # lower-case key -> value


class GresSpec(Record):
    """One Gres= entry: name[:type]:count."""

    __slots__ = ("name", "type", "count")

    def __init__(self, name: str, type: Optional[str], count: int) -> None:
        self.name = name
        self.type = type
        self.count = count


class SlurmConf(Record):
    __slots__ = ("path", "params", "node_lines")

    def __init__(self, path: str, params: Dict[str, str] = None,
                 node_lines: List[NodeLine] = None) -> None:
        self.path = path
        self.params = {} if params is None else params  # lower-case key -> last value
        self.node_lines = [] if node_lines is None else node_lines

    @property
    def gres_types(self) -> List[str]:
        value = self.params.get("grestypes", "")
        return [t.strip().lower() for t in value.split(",") if t.strip()]

    def _node_record(self, node: str) -> Optional[Tuple[Dict[str, str],
                                                         Dict[str, Tuple[str, int]]]]:
        """The keys slurmctld applies to ``node`` and the (file, line) each came from, or None.
        slurm.conf(5): a NodeName=DEFAULT line applies to the node lines AFTER it (each one
        adds to or replaces earlier defaults)."""
        defaults: Dict[str, str] = {}
        default_src: Dict[str, Tuple[str, int]] = {}
        merged: Dict[str, str] = {}
        src: Dict[str, Tuple[str, int]] = {}
        found = False
        for nl in self.node_lines:
            here = (nl.path, nl.lineno)
            if nl.nodes.lower() == "default":
                defaults.update(nl.keys)
                default_src.update(dict.fromkeys(nl.keys, here))
            elif hostlist.contains(nl.nodes, node):
                merged.update(defaults)
                src.update(default_src)
                merged.update(nl.keys)
                src.update(dict.fromkeys(nl.keys, here))
                found = True
        return (merged, src) if found else None

    def node_keys(self, node: str) -> Optional[Dict[str, str]]:
        """The keys slurmctld applies to ``node`` (DEFAULT lines above it first), or None."""
        record = self._node_record(node)
        return record[0] if record else None

    def node_gres(self, node: str) -> Optional[Tuple[List[GresSpec], str]]:
        """Parsed Gres= for ``node`` and where it came from, or None if the node has no line."""
        record = self._node_record(node)
        if record is None:
            return None
        keys, src = record
        path, lineno = src.get("gres", (self.path, None))
        where = f"{os.path.basename(path)}:{lineno}" if lineno else self.path  # short, for findings
        try:
            return parse_gres(keys.get("gres", ""), where), where
        except ConfigError as exc:  # errors name the file as given, like every other error
            raise ConfigError(exc.message, path=path, line=lineno,
                              fragment=exc.fragment) from None


def _entries(value: str) -> List[str]:
    """Gres= split on the commas outside parentheses: `gpu:a100:2(S:0,1)` is one entry."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(value):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            out.append(value[start:i])
            start = i + 1
    out.append(value[start:])
    return out


def parse_gres(value: str, where: str = "Gres") -> List[GresSpec]:
    """Parse 'gpu:1g.10gb:14,gpu:a100:2'. The count follows the last colon; a socket
    binding after it, `gpu:a100:2(S:0-1)`, is not part of the count (slurm.conf(5); the real
    slurmd accepts it: corpus case 96)."""
    specs: List[GresSpec] = []
    if not value or value.lower() == "(null)":
        return specs
    for entry in _entries(value):
        bare = entry.split("(", 1)[0]
        parts = [p for p in bare.strip().split(":") if p.lower() != "no_consume"]
        if not parts or not parts[0]:
            raise ConfigError(f"empty Gres entry in {value!r}", path=where, fragment=entry)
        name = parts[0]
        count_text = parts[-1] if len(parts) > 1 else "1"
        gtype = parts[1] if len(parts) == 3 else None
        if len(parts) > 3:
            raise ConfigError("Gres entry has too many ':' fields", path=where, fragment=entry)
        probe = LogicalLine(where, 0, entry)
        try:
            count = parse_count(count_text, probe, "Gres")
        except ConfigError:
            raise ConfigError(f"Gres entry {entry!r} has no count after its last ':'",
                              path=where, fragment=entry) from None
        specs.append(GresSpec(name.lower(), gtype, count))
    for name in {s.name for s in specs}:
        mine = [s for s in specs if s.name == name]
        if any(s.type for s in mine) and any(s.count for s in mine if not s.type):
            # slurmd dies on this node line (measured, 22.05-26.05: corpus case 98)
            raise ConfigError(f"Gres= gives some {name} a type and others none (slurmd: Some "
                              f"{name} GRES in slurm.conf have a type while others do not)",
                              path=where, fragment=value)
    return specs


def parse(text: str, path: str, _depth: int = 0) -> SlurmConf:
    conf = SlurmConf(path)
    for line in logical_lines(text, path):
        head = line.text.split(None, 1)
        if head[0].lower() == "include":
            if len(head) < 2 or _depth >= MAX_INCLUDE_DEPTH:
                raise ConfigError("bad or too deeply nested Include", path=path,
                                  line=line.lineno, fragment=line.text)
            target = head[1].strip()
            if not os.path.isabs(target):
                target = os.path.join(os.path.dirname(path), target)
            try:
                text = read_text(target)
            except ConfigError as exc:  # name the including line too
                raise ConfigError(f"Include {target}: {exc.message}", path=path,
                                  line=line.lineno, fragment=line.text) from None
            sub = parse(text, target, _depth + 1)
            conf.params.update(sub.params)
            conf.node_lines.extend(sub.node_lines)
            continue
        pairs = tokens(line)
        if not pairs:
            continue
        first_key, first_val = pairs[0]
        if first_key.lower() == "nodename":
            try:
                if first_val.lower() != "default":
                    hostlist.parse(first_val)
            except HostlistError as exc:
                raise ConfigError(f"NodeName=: {exc.message}", path=path, line=line.lineno,
                                  fragment=first_val) from None
            keys = {k.lower(): v for k, v in pairs[1:]}
            conf.node_lines.append(NodeLine(path, line.lineno, first_val, keys))
        elif first_key.lower() in ("partitionname", "nodeset", "frontendname", "downnodes"):
            continue
        else:
            for k, v in pairs:
                conf.params[k.lower()] = v
    return conf


def load(path: str) -> SlurmConf:
    from .bounded import session  # one budget for the file, its Includes and hostlists

    with session():
        return parse(read_text(path), path)
