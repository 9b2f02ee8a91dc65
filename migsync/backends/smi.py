"""nvidia-smi backend: --query-gpu CSV and `nvidia-smi mig -lci`, parsed by column meaning."""
from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

from .. import runner
from ..errors import CommandError, DiscoveryError
from ..procfs import normalise_bus_id
from . import BackendView, BGpu, BMig

QUERY_FIELDS = "index,pci.bus_id,uuid,name,mig.mode.current,mig.mode.pending"
EXTRA_DIRS = ("/usr/bin", "/usr/local/nvidia/bin", "/opt/nvidia/bin", "/usr/lib/wsl/lib")

# No regular expressions on the common path: compiling them cost milliseconds at every start
# (issue 11). The hand parsers below keep the meaning the expressions had, exactly: "digit"
# is str.isdecimal() (what \d matched: any Unicode decimal digit, which int() reads too),
# "whitespace" is str.isspace() / str.split() (what \s matched). nvidia-smi prints ASCII;
# other digits and spaces are only what the earlier code accepted, kept so that nothing
# refused before is read now, and the reverse.
_HEX = frozenset("0123456789abcdefABCDEF")
_UUID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")
# A profile's suffix characters ('+me', '-2'...): [a-z0-9.] matched case-insensitively, which
# in Python's re also takes the four letters whose case folds into a-z: İ ı ſ K.
_SUFFIX_CHARS = frozenset("0123456789.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                          "\u0130\u0131\u017f\u212a")
_NOT_SUPPORTED = ("[n/a]", "[not supported]")  # in mig.mode.*: this GPU has no MIG
# A field nvidia-smi could not read for lack of rights: nothing is known about the GPU, so
# it is no lost GPU (a finding that drains) but a discovery failure.
_CANNOT_ASK = ("[insufficient permissions]", "[no permission]")


def _error_field(text: str) -> bool:
    """nvidia-smi prints a field it could not read as a bracketed word: [N/A], [Unknown
    Error], [GPU requires reset], [GPU is lost], [Insufficient Permissions] ..."""
    return text.startswith("[") and text.endswith("]")


def _uuid(text: str) -> bool:
    """GPU-<letters, digits, '-'> (at least one)."""
    return text.startswith("GPU-") and len(text) > 4 and all(c in _UUID_CHARS for c in text[4:])


def _bus(text: str) -> bool:
    """DDDD[DDDD]:BB:DD.F: a 4-8 hex-digit domain, two hex digits each for bus and device,
    function 0-7 (nvidia-smi prints 8 domain digits, procfs 4)."""
    parts = text.split(":")
    if len(parts) != 3:
        return False
    domain, bus, dev = parts
    return (4 <= len(domain) <= 8 and len(bus) == 2 and len(dev) == 4 and dev[2] == "."
            and dev[3] in "01234567" and all(c in _HEX for c in domain + bus + dev[:2]))


def _digits(text: str, at: int) -> int:
    """Where the run of decimal digits starting at ``at`` ends."""
    while at < len(text) and text[at].isdecimal():
        at += 1
    return at


def _profile(text: str) -> bool:
    """A MIG profile name: [<n>c.]<n>g.<n>gb, then any number of '+'/'-' suffixes made of
    letters, digits and dots ('1g.10gb', '1c.3g.40gb', '1g.10gb+me', '1g.20gb-2'); letters
    in any case."""
    end = _digits(text, 0)
    if end and text[end:end + 2] in ("c.", "C."):  # the compute-instance part of '1c.3g.40gb'
        text = text[end + 2:]
        end = _digits(text, 0)
    if end == 0 or text[end:end + 2].lower() != "g.":
        return False
    tail = end + 2
    end = _digits(text, tail)
    if end == tail or text[end:end + 2].lower() != "gb":
        return False
    suffix = text[end + 2:]
    if not suffix:
        return True
    parts = suffix[1:].replace("-", "+").split("+")
    return suffix[0] in "+-" and all(p and all(c in _SUFFIX_CHARS for c in p) for p in parts)


def _lci_row(line: str) -> Optional[Tuple[str, str, str, str]]:
    """(GPU, GI, profile, CI) of a stripped `mig -lci` row:
    | GPU  GI id  MIG <profile>  CI-profile-id  CI-id  [start:size] |  -- else None."""
    if not (line.startswith("|") and line.endswith("|")):
        return None
    words = line[1:-1].split()
    if len(words) == 7:
        start, colon, size = words.pop().partition(":")
        if not (colon and start.isdecimal() and size.isdecimal()):
            return None
    if len(words) != 6 or words[2] != "MIG":
        return None
    gpu, gi, _mig, profile, ci_profile_id, ci = words
    if not (gpu.isdecimal() and gi.isdecimal() and ci_profile_id.isdecimal() and ci.isdecimal()):
        return None
    return gpu, gi, profile, ci


def _no_instances(text: str) -> bool:
    """The driver's "No compute instances found" (older ones: "No GPU instances were
    found"), in any case. Read only on the rare paths where -lci printed no rows or failed,
    so the expression is compiled there."""
    import re

    return re.search(r"no (gpu|compute) instances? (were )?found", text, re.I) is not None


def _bus_in_error(line: str) -> Optional[str]:
    """The first PCI bus id in a lost-GPU message ("Unable to determine the device handle for
    GPU0000:4E:00.0: Unknown Error"). Only lines that are not CSV rows get here."""
    import re

    m = re.search(r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]", line)
    return m.group(0) if m else None


def _mode(text: str) -> Optional[bool]:
    t = text.strip().lower()
    if t == "enabled":
        return True
    if t == "disabled":
        return False
    if t in _NOT_SUPPORTED:
        return None  # MIG not supported: a normal GPU
    raise ValueError(text)


def parse_query_gpu(text: str) -> List[BGpu]:
    """Rows of --query-gpu, in nvidia-smi's order. A row whose identity fields (index, bus
    id, UUID, name) or MIG mode read as an error is a lost GPU, and keeps only the fields that
    are not error text: no GPU is named after an error. Rows that are malformed, repeated, or
    that contradict each other are a discovery failure."""
    gpus: List[BGpu] = []
    unreadable: List[BGpu] = []  # "Unable to determine the device handle ..." lines: last
    seen = {"index": set(), "bus": set(), "uuid": set()}
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) != 6:
            found = _bus_in_error(line)
            if found and ("lost" in line.lower() or "unable" in line.lower()):
                unreadable.append(BGpu(-1, None, normalise_bus_id(found),
                                       lost="nvidia-smi: GPU is lost or unreadable"))
                continue
            raise DiscoveryError(f"nvidia-smi --query-gpu: unexpected line {lineno}: {line[:80]!r}")
        index, bus, uuid, name, cur, pend = cols
        bad = [c for c in (index, bus, uuid, name) if _error_field(c)]
        try:
            modes = (_mode(cur), _mode(pend))
        except ValueError as exc:
            if not _error_field(str(exc)):
                raise DiscoveryError(f"nvidia-smi --query-gpu: unexpected line {lineno}: "
                                     f"{line[:80]!r}") from None
            bad.append(str(exc))
            modes = (None, None)
        asked = [c for c in bad if c.lower() in _CANNOT_ASK]
        if asked:  # says who ran nvidia-smi, not how the GPU is (as NVML's NO_PERMISSION)
            raise DiscoveryError(f"nvidia-smi --query-gpu: line {lineno} reads {asked[0]} "
                                 "(run as root)")
        ok = {c: not _error_field(c) for c in (index, bus, uuid, name)}
        if (ok[index] and not index.isdecimal()) or (ok[bus] and not _bus(bus)) or \
                (ok[uuid] and not _uuid(uuid)) or not name:
            raise DiscoveryError(f"nvidia-smi --query-gpu: unexpected line {lineno}: {line[:80]!r}")
        gpu = BGpu(int(index) if ok[index] else -1, None,
                   normalise_bus_id(bus) if ok[bus] else None, uuid if ok[uuid] else None,
                   name if ok[name] else None, *modes,
                   lost=f"nvidia-smi: {bad[0][:40]}" if bad else None)
        for what, value in (("index", gpu.index), ("bus", gpu.bus_id), ("uuid", gpu.uuid)):
            if value is None or value == -1:
                continue
            if value in seen[what]:
                raise DiscoveryError(f"nvidia-smi --query-gpu: {what} {value} is listed twice")
            seen[what].add(value)
        gpus.append(gpu)
    gpus += unreadable
    lost_buses = [g.bus_id for g in gpus if g.index == -1 and g.bus_id]
    for bus in lost_buses:
        if lost_buses.count(bus) > 1 or any(g.bus_id == bus and g.index != -1 for g in gpus):
            raise DiscoveryError(f"nvidia-smi --query-gpu: GPU {bus} is listed twice")
    return gpus


