"""Build the node's Inventory: a backend (NVML or nvidia-smi) for names and profiles, procfs for truth."""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

from .backends import BackendView
from .errors import DiscoveryError, MigsyncError
from .model import Gpu, Inventory, MigDevice
from .procfs import ProcSnapshot, read_snapshot

BACKENDS = ("auto", "nvml", "nvidia-smi")


def probe_backend(backend: str, nvidia_smi: Optional[str] = None, timeout: float = 10.0,
                  nvml_module: Any = None, uuids: bool = True) -> BackendView:
    """``uuids``: whether MIG devices' UUIDs are wanted (nvidia-smi then also runs `-L`;
    NVML reads them anyway)."""
    from .backends import nvml, smi  # small modules; pynvml itself stays lazy

    if backend == "nvml":
        try:
            return nvml.probe(nvml_module)
        except nvml.NoPynvml as exc:  # as a discovery failure it drained every node
            from .errors import ConfigError

            raise ConfigError(f"{exc.message} (backend = nvml: install it beside migsync, or "
                              "use backend auto)") from None
    if backend == "nvidia-smi":
        return smi.probe(nvidia_smi, timeout, uuids)
    if backend != "auto":
        raise DiscoveryError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    try:
        return nvml.probe(nvml_module)
    except DiscoveryError as nvml_err:
        try:
            return smi.probe(nvidia_smi, timeout, uuids)
        except DiscoveryError as smi_err:
            raise DiscoveryError(f"{nvml_err.message}; and {smi_err.message}") from None


def merge(view: BackendView, snap: ProcSnapshot) -> Inventory:
    """Key everything on the device minor; procfs decides which instances exist."""
    inv = Inventory(backend=view.name, gi_caps=dict(snap.gi_caps), cap_table=dict(snap.cap_table))
    by_bus = {g.bus_id: g for g in snap.gpus.values()}
    index_to_minor: Dict[int, int] = {}
    seen_minors = set()
    unplaced = []  # lost GPUs the backend could not even identify
    for b in view.gpus:
        minor = b.minor
        pg = by_bus.get(b.bus_id) if b.bus_id else None
        if minor is None and pg is not None:
            minor = pg.minor
        if minor is None:
            if b.lost and not b.bus_id:
                unplaced.append(b)
            else:
                inv.disagreements.append(f"GPU {b.bus_id or b.index} is listed by {view.name} "
                                         "but not in procfs")
            continue
        proc = snap.gpus.get(minor)
        if b.bus_id and (proc is None or proc.bus_id != b.bus_id):
            # the backend's minor and bus id name different devices than procfs's: one of them
            # is wrong, and a verdict keyed on the minor could drain a good node (issue 12)
            inv.disagreements.append(
                f"{view.name} reports GPU {b.bus_id} as device minor {minor} but procfs has "
                + (f"{proc.bus_id} there" if proc else "no GPU with that minor"))
        if minor in seen_minors:
            raise DiscoveryError(f"{view.name} reports two GPUs with device minor {minor}")
        seen_minors.add(minor)
        if b.index >= 0:
            index_to_minor[b.index] = minor
        inv.gpus.append(Gpu(minor, b.index if b.index >= 0 else None, b.bus_id or
                            (pg.bus_id if pg else None), b.uuid or (pg.uuid if pg else None),
                            b.name or (pg.model if pg else None), b.mig_current, b.mig_pending,
                            b.lost))
    # NVML and nvidia-smi enumerate in PCI bus order, so unidentified lost GPUs pair with the
    # procfs GPUs nobody claimed, in bus order.
    missing = sorted((pg for m, pg in snap.gpus.items() if m not in seen_minors),
                     key=lambda pg: pg.bus_id)
    for i, pg in enumerate(missing):
        b = unplaced[i] if i < len(unplaced) else None
        if b is None:
            inv.disagreements.append(f"procfs lists GPU {pg.bus_id} (minor {pg.minor}) but "
                                     f"{view.name} does not")
        elif b.index >= 0:
            index_to_minor[b.index] = pg.minor
        inv.gpus.append(Gpu(pg.minor, b.index if b and b.index >= 0 else None, pg.bus_id,
                            pg.uuid, pg.model,
                            lost=b.lost if b else f"not reported by {view.name}"))
    for b in unplaced[len(missing):]:
        inv.disagreements.append(f"{view.name} reports a lost GPU (index {b.index}) that procfs "
                                 f"does not list: {b.lost}")
    inv.gpus.sort(key=lambda g: g.minor)

    listed: Dict[tuple, Any] = {}
    for m in view.migs:
        minor = m.minor if m.minor is not None else index_to_minor.get(m.gpu_index)
        if minor is None:
            inv.disagreements.append(f"{view.name} lists a MIG device on unknown GPU index "
                                     f"{m.gpu_index}")
            continue
        listed[(minor, m.gi, m.ci)] = m
    lost = {g.minor for g in inv.gpus if g.lost}
    for key, ci_cap in sorted(snap.ci_caps.items()):
        minor, gi, ci = key
        b = listed.pop(key, None)
        if b is None and minor not in lost:
            inv.disagreements.append(f"gpu{minor}/gi{gi}/ci{ci} exists in procfs but "
                                     f"{view.name} does not list it")
        inv.migs.append(MigDevice(minor, gi, ci, b.profile if b else None,
                                  snap.gi_caps.get((minor, gi), -1), ci_cap,
                                  b.uuid if b else None))
    for (minor, gi, ci) in sorted(listed):
        inv.disagreements.append(f"{view.name} lists gpu{minor}/gi{gi}/ci{ci} but its procfs "
                                 "capability files do not exist")
    return inv


