"""gres.conf as slurmd reads it: lines, the node's own lines, the devices they name, the order
slurmd keeps them in, and the errors that stop slurmd.

Every rule here was measured with the real `slurmd -G` of Slurm 22.05.8, 24.11.5 and 26.05.5
(tests/data/gres-corpus/*.slurmd.json hold the recordings). Where releases differ the
``version`` argument (a release series, see slurmversion) picks the rule.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple

from . import hostlist, slurmversion
from .errors import ConfigError, HostlistError
from .slurmsyntax import BLANKS, LogicalLine, logical_lines, read_text, tokens
from .record import Record

KEYS = {
    "autodetect": "AutoDetect", "count": "Count", "cores": "Cores", "cpus": "CPUs",
    "file": "File", "files": "File", "flags": "Flags", "link": "Links", "links": "Links",
    "multiplefiles": "MultipleFiles", "name": "Name", "nodename": "NodeName", "type": "Type",
}
MAX_INCLUDE_DEPTH = 8
# Shared GRES: slurmd spreads their Count over the File= devices, so Count need not equal
# the number of files (measured: `Name=mps Count=3 File=d[0-1]` is fine, `Name=foo` is not).
SHARED = ("mps", "shard")
ENV_FLAGS = ("nvidia_gpu_env", "amd_gpu_env", "intel_gpu_env", "opencl_env", "no_gpu_env")
_GPU_ENV = frozenset(ENV_FLAGS[:4])  # the flags that set variables (no_gpu_env clears them)
_DEFAULT_ENV = frozenset(["default"])  # no Flags= env flags at all: Slurm's defaults


class GresLine(Record):
    """One gres.conf line, keys normalised to Slurm's spelling."""

    __slots__ = ("path", "lineno", "text", "nodes", "name", "type", "files", "multiple_files", "count", "autodetect", "extra")

    def __init__(self, path: str, lineno: int, text: str, nodes: Optional[str] = None,
                 name: Optional[str] = None, type: Optional[str] = None, files: List[str] = None,
                 multiple_files: List[str] = None, count: Optional[int] = None,
                 autodetect: Optional[str] = None, extra: Dict[str, str] = None) -> None:
        self.path = path
        self.lineno = lineno
        self.text = text
        self.nodes = nodes  # NodeName hostlist; None applies to every node
        self.name = name
        self.type = type
        self.files = [] if files is None else files  # File= expanded, in written order
        self.multiple_files = [] if multiple_files is None else multiple_files
        self.count = count
        self.autodetect = autodetect
        self.extra = {} if extra is None else extra  # Cores, Links, Flags

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


class SlurmdRecord(Record):
    """One device (or one file-less record) in slurmd's list for a node, in slurmd's order.

    ``index`` is the position jobs see (Slurm's IDX, SLURM_JOB_GPUS, CUDA_VISIBLE_DEVICES
    without ConstrainDevices); it runs across Types from 0. A value: never changed once made,
    so it can be hashed."""

    __slots__ = ("index", "name", "type", "count", "files", "path", "line")

    def __init__(self, index: int, name: str, type: Optional[str], count: int,
                 files: Tuple[str, ...], path: str, line: int) -> None:
        self.index = index
        self.name = name
        self.type = type
        self.count = count
        self.files = files
        self.path = path
        self.line = line

    def __hash__(self) -> int:
        return hash((self.index, self.name, self.type, self.count, self.files, self.path,
                     self.line))

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "type": self.type, "count": self.count,
                "files": list(self.files), "source_file": self.path, "line": self.line}