def parse_lci(text: str) -> List[BMig]:
    """Rows of `nvidia-smi mig -lci`. The CI id is the 5th number, after the CI *profile* id.

    A table row that does not parse, a profile name that is not one, or a (GPU, GI, CI)
    listed twice is a discovery failure: dropping such a row would make a live instance
    look missing."""
    migs = []
    seen = set()
    for line in text.split("\n"):
        stripped = line.strip()
        row = _lci_row(stripped)
        if row:
            gpu, gi, profile, ci = row
            key = (int(gpu), int(gi), int(ci))
            if key in seen:
                raise DiscoveryError(f"nvidia-smi mig -lci: GPU {gpu} GI {gi} CI {ci} is listed "
                                     "twice")
            if not _profile(profile):
                raise DiscoveryError(f"nvidia-smi mig -lci: {profile[:30]!r} is not a MIG "
                                     "profile name")
            seen.add(key)
            migs.append(BMig(int(gpu), int(gi), int(ci), profile))
        elif stripped.startswith("|") and stripped[1:].lstrip()[:1].isdecimal():
            raise DiscoveryError(f"nvidia-smi mig -lci: a row that does not parse: {stripped[:80]!r}")
    return migs


def _complete(res, what: str) -> None:
    """A command that failed, was killed, or whose output was cut short gave partial data."""
    if res.returncode != 0:
        how = (f"was killed by signal {-res.returncode}" if res.returncode < 0
               else f"exited {res.returncode}")
        raise DiscoveryError(f"nvidia-smi {what} {how}: "
                             f"{runner.first_line(res.stderr or res.stdout)}")
    if res.stdout and not res.stdout.endswith("\n"):
        raise DiscoveryError(f"nvidia-smi {what}: output cut short (no final newline)")


