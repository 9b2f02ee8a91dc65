"""What the NVIDIA driver says in procfs: GPU minors, the cap table, and which instances exist."""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, Iterable, Optional, Tuple

from .errors import DiscoveryError
from .record import Record

NV_PROC = "/proc/driver/nvidia"
GPUS_DIR = NV_PROC + "/gpus"
CAPS_DIR = NV_PROC + "/capabilities"
MIG_MINORS = "/proc/driver/nvidia-caps/mig-minors"



class DriverNotLoaded(DiscoveryError):
    """No /proc/driver/nvidia: a node fault where Slurm expects GPUs, nothing at all on a
    node where it expects none (nodecheck.run tells them apart)."""


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
    """A procfs text file, whole. The driver ends every file with a newline: one without is
    a short read or a truncated capture, and partial data is a discovery failure."""
    from .bounded import read_bytes

    data = read_bytes(path, DiscoveryError, limit=4 << 20, charge=False)
    if data and not data.endswith(b"\n"):
        raise DiscoveryError("truncated (the last line has no newline)", path=path)
    return data.decode("utf-8", "replace")


def parse_information(text: str, path: str = "information") -> Dict[str, str]:
    out: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            key = key.strip().lower()
            if key in out:
                raise DiscoveryError(f"{key!r} appears twice", path=path, fragment=line[:60])
            out[key] = value.strip()
    return out


def read_gpus(root: str) -> Dict[int, ProcGpu]:
    base = rooted(root, GPUS_DIR)
    try:
        entries = sorted(os.listdir(base))
    except FileNotFoundError:
        if not os.path.isdir(rooted(root, NV_PROC)):
            raise DriverNotLoaded(f"{NV_PROC} not found: the NVIDIA driver is not loaded") from None
        return {}
    except OSError as exc:
        raise DiscoveryError(f"{base}: cannot list: {exc.strerror or exc}") from None
    gpus: Dict[int, ProcGpu] = {}
    for bus in entries:
        path = os.path.join(base, bus, "information")
        info = parse_information(_read(path), path)
        minor_text = info.get("device minor", "")
        if not minor_text.isdigit():
            raise DiscoveryError(f"{path}: no 'Device Minor' line")
        minor = int(minor_text)
        if minor in gpus:
            raise DiscoveryError(f"two GPUs claim device minor {minor}: {gpus[minor].bus_id} "
                                 f"and {bus}", path=path)
        gpus[minor] = ProcGpu(minor, normalise_bus_id(info.get("bus location", bus)),
                              info.get("model"), info.get("gpu uuid"))
    return gpus


def _entry(line: str):
    """``gpu<m>/gi<g>/access <n>`` or ``gpu<m>/gi<g>/ci<c>/access <n>`` (one space before the
    number, spaces or tabs after it) -> (m, g, c or '', n) as digit strings, else None.
    Parsed by hand: importing and compiling a regex costs a Prolog more than this loop."""
    head, sep, num = line.partition(" ")
    num = num.rstrip(" \t")
    if not sep or not num.isdecimal():
        return None
    parts = head.split("/")
    if len(parts) == 4:
        gpu, gi, ci, access = parts
        if ci[:2] != "ci" or not ci[2:].isdecimal():
            return None
        ci = ci[2:]
    elif len(parts) == 3:
        gpu, gi, access = parts
        ci = ""
    else:
        return None
    if access != "access" or gpu[:3] != "gpu" or gi[:2] != "gi" or not (
            gpu[3:].isdecimal() and gi[2:].isdecimal()):
        return None
    return gpu[3:], gi[2:], ci, num


def parse_mig_minors(text: str, path: str = MIG_MINORS,
                     gpus: Optional[Iterable[int]] = None) -> Dict[int, Tuple[int, int, Optional[int]]]:
    """``gpu<m>/gi<g>/access <n>`` and ``gpu<m>/gi<g>/ci<c>/access <n>`` lines -> cap table.

    The driver prints all 32 GPUs (~4,300 lines) on every read. With ``gpus`` only their
    entries are read; without, the whole table is read and checked, and a malformed line is
    named. Either way a table that is cut short (no final newline), names one entry twice,
    or gives one number to two entries is refused: partial or corrupt data must not be read
    as "the hardware differs".
    """
    if text and not text.endswith("\n"):
        raise DiscoveryError(f"{path}: truncated (the last line has no newline)")
    table: Dict[int, Tuple[int, int, Optional[int]]] = {}
    wanted = None if gpus is None else sorted(set(gpus))
    if wanted == []:
        return table
    ours = None if wanted is None else {f"gpu{g}" for g in wanted}
    entries = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if ours is not None:
            if line.partition("/")[0] not in ours:  # another GPU's entry, 'config 1': not read
                continue
        elif line[:3] != "gpu":
            parts = line.split()
            if parts and (len(parts) != 2 or not parts[1].isdigit()):  # 'config 1', 'monitor 2'
                raise DiscoveryError(f"{path}:{lineno}: expected '<name> <minor>' "
                                     f"(in {line[:60]!r})")
            continue
        entry = _entry(line)
        if entry is None:
            raise DiscoveryError(f"{path}:{lineno}: unexpected entry (in {line[:60]!r})")
        entries.append(entry)
    _fill(table, entries, path)
    if not table:
        raise DiscoveryError(f"{path}: empty or truncated (no "
                             + ("gpu/gi entries)" if wanted is None else
                                f"entries for gpu {', '.join(map(str, wanted))})"))
    return table