def discover(root: str = "/", backend: str = "auto", nvidia_smi: Optional[str] = None,
             timeout: float = 10.0, nvml_module: Any = None, uuids: bool = True) -> Inventory:
    """The node's inventory, from complete and self-consistent data only: when the backend
    and procfs disagree (an instance one lists and the other lacks, a GPU only one knows),
    one of them is partial or corrupt, and a verdict built on it could drain a good node.
    ``uuids=False``: MIG devices' UUIDs may stay unknown (the caller does not show or use
    them), which spares nvidia-smi's `-L`."""
    return start(root, backend, nvidia_smi, timeout, nvml_module, uuids).finish()


class Started:
    """A discovery begun by start(): nvidia-smi's calls already run while the caller does its
    own work (nodecheck parses the config), then reads procfs while they finish. cancel()
    kills them when the caller's work fails."""

    __slots__ = ("root", "backend", "nvidia_smi", "timeout", "nvml_module", "uuids", "batch",
                 "error")

    def __init__(self, root: str, backend: str, nvidia_smi: Optional[str], timeout: float,
                 nvml_module: Any, uuids: bool) -> None:
        self.root, self.backend, self.nvidia_smi = root, backend, nvidia_smi
        self.timeout, self.nvml_module, self.uuids = timeout, nvml_module, uuids
        self.batch, self.error = None, None
        if backend == "nvidia-smi":
            from .backends import smi

            try:
                self.batch = smi.start(nvidia_smi, timeout, uuids)
            except MigsyncError as exc:  # said in finish(): the caller's config error first
                self.error = exc

    def finish(self) -> Inventory:
        if self.error is not None:
            if isinstance(self.error, DiscoveryError):
                snap = read_snapshot(self.root)  # no driver at all says more than no nvidia-smi
                named = getattr(self.error, "named", None)
                if named and snap.gpus:
                    # The driver is loaded and shows its GPUs, but the nvidia-smi a setting
                    # names is not there: a typo in migsync.toml (deployed to every node) or
                    # a flag, not a node fault. Exit 2, one line; a discovery failure would
                    # drain every node it was deployed to.
                    from .errors import ConfigError

                    raise ConfigError(f"nvidia_smi (--nvidia-smi) names {named}, which is not "
                                      "an executable file, while the driver shows "
                                      f"{len(snap.gpus)} GPU(s): fix the setting (or leave it "
                                      "empty to search the usual places)") from None
            raise self.error
        if self.batch is None:  # NVML (in-process) or auto: the backend after procfs
            snap = read_snapshot(self.root)
            return _consistent(merge(probe_backend(self.backend, self.nvidia_smi, self.timeout,
                                                   self.nvml_module, self.uuids), snap))
        from .backends import smi

        try:
            snap = read_snapshot(self.root)
        except BaseException:
            self.batch.kill()
            raise
        return _consistent(merge(smi.finish(self.batch), snap))

    def cancel(self) -> None:
        if self.batch is not None:
            self.batch.kill()


def start(root: str, backend: str, nvidia_smi: Optional[str], timeout: float,
          nvml_module: Any, uuids: bool) -> Started:
    """Begin discover() (same arguments): with the nvidia-smi backend its calls start now."""
    return Started(root, backend, nvidia_smi, timeout, nvml_module, uuids)


def _consistent(inv: Inventory) -> Inventory:
    if inv.disagreements:
        more = f" (+{len(inv.disagreements) - 1} more)" if len(inv.disagreements) > 1 else ""
        raise DiscoveryError(f"{inv.backend} and procfs disagree: {inv.disagreements[0]}{more}")
    return inv
