"""gres.conf AutoDetect, understood the way slurmd does.

What an `AutoDetect=` value means for an NVIDIA node (Slurm's gres.conf(5), src/interfaces/gpu.c):
- `nvml`: slurmd loads the gpu_nvml plugin and registers what NVML shows: one record per MIG
  device (MultipleFiles = parent /dev/nvidiaN, GI cap, CI cap; Type
  `<gpu name lowercased, spaces to _, cut at the first '-'>_<profile>`) and one per whole
  GPU otherwise. A Slurm without the gpu_nvml plugin (Debian's and Ubuntu's packages) has
  none to load: slurmd logs that and falls back to gpu/generic, i.e. it detects nothing
  and registers only the gres.conf lines it has.
- `nvidia` (Slurm 24.11+, gpu_nvidia plugin): whole GPUs from /proc/driver/nvidia/gpus, no MIG.
- `full` (newest Slurm): the first plugin of nvml, nvidia, ... that finds hardware.
- `off`, absent: the gres.conf lines only. `rsmi`, `oneapi`, `nrt`: other vendors' GPUs;
  for NVIDIA devices that is the same as off.
A NodeName line's AutoDetect overrides the global one for that node.

Pure except ``find_plugin_dir`` (which looks at the file system the way slurmd's plugin loader
does: slurm.conf's PluginDir, else where this Slurm's plugins are installed).
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple

from .model import Finding, Inventory, autodetect_gpu_type
from .record import Record

OURS = ("nvml", "nvidia", "full")
NOT_OURS = ("rsmi", "oneapi", "nrt")
PLUGIN = {"nvml": "gpu_nvml.so", "nvidia": "gpu_nvidia.so"}
# A directory is Slurm's plugin directory when it holds Slurm's own GPU GRES plugin.
MARKER = "gres_gpu.so"


class Setting(Record):
    """The AutoDetect that applies to one node, and where it was written."""

    __slots__ = ("value", "source")

    def __init__(self, value: Optional[str] = None, source: Optional[str] = None) -> None:
        self.value = value  # lower case; None: not set
        self.source = source


class Detected(Record):
    """One GRES record slurmd's autodetection would register."""

    __slots__ = ("key", "files", "type")

    def __init__(self, key: Tuple, files: Tuple[str, ...], type: str) -> None:
        self.key = key
        self.files = files
        self.type = type  # the full autodetected type string, lower case


class View(Record):
    """What autodetection contributes on this node."""

    __slots__ = ("setting", "plugin", "records", "findings")

    def __init__(self, setting: Setting, plugin: Optional[str] = None,
                 records: Optional[List[Detected]] = None, findings: List[Finding] = None) -> None:
        self.setting = setting
        self.plugin = plugin
        self.records = records  # None: autodetection adds nothing
        self.findings = [] if findings is None else findings


def setting_for(lines: Sequence, node: str) -> Setting:
    """The node's AutoDetect: its own NodeName line's, else the global line's."""
    own, glob_ = Setting(), Setting()
    for ln in lines:
        if not getattr(ln, "autodetect", None) or not ln.applies_to(node):
            continue
        target = glob_ if ln.nodes is None else own
        target.value, target.source = ln.autodetect.lower(), ln.source
    return own if own.value else glob_


def find_plugin_dir(plugin_dir_setting: Optional[str], root: str = "/",
                    slurmd_path: Optional[str] = None) -> Optional[str]:
    """Slurm's plugin directory: slurm.conf PluginDir (a colon list; the first directory that
    holds Slurm's plugins), else the compiled-in default, found where this Slurm installed
    its plugins (Debian: /usr/lib/<triplet>/slurm-wlm; upstream: <prefix>/lib/slurm).
    None when it cannot be told (e.g. under --root, a captured node without its /usr)."""
    if plugin_dir_setting:
        dirs = [d for d in plugin_dir_setting.split(":") if d]
        for d in dirs:
            if os.path.isfile(os.path.join(d, MARKER)):
                return d
        return dirs[0] if dirs else None
    if root not in ("", "/"):
        return None
    import glob  # only here: glob and fnmatch cost ~1 ms at start-up, and AutoDetect is rare

    prefixes = ["/usr", "/usr/local", "/opt/slurm"]
    if slurmd_path:
        prefixes.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(slurmd_path))))
    for prefix in prefixes:
        for pattern in ("lib/slurm", "lib64/slurm", "lib/slurm-wlm", "lib/*/slurm-wlm",
                        "lib/*/slurm"):
            for d in sorted(glob.glob(os.path.join(prefix, pattern))):
                if os.path.isfile(os.path.join(d, MARKER)):
                    return d
    return None


def has_plugin(plugin_dir: Optional[str], name: str) -> Optional[bool]:
    if plugin_dir is None:
        return None
    return os.path.isfile(os.path.join(plugin_dir, PLUGIN[name]))