class GresConf(Record):
    __slots__ = ("path", "lines", "ignored", "version", "gres_types")

    def __init__(self, path: str, lines: List[GresLine] = None,
                 ignored: List[Tuple[str, str]] = None,
                 version: str = slurmversion.NEWEST,
                 gres_types: Optional[Sequence[str]] = None) -> None:
        self.path = path
        self.lines = [] if lines is None else lines
        # lines slurmd skips with only a log message: (source, why)
        self.ignored = [] if ignored is None else ignored
        self.version = version  # the rules it was read with
        # slurm.conf's GresTypes, lower case; None when unknown (every name counts)
        self.gres_types = None if gres_types is None else tuple(t.lower() for t in gres_types)

    def configured(self, name: str) -> bool:
        """Does slurmd keep records of GRES ``name``? Only of names in GresTypes: it parses
        every line (its errors stay fatal), then drops the record of another name ("Ignoring
        gres.conf record, invalid name"), before its checks across records (measured:
        corpus cases 100, 101)."""
        return self.gres_types is None or name.lower() in self.gres_types

    def for_node(self, node: str, name: str = "gpu") -> List[GresLine]:
        """The lines slurmd on ``node`` applies for GRES ``name`` (case-insensitive), file order."""
        out = []
        for ln in self.lines:
            if ln.name is None or ln.name.lower() != name.lower():
                continue
            if ln.applies_to(node):
                out.append(ln)
        with_files = [ln for ln in out if ln.files or ln.multiple_files]
        if (with_files and len(with_files) != len(out) and name.lower() not in SHARED
                and self.configured(name)):
            bad = next(ln for ln in out if not (ln.files or ln.multiple_files))
            raise ConfigError(f"some {name} lines for {node} have File= and this one does not "
                              f"(slurmd: gres.conf for {name}, some records have \"File\" "
                              "specification while others do not)", path=bad.path,
                              line=bad.lineno, fragment=bad.text[:60])
        return out

    def autodetect_for(self, node: str) -> Optional[str]:
        """The AutoDetect value slurmd uses on ``node``: node-local beats global."""
        glob, local = None, None
        for ln in self.lines:
            if not ln.autodetect:
                continue
            if ln.nodes is None:
                if ln.name is None:
                    glob = ln.autodetect  # "specified more than once, latest value used"
            elif ln.applies_to(node) and local is None:
                local = ln.autodetect  # the first; a different later one is fatal
        return local if local is not None else glob

    def fatal_for(self, node: str) -> List[Tuple[GresLine, str]]:
        """Why slurmd on ``node`` would refuse to start, in slurmd's own words, for a file
        migsync can read: (the line it names, slurmd's error text). Empty when it starts."""
        return slurmd_fatal(self, node)


def _err(line: LogicalLine, msg: str, fragment: str) -> ConfigError:
    return ConfigError(msg, path=line.path, line=line.lineno, fragment=fragment)


def _terms(value: str) -> List[str]:
    """Split a hostlist on commas and blanks outside brackets, dropping empty elements
    (slurmd reads `File=a,,b` and a quoted `File="a b"` as two files)."""
    out, depth, cur = [], 0, []
    for ch in value:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if depth == 0 and (ch == "," or ch in BLANKS):
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [t for t in out if t]


def _check_suffixes(terms: List[str], value: str, version: str) -> None:
    """22.05's hostlist takes text after ']' only before another '[' group: `d[0-1]x` and
    `d[0-1]p0` are parse errors there, `d[0-1]x[0-0]` is not (measured on File= and on
    NodeName=: corpus cases 40, 41, 82). 24.11 and later read the suffix."""
    if slurmversion.rules(version) == "22.05":
        for t in terms:
            if "]" in t and t[t.rindex("]") + 1:]:
                raise HostlistError("text after ']' (Slurm 22.05 cannot parse it)", fragment=value)


def expand_files(value: str, version: str = slurmversion.NEWEST) -> List[str]:
    """File=/MultipleFiles= as slurmd expands it: hostlist order, unsorted. Raises
    HostlistError where that release's slurmd cannot parse it ("can't parse File=")."""
    terms = _terms(value)
    if not terms:
        raise HostlistError("empty file list", fragment=value)
    _check_suffixes(terms, value, version)
    # one line names devices of one node: capped at a node's scale (issue 12)
    return hostlist.expand(",".join(terms), hostlist.MAX_DEVICE_NAMES)


def _node_matches(nodes: str, node: str, version: str) -> Optional[bool]:
    """Is ``node`` in a NodeName= hostlist? None when slurmd cannot parse it (it skips the line)."""
    terms = _terms(nodes)
    if not terms:
        return None
    try:
        _check_suffixes(terms, nodes, version)
        return hostlist.contains(",".join(terms), node)
    except HostlistError:
        return None


