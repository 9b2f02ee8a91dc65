"""gres.conf as slurmd reads it: lines, the node's own lines, and the devices they name."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import hostlist
from .errors import ConfigError, HostlistError
from .slurmsyntax import LogicalLine, logical_lines, parse_count, read_text, tokens

KEYS = {
    "autodetect": "AutoDetect", "count": "Count", "cores": "Cores", "cpus": "CPUs",
    "file": "File", "files": "File", "flags": "Flags", "link": "Links", "links": "Links",
    "multiplefiles": "MultipleFiles", "name": "Name", "nodename": "NodeName", "type": "Type",
}
MAX_INCLUDE_DEPTH = 8


@dataclass
class GresLine:
    """One gres.conf line, keys normalised to Slurm's spelling."""

    path: str
    lineno: int
    text: str
    nodes: Optional[str] = None  # NodeName hostlist; None applies to every node
    name: Optional[str] = None
    type: Optional[str] = None
    files: List[str] = field(default_factory=list)  # File= expanded, in written order
    multiple_files: List[str] = field(default_factory=list)
    count: Optional[int] = None
    autodetect: Optional[str] = None
    extra: Dict[str, str] = field(default_factory=dict)  # Cores, Links, Flags

    @property
    def source(self) -> str:
        return f"{os.path.basename(self.path)}:{self.lineno}"

    @property
    def device_count(self) -> int:
        """How many GRES this line gives the node, as slurmd counts them."""
        if self.multiple_files:
            return 1
        if self.files:
            return len(self.files)
        return self.count if self.count is not None else 1

    def applies_to(self, node: str) -> bool:
        return self.nodes is None or hostlist.contains(self.nodes, node)


@dataclass
class GresConf:
    path: str
    lines: List[GresLine] = field(default_factory=list)

    def for_node(self, node: str, name: str = "gpu") -> List[GresLine]:
        """The lines slurmd on ``node`` applies for GRES ``name`` (case-insensitive)."""
        out = []
        for ln in self.lines:
            if ln.name is None or ln.name.lower() != name.lower():
                continue
            if ln.applies_to(node):
                out.append(ln)
        with_files = [ln for ln in out if ln.files or ln.multiple_files]
        if with_files and len(with_files) != len(out):
            bad = next(ln for ln in out if not (ln.files or ln.multiple_files))
            raise ConfigError(f"some {name} lines for {node} have File= and this one does not "
                              "(slurmd refuses that)", path=bad.path, line=bad.lineno,
                              fragment=bad.text[:60])
        return out

    def autodetect_for(self, node: str) -> Optional[str]:
        value = None
        for ln in self.lines:
            if ln.autodetect and ln.applies_to(node):
                value = ln.autodetect
        return value


def _err(line: LogicalLine, msg: str, fragment: str) -> ConfigError:
    return ConfigError(msg, path=line.path, line=line.lineno, fragment=fragment)


