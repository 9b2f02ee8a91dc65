"""Discovery backends: NVML and nvidia-smi. Each returns a BackendView; discovery.py merges it with procfs."""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import List, Optional
from ..record import Record


class BGpu(Record):
    __slots__ = ("index", "minor", "bus_id", "uuid", "name", "mig_current", "mig_pending", "lost")

    def __init__(self, index: int, minor: Optional[int] = None, bus_id: Optional[str] = None,
                 uuid: Optional[str] = None, name: Optional[str] = None,
                 mig_current: Optional[bool] = None, mig_pending: Optional[bool] = None,
                 lost: Optional[str] = None) -> None:
        self.index = index
        self.minor = minor  # NVML knows it; nvidia-smi does not
        self.bus_id = bus_id  # normalised
        self.uuid = uuid
        self.name = name
        self.mig_current = mig_current
        self.mig_pending = mig_pending
        self.lost = lost


class BMig(Record):
    __slots__ = ("gpu_index", "gi", "ci", "profile", "uuid", "minor")

    def __init__(self, gpu_index: int, gi: int, ci: int, profile: Optional[str],
                 uuid: Optional[str] = None, minor: Optional[int] = None) -> None:
        self.gpu_index = gpu_index
        self.gi = gi
        self.ci = ci
        self.profile = profile
        self.uuid = uuid
        self.minor = minor  # set by backends that know it (procfs + cache)


class BackendView(Record):
    __slots__ = ("name", "gpus", "migs")

    def __init__(self, name: str, gpus: List[BGpu] = None, migs: List[BMig] = None) -> None:
        self.name = name
        self.gpus = [] if gpus is None else gpus
        self.migs = [] if migs is None else migs


def profile_from_name(name: str) -> str:
    """'NVIDIA A100 80GB PCIe MIG 1g.10gb' -> '1g.10gb'."""
    marker = "MIG "
    at = name.rfind(marker)
    return name[at + len(marker):].strip() if at >= 0 else name.strip()
