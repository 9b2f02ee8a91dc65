"""What the NVIDIA driver says in procfs: GPU minors, the cap table, and which instances exist."""
from __future__ import annotations

import os
import re
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, Iterable, Optional, Tuple

from .errors import DiscoveryError
from .record import Record

NV_PROC = "/proc/driver/nvidia"
GPUS_DIR = NV_PROC + "/gpus"
CAPS_DIR = NV_PROC + "/capabilities"
MIG_MINORS = "/proc/driver/nvidia-caps/mig-minors"



class ProcGpu(Record):
    __slots__ = ("minor", "bus_id", "model", "uuid")

    def __init__(self, minor: int, bus_id: str, model: Optional[str] = None,
                 uuid: Optional[str] = None) -> None:
        self.minor = minor
        self.bus_id = bus_id
        self.model = model
        self.uuid = uuid


class ProcSnapshot(Record):
    __slots__ = ("gpus", "cap_table", "gi_caps", "ci_caps")

    def __init__(self, gpus: Dict[int, ProcGpu] = None,
                 cap_table: Dict[int, Tuple[int, int, Optional[int]]] = None,
                 gi_caps: Dict[Tuple[int, int], int] = None,
                 ci_caps: Dict[Tuple[int, int, int], int] = None) -> None:
        self.gpus = {} if gpus is None else gpus
        # cap minor -> (gpu minor, gi, ci or None) for every entry of mig-minors
        self.cap_table = {} if cap_table is None else cap_table
        self.gi_caps = {} if gi_caps is None else gi_caps  # live GIs
        self.ci_caps = {} if ci_caps is None else ci_caps  # live CIs