def _name_of(pairs: List[Tuple[str, str]]) -> Optional[str]:
    """The line's GRES name as slurmd takes it: on a line that starts with Name= the first
    one (it names the record: `Name=mps Name=gpu` is mps, measured: corpus 105), on a
    NodeName= line the last (a repeated key: "latest value used")."""
    names = [v for k, v in pairs if k.lower() == "name"]
    if not names:
        return None
    return names[0] if pairs[0][0].lower() == "name" else names[-1]


def _parse_line(line: LogicalLine, node: Optional[str], version: str,
                conf: GresConf) -> Optional[GresLine]:
    """Parse one line. With ``node``, lines for other nodes get their keys checked (slurmd
    rejects unknown keys anywhere) but their values are not read. None: slurmd skips it."""
    out = GresLine(line.path, line.lineno, line.text)
    pairs = tokens(line)
    first = KEYS.get(pairs[0][0].lower()) if pairs else None
    if first not in ("NodeName", "Name", "AutoDetect"):
        raise _err(line, "a gres.conf line must start with NodeName=, Name= or AutoDetect= "
                   f"(slurmd: Parsing error at unrecognized key: {pairs[0][0]})", line.text[:60])
    for i, (key, value) in enumerate(pairs):
        canon = KEYS.get(key.lower())
        if canon is None:
            raise _err(line, f"unknown key {key!r}", f"{key}={value}")
        if i and canon == "NodeName":
            raise _err(line, "NodeName= must come first on its line (slurmd: Parsing error at "
                       "unrecognized key: NodeName)", f"{key}={value}")
    if first == "AutoDetect":
        if len(pairs) > 1:
            raise _err(line, "a global AutoDetect= line takes nothing else (slurmd: Parse error; "
                       "put the keys on a NodeName= or Name= line)", line.text[:60])
        out.autodetect = pairs[0][1].lower()
        return out
    if first == "NodeName":
        terms = _terms(pairs[0][1])
        out.nodes = ",".join(terms)  # quoted "a b" is two names to slurmd
        match = _node_matches(out.nodes, node if node is not None else "", version)
        if match is None:
            conf.ignored.append((out.source, f"NodeName={pairs[0][1]} is not a hostlist slurmd "
                                 "can read: slurmd skips the line"))
            return None
        if node is not None and not match:
            for key, value in pairs:
                canon = KEYS[key.lower()]
                if canon == "Name":
                    out.name = value
                elif canon == "Type":
                    out.type = value
            return out
    seen: Dict[str, str] = {}
    for key, value in pairs:
        canon = KEYS[key.lower()]
        frag = f"{key}={value}"
        # slurmd logs "specified more than once, latest value used" and carries on: so do we.
        seen[canon] = value
        try:
            if canon == "NodeName":
                continue
            elif canon == "Name":
                out.name = _name_of(pairs)
            elif canon == "Type":
                out.type = value
            elif canon == "File":
                out.files = expand_files(value, version)
            elif canon == "MultipleFiles":
                out.multiple_files = expand_files(value, version)
            elif canon == "Count":
                out.count = _count(value, line, key, _name_of(pairs))
            elif canon == "AutoDetect":
                out.autodetect = value.lower()
            else:
                out.extra[canon] = value
        except HostlistError as exc:
            raise _err(line, f"{canon}=: {exc.message}", frag) from None  # slurmd: can't parse
    if out.name is None:
        if out.autodetect and out.nodes is not None:
            return out  # a node-local AutoDetect line
        conf.ignored.append((out.source, "no Name= (slurmd: Invalid GRES data, no type name): "
                             "slurmd skips the line"))
        return None
    if not conf.configured(out.name):
        conf.ignored.append((out.source, f"Name={out.name} is not in slurm.conf's GresTypes "
                             f"(slurmd: Ignoring gres.conf record, invalid name: {out.name})"))
    if out.autodetect and out.nodes is None:
        conf.ignored.append((out.source, "AutoDetect= on a line without NodeName= has no effect "
                             "(slurmd: In-line AutoDetect requires NodeName to take effect)"))
        out.autodetect = None
    if out.files and out.multiple_files:
        raise _err(line, "File= and MultipleFiles= exclude each other", line.text[:60])
    if out.multiple_files and len(out.multiple_files) < 2:
        raise _err(line, "MultipleFiles= needs at least two files (use File= for one)",
                   f"MultipleFiles={seen['MultipleFiles']}")
    if (out.count is not None and (out.files or out.multiple_files)
            and out.name.lower() not in SHARED):
        if out.count != (len(out.files) if out.files else 1):
            raise _err(line, "Count= does not match the number of devices File=/MultipleFiles= "
                       f"gives (slurmd: Invalid GRES record for {out.name}, count does not "
                       "match File value)", f"Count={seen['Count']}")
    if out.count is not None and out.count >= NO_VAL64:
        # a negative Count= wraps around in slurmd's unsigned arithmetic (-1, -2)
        raise _err(line, f"Count= is negative or too large (slurmd: GRES {out.name} has "
                   f"invalid count value {out.count})", f"Count={seen['Count']}")
    if out.name.lower() == "gpu":
        for f in out.files + out.multiple_files:
            if not f.startswith("/"):
                raise _err(line, "device files must be absolute paths", f)
    return out


