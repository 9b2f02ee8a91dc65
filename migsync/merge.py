"""Cluster view: merge node reports into one gres.conf and a slurm.conf include.

Reads what admins already collect with: plain files, directories, stdin, `clush`/`pdsh`
output (``node: `` prefixes), `clush -b` blocks, and `srun` output (one JSON line per node).
"""
from __future__ import annotations

import json
import os
import re
import time
from collections import deque
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Tuple

from . import emit, gresconf, hostlist
from .check import DeviceKey
from .errors import ConfigError, HostlistError
from .report import HARDWARE_KEYS, layout_key, to_inventory, validate
from .record import Record

_PREFIX = re.compile(r"^([A-Za-z0-9_.\-\[\],]+):\s?(.*)$")
_SEPARATOR = re.compile(r"^-{5,}\s*$")
MAX_LINE = 16 << 20  # one line; a 56-device report is ~25 KB
MAX_REPORT = 16 << 20
_DECODER = json.JSONDecoder()


class Problem(Record):
    __slots__ = ("where", "message")

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message


class Entry(Record):
    __slots__ = ("key", "hardware")

    def __init__(self, key: str, hardware: Optional[str]) -> None:
        self.key = key  # layout_key: nodes with equal keys get the same gres.conf lines
        self.hardware = hardware


class Collected(Record):
    """Per node only its layout key (one shared copy per layout) and hardware; one report
    per distinct layout. 10,000 nodes of a few layouts then cost a few reports of memory."""

    __slots__ = ("reports", "layouts", "problems", "conflicts", "notes")

    def __init__(self, reports: Dict[str, Entry] = None, layouts: Dict[str, dict] = None,
                 problems: List[Problem] = None, conflicts: Dict[str, List[str]] = None,
                 notes: List[Problem] = None) -> None:
        self.reports = {} if reports is None else reports
        self.layouts = {} if layouts is None else layouts
        self.problems = [] if problems is None else problems
        self.notes = [] if notes is None else notes  # merged, but worth a look
        self.conflicts = {} if conflicts is None else conflicts  # node -> sources