def rooted(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root and root != "/" else path


def normalise_bus_id(bus: str) -> str:
    """'00000000:CA:00.0' (nvidia-smi) and '0000:ca:00.0' (procfs) -> '0000:ca:00.0'."""
    bus = bus.strip().lower()
    if ":" in bus:
        domain, rest = bus.split(":", 1)
        if len(domain) > 4 and rest.count(":") == 1:
            bus = domain[-4:] + ":" + rest
    return bus


def _read(path: str) -> str:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        raise DiscoveryError(f"{path}: not found") from None
    except PermissionError:
        raise DiscoveryError(f"{path}: permission denied (run as root)") from None
    except OSError as exc:
        raise DiscoveryError(f"{path}: cannot read: {exc.strerror or exc}") from None


def parse_information(text: str) -> Dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def read_gpus(root: str) -> Dict[int, ProcGpu]:
    base = rooted(root, GPUS_DIR)
    try:
        entries = sorted(os.listdir(base))
    except FileNotFoundError:
        if not os.path.isdir(rooted(root, NV_PROC)):
            raise DiscoveryError(f"{NV_PROC} not found: the NVIDIA driver is not loaded") from None
        return {}
    except OSError as exc:
        raise DiscoveryError(f"{base}: cannot list: {exc.strerror or exc}") from None
    gpus: Dict[int, ProcGpu] = {}
    for bus in entries:
        path = os.path.join(base, bus, "information")
        info = parse_information(_read(path))
        minor_text = info.get("device minor", "")
        if not minor_text.isdigit():
            raise DiscoveryError(f"{path}: no 'Device Minor' line")
        minor = int(minor_text)
        gpus[minor] = ProcGpu(minor, normalise_bus_id(info.get("bus location", bus)),
                              info.get("model"), info.get("gpu uuid"))
    return gpus


_ENTRY = re.compile(r"^gpu(\d+)/gi(\d+)/(?:ci(\d+)/)?access (\d+)[ \t]*$", re.M)
_OTHER = re.compile(r"^(?!gpu)[ \t]*\S.*$", re.M)


def parse_mig_minors(text: str, path: str = MIG_MINORS,
                     gpus: Optional[Iterable[int]] = None) -> Dict[int, Tuple[int, int, Optional[int]]]:
    """``gpu<m>/gi<g>/access <n>`` and ``gpu<m>/gi<g>/ci<c>/access <n>`` lines -> cap table.

    The driver prints all 32 GPUs (~4,300 lines) on every read. With ``gpus`` only their
    entries are read (one regex pass); without, the whole table is read and checked, and a
    malformed line is named.
    """
    table: Dict[int, Tuple[int, int, Optional[int]]] = {}
    if gpus is not None:
        wanted = "|".join(str(g) for g in sorted(set(gpus)))
        if not wanted:
            return table
        pattern = re.compile(rf"^gpu({wanted})/gi(\d+)/(?:ci(\d+)/)?access (\d+)[ \t]*$", re.M)
        for gpu, gi, ci, minor in pattern.findall(text):
            table[int(minor)] = (int(gpu), int(gi), int(ci) if ci else None)
        if not table:
            raise DiscoveryError(f"{path}: empty or truncated (no entries for gpu "
                                 f"{wanted.replace('|', ', ')})")
        return table
    entries = _ENTRY.findall(text)
    others = _OTHER.findall(text)  # 'config 1', 'monitor 2'
    n_gpu = text.count("\ngpu") + text.startswith("gpu")
    if n_gpu != len(entries) or len(text.split()) != 2 * (len(entries) + len(others)) or any(
            len(ln.split()) != 2 or not ln.split()[1].isdigit() for ln in others):
        _find_bad_line(text, path)
    for gpu, gi, ci, minor in entries:
        table[int(minor)] = (int(gpu), int(gi), int(ci) if ci else None)
    if not table:
        raise DiscoveryError(f"{path}: empty or truncated (no gpu/gi entries)")
    return table


def _find_bad_line(text: str, path: str) -> None:
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        parts = line.split()
        if line.startswith("gpu") and not _ENTRY.match(line):
            raise DiscoveryError(f"{path}:{lineno}: unexpected entry (in {line[:60]!r})")
        if len(parts) != 2 or not parts[1].isdigit():
            raise DiscoveryError(f"{path}:{lineno}: expected '<name> <minor>' (in {line[:60]!r})")


def _dir_ints(path: str, prefix: str):
    try:
        names = os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise DiscoveryError(f"{path}: cannot list: {exc.strerror or exc}") from None
    out = []
    for n in names:
        if n.startswith(prefix) and n[len(prefix):].isdigit():
            out.append(int(n[len(prefix):]))
    return sorted(out)


def _file_minor(path: str) -> Optional[int]:
    for line in _read(path).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "DeviceFileMinor" and value.strip().isdigit():
            return int(value.strip())
    return None


def read_snapshot(root: str, gpu_minors=None) -> ProcSnapshot:
    """Read GPUs, the cap table and the live instances from procfs under ``root``."""
    snap = ProcSnapshot()
    snap.gpus = read_gpus(root)
    caps_base = rooted(root, CAPS_DIR)
    minors = sorted(set(snap.gpus) | set(_dir_ints(caps_base, "gpu")))
    if gpu_minors is not None:
        minors = [m for m in minors if m in gpu_minors]
    mm_path = rooted(root, MIG_MINORS)
    # The driver prints the whole table whenever nvidia-caps is loaded (driver >= 450), MIG
    # or not; without it, the capability files' own DeviceFileMinor lines are the numbers.
    if os.path.exists(mm_path) and minors:
        snap.cap_table = parse_mig_minors(_read(mm_path), mm_path, minors)
    by_name = {v: k for k, v in snap.cap_table.items()}
    for minor in minors:
        mig_dir = os.path.join(caps_base, f"gpu{minor}", "mig")
        for gi in _dir_ints(mig_dir, "gi"):
            gi_dir = os.path.join(mig_dir, f"gi{gi}")
            access = os.path.join(gi_dir, "access")
            if not os.path.exists(access):
                continue
            snap.gi_caps[(minor, gi)] = _cap_minor(by_name, (minor, gi, None), access, mm_path,
                                                   snap.cap_table)
            for ci in _dir_ints(gi_dir, "ci"):
                ci_access = os.path.join(gi_dir, f"ci{ci}", "access")
                if os.path.exists(ci_access):
                    snap.ci_caps[(minor, gi, ci)] = _cap_minor(by_name, (minor, gi, ci),
                                                               ci_access, mm_path, snap.cap_table)
    return snap


def _cap_minor(by_name, key, access_path: str, mm_path: str, table=None) -> int:
    if key in by_name:
        return by_name[key]
    fallback = _file_minor(access_path)
    if fallback is not None and table is not None:
        table[fallback] = key  # a short mig-minors: the capability file knows the number
    if fallback is None:
        label = f"gpu{key[0]}/gi{key[1]}" + (f"/ci{key[2]}" if key[2] is not None else "")
        raise DiscoveryError(f"{mm_path}: no entry for {label}, and {access_path} "
                             "has no DeviceFileMinor")
    return fallback