def _list_gpu(line: str) -> Optional[int]:
    """The index of a `-L` GPU line, 'GPU <index>: <name> (UUID: GPU-...)', else None."""
    if not line.startswith("GPU "):
        return None
    index, colon, _rest = line[4:].partition(": ")
    return int(index) if colon and index.isdecimal() else None


def _list_mig(line: str) -> Optional[Tuple[str, str]]:
    """(profile, UUID) of a `-L` MIG line, else None:
    '  MIG 1g.10gb     Device  0: (UUID: MIG-b6ba6b2a-...)' (indented, any text after)."""
    rest = line.lstrip()
    if rest == line or not rest.startswith("MIG ") or rest[4:5].isspace():
        return None
    words = rest[4:].split(None, 1)  # the profile, and what follows the spaces after it
    if len(words) != 2 or not words[1].startswith("Device") or not words[1][6:7].isspace():
        return None
    rest = words[1][6:].lstrip()
    end = _digits(rest, 0)
    if end == 0 or not rest.startswith(": (UUID: MIG-", end):
        return None
    uuid = rest[end + 9:]
    stop = 4  # past 'MIG-'
    while stop < len(uuid) and uuid[stop] != ")" and not uuid[stop].isspace():
        stop += 1
    if stop == 4 or not uuid.startswith(")", stop):
        return None
    return words[0], uuid[:stop]


def parse_list(text: str) -> Dict[int, List[Tuple[str, str]]]:
    """`nvidia-smi -L`: per GPU index, the (profile, UUID) of each MIG device."""
    out: Dict[int, List[Tuple[str, str]]] = {}
    gpu = None
    for line in text.splitlines():
        index = _list_gpu(line)
        if index is not None:
            gpu = index
            out.setdefault(gpu, [])
            continue
        mig = _list_mig(line)
        if mig and gpu is not None:
            out[gpu].append(mig)
    return out