def natural_key(name: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _read_source(path: str) -> Iterable[Tuple[str, Iterable[Tuple[str, bool]]]]:
    """(source name, its lines) for a file, each file of a directory, or stdin ('-')."""
    if path == "-":
        import sys
        yield "stdin", _lines(sys.stdin)
        return
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isfile(full) and not name.startswith("."):
                yield from _read_source(full)
        return
    try:
        fh = open(path, "r", encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=path) from None
    with fh:
        yield path, _lines(fh)


def _lines(fh) -> Iterable[Tuple[str, bool]]:
    """(line, too_long) without the newline; a line is never held longer than MAX_LINE."""
    while True:
        line = fh.readline(MAX_LINE)
        if not line:
            return
        if line.endswith("\n"):
            yield line[:-1], False
            continue
        if len(line) < MAX_LINE:  # the last line, without a newline
            yield line, False
            return
        while True:  # drop the rest of an overlong line, keeping its prefix for the message
            more = fh.readline(MAX_LINE)
            if not more or more.endswith("\n"):
                break
        yield line, True


def _keyed(lines: Iterable[Tuple[str, bool]], source: str,
           pending: Dict[str, "_Buffer"]) -> Iterable[Tuple[str, str, bool]]:
    """(where, content, too_long) per line: a node prefix ('gpu01: ', as clush and pdsh
    print), a `clush -b` block, or the source itself (srun output, JSON files)."""
    ahead: deque = deque()
    it = iter(lines)

    def fill(n: int) -> bool:
        while len(ahead) < n:
            nxt = next(it, None)
            if nxt is None:
                return False
            ahead.append(nxt)
        return True

    block: Optional[str] = None
    number = 0
    while fill(1):
        line, too_long = ahead.popleft()
        number += 1
        if _SEPARATOR.match(line) and fill(2) and _SEPARATOR.match(ahead[1][0]):
            block = ahead[0][0].strip().split(" (", 1)[0]  # 'gpu[01-02] (2)' -> 'gpu[01-02]'
            ahead.popleft()
            ahead.popleft()
            number += 2
            continue
        if block is not None:
            yield block, line, too_long
            continue
        if line.lstrip().startswith(("{", "}", "[", "]", '"')) or not line.strip():
            yield source, line, too_long
            continue
        m = _PREFIX.match(line)
        if m:
            yield m.group(1), m.group(2), too_long
        elif source in pending:  # e.g. a number on its own line inside an indented report
            yield source, line, too_long
        else:
            yield f"{source}:{number}", line, too_long


class _Buffer:
    """The lines of one report still being read (a report indented over many lines)."""

    __slots__ = ("lines", "size")

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.size = 0


def _decode(text: str, final: bool) -> Tuple[List[Any], str, str, bool]:
    """(objects, noise, broken, incomplete) of ``text``: the JSON objects in it, the first
    line of other text, the first broken object's error, and whether the text ends inside an
    object (the caller then keeps it and reads on; ``final``: no more lines will come)."""
    objs: List[Any] = []
    noise = broken = ""
    pos, end = 0, len(text)
    while pos < end:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            break
        if text[pos] != "{":
            nl = text.find("\n", pos)
            nl = end if nl < 0 else nl
            noise = noise or text[pos:nl].strip()
            pos = nl
            continue
        try:
            obj, pos = _DECODER.raw_decode(text, pos)
            objs.append(obj)
        except RecursionError:  # '[[[[...' 100,000 deep: one node's report, not a bug
            broken = broken or "invalid JSON (nested too deeply)"
            nl = text.find("\n", pos)
            pos = end if nl < 0 else nl
        except ValueError as exc:
            at = getattr(exc, "pos", pos)
            if not final and at >= len(text.rstrip()):
                return objs, noise, broken, True
            broken = broken or f"invalid JSON ({getattr(exc, 'msg', exc)})"
            nl = text.find("\n", max(at, pos))
            pos = end if nl < 0 else nl
    return objs, noise, broken, False


def collect(paths: Iterable[str]) -> Collected:
    """Read reports one at a time: memory follows the largest report and the number of
    distinct layouts, not the size of the input (10,000 nodes are ~230 MB of JSON)."""
    out = Collected()
    first_where: Dict[str, str] = {}
    interned: Dict[str, str] = {}  # one copy of each layout key, shared by its nodes

    def take(where: str, obj: Any, source: str) -> None:
        try:
            doc = validate_report(obj)
        except ConfigError as exc:
            out.problems.append(Problem(where, exc.message))
            return
        node, key = doc["node"], layout_key(doc)
        if not _sent_by(node, where, source):
            # clush/pdsh name the host that printed it: a report naming another node is right
            # where NodeName differs from the hostname (`node =` in migsync.toml), wrong for a
            # cloned image or a stale SLURMD_NODENAME, which would give that node this one's
            # layout and leave this one without lines. Said, so an admin can tell which.
            out.notes.append(Problem(where, f"its report names node {node!r}, not the host that "
                                            "printed it (right only if NodeName differs from "
                                            "the hostname)"))
        key = interned.setdefault(key, key)
        seen = first_where.setdefault(node, where)
        prev = out.reports.get(node)
        if node in out.conflicts:
            out.conflicts[node].append(where)
        elif prev is not None and prev.key != key:
            out.conflicts[node] = [seen, where]
        else:
            out.reports[node] = Entry(key, doc.get("hardware"))
            if key not in out.layouts:
                out.layouts[key] = doc

    for path in paths:
        for source, lines in _read_source(path):
            pending: Dict[str, _Buffer] = {}
            junk: Dict[str, str] = {}  # where -> first non-report text, unless a report came
            reported: set = set()

            def flush(where: str, buf: _Buffer, final: bool) -> None:
                objs, noise, broken, incomplete = _decode("\n".join(buf.lines), final)
                if incomplete:
                    return
                del pending[where]
                if broken:  # a report cut short or mangled: always said, good ones or not
                    out.problems.append(Problem(where, f"no report: {broken}"))
                settle(where, objs, noise)

            def settle(where: str, objs: List[Any], noise: str) -> None:
                """Text that is no report (an ssh error) is only worth saying for a node
                that sent no report at all."""
                if objs:
                    reported.add(where)
                    junk.pop(where, None)
                elif noise and where not in reported:
                    junk.setdefault(where, noise)
                for obj in objs:
                    take(where, obj, source)

            for where, content, too_long in _keyed(lines, source, pending):
                if too_long:
                    pending.pop(where, None)
                    out.problems.append(Problem(where, f"no report: line longer than {MAX_LINE} bytes"))
                    continue
                text = content.strip()
                buf = pending.get(where)
                if buf is None:
                    if not text:
                        continue
                    if text[0] != "{":
                        settle(where, [], text)
                        continue
                    buf = pending[where] = _Buffer()
                elif content.startswith("{") and buf.lines[-1].rstrip()[-1:] not in ("[", ",", ":"):
                    # a new report at column 0 while the last one never closed: that one is broken
                    flush(where, buf, True)
                    buf = pending[where] = _Buffer()
                buf.lines.append(content)
                buf.size += len(content)
                if buf.size > MAX_REPORT:
                    del pending[where]
                    out.problems.append(Problem(where, f"no report: larger than {MAX_REPORT} bytes"))
                elif text.endswith("}"):
                    flush(where, buf, False)
            for where, buf in list(pending.items()):
                flush(where, buf, True)
            for where, text in junk.items():
                out.problems.append(Problem(where, f"no report: {text[:120]}"))
    for node in out.conflicts:
        out.reports.pop(node, None)
    return out


def _sent_by(node: str, where: str, source: str) -> bool:
    """Whether a report naming ``node`` may have come from ``where``: a clush/pdsh prefix or a
    `clush -b` block names who printed it (a hostlist for a block); a plain file, stdin or
    srun output names no one."""
    if where == source or where.startswith(source + ":"):
        return True
    try:
        return hostlist.contains(where, node) if "[" in where or "," in where else where == node
    except HostlistError:
        return False


_TYPE = re.compile(r"^[A-Za-z0-9_.+\-]{1,64}$")  # a gres.conf Type: no space, '=', ',' or ':'
_PROFILE = re.compile(r"^(\d+c\.)?\d+g\.\d+gb([+-][A-Za-z0-9.]+)*$")
_BUS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_UUID = re.compile(r"^(GPU|MIG)-[0-9A-Fa-f-]{8,64}$")
_DEVFILE = re.compile(r"^/dev/nvidia(\d{1,3}|-caps/nvidia-cap\d{1,7})$")
_GPU_NAME = re.compile(r"^[A-Za-z0-9 _.()+\-/]{1,96}$")


def _int(value, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high


def validate_report(doc) -> dict:
    """A report from a node is untrusted input to root on the controller: whatever reaches
    the merged gres.conf or the slurm.conf include must be what a report can legitimately
    hold. Known `slurmd -C` keys with whole-number values, a node name by Slurm's grammar,
    typed GPU and device fields. A bad report is listed and skipped (ConfigError)."""
    from .sanitize import node_name_problem

    doc = validate(doc)

    def bad(what: str) -> None:
        raise ConfigError(f"rejected report: {what}")

    problem = node_name_problem(doc["node"])
    if problem:
        bad(f"node {doc['node'][:40]!r}: {problem}")
    hw = doc.get("hardware")
    if hw is not None:
        if not isinstance(hw, str):
            bad("hardware is not a string")
        seen = set()
        for word in hw.split(" "):
            key, sep, value = word.partition("=")
            if not sep or key not in HARDWARE_KEYS or not value.isdigit() or len(value) > 12 \
                    or key in seen:
                bad(f"hardware field {word[:40]!r} is not one of {', '.join(HARDWARE_KEYS)} "
                    "with a whole number")
            seen.add(key)
    for g in doc["gpus"]:
        if not isinstance(g, dict) or not _int(g.get("minor"), 255):
            bad(f"bad GPU entry {str(g)[:60]}")
        name, bus, uuid = g.get("name"), g.get("bus_id"), g.get("uuid")
        if not (name is None or (isinstance(name, str) and _GPU_NAME.match(name))):
            bad(f"GPU name {str(name)[:40]!r}")
        if not (bus is None or (isinstance(bus, str) and _BUS.match(bus))):
            bad(f"GPU bus id {str(bus)[:40]!r}")
        if not (uuid is None or (isinstance(uuid, str) and _UUID.match(uuid))):
            bad(f"GPU uuid {str(uuid)[:40]!r}")
        for k in ("mig_current", "mig_pending_mode", "mig_pending"):  # v2 name, v1 name
            if g.get(k) is not None and not isinstance(g.get(k), bool):
                bad(f"GPU {k} is not true, false or null")
    for d in doc["devices"]:
        if not _int(d["minor"], 255):
            bad(f"device minor {d['minor']!r}")
        t = d.get("type")
        if t is not None and not _TYPE.match(t):
            bad(f"device type {t[:40]!r} is not a gres.conf Type name")
        files = d.get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) and _DEVFILE.match(f)
                                                  for f in files):
            bad(f"device files {str(files)[:60]}")
        if d["kind"] == "mig":
            p = d.get("profile")
            if p is not None and not (isinstance(p, str) and _PROFILE.match(p)):
                bad(f"MIG profile {str(p)[:40]!r}")
            if not (_int(d["gi"], 63) and _int(d["ci"], 63) and _int(d["gi_cap"], 1 << 20)
                    and _int(d["ci_cap"], 1 << 20)):
                bad("MIG device numbers out of range")
    _consistent(doc, bad)
    return doc


