"""The plain data classes the pure core works on: the node's inventory and findings."""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple
from .record import Record

DEV_NVIDIA = "/dev/nvidia"
DEV_CAP = "/dev/nvidia-caps/nvidia-cap"


def gpu_path(minor: int) -> str:
    return f"{DEV_NVIDIA}{minor}"


def cap_path(minor: int) -> str:
    return f"{DEV_CAP}{minor}"


def path_number(path: str, prefix: str) -> Optional[int]:
    """N of a path that is exactly ``prefix`` + digits (``/dev/nvidia-caps/nvidia-cap337``
    with DEV_CAP: 337), else None. By hand, not a regex: `re` costs a Prolog ~5 ms to import."""
    digits = path[len(prefix):]
    return int(digits) if path.startswith(prefix) and digits.isdecimal() else None


def names_profile(text: str) -> bool:
    """Does ``text`` name a MIG profile anywhere (``1g.10gb``, ``2c.3g.20gb``: digits, g or c,
    '.', digits, gb; any case)? A Type that does cannot be a whole GPU's."""
    low = text.lower()
    dot = low.find(".")
    while dot >= 0:
        end = dot + 1
        while end < len(low) and low[end].isdecimal():
            end += 1
        if (dot >= 2 and low[dot - 1] in "gc" and low[dot - 2].isdecimal() and end > dot + 1
                and low.startswith("gb", end)):
            return True
        dot = low.find(".", dot + 1)
    return False


def autodetect_gpu_type(name: str) -> str:
    """Slurm's NVML type string for a GPU name: lower case, spaces to '_', cut at the first '-'."""
    return name.strip().lower().replace(" ", "_").split("-", 1)[0]


def short_gpu_type(name: str) -> str:
    """A short default Type for a whole GPU ('NVIDIA A100 80GB PCIe' -> 'a100')."""
    full = autodetect_gpu_type(name)
    for lead in ("nvidia_", "tesla_"):
        if full.startswith(lead):
            full = full[len(lead):]
    return full.split("_", 1)[0] or "gpu"


class MigDevice(Record):
    """One MIG device: a compute instance inside a GPU instance on a parent GPU."""

    __slots__ = ("parent_minor", "gi", "ci", "profile", "gi_cap", "ci_cap", "uuid")

    def __init__(self, parent_minor: int, gi: int, ci: int, profile: Optional[str], gi_cap: int,
                 ci_cap: int, uuid: Optional[str] = None) -> None:
        self.parent_minor = parent_minor
        self.gi = gi
        self.ci = ci
        self.profile = profile
        self.gi_cap = gi_cap
        self.ci_cap = ci_cap
        self.uuid = uuid

    @property
    def key(self) -> Tuple[int, int, int]:
        return (self.parent_minor, self.gi, self.ci)

    @property
    def label(self) -> str:
        return f"gpu{self.parent_minor}/gi{self.gi}/ci{self.ci}"

    @property
    def files(self) -> Tuple[str, str, str]:
        return (gpu_path(self.parent_minor), cap_path(self.gi_cap), cap_path(self.ci_cap))


class Gpu(Record):
    """One physical GPU, keyed on its device minor (never the nvidia-smi index)."""

    __slots__ = ("minor", "index", "bus_id", "uuid", "name", "mig_current", "mig_pending", "lost")

    def __init__(self, minor: int, index: Optional[int] = None, bus_id: Optional[str] = None,
                 uuid: Optional[str] = None, name: Optional[str] = None,
                 mig_current: Optional[bool] = None, mig_pending: Optional[bool] = None,
                 lost: Optional[str] = None) -> None:
        self.minor = minor
        self.index = index
        self.bus_id = bus_id
        self.uuid = uuid
        self.name = name
        self.mig_current = mig_current  # None: MIG not supported / unknown
        self.mig_pending = mig_pending
        self.lost = lost  # why the backend could not read it

    @property
    def path(self) -> str:
        return gpu_path(self.minor)