def _parse_line(line: LogicalLine, node: Optional[str] = None) -> GresLine:
    """Parse one line. With ``node``, lines for other nodes get their keys checked (slurmd
    rejects unknown keys anywhere) but their device hostlists are not expanded."""
    out = GresLine(line.path, line.lineno, line.text)
    seen: Dict[str, str] = {}
    pairs = tokens(line)
    first = KEYS.get(pairs[0][0].lower()) if pairs else None
    if first not in ("NodeName", "Name", "AutoDetect"):
        raise _err(line, "a gres.conf line must start with NodeName=, Name= or AutoDetect=",
                   line.text[:60])
    if node is not None and first == "NodeName":
        # slurmd uses the latest value of a key given twice: NodeName too
        nodes = [v for k, v in pairs if KEYS.get(k.lower()) == "NodeName"][-1]
        try:
            other = not hostlist.contains(nodes, node)
        except HostlistError as exc:
            raise _err(line, f"NodeName=: {exc.message}", f"{pairs[0][0]}={pairs[0][1]}") from None
        if other:
            for key, value in pairs:
                canon = KEYS.get(key.lower())
                if canon is None:
                    raise _err(line, f"unknown key {key!r}", f"{key}={value}")
                if canon == "Name":
                    out.name = value
                elif canon == "Type":
                    out.type = value
            out.nodes = nodes
            return out
    for key, value in pairs:
        canon = KEYS.get(key.lower())
        frag = f"{key}={value}"
        if canon is None:
            raise _err(line, f"unknown key {key!r}", frag)
        # slurmd logs "specified more than once, latest value used" and carries on: so do we.
        seen[canon] = value
        try:
            if canon == "NodeName":
                hostlist.parse(value)
                out.nodes = value
            elif canon == "Name":
                out.name = value
            elif canon == "Type":
                out.type = value
            elif canon == "File":
                out.files = hostlist.expand(value)
            elif canon == "MultipleFiles":
                out.multiple_files = hostlist.expand(value)
            elif canon == "Count":
                out.count = parse_count(value, line, key)
            elif canon == "AutoDetect":
                out.autodetect = value.lower()
            else:
                out.extra[canon] = value
        except HostlistError as exc:
            raise _err(line, f"{canon}=: {exc.message}", frag) from None
    if out.files and out.multiple_files:
        raise _err(line, "File= and MultipleFiles= exclude each other", line.text[:60])
    if out.multiple_files and len(out.multiple_files) < 2:
        raise _err(line, "MultipleFiles= needs at least two files (use File= for one)",
                   f"MultipleFiles={seen['MultipleFiles']}")
    if out.count is not None and (out.files or out.multiple_files):
        if out.count != (len(out.files) if out.files else 1):
            raise _err(line, "Count= does not match the number of devices File=/MultipleFiles= "
                       "gives (slurmd: 'count does not match File value')", f"Count={seen['Count']}")
    for f in out.files + out.multiple_files:
        if not f.startswith("/"):
            raise _err(line, "device files must be absolute paths", f)
    if out.name is None and out.autodetect is None:
        raise _err(line, "line has no Name=", line.text[:60])
    return out


def parse(text: str, path: str, _depth: int = 0, node: Optional[str] = None) -> GresConf:
    """Parse gres.conf text. ``node`` limits the full work to that node's lines (scale)."""
    conf = GresConf(path)
    for line in logical_lines(text, path):
        head = line.text.split(None, 1)
        if node is not None and len(head) == 2 and _other_node(head, node):
            continue  # keys valid, NodeName excludes this node: nothing else to learn here
        if head[0].lower() == "include":
            conf.lines.extend(_include(line, head, path, _depth, node).lines)
            continue
        conf.lines.append(_parse_line(line, node))
    return conf


def _other_node(head: List[str], node: str) -> bool:
    """Fast path for a 10,000-node file: a plain `NodeName=x key=value ...` line for another
    node whose keys are all known. Anything unusual goes through the full parser."""
    first = head[0]
    if first[:9].lower() != "nodename=" or '"' in head[0] + head[1] or "[" in first:
        return False
    if node in first[9:].split(","):
        return False
    for word in head[1].split():
        key, sep, _ = word.partition("=")
        if not sep or key.lower() not in KEYS or key.lower() == "nodename":
            return False  # a second NodeName= wins in slurmd: the full parser decides
    return True


def _include(line: LogicalLine, head: List[str], path: str, depth: int,
             node: Optional[str] = None) -> GresConf:
    if len(head) < 2:
        raise _err(line, "Include needs a file name", line.text)
    if depth >= MAX_INCLUDE_DEPTH:
        raise _err(line, "Include nested too deeply (a loop?)", line.text)
    target = head[1].strip()
    if not os.path.isabs(target):
        target = os.path.join(os.path.dirname(path), target)
    try:
        text = read_text(target)
    except ConfigError as exc:  # name the line that asked for it, not only the missing file
        raise _err(line, f"Include {target}: {exc.message}", line.text) from None
    return parse(text, target, depth + 1, node)


def load(path: str, node: Optional[str] = None) -> GresConf:
    return parse(read_text(path), path, node=node)