def _consistent(doc: dict, bad) -> None:
    """One report must describe a node that can exist: every GPU and device once, each cap
    number for one instance, MIG devices only on a GPU the report lists with MIG on, a whole
    GPU only on one with MIG off. Otherwise the merged gres.conf gives one device file to two
    GRES (two jobs on one MIG slice), or drops a device without a word."""
    mig_on: Dict[int, Any] = {}
    for g in doc["gpus"]:
        if g["minor"] in mig_on:
            bad(f"gpu{g['minor']} is listed twice")
        mig_on[g["minor"]] = g.get("mig_current")
    seen = set()
    gi_owner: Dict[int, Tuple[int, int]] = {}  # GI cap -> (gpu minor, gi)
    gi_cap: Dict[Tuple[int, int], int] = {}  # (gpu minor, gi) -> its cap, named by all its CIs
    ci_owner: Dict[int, Tuple[int, int, int]] = {}
    for d in doc["devices"]:
        minor = d["minor"]
        if d["kind"] == "gpu":
            key: tuple = ("gpu", minor)
            if mig_on.get(minor) is True:
                bad(f"gpu{minor} is listed as a whole GPU and with MIG on")
        else:
            key = ("mig", minor, d["gi"], d["ci"])
            if mig_on.get(minor) is not True:
                bad(f"MIG device gpu{minor}/gi{d['gi']}/ci{d['ci']} on a GPU the report does "
                    "not list with MIG on")
            gi = (minor, d["gi"])
            if gi_owner.setdefault(d["gi_cap"], gi) != gi:
                bad(f"cap {d['gi_cap']} is given to two GPU instances")
            if gi_cap.setdefault(gi, d["gi_cap"]) != d["gi_cap"]:
                bad(f"gpu{minor}/gi{d['gi']} has two caps")
            if ci_owner.setdefault(d["ci_cap"], key[1:]) != key[1:]:
                bad(f"cap {d['ci_cap']} is given to two MIG devices")
        if key in seen:
            bad(f"device {key[0]} {'/'.join(map(str, key[1:]))} is listed twice")
        seen.add(key)
    shared = sorted(set(gi_owner) & set(ci_owner))
    if shared:
        bad(f"cap {shared[0]} is given to a GPU instance and a MIG device")


