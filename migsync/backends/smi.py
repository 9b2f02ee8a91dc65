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


def _mode(text: str) -> Optional[bool]:
    t = text.strip().lower()
    if t == "enabled":
        return True
    if t == "disabled":
        return False
    return None  # [N/A], [Not Supported]


def parse_query_gpu(text: str) -> List[BGpu]:
    gpus: List[BGpu] = []
    lost: List[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) != 6 or not cols[0].isdigit():
            m = _BUS_IN_ERR.search(line)
            if m and ("lost" in line.lower() or "unable" in line.lower()):
                lost.append(normalise_bus_id(m.group(1)))
                continue
            raise DiscoveryError(f"nvidia-smi --query-gpu: unexpected line {lineno}: {line[:80]!r}")
        # '[N/A]' / '[Not Supported]': no MIG on this GPU. Any other bracketed value
        # ('[GPU requires reset]', '[Unknown Error]') means the GPU could not be read: it is
        # not a GPU with MIG off, and must not be configured as a whole GPU.
        broken = [c for c in cols[3:6] if c.startswith("[") and _mode(c) is None
                  and c.lower() not in ("[n/a]", "[not supported]")]
        gpus.append(BGpu(int(cols[0]), None, normalise_bus_id(cols[1]), cols[2], cols[3],
                         _mode(cols[4]), _mode(cols[5]),
                         lost=f"nvidia-smi: {broken[0]}" if broken else None))
    for bus in lost:
        gpus.append(BGpu(-1, None, bus, lost="nvidia-smi: GPU is lost or unreadable"))
    return gpus


def parse_lci(text: str) -> List[BMig]:
    """Rows of `nvidia-smi mig -lci`. The CI id is the 5th number, after the CI *profile* id."""
    migs = []
    for line in text.splitlines():
        m = _LCI_ROW.match(line.strip())
        if m:
            gpu, gi, profile, _ci_profile_id, ci = m.groups()
            migs.append(BMig(int(gpu), int(gi), int(ci), profile))
    return migs


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
    try:
        view.gpus = parse_query_gpu(res.stdout)
    except DiscoveryError:
        if res.returncode == 0:
            raise
        view.gpus = []
    if res.returncode != 0 and not any(g.lost is None for g in view.gpus):
        raise DiscoveryError(f"nvidia-smi --query-gpu exited {res.returncode}: "
                             f"{runner.first_line(res.stderr or res.stdout)}")
    if not any(g.mig_current for g in view.gpus):
        return view
    res = lci
    view.migs = parse_lci(res.stdout)
    if res.returncode != 0 and not view.migs and not _NO_INSTANCES.search(res.stdout + res.stderr):
        raise DiscoveryError(f"nvidia-smi mig -lci exited {res.returncode}: "
                             f"{runner.first_line(res.stderr or res.stdout)}")
    if not view.migs and not _NO_INSTANCES.search(res.stdout + res.stderr):
        raise DiscoveryError("nvidia-smi mig -lci: no instance rows and no 'No compute "
                             f"instances found' message: {runner.first_line(res.stdout)}")
    if listing.returncode == 0:  # UUIDs are a help, never a reason to fail discovery
        attach_mig_uuids(view.migs, parse_list(listing.stdout))
    return view

