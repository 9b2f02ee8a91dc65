"""Render gres.conf lines and the slurm.conf Gres= fragment that describe the real hardware."""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple

from . import hostlist
from .check import DeviceKey, resolve, type_fits
from .errors import ConfigError
from .gresconf import GresLine
from .model import DEV_CAP, Inventory, gpu_path, names_profile, short_gpu_type

STYLES = ("multiple-files", "file")
AUTO = "auto"  # the style the current gres.conf uses


def choose_style(wanted: str, current: Sequence[GresLine] = ()) -> str:
    """``wanted`` unless it is 'auto' (or empty): then the style the site already writes.

    A site that lists CI caps with File= gets File= lines back; MultipleFiles= lines, or no
    MIG line at all, give what Slurm's own NVML autodetect builds."""
    if wanted and wanted != AUTO:
        return wanted
    if any(ln.multiple_files for ln in current):
        return "multiple-files"
    if any(f.startswith(DEV_CAP) for ln in current for f in ln.files):
        return "file"
    return "multiple-files"


def hardware_devices(inv: Inventory) -> List[DeviceKey]:
    """Every schedulable device, in Slurm's natural order: GPU minor, then GI, then CI."""
    keys: List[DeviceKey] = []
    for g in sorted(inv.gpus, key=lambda g: g.minor):
        if g.lost or g.minor < 0:
            continue
        if g.mig_current:
            keys.extend(("mig",) + m.key for m in sorted(inv.migs_of(g.minor), key=lambda m: m.key))
        else:
            keys.append(("gpu", g.minor))
    return keys


def _fits(inv: Inventory, key: DeviceKey, type_name: str) -> bool:
    if not type_fits(inv, key, type_name):
        return False
    if key[0] == "mig":
        mig = inv.mig(key[1:])
        return bool(mig.profile) and mig.profile.lower() in type_name.lower()
    return not names_profile(type_name)


# Beside typed lines, a device whose name nobody could read still needs a Type, or slurmd
# refuses the whole file; no name means no autodetect string for it to contradict.
UNNAMED_TYPE = "unknown"


def default_type(inv: Inventory, key: DeviceKey) -> Optional[str]:
    if key[0] == "mig":
        return inv.mig(key[1:]).profile
    gpu = inv.gpu(key[1])
    return short_gpu_type(gpu.name) if gpu and gpu.name else None


def assign_types(inv: Inventory, current: Sequence[GresLine] = ()) -> Dict[DeviceKey, Optional[str]]:
    """Keep the Type the current config gives a device where it still fits; else a default."""
    configured, _ = resolve(current, inv)
    by_device = {c.key: c.line.type for c in configured if c.key and c.line.type}
    used = []
    for ln in current:
        if ln.type and ln.type not in used:
            used.append(ln.type)
    used.sort(key=len, reverse=True)
    types: Dict[DeviceKey, Optional[str]] = {}
    untyped = {c.key for c in configured if c.key and not c.line.type}
    for key in hardware_devices(inv):
        own = by_device.get(key)
        if key in untyped:
            types[key] = None  # the admin left it untyped; an untyped line matches any device
            continue
        # keep the site's Type where it fits, or where nothing can contradict it: an instance
        # procfs has but the backend did not list has no known profile
        if own and (_fits(inv, key, own) or (key[0] == "mig" and not inv.mig(key[1:]).profile)):
            types[key] = own
            continue
        types[key] = next((t for t in used if _fits(inv, key, t)), None) or default_type(inv, key)
    if any(t is None for t in types.values()) and any(types.values()):
        # slurmd refuses a node whose gpu lines are partly typed ("some records have Type=
        # specification while others do not", measured on 22.05-26.05): type them all
        for key, t in types.items():
            if t is None:
                gpu = inv.gpu(key[1])  # a MIG device of unknown profile: its GPU's short
                types[key] = default_type(inv, key) or (  # type is a substring of its own
                    short_gpu_type(gpu.name) if gpu and gpu.name else UNNAMED_TYPE)
    return types


def _type_part(t: Optional[str]) -> str:
    return f" Type={t}" if t else ""