class Group(Record):
    __slots__ = ("nodes", "doc", "hardware")

    def __init__(self, nodes: List[str], doc: dict,
                 hardware: Dict[str, Optional[str]] = None) -> None:
        self.nodes = nodes
        self.doc = doc  # one representative report: the layout is the same for all
        self.hardware = {} if hardware is None else hardware  # per node

    @property
    def hostlist(self) -> str:
        return hostlist.fold(self.nodes)


def group(got: Collected) -> List[Group]:
    by_key: Dict[str, Group] = {}
    for node in sorted(got.reports, key=natural_key):
        entry = got.reports[node]
        if entry.key not in by_key:
            by_key[entry.key] = Group([], got.layouts[entry.key])
        by_key[entry.key].nodes.append(node)
        by_key[entry.key].hardware[node] = entry.hardware
    return sorted(by_key.values(), key=lambda g: natural_key(g.nodes[0]))


def _summary(types: Dict[DeviceKey, Optional[str]]) -> str:
    counts = emit.gres_counts(types)
    return ", ".join(f"{n} x {t or 'untyped'}" for t, n in counts) or "no GPUs"


def render_group(g: Group, style: str) -> List[str]:
    inv, types = to_inventory(g.doc)
    head = f"# {g.hostlist} ({len(g.nodes)} node{'s' if len(g.nodes) != 1 else ''}): {_summary(types)}"
    return [head] + emit.render_gres(inv, g.hostlist, style, types=types)


