"""nvidia-smi backend: --query-gpu CSV and `nvidia-smi mig -lci`, parsed by column meaning."""
from __future__ import annotations

import re
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

from .. import runner
from ..errors import CommandError, DiscoveryError
from ..procfs import normalise_bus_id
from . import BackendView, BGpu, BMig

QUERY_FIELDS = "index,pci.bus_id,uuid,name,mig.mode.current,mig.mode.pending"
EXTRA_DIRS = ("/usr/bin", "/usr/local/nvidia/bin", "/opt/nvidia/bin", "/usr/lib/wsl/lib")

# | GPU  GI id  MIG <profile>  CI-profile-id  CI-id  [placement] |
_LCI_ROW = re.compile(r"^\|\s*(\d+)\s+(\d+)\s+MIG\s+(\S+)\s+(\d+)\s+(\d+)(?:\s+\d+:\d+)?\s*\|\s*$")
_NO_INSTANCES = re.compile(r"no (gpu|compute) instances? (were )?found", re.I)
_BUS_IN_ERR = re.compile(r"([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])")


# nvidia-smi prints a field it could not read as a bracketed word: [N/A], [Unknown Error],
# [GPU requires reset], [GPU is lost], [Insufficient Permissions], [Not Supported] ...
_ERROR_FIELD = re.compile(r"^\[.*\]$")
_NOT_SUPPORTED = ("[n/a]", "[not supported]")  # in mig.mode.*: this GPU has no MIG
_UUID = re.compile(r"^GPU-[0-9A-Za-z-]+$")
_BUS = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")
_PROFILE = re.compile(r"^(\d+c\.)?\d+g\.\d+gb([+-][a-z0-9.]+)*$", re.I)


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
            m = _BUS_IN_ERR.search(line)
            if m and ("lost" in line.lower() or "unable" in line.lower()):
                unreadable.append(BGpu(-1, None, normalise_bus_id(m.group(1)),
                                       lost="nvidia-smi: GPU is lost or unreadable"))
                continue
            raise DiscoveryError(f"nvidia-smi --query-gpu: unexpected line {lineno}: {line[:80]!r}")
        index, bus, uuid, name, cur, pend = cols
        bad = [c for c in (index, bus, uuid, name) if _ERROR_FIELD.match(c)]
        try:
            modes = (_mode(cur), _mode(pend))
        except ValueError as exc:
            if not _ERROR_FIELD.match(str(exc)):
                raise DiscoveryError(f"nvidia-smi --query-gpu: unexpected line {lineno}: "
                                     f"{line[:80]!r}") from None
            bad.append(str(exc))
            modes = (None, None)
        ok = {c: not _ERROR_FIELD.match(c) for c in (index, bus, uuid, name)}
        if (ok[index] and not index.isdigit()) or (ok[bus] and not _BUS.match(bus)) or \
                (ok[uuid] and not _UUID.match(uuid)) or not name:
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
        m = _LCI_ROW.match(stripped)
        if m:
            gpu, gi, profile, _ci_profile_id, ci = m.groups()
            key = (int(gpu), int(gi), int(ci))
            if key in seen:
                raise DiscoveryError(f"nvidia-smi mig -lci: GPU {gpu} GI {gi} CI {ci} is listed "
                                     "twice")
            if not _PROFILE.match(profile):
                raise DiscoveryError(f"nvidia-smi mig -lci: {profile[:30]!r} is not a MIG "
                                     "profile name")
            seen.add(key)
            migs.append(BMig(int(gpu), int(gi), int(ci), profile))
        elif stripped.startswith("|") and re.match(r"^\|\s*\d", stripped):
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


_L_GPU = re.compile(r"^GPU (\d+): ")
_L_MIG = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^)\s]+)\)")


def parse_list(text: str) -> Dict[int, List[Tuple[str, str]]]:
    """`nvidia-smi -L`: per GPU index, the (profile, UUID) of each MIG device."""
    out: Dict[int, List[Tuple[str, str]]] = {}
    gpu = None
    for line in text.splitlines():
        m = _L_GPU.match(line)
        if m:
            gpu = int(m.group(1))
            out.setdefault(gpu, [])
            continue
        m = _L_MIG.match(line)
        if m and gpu is not None:
            out[gpu].append((m.group(1), m.group(3)))
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


def probe(binary: Optional[str], timeout: float = 10.0) -> BackendView:
    return finish(start(binary, timeout))


def start(binary: Optional[str], timeout: float = 10.0) -> runner.Batch:
    """Start the nvidia-smi calls; the caller reads procfs while they run, then finish()es.
    All at once: on a MIG node they are needed anyway, and start-up dominates."""
    path = runner.find_program("nvidia-smi", binary, EXTRA_DIRS)
    if path is None:
        raise DiscoveryError(f"nvidia-smi not found{' at ' + binary if binary else ''}")
    try:
        return runner.start_all([[path, f"--query-gpu={QUERY_FIELDS}", "--format=csv,noheader"],
                                 [path, "mig", "-lci"], [path, "-L"]], timeout)
    except CommandError as exc:
        raise DiscoveryError(f"nvidia-smi: {exc.message}") from None


def finish(batch: runner.Batch) -> BackendView:
    view = BackendView("nvidia-smi")
    try:
        res, lci, listing = batch.collect()
    except CommandError as exc:
        raise DiscoveryError(f"nvidia-smi: {exc.message}") from None
    _complete(res, "--query-gpu")
    view.gpus = parse_query_gpu(res.stdout)
    if not view.gpus:
        raise DiscoveryError("nvidia-smi --query-gpu printed no GPUs (exit 0, empty output)")
    if not any(g.mig_current for g in view.gpus):
        return view
    res = lci
    if res.returncode != 0 and _NO_INSTANCES.search(res.stdout + res.stderr) \
            and not parse_lci(res.stdout):
        return view  # older drivers exit non-zero with "No compute instances found"
    _complete(res, "mig -lci")
    view.migs = parse_lci(res.stdout)
    if not view.migs and not _NO_INSTANCES.search(res.stdout + res.stderr):
        raise DiscoveryError("nvidia-smi mig -lci: no instance rows and no 'No compute "
                             f"instances found' message: {runner.first_line(res.stdout)}")
    if listing.returncode == 0:  # UUIDs are a help, never a reason to fail discovery
        attach_mig_uuids(view.migs, parse_list(listing.stdout))
    return view