# Count= suffixes as slurmd reads them (Slurm's suffix_mult, compared case-insensitively):
# binary K/KiB..P/PiB, decimal KB..PB (measured, 22.05-26.05: `Count=1kb` is 1000, `1KiB`
# 1024, `1b` and `3k5` are refused).
_COUNT_SUFFIX = {"": 1}
for _i, _s in enumerate("kmgtp", 1):
    _COUNT_SUFFIX.update({_s: 1 << (10 * _i), _s + "ib": 1 << (10 * _i), _s + "b": 1000 ** _i})
_U64 = 1 << 64
NO_VAL64 = _U64 - 2  # slurmd refuses a count at or above this ("invalid count value")


def _count(value: str, line: LogicalLine, key: str, name: Optional[str]) -> int:
    """Count= the way slurmd reads it: C's strtoll (leading blanks, a sign, decimal digits;
    no digits reads as 0 and leaves the whole text as the suffix), then a suffix from
    _COUNT_SUFFIX, in 64-bit unsigned arithmetic: `Count=+2` and `Count=-0` are accepted
    (measured), `-1` wraps to 18446744073709551615, which slurmd refuses later (_check_count)."""
    i, n = 0, len(value)
    while i < n and value[i] in BLANKS:
        i += 1
    sign = -1 if i < n and value[i] == "-" else 1
    j = i + 1 if i < n and value[i] in "+-" else i
    k = j
    while k < n and value[k] in "0123456789":
        k += 1
    number, suffix = (sign * int(value[j:k]), value[k:]) if k > j else (0, value)
    mult = _COUNT_SUFFIX.get(suffix.lower())
    # strtoll saturates at LLONG_MIN/LLONG_MAX, and slurmd refuses exactly those values
    if mult is None or not -(1 << 63) < number < (1 << 63) - 1:
        raise _err(line, f"{key}= needs a whole number, got "
                   f"{value!r} (slurmd: Invalid GRES record for {name or '(null)'}, invalid "
                   f"count {value})", f"{key}={value}")
    return (number * mult) % _U64


def parse(text: str, path: str, _depth: int = 0, node: Optional[str] = None,
          version: Optional[str] = None, gres_types: Optional[Sequence[str]] = None) -> GresConf:
    """Parse gres.conf text. ``node`` limits the full work to that node's lines (scale);
    ``version`` is the Slurm release series whose rules apply (default: the newest);
    ``gres_types`` is slurm.conf's GresTypes (None: unknown, every name is kept)."""
    conf = GresConf(path, version=slurmversion.rules(version), gres_types=gres_types)
    _parse_into(conf, text, path, _depth, node)
    return conf


def _parse_into(conf: GresConf, text: str, path: str, depth: int, node: Optional[str]) -> None:
    for line in logical_lines(text, path):
        head = line.text.split(None, 1)
        if node is not None and len(head) == 2 and _other_node(head, node):
            continue  # keys valid, NodeName excludes this node: nothing else to learn here
        if head[0].lower() == "include":
            _include(conf, line, head, path, depth, node)
            continue
        parsed = _parse_line(line, node, conf.version, conf)
        if parsed is not None:
            conf.lines.append(parsed)