def attach_mig_uuids(migs: List[BMig], listing: Dict[int, List[Tuple[str, str]]]) -> None:
    """Give a MIG device the UUID `nvidia-smi -L` lists, only where that is certain.

    -L numbers a GPU's MIG devices ('Device 0', 'Device 1') but does not say which GPU
    instance / compute instance each is, so a UUID is tied to a device only when its profile
    occurs once on that GPU in both listings. Seven 1g.10gb devices on one GPU stay without
    UUIDs (the NVML backend reads them per device)."""
    for index, listed in listing.items():
        mine = [m for m in migs if m.gpu_index == index]
        for profile in {p for p, _ in listed}:
            same = [m for m in mine if m.profile == profile]
            uuids = [u for p, u in listed if p == profile]
            if len(same) == 1 and len(uuids) == 1:
                same[0].uuid = uuids[0]


class NotFound(DiscoveryError):
    """No nvidia-smi to run; ``named``: the path a setting or flag gave, when one did
    (discovery.Started.finish tells a wrong setting from a node without its driver)."""

    def __init__(self, message: str, named: Optional[str] = None) -> None:
        super().__init__(message)
        self.named = named


def probe(binary: Optional[str], timeout: float = 10.0, uuids: bool = True) -> BackendView:
    return finish(start(binary, timeout, uuids))


def start(binary: Optional[str], timeout: float = 10.0, uuids: bool = True) -> runner.Batch:
    """Start the nvidia-smi calls; the caller reads procfs while they run, then finish()es.
    All at once: on a MIG node they are needed anyway, and start-up dominates. ``uuids``:
    also `-L`, which only adds MIG devices' UUIDs; a caller whose output and decisions do
    not use them (a plain `check`) saves its start."""
    path = runner.find_program("nvidia-smi", binary, EXTRA_DIRS)
    if path is None:
        if binary and os.path.lexists(binary):
            # there, but a directory or not executable: a wrong setting (a driver that is
            # gone takes its nvidia-smi with it), which as a discovery failure would drain
            # every node the setting reached
            from ..errors import ConfigError

            raise ConfigError("nvidia_smi / --nvidia-smi: not an executable file",
                              path=binary)
        # absent: the setting's fault while the driver shows GPUs, else the node's
        # (discovery.Started.finish reads procfs to tell which)
        raise NotFound(f"nvidia-smi not found{' at ' + binary if binary else ''}", binary)
    argvs = [[path, f"--query-gpu={QUERY_FIELDS}", "--format=csv,noheader"],
             [path, "mig", "-lci"]]
    if uuids:
        argvs.append([path, "-L"])
    try:
        return runner.start_all(argvs, timeout)
    except CommandError as exc:
        raise DiscoveryError(f"nvidia-smi: {exc.message}") from None


def finish(batch: runner.Batch) -> BackendView:
    view = BackendView("nvidia-smi")
    try:
        res, lci, *listing = batch.collect()  # -L, third, when start() ran it
    except CommandError as exc:
        raise DiscoveryError(f"nvidia-smi: {exc.message}") from None
    _complete(res, "--query-gpu")
    view.gpus = parse_query_gpu(res.stdout)
    if not view.gpus:
        raise DiscoveryError("nvidia-smi --query-gpu printed no GPUs (exit 0, empty output)")
    if not any(g.mig_current for g in view.gpus):
        return view
    res = lci
    if res.returncode != 0 and _no_instances(res.stdout + res.stderr) \
            and not parse_lci(res.stdout):
        return view  # older drivers exit non-zero with "No compute instances found"
    _complete(res, "mig -lci")
    view.migs = parse_lci(res.stdout)
    if not view.migs and not _no_instances(res.stdout + res.stderr):
        raise DiscoveryError("nvidia-smi mig -lci: no instance rows and no 'No compute "
                             f"instances found' message: {runner.first_line(res.stdout)}")
    if listing and listing[0].returncode == 0:  # a help, never a reason to fail discovery
        attach_mig_uuids(view.migs, parse_list(listing[0].stdout))
    return view
