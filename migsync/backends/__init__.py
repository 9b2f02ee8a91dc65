"""Discovery backends: NVML and nvidia-smi. Each returns a BackendView; discovery.py merges it with procfs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class BGpu:
    index: int
    minor: Optional[int] = None  # NVML knows it; nvidia-smi does not
    bus_id: Optional[str] = None  # normalised
    uuid: Optional[str] = None
    name: Optional[str] = None
    mig_current: Optional[bool] = None
    mig_pending: Optional[bool] = None
    lost: Optional[str] = None


@dataclass
class BMig:
    gpu_index: int
    gi: int
    ci: int
    profile: Optional[str]
    uuid: Optional[str] = None
    minor: Optional[int] = None  # set by backends that know it (procfs + cache)


@dataclass
class BackendView:
    name: str
    gpus: List[BGpu] = field(default_factory=list)
    migs: List[BMig] = field(default_factory=list)


def profile_from_name(name: str) -> str:
    """'NVIDIA A100 80GB PCIe MIG 1g.10gb' -> '1g.10gb'."""
    marker = "MIG "
    at = name.rfind(marker)
    return name[at + len(marker):].strip() if at >= 0 else name.strip()
