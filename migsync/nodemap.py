"""The node map for the TaskProlog: Slurm GRES index -> device (files) -> CUDA UUID.

Slurm numbers a node's GPUs (the `IDX` of `scontrol show job -d`, the values of
SLURM_JOB_GPUS / SLURM_STEP_GPUS) in slurmd's record order, which is not gres.conf's line
order (gresconf.slurmd_order; nodecheck computes it once: Outcome.records). The root health
check knows every device's UUID (NVML ties MIG UUIDs to GI/CI ids); a task, running as the
job's user, cannot ask NVML cheaply. So the health check writes this map, a flat `KEY='value'` file that hooks/taskprolog sources in sh
and migsync/taskprolog.py parses, and the task only reads it.

The map also records what it was built from, so a task can tell that it is stale: the config
files (stale when one is newer than the map or gone) and the live GPU/compute-instance
listing (stale when it differs).
"""
from __future__ import annotations

import os
import time
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple

from .taskprolog import DEFAULT_MAP, FORMAT, layout_listing
from .record import Record

# What a value may hold: the map is sourced by sh, so nothing that quoting could not hold
# literally in single quotes, and no glob or space where the hook splits on spaces.
_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:,+=@%-")


class Unit(Record):
    """One GRES device as slurmd numbers it: its files, its Type, its gres.conf line."""

    __slots__ = ("files", "type", "source")

    def __init__(self, files: Tuple[str, ...], type: Optional[str], source: str) -> None:
        self.files = files
        self.type = type
        self.source = source


class Entry(Record):
    __slots__ = ("index", "unit", "device", "uuid")

    def __init__(self, index: int, unit: Unit, device: str, uuid: str) -> None:
        self.index = index
        self.unit = unit
        self.device = device
        self.uuid = uuid


def units(records: Sequence) -> List[Unit]:
    """One Unit per GRES index from gresconf.slurmd_order's records (slurmd's own order: the
    rules are measured and tested there); a count-only record takes ``count`` indices."""
    out: List[Unit] = []
    for r in records:
        source = f"{os.path.basename(r.path)}:{r.line}"
        out += [Unit(tuple(r.files), r.type, source) for _ in range(r.count)]
    return out


def entries(units: Sequence[Unit], configured: Sequence, inventory) -> List[Entry]:
    """Tie each unit to its device and UUID. ``configured`` is check.resolve's output
    (files -> device key), so the map names exactly the devices the check recognised."""
    keys = {c.files: c.key for c in configured}
    out = []
    for i, unit in enumerate(units):
        key = keys.get(unit.files)
        device, uuid = "", ""
        if key and key[0] == "mig":
            mig = inventory.mig(key[1:])
            if mig is not None:
                device, uuid = mig.label, mig.uuid or ""
        elif key and key[0] == "gpu":
            gpu = inventory.gpu(key[1])
            device = f"gpu{key[1]}"
            # A whole GPU gets its GPU UUID: CUDA's own numbering (fastest first) need not
            # match /dev/nvidia<minor>, a UUID always does. Not while MIG is on: CUDA would
            # find no device behind it.
            if gpu is not None and gpu.mig_current is not True and not gpu.lost:
                uuid = gpu.uuid or ""
        out.append(Entry(i, unit, device, uuid))
    return out


def _q(value: str, what: str) -> str:
    """One value, single-quoted for sh."""
    bad = set(value) - _SAFE
    if bad:
        raise ValueError(f"{what} {value!r} holds {''.join(sorted(bad))!r}, which the map "
                         "cannot carry")
    return f"'{value}'"


def _q_list(values: Sequence[str], what: str) -> str:
    """Values the hook splits on spaces, each checked on its own."""
    return "'" + " ".join(_q(v, what)[1:-1] for v in values) + "'"