def _fill(table, entries, path: str) -> None:
    names = set()
    for gpu, gi, ci, minor in entries:
        key = (int(gpu), int(gi), int(ci) if ci else None)
        label = f"gpu{gpu}/gi{gi}" + (f"/ci{ci}" if ci else "")
        if key in names:
            raise DiscoveryError(f"{path}: {label} is listed twice")
        if int(minor) in table:
            raise DiscoveryError(f"{path}: cap number {minor} is given to two entries "
                                 f"({label} and another)")
        names.add(key)
        table[int(minor)] = key


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


def _exists(path: str) -> bool:
    """Whether a procfs file is there. Only "no such file" means no: an instance whose
    access file cannot be looked at (a symlink loop, no permission, an I/O error) is not a
    missing instance, and reading it as one would drain a good node for a stale cap."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise DiscoveryError(f"cannot stat: {exc.strerror or exc}", path=path) from None
    return True


def _file_minor(path: str) -> Optional[int]:
    found = None
    for line in _read(path).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "DeviceFileMinor":
            if not value.strip().isdigit() or found is not None:
                raise DiscoveryError("corrupt DeviceFileMinor line", path=path,
                                     fragment=line[:60])
            found = int(value.strip())
    return found


def read_snapshot(root: str, gpu_minors=None) -> ProcSnapshot:
    """Read GPUs, the cap table and the live instances from procfs under ``root``."""
    snap = ProcSnapshot()
    snap.gpus = read_gpus(root)
    caps_base = rooted(root, CAPS_DIR)
    cap_gpus = set(_dir_ints(caps_base, "gpu"))
    unknown = sorted(cap_gpus - set(snap.gpus))
    if unknown:
        raise DiscoveryError(f"{caps_base}/gpu{unknown[0]} exists but no GPU in "
                             f"{rooted(root, GPUS_DIR)} has device minor {unknown[0]}")
    minors = sorted(set(snap.gpus))
    if gpu_minors is not None:
        minors = [m for m in minors if m in gpu_minors]
    mm_path = rooted(root, MIG_MINORS)
    # The driver prints the whole table whenever nvidia-caps is loaded (driver >= 450), MIG
    # or not; without it, the capability files' own DeviceFileMinor lines are the numbers.
    have_table = bool(minors) and _exists(mm_path)
    if have_table:
        snap.cap_table = parse_mig_minors(_read(mm_path), mm_path, minors)
    by_name = {v: k for k, v in snap.cap_table.items()}
    for minor in minors:
        mig_dir = os.path.join(caps_base, f"gpu{minor}", "mig")
        for gi in _dir_ints(mig_dir, "gi"):
            gi_dir = os.path.join(mig_dir, f"gi{gi}")
            access = os.path.join(gi_dir, "access")
            if not _exists(access):
                continue
            snap.gi_caps[(minor, gi)] = _cap_minor(by_name, (minor, gi, None), access, mm_path,
                                                   have_table, snap.cap_table)
            for ci in _dir_ints(gi_dir, "ci"):
                ci_access = os.path.join(gi_dir, f"ci{ci}", "access")
                if _exists(ci_access):
                    snap.ci_caps[(minor, gi, ci)] = _cap_minor(by_name, (minor, gi, ci),
                                                               ci_access, mm_path, have_table,
                                                               snap.cap_table)
    return snap


def _cap_minor(by_name, key, access_path: str, mm_path: str, have_table: bool,
               table: Dict[int, Tuple[int, int, Optional[int]]]) -> int:
    """The cap number of a live instance: mig-minors and the capability file must agree
    where both say it; a full table (the driver prints every possible entry) that lacks it
    is corrupt."""
    label = f"gpu{key[0]}/gi{key[1]}" + (f"/ci{key[2]}" if key[2] is not None else "")
    own = _file_minor(access_path)
    listed = by_name.get(key)
    if listed is not None and own is not None and listed != own:
        raise DiscoveryError(f"{mm_path} gives {label} cap {listed}, but {access_path} says "
                             f"DeviceFileMinor {own}")
    if listed is not None:
        return listed
    if have_table:
        raise DiscoveryError(f"{mm_path}: no entry for {label} (the driver lists every "
                             "instance: the table is cut short or corrupt)")
    if own is None:
        raise DiscoveryError(f"{mm_path}: no entry for {label}, and {access_path} "
                             "has no DeviceFileMinor")
    if own in table and table[own] != key:
        raise DiscoveryError(f"{access_path}: DeviceFileMinor {own} is also another instance's")
    table[own] = key  # no mig-minors (old driver): the capability files number the caps
    return own