def nvml_records(inv: Inventory) -> List[Detected]:
    """What gpu_nvml registers: MIG devices as (GPU, GI cap, CI cap), else whole GPUs."""
    out: List[Detected] = []
    for g in sorted(inv.gpus, key=lambda g: g.minor):
        if g.lost or g.minor < 0 or not g.name:
            continue
        base = autodetect_gpu_type(g.name)
        migs = sorted(inv.migs_of(g.minor), key=lambda m: m.key) if g.mig_current else []
        if migs:
            for m in migs:
                out.append(Detected(("mig",) + m.key, tuple(m.files),
                                    f"{base}_{(m.profile or '').lower()}"))
        elif not g.mig_current:
            out.append(Detected(("gpu", g.minor), (g.path,), base))
        # MIG on with no instances: slurmd 21.08-24.05 dies, 24.11 registers the whole GPU;
        # check reports mig-no-instances either way.
    return out


def nvidia_records(inv: Inventory) -> List[Detected]:
    """What gpu_nvidia registers: every GPU whole, MIG or not (it does not see MIG)."""
    return [Detected(("gpu", g.minor), (g.path,), autodetect_gpu_type(g.name or "gpu"))
            for g in sorted(inv.gpus, key=lambda g: g.minor) if not g.lost and g.minor >= 0]


def view(setting: Setting, inv: Inventory, plugin_dir: Optional[str]) -> View:
    v = View(setting)
    value = setting.value
    if value is None or value == "off" or value in NOT_OURS or value not in OURS:
        return v  # the gres.conf lines alone (unknown values are the parser's business)
    where = f"{setting.source}: " if setting.source else ""
    if value == "full":
        order = [p for p in ("nvml", "nvidia") if has_plugin(plugin_dir, p) is not False]
        chosen = order[0] if order else None
    else:
        chosen = value if has_plugin(plugin_dir, value) is not False else None
    if chosen is None:
        wanted = "gpu_nvml or gpu_nvidia" if value == "full" else PLUGIN[value][:-3]
        v.findings.append(Finding(
            "autodetect-unavailable",
            f"{where}AutoDetect={value}, but this Slurm has no {wanted} plugin in "
            f"{plugin_dir}: slurmd detects no GPUs and registers only the gres.conf lines "
            "(Debian's and Ubuntu's Slurm packages ship no gpu_nvml plugin)",
            f"no {wanted} plugin", setting.source))
        return v
    v.plugin = chosen
    if chosen == "nvml":
        v.records = nvml_records(inv)
    else:
        v.records = nvidia_records(inv)
        for g in inv.gpus:
            if g.mig_current and not g.lost:
                v.findings.append(Finding(
                    "autodetect-no-mig",
                    f"{where}AutoDetect={value} does not detect MIG devices, and MIG is on "
                    f"on gpu{g.minor}: slurmd registers the whole GPU; list the MIG devices "
                    "in gres.conf (migsync emit) or use AutoDetect=nvml",
                    f"AutoDetect no MIG gpu{g.minor}", setting.source))
    return v


def count_findings(records: Sequence[Detected], specs: Sequence, where: str,
                   plugin: str) -> List[Finding]:
    """slurm.conf Gres= against autodetected records. slurmd gives a record the slurm.conf
    type that is a case-insensitive substring of its full type (the longest one), so
    `gpu:1g.10gb:14` counts records typed nvidia_a100_80gb_pcie_1g.10gb."""
    gpu_specs = [s for s in specs if s.name == "gpu"]
    typed = sorted({s.type.lower() for s in gpu_specs if s.type}, key=len, reverse=True)
    counts: Dict[str, int] = {}
    examples: Dict[str, str] = {}
    unmatched: Dict[str, int] = {}
    for r in records:
        t = next((t for t in typed if t in r.type), None)
        if t is None:
            unmatched[r.type] = unmatched.get(r.type, 0) + 1
        else:
            counts[t] = counts.get(t, 0) + 1
            examples.setdefault(t, r.type)
    out: List[Finding] = []
    what = f"AutoDetect={plugin}"
    for s in gpu_specs:
        if s.type:
            have = counts.get(s.type.lower(), 0)
            if have != s.count:
                example = examples.get(s.type.lower())
                out.append(Finding(
                    "gres-count-mismatch",
                    f"{where}: Gres=gpu:{s.type}:{s.count} but {what} registers {have} "
                    f"device(s) whose type contains {s.type!r}"
                    + (f" (e.g. {example})" if example else ""),
                    f"Gres count gpu:{s.type} {s.count}!={have}", where))
        elif not typed and s.count != len(records):
            out.append(Finding("gres-count-mismatch",
                               f"{where}: Gres=gpu:{s.count} but {what} registers "
                               f"{len(records)} gpu", f"Gres count gpu {s.count}!={len(records)}",
                               where))
    if typed:
        for t, n in sorted(unmatched.items()):
            out.append(Finding("gres-count-mismatch",
                               f"{where}: {what} registers {n} gpu of type {t}, which no "
                               "Gres= type matches (a substring of it, e.g. the profile)",
                               f"Gres count gpu:{t} missing", where))
    elif not gpu_specs and records:
        out.append(Finding("gres-count-mismatch",
                           f"{where}: {what} registers {len(records)} gpu but the node's "
                           "slurm.conf line has no Gres=gpu", "Gres count no Gres=gpu", where))
    return out