def render(node: str, backend: str, conf_files: Sequence[str], root: str, layout: str,
           items: Sequence[Entry], written: Optional[float] = None) -> str:
    """The map text. Raises ValueError when a value cannot be carried (a path with a space)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(written if written is not None
                                                            else time.time()))
    lines = [
        f"# migsync node map, format {FORMAT}: Slurm GRES index -> device -> CUDA UUID.",
        "# Written by `migsync healthcheck` (root), read by hooks/taskprolog in every task.",
        f"MIGSYNC_MAP_FORMAT={FORMAT}",
        f"MIGSYNC_MAP_NODE={_q(node, 'node name')}",
        f"MIGSYNC_MAP_WRITTEN={stamp}",
        f"MIGSYNC_MAP_BACKEND={_q(backend or 'unknown', 'backend')}",
        "MIGSYNC_MAP_CONF=" + _q_list(conf_files, "config file"),
        f"MIGSYNC_MAP_ROOT={_q(root or '/', 'root')}",
        "MIGSYNC_MAP_LAYOUT=" + _q_list(layout.split(" "), "procfs path"),
        f"MIGSYNC_MAP_COUNT={len(items)}",
    ]
    for e in items:
        lines.append(f"# {e.index}: {e.unit.source} Type={e.unit.type or '-'} "
                     f"{e.device or 'no live device'}")
        lines.append(f"MIGSYNC_UUID_{e.index}={_q(e.uuid, 'UUID')}")
        files = [os.path.join(root, f.lstrip("/")) if root and root != "/" else f
                 for f in e.unit.files]  # as the task sees them (tests: under --root)
        lines.append(f"MIGSYNC_FILES_{e.index}={_q(','.join(files), 'device files')}")
        lines.append(f"MIGSYNC_DEV_{e.index}={_q(e.device, 'device')}")
    return "\n".join(lines) + "\n"


def unlistable(root: str) -> List[str]:
    """The procfs directories the layout listing reads that other users cannot list."""
    base = os.path.join(root, "proc/driver/nvidia")
    dirs = [os.path.join(base, "gpus"), os.path.join(base, "capabilities")]
    for d in list(dirs[1:]):
        for g in _names(d, "gpu"):
            mig = os.path.join(d, g, "mig")
            dirs += [os.path.join(d, g), mig] + [os.path.join(mig, gi) for gi in _names(mig, "gi")]
    out = []
    for d in dirs:
        try:
            if os.stat(d).st_mode & 0o005 != 0o005:
                out.append(d)
        except OSError:
            pass
    return out


def _names(path: str, prefix: str) -> List[str]:
    try:
        return sorted(n for n in os.listdir(path) if n.startswith(prefix))
    except OSError:
        return []


def map_path(cache_file: str) -> str:
    """Beside the Prolog cache (default /run/migsync/node-map): one root-owned state dir."""
    if not cache_file:
        return DEFAULT_MAP
    return os.path.join(os.path.dirname(os.path.abspath(cache_file)), "node-map")


def conf_files(outcome) -> List[str]:
    """gres.conf, the files it includes that gave lines, and slurm.conf (its Gres= order)."""
    files = [outcome.files.gres_conf]
    for ln in getattr(outcome, "node_lines", None) or []:
        if ln.path not in files:
            files.append(ln.path)
    if outcome.files.slurm_conf:
        files.append(outcome.files.slurm_conf)
    return [os.path.abspath(f) for f in files]


def write(outcome, st, log) -> Optional[str]:
    """The health check's one call: write the map for ``outcome`` atomically, world-readable.
    A map we cannot write costs jobs their UUIDs, never the node: logged, not raised."""
    from .errors import ConfigError
    from .fsutil import atomic_write, state_dir

    path = map_path(st.cache_file)
    root = os.path.abspath(st.root or "/")  # tasks run in the job's directory
    items = entries(units(outcome.records), outcome.result.configured, outcome.inventory)
    try:
        text = render(outcome.node, outcome.inventory.backend, conf_files(outcome), root,
                      layout_listing(root), items)
        # the root-owned state directory (the safety helper's checks: not a symlink, not
        # writable by others; the default /run/migsync is created 0755 so tasks can read)
        state_dir(os.path.dirname(path))
        atomic_write(path, text, 0o644,  # never over someone else's file named node-map
                     ours=("node map", (b"# migsync node map",)))
    except (ValueError, ConfigError) as exc:
        log.error(f"node map not written: {exc}")
        return None
    hidden = unlistable(root)
    if hidden:
        log.warning(f"node map {path}: tasks (the job's user) cannot list {hidden[0]}"
                    + (f" and {len(hidden) - 1} more" if len(hidden) > 1 else "")
                    + ", so every task would find the map stale")
    missing = sum(1 for e in items if not e.uuid)
    if missing:
        log.info(f"node map {path}: {len(items) - missing} of {len(items)} GPU indices have a "
                 f"UUID ({missing} without: their jobs keep Slurm's plain indices)")
    return path