def _other_node(head: List[str], node: str) -> bool:
    """Fast path for a 10,000-node file: a plain `NodeName=x key=value ...` line for another
    node whose keys are all known. Anything unusual goes through the full parser."""
    first = head[0]
    # a quoted or escaped NodeName= too: the full parser reads quotes and, like slurmd, drops
    # backslashes (NodeName=gpunode\1 is gpunode1)
    if (first[:9].lower() != "nodename=" or '"' in head[0] + head[1] or "[" in first
            or "\\" in head[0] + head[1]):
        return False
    if first[9:] == "" or node in first[9:].split(","):
        return False
    for word in head[1].split():
        key, sep, _ = word.partition("=")
        if not sep or not _ or key.lower() not in KEYS or key.lower() == "nodename":
            return False
    return True


def _include(conf: GresConf, line: LogicalLine, head: List[str], path: str, depth: int,
             node: Optional[str] = None) -> None:
    if len(head) < 2:
        raise _err(line, "Include needs a file name", line.text)
    if depth >= MAX_INCLUDE_DEPTH:
        raise _err(line, "Include nested too deeply (a loop?)", line.text)
    if len(head[1].split()) != 1:
        # measured, 22.05-26.05: `Include my dir.conf` and `Include a.conf b.conf` make slurmd
        # fail to read gres.conf ("error opening/reading"), even when the files exist
        raise _err(line, "Include takes one file name without blanks (slurmd cannot read this "
                   "line)", line.text)
    target = head[1].strip()
    if not os.path.isabs(target):
        # A relative name is read against the directory of the including file on 22.05, but
        # of gres.conf itself on 24.11 and later, also from a nested Include (measured:
        # corpus cases 84, 85).
        base = path if conf.version == "22.05" else conf.path
        target = os.path.join(os.path.dirname(base), target)
    try:
        text = read_text(target)
    except ConfigError as exc:  # name the line that asked for it, not only the missing file
        raise _err(line, f"Include {target}: {exc.message}", line.text) from None
    _parse_into(conf, text, target, depth + 1, node)


def load(path: str, node: Optional[str] = None, version: Optional[str] = None,
         gres_types: Optional[Sequence[str]] = None) -> GresConf:
    from .bounded import session  # one budget for the file, its Includes and hostlists

    with session():
        return parse(read_text(path), path, node=node, version=version, gres_types=gres_types)


# ---- what slurmd does with the node's lines ------------------------------------------------

# Flags that are no env flags but that 24.11 and later compare with them (measured:
# `nvidia_gpu_env` then `nvidia_gpu_env,CountOnly`, or `...,one_sharing`, is fatal there and
# not on 22.05: corpus cases 89, 90).
_COMPARED_FROM_24_11 = ("countonly", "one_sharing")


def _env(flags: str, version: str) -> frozenset:
    """The flags of a Flags= value that slurmd compares across lines, found as slurmd finds
    them: by case-insensitive substring (`Flags=NVIDIA_GPU_ENV`, even `nvidia_gpu_envx`, is
    nvidia_gpu_env: measured, corpus 88)."""
    low = flags.lower()
    env = {f for f in ENV_FLAGS if f in low}
    # 24.11 compares a line with CountOnly alone too (corpus case 34); 26.05 only a line
    # that also has env flags (one without them sets none there: see _flags_fatal)
    if version == "24.11" or (env and version != "22.05"):
        env.update(f for f in _COMPARED_FROM_24_11 if f in low)
    return frozenset(env)