def render_gres(inv: Inventory, node: str, style: str = "multiple-files",
                current: Sequence[GresLine] = (),
                types: Optional[Dict[DeviceKey, Optional[str]]] = None) -> List[str]:
    """gres.conf lines for ``node`` (a name or a hostlist); check on them gives no findings."""
    if style not in STYLES:
        raise ValueError(style)
    if types is None:
        types = assign_types(inv, current)
    head = f"NodeName={node} Name=gpu"
    lines: List[str] = []
    migs = {m.key: m for m in inv.migs}
    # Whole GPUs (MIG off): one File= hostlist per type, in minor order.
    groups: List[Tuple[Optional[str], List[str], str]] = []  # (type, files, kind)
    for key in hardware_devices(inv):
        t = types[key]
        if key[0] == "gpu":
            files, kind = [gpu_path(key[1])], "gpu"
        elif style == "file":
            files, kind = [migs[key[1:]].files[2]], "mig"
        else:
            lines_files = ",".join(migs[key[1:]].files)
            groups.append((t, [lines_files], "multiple"))
            continue
        if groups and groups[-1][0] == t and groups[-1][2] == kind:
            groups[-1][1].extend(files)
        else:
            groups.append((t, list(files), kind))
    for t, files, kind in groups:
        if kind == "multiple":
            lines.append(f"{head}{_type_part(t)} MultipleFiles={files[0]}")
        else:
            lines.append(f"{head}{_type_part(t)} File={hostlist.fold(files)}")
    return lines


def gres_counts(types: Dict[DeviceKey, Optional[str]]) -> List[Tuple[Optional[str], int]]:
    counts: Dict[Optional[str], int] = {}
    for t in types.values():
        counts[t] = counts.get(t, 0) + 1
    return list(counts.items())


def render_slurm_gres(types: Dict[DeviceKey, Optional[str]]) -> str:
    """'gpu:a100:2,gpu:1g.10gb:14' (untyped devices as 'gpu:N')."""
    parts = [f"gpu:{t}:{n}" if t else f"gpu:{n}" for t, n in gres_counts(types)]
    return ",".join(parts)


def render_slurm_line(node: str, types: Dict[DeviceKey, Optional[str]]) -> str:
    gres = render_slurm_gres(types)
    return f"NodeName={node} Gres={gres}" if gres else f"NodeName={node}"


def _foreign_line(path: str, node: str, text: str) -> Optional[str]:
    """The first line of the current file that is not this node's gpu configuration (another
    node's, another GRES, an Include), or None. Replacing such a file would lose it."""
    from . import gresconf

    try:
        current = gresconf.parse(text, path)
    except ConfigError:
        return None  # a broken file is exactly what emit replaces; the backup keeps it
    for ln in current.lines:
        where = f"{ln.path}:{ln.lineno}"
        if os.path.abspath(ln.path) != os.path.abspath(path):
            return f"{where} comes from an Include"
        if ln.nodes is not None and (not hostlist.contains(ln.nodes, node)
                                     or hostlist.count(ln.nodes) != 1):
            return f"{where} is for other nodes (NodeName={ln.nodes})"
        if ln.name is not None and ln.name.lower() != "gpu":
            return f"{where} configures Name={ln.name}"
    return None


def write_gres_conf(path: str, text: str, node: str) -> Optional[str]:
    """Write ``text`` to ``path`` atomically, keeping the previous file; returns the backup.

    Refuses text that does not parse as a gres.conf for ``node``, and a file that also holds
    lines emit would drop (other nodes', other GRES, Includes): that is merge's job."""
    from . import gresconf
    from .fsutil import atomic_write
    from .slurmsyntax import read_text

    try:
        gresconf.parse(text, path).for_node(node)
    except ConfigError as exc:
        raise ConfigError(f"refusing to write: the generated gres.conf does not parse ({exc})",
                          path=path) from None
    mode = 0o644
    if os.path.lexists(path):
        foreign = _foreign_line(path, node, read_text(path))
        if foreign:
            raise ConfigError(f"refusing to replace it: {foreign}; emit writes one node's "
                              "gres.conf (use `migsync merge` for a shared one)", path=path)
        mode = os.stat(path).st_mode & 0o777
    return atomic_write(path, text, mode, backup=True)