def kept_lines(current: Optional[gresconf.GresConf], reported) -> Tuple[List[str], List[str]]:
    """Lines of the current file for nodes nobody reported (NodeName narrowed to them)."""
    kept, warnings = [], []
    if current is None:
        return kept, warnings
    for ln in current.lines:
        is_gpu = (ln.name or "").lower() == "gpu"
        if ln.nodes is None:
            if is_gpu:
                warnings.append(f"{ln.source}: a gpu line without NodeName= applies to every "
                                "node; dropped (the merged lines replace it)")
            else:
                kept.append(ln.text)
            continue
        if not is_gpu:
            kept.append(ln.text)
            continue
        try:
            names = hostlist.expand(ln.nodes)
        except HostlistError as exc:
            warnings.append(f"{ln.source}: NodeName= cannot be expanded ({exc.message}); dropped")
            continue
        rest = [n for n in names if n not in reported]
        if rest:
            # NodeName= is the line's first key; slurmd allows blanks around '=' and a quoted
            # value ('NodeName="n1 n2"'), which `nodename=\S+` cut in two (a broken merged
            # file) or missed (the line kept for nodes that did report)
            folded = f"NodeName={hostlist.fold(rest)}"
            text, done = _NODENAME.subn(lambda m: folded, ln.text, count=1)
            if not done:
                warnings.append(f"{ln.source}: its NodeName= cannot be narrowed to the nodes "
                                "that sent no report; dropped")
                continue
            kept.append(text)
    return kept, warnings


_NODENAME = re.compile(r'(?i)^\s*nodename\s*=\s*(?:"[^"]*"(?=\s|$)|\S+)')


def render_gres_conf(groups: List[Group], style: str, kept: List[str], n_reports: int) -> str:
    out = [f"# gres.conf generated by migsync merge --style {style} from {n_reports} node "
           f"report(s), {time.strftime('%Y-%m-%d %H:%M:%S')}",
           "# Configless: this one file serves every node; each slurmd applies its own NodeName lines."]
    for g in groups:
        out.append("")
        out += render_group(g, style)
    if kept:
        out += ["", "# kept from the current gres.conf (nodes that sent no report)"] + kept
    return "\n".join(out) + "\n"