def _flags_fatal(mine: List[GresLine], version: str) -> Optional[Tuple[GresLine, str]]:
    """slurmd's Flags= check, made while it reads the node's lines in file order: it keeps
    the env flags of the last line that set any (whatever its GRES name) and compares a
    line's env flags with them only when both lines have the same name. A gpu line without
    Flags= sets the default ones, and a line without Flags= after one of its name inherits."""
    prev: Optional[Tuple[str, frozenset]] = None  # (name, env flags) of the last setter
    for ln in mine:
        if ln.name is None:
            continue
        name = ln.name.lower()
        flags = ln.extra.get("Flags")
        env = _env(flags, version) if flags is not None else None
        if env is not None and version != "24.11" and not env:
            env = None  # 22.05 and 26.05: Flags= without env flags sets none (measured)
        if env is not None:
            if "no_gpu_env" in env and env & _GPU_ENV:
                return (ln, f"Invalid GRES record name={ln.name} type={ln.type or '(null)'}: "
                            f'Flags ({flags}) contains "no_gpu_env", which must be mutually '
                            "exclusive to all other GRES env flags of same node and name")
            if prev is not None and prev[0] == name and prev[1] != env:
                return (ln, f"Invalid GRES record name={ln.name} type={ln.type or '(null)'}: "
                            f"Flags ({flags}) does not match env flags for previous GRES of "
                            "same node and name")
            prev = (name, env)
        elif prev is not None and prev[0] == name:
            continue  # inherits the previous line's env flags
        elif name == "gpu":
            prev = (name, _DEFAULT_ENV)
    return None


def _autodetect_flag(value: str, version: str) -> Optional[str]:
    """What slurmd makes of an AutoDetect= value: the first plugin name it contains, in any
    case (`nvml2` is nvml), or `off` written out; None for a value it does not know (it logs
    "unknown autodetect flag" and sets nothing). `nvidia` exists from 24.11, `full` from
    26.05 (measured: node-local `nvidia` resp. `full` then `off` is fatal from there on)."""
    low = value.lower()
    since = {"nvidia": "24.11", "full": "26.05"}
    for flag in ("nvml", "nvidia", "rsmi", "oneapi", "full"):
        if flag in low and slurmversion.rules(version) >= since.get(flag, "22.05"):
            return flag
    return "off" if low == "off" else None


def _autodetect_conflict(mine: List[GresLine], version: str) -> Optional[GresLine]:
    """The node-local AutoDetect= line slurmd dies on: one whose value differs from the
    first one that set something. A value it does not know sets nothing, so two unknown
    values, or an unknown one first, are no conflict (measured: corpus cases 110, 111)."""
    first = None
    for ln in mine:
        if not ln.autodetect or ln.nodes is None:
            continue
        flag = _autodetect_flag(ln.autodetect, version)
        if first is not None and flag != first:
            return ln
        if first is None:
            first = flag
    return None


def slurmd_fatal(conf: GresConf, node: str) -> List[Tuple[GresLine, str]]:
    """slurmd's fatal errors for ``node`` on a file it can parse (see GresConf.fatal_for)."""
    out: List[Tuple[GresLine, str]] = []
    mine = [ln for ln in conf.lines if ln.applies_to(node)]
    bad = _autodetect_conflict(mine, conf.version)
    if bad is not None:
        out.append((bad, "gres.conf: duplicate node-local AutoDetect specification does not "
                         "match the first"))
    flags = _flags_fatal(mine, conf.version)
    if flags:
        out.append(flags)
    names: Dict[str, List[GresLine]] = {}
    for ln in mine:
        if ln.name is not None and conf.configured(ln.name):
            names.setdefault(ln.name, []).append(ln)
    for name, lines in names.items():
        typed = [ln for ln in lines if ln.type is not None]
        first = _ordered_lines(conf, node, name)[:2]
        if len(first) == 2 and all(ln.type is None and not (ln.files or ln.multiple_files)
                                   for ln in first):
            # slurmd walks the records in its order and stops at the second one when both
            # have neither Type= nor a device file: gpu, mps and site names alike, before it
            # looks at any later record (measured, 22.05-26.05: corpus cases 64, 68, 70, 71)
            out.append((first[1], f"gres.conf duplicate records for {name}"))
        elif typed and len(typed) != len(lines):
            bad = next(ln for ln in lines if ln.type is None)
            out.append((bad, f'gres.conf for {name}, some records have "Type=" specification '
                             "while others do not"))
    return out


def _ordered_lines(conf: GresConf, node: str, name: str) -> List[GresLine]:
    """slurmd's line order: lines without NodeName= first, in file order, then the node's."""
    mine = [ln for ln in conf.lines if ln.name == name and ln.applies_to(node)]
    return [ln for ln in mine if ln.nodes is None] + [ln for ln in mine if ln.nodes is not None]