class Inventory(Record):
    """What the node really has."""

    __slots__ = ("gpus", "migs", "backend", "gi_caps", "cap_table", "disagreements", "_mig_index")

    def __init__(self, gpus: List[Gpu] = None, migs: List[MigDevice] = None, backend: str = "",
                 gi_caps: Dict[Tuple[int, int], int] = None,
                 cap_table: Dict[int, Tuple[int, int, Optional[int]]] = None,
                 disagreements: List[str] = None) -> None:
        self.gpus = [] if gpus is None else gpus
        self.migs = [] if migs is None else migs
        self.backend = backend
        # GI caps that exist in procfs, keyed (minor, gi) -> cap minor
        self.gi_caps = {} if gi_caps is None else gi_caps
        # every cap minor from mig-minors: minor -> (gpu minor, gi, ci or None)
        self.cap_table = {} if cap_table is None else cap_table
        # (gpu minor, gi, ci) listed by the backend but absent from procfs, or the reverse
        self.disagreements = [] if disagreements is None else disagreements
        self._mig_index = None
        self._mig_index = None

    def gpu(self, minor: int) -> Optional[Gpu]:
        for g in self.gpus:
            if g.minor == minor:
                return g
        return None

    def migs_of(self, minor: int) -> List[MigDevice]:
        return [m for m in self.migs if m.parent_minor == minor]

    def mig(self, key: Tuple[int, int, int]) -> Optional[MigDevice]:
        """The MIG device (minor, gi, ci); an index is built on first use."""
        index = self._mig_index
        if index is None or len(index) != len(self.migs):
            index = self._mig_index = {m.key: m for m in self.migs}
        return index.get(key)

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "gpus": [g.as_dict() for g in self.gpus],
            "mig_devices": [dict(m.as_dict(), files=list(m.files)) for m in self.migs],
            "disagreements": list(self.disagreements),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Inventory":
        gpus = [Gpu(**g) for g in data.get("gpus", [])]
        migs = []
        for m in data.get("mig_devices", []):
            m = {k: v for k, v in m.items() if k != "files"}
            migs.append(MigDevice(**m))
        return cls(gpus=gpus, migs=migs, backend=data.get("backend", ""),
                   disagreements=list(data.get("disagreements", [])))


class Finding(Record):
    """One mismatch, with a stable id for settings, metrics and drain reasons."""

    __slots__ = ("id", "message", "short", "source", "path")

    def __init__(self, id: str, message: str, short: str, source: Optional[str] = None,
                 path: Optional[str] = None) -> None:
        self.id = id
        self.message = message
        self.short = short  # a few words for the 20 characters sinfo -R shows
        self.source = source
        self.path = path

    def to_dict(self) -> dict:
        return self.as_dict()


# Every finding id, with what it means, most urgent first (the drain reason names the first).
FINDING_IDS = {
    "slurmd-fatal": "slurmd would refuse to start on this gres.conf (carries slurmd's error text)",
    "missing-file": "a configured device file does not exist (slurmd would die at start)",
    "stale-cap": "a configured capability device has no live MIG instance behind it",
    "gpu-lost": "a GPU could not be read (fell off the bus, NVML error)",
    "whole-gpu-mig-on": "a whole GPU is configured while MIG is enabled on it",
    "mig-no-instances": "MIG is enabled on a GPU that has no instances",
    "autodetect-unavailable": "gres.conf AutoDetect names a plugin this Slurm lacks: no GPUs are detected",
    "autodetect-no-mig": "AutoDetect=nvidia (no MIG detection) on a node with MIG enabled",
    "unconfigured-device": "a real MIG device or GPU is named by no gres.conf line",
    "type-mismatch": "a configured Type does not match the device (case-insensitive substring)",
    "gres-count-mismatch": "slurm.conf Gres= count differs from gres.conf or the hardware",
    "duplicate-device": "one device is configured twice",
    "incomplete-device": "a MultipleFiles line lacks the GPU or GI cap of its MIG device",
    "unknown-device": "a configured /dev/nvidia* path matches no GPU or MIG capability",
    "gres-name-case": "Name=GPU (not lower-case gpu): slurmctld registers no gpu for the line",
    "mig-pending": "a MIG mode change is pending a GPU reset",
    "backend-disagrees": "NVML or nvidia-smi and procfs disagree about which instances exist",
}