def _hardware_fields(hw: Optional[str]) -> Dict[str, str]:
    """Only `slurmd -C`'s CPU and memory keys with whole numbers (validate_report already
    refused anything else; this keeps the include safe whatever the caller passed)."""
    out = {}
    for kv in (hw or "").split():
        key, _, value = kv.partition("=")
        if key in HARDWARE_KEYS and value.isdigit():
            out[key] = value
    return out


def render_slurm_include(groups: List[Group]) -> str:
    """Complete NodeName lines: slurm.conf 22.05 refuses a node defined twice
    ('Duplicated NodeHostName'), so these replace the site's own lines for these nodes."""
    rows: Dict[Tuple[str, str], List[str]] = {}
    mem: Dict[Tuple[str, str], List[int]] = {}
    for g in groups:
        _, types = to_inventory(g.doc)
        gres = emit.render_slurm_gres(types)
        for node in g.nodes:
            hw = _hardware_fields(g.hardware[node])
            real = hw.pop("RealMemory", None)
            key = (gres, " ".join(f"{k}={v}" for k, v in hw.items()))
            rows.setdefault(key, []).append(node)
            if real and real.isdigit():
                mem.setdefault(key, []).append(int(real))
    out = ["# slurm.conf include generated by migsync merge. Put `Include <this file>` in",
           "# slurm.conf (configless ships it when it sits beside slurm.conf) and remove these",
           "# nodes' own NodeName lines: Slurm refuses a node defined twice."]
    for (gres, hw), nodes in sorted(rows.items(), key=lambda kv: natural_key(kv[1][0])):
        nodes.sort(key=natural_key)
        parts = [f"NodeName={hostlist.fold(nodes)}"]
        if hw:
            parts.append(hw)
            if len(mem.get((gres, hw), [])) == len(nodes):
                parts.append(f"RealMemory={min(mem[(gres, hw)])}")
        else:
            out.append("# no `slurmd -C` facts in these reports: add CPUs/RealMemory yourself")
        if gres:
            parts.append(f"Gres={gres}")
        out.append(" ".join(parts))
    return "\n".join(out) + "\n"


def _unit_text(ln: gresconf.GresLine, files: Tuple[str, ...]) -> str:
    t = f"Type={ln.type} " if ln.type else ""
    key = "MultipleFiles" if len(files) > 1 else "File"
    return f"{t}{key}={','.join(files)}"


def node_units(conf: gresconf.GresConf, node: str) -> List[str]:
    units = []
    for ln in conf.for_node(node):
        if ln.name != "gpu":
            continue
        for files in ([tuple(ln.multiple_files)] if ln.multiple_files else [(f,) for f in ln.files]):
            units.append(_unit_text(ln, files))
    return units


def diff(current: gresconf.GresConf, merged: gresconf.GresConf, nodes: List[str]) -> List[str]:
    """Per node: device units removed and added; nodes with the same change are folded."""
    changes: Dict[str, List[str]] = {}
    for node in nodes:
        old, new = node_units(current, node), node_units(merged, node)
        if sorted(old) == sorted(new):
            continue
        removed = [u for u in old if u not in new]
        added = [u for u in new if u not in old]
        if not old:
            text = f"  + {len(new)} device(s); the current file has no gpu lines for it"
        else:
            text = "\n".join([f"  - {u}" for u in removed] + [f"  + {u}" for u in added]) or \
                "  (same devices, new order)"
        changes.setdefault(text, []).append(node)
    out = []
    for text, who in changes.items():
        out.append(f"{hostlist.fold(sorted(who, key=natural_key))} ({len(who)} node"
                   f"{'s' if len(who) != 1 else ''}):")
        out.append(text)
    return out