def slurmd_order(conf: GresConf, node: str, gres: Optional[Sequence] = None,
                 name: str = "gpu") -> List[SlurmdRecord]:
    """This node's ``name`` devices in the order slurmd keeps them (the order job IDX,
    SLURM_JOB_GPUS and CUDA_VISIBLE_DEVICES positions refer to).

    ``gres`` is the node's slurm.conf Gres= (objects with .name, .type, .count, e.g.
    slurmconf.GresSpec); None when slurm.conf is unknown (every record is kept). Measured
    on 22.05, 24.11 and 26.05: global lines first, then the node's, each in file order; a
    File= line gives one device per file in hostlist order (unsorted), MultipleFiles= one
    device; then records are grouped by Type in the order of Gres= (stable) and each Type
    keeps at most its Gres= count (slurmd: "more configured than expected ... Ignoring extra
    GRES"), Types Gres= lacks are dropped, and all of them when Gres= has no such name. From 24.11 file-less
    gpu records are dropped ("Ignoring file-less GPU"). Indices run across Types from 0.
    The name is matched exactly: slurmctld registers no gpu for Name=GPU."""
    units: List[Tuple[GresLine, Tuple[str, ...], int]] = []
    for ln in _ordered_lines(conf, node, name):
        if ln.multiple_files:
            units.append((ln, tuple(ln.multiple_files), 1))
        elif ln.files and ln.count is not None and name.lower() in SHARED:
            # mps/shard: Count is spread over the devices (the remainder to the first ones)
            q, r = divmod(ln.count, len(ln.files))
            units.extend((ln, (f,), q + (1 if i < r else 0)) for i, f in enumerate(ln.files))
        elif ln.files:
            units.extend((ln, (f,), 1) for f in ln.files)
        else:
            n = ln.count if ln.count is not None else 1
            if n > 0 and not (name == "gpu" and conf.version != "22.05"):
                units.append((ln, (), n))
    specs = [s for s in (gres or []) if s.name.lower() == name.lower()]
    # One count per Type as written: slurm.conf's `gpu:a100:1,gpu:a100:1` is two a100, but
    # `gpu:a100:1,...,gpu:A100:1` two Types that both match Type=a100 (corpus 99, 104).
    typed: Dict[str, int] = {}
    for s in specs:
        if s.type:
            typed[s.type] = typed.get(s.type, 0) + s.count
    untyped = False
    if typed:
        # Each Type, in Gres= order, takes whole gres.conf lines of its Type (any case) until
        # its count is met; a line it takes only in part is used up, the rest of it ignored
        # (measured: `File=nvidia[0-1]` with `gpu:a100:1,gpu:1g.10gb:1,gpu:A100:1` registers
        # nvidia0 alone: corpus 104).
        by_line: List[Tuple[GresLine, list]] = []  # the units of each line, in order
        for u in units:
            if by_line and by_line[-1][0] is u[0]:
                by_line[-1][1].append(u)
            else:
                by_line.append((u[0], [u]))
        grouped, taken = [], set()
        for gtype, left in typed.items():
            for i, (ln, line_units) in enumerate(by_line):
                if left <= 0:
                    break
                if i in taken or ln.type is None or ln.type.lower() != gtype.lower():
                    continue
                taken.add(i)
                for u in line_units:
                    take = min(left, u[2])
                    if take > 0:
                        grouped.append((ln, u[1], take))
                        left -= take
        units = grouped
    elif gres is not None and not specs:
        # the node's slurm.conf line names no such GRES: slurmd keeps none of these
        # ("... more configured than expected in slurm.conf. Ignoring extra GRES": corpus 122)
        units = []
    elif specs:
        left, capped = sum(s.count for s in specs), []
        for u in units:
            if left > 0:
                capped.append((u[0], u[1], min(left, u[2])))
                left -= capped[-1][2]
        units = capped
        # an untyped Gres= takes gres.conf's records without their Type (measured: corpus
        # case 95; slurmd drops it to match the untyped slurm.conf record)
        untyped = True
    out, index = [], 0
    for ln, files, n in units:
        out.append(SlurmdRecord(index, ln.name or name, None if untyped else ln.type, n, files,
                                ln.path, ln.lineno))
        index += n
    return out
