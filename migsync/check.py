"""Compare the node's configured GRES with its real devices. Pure: no I/O except stat via ``exists``."""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .gresconf import GresLine
from .model import DEV_CAP, DEV_NVIDIA, Finding, Inventory, autodetect_gpu_type, path_number
from .slurmconf import GresSpec
from .record import Record

DeviceKey = tuple  # ('gpu', minor) or ('mig', minor, gi, ci)


class Configured(Record):
    """One GRES unit a line gives the node, resolved to a real device where possible."""

    __slots__ = ("line", "files", "key")

    def __init__(self, line: GresLine, files: Tuple[str, ...],
                 key: Optional[DeviceKey] = None) -> None:
        self.line = line
        self.files = files
        self.key = key  # None when it names nothing real


class CheckResult(Record):
    __slots__ = ("findings", "configured", "ignored")

    def __init__(self, findings: List[Finding] = None, configured: List[Configured] = None,
                 ignored: List[Finding] = None) -> None:
        self.findings = [] if findings is None else findings
        self.configured = [] if configured is None else configured
        self.ignored = [] if ignored is None else ignored

    @property
    def ok(self) -> bool:
        return not self.findings


def device_type_string(inv: Inventory, key: DeviceKey) -> Optional[str]:
    """The string Slurm's NVML autodetect would give the device ('nvidia_a100_1g.10gb')."""
    gpu = inv.gpu(key[1])
    if gpu is None or not gpu.name:
        return None
    base = autodetect_gpu_type(gpu.name)
    if key[0] == "gpu":
        return base
    mig = inv.mig(key[1:])
    if mig is None or not mig.profile:
        return None
    return f"{base}_{mig.profile.lower()}"


def type_fits(inv: Inventory, key: DeviceKey, type_name: str) -> Optional[bool]:
    """Slurm's rule: a configured Type matches when it is a case-insensitive substring."""
    full = device_type_string(inv, key)
    if full is None:
        return None
    return type_name.lower() in full


def _label(key: DeviceKey) -> str:
    return f"gpu{key[1]}" if key[0] == "gpu" else f"gpu{key[1]}/gi{key[2]}/ci{key[3]}"


def resolve(lines: Sequence[GresLine], inv: Inventory) -> Tuple[List[Configured], List[Finding]]:
    """Turn each configured unit into a device key, with findings for what names nothing live."""
    live = {m.ci_cap: m for m in inv.migs}
    gpus = {g.minor: g for g in inv.gpus}
    out: List[Configured] = []
    findings: List[Finding] = []

    def cap_entry(path: str):
        cap = path_number(path, DEV_CAP)
        return None if cap is None else (cap, inv.cap_table.get(cap))

    for ln in lines:
        units = [tuple(ln.multiple_files)] if ln.multiple_files else [(f,) for f in ln.files]
        if not units:
            findings.append(Finding("unknown-device", f"{ln.source}: gpu line has no File= or "
                                    "MultipleFiles=, so Slurm cannot bind it to a device",
                                    "unknown dev no File=", ln.source))
            continue
        for files in units:
            conf = Configured(ln, files)
            out.append(conf)
            ci_caps = []
            for path in files:
                entry = cap_entry(path)
                if entry and entry[1] is not None and entry[1][2] is not None:
                    ci_caps.append((path, entry))
            if len(ci_caps) > 1:
                findings.append(Finding("unknown-device", f"{ln.source}: one device names "
                                        f"{len(ci_caps)} compute-instance caps", "unknown dev 2 CIs",
                                        ln.source))
                continue
            if ci_caps:
                path, (cap, (gminor, gi, ci)) = ci_caps[0]
                mig = live.get(cap)
                if mig is None:
                    findings.append(Finding(
                        "stale-cap", f"{ln.source}: {path} is gpu{gminor}/gi{gi}/ci{ci}, "
                        "which does not exist (stale capability device)",
                        f"stale cap{cap}", ln.source, path))
                    continue
                conf.key = ("mig",) + mig.key
                if len(files) > 1:
                    need = set(mig.files)
                    missing = [f for f in mig.files if f not in files]
                    extra = [f for f in files if f not in need]
                    if missing or extra:
                        what = ", ".join([f"lacks {f}" for f in missing] +
                                         [f"has foreign {f}" for f in extra])
                        findings.append(Finding("incomplete-device",
                                                f"{ln.source}: {mig.label}: {what}",
                                                f"incomplete {mig.label}", ln.source))
                continue
            if len(files) == 1:
                path = files[0]
                g = path_number(path, DEV_NVIDIA)
                entry = cap_entry(path)
                if g is not None and g in gpus:
                    gpu = gpus[g]
                    conf.key = ("gpu", gpu.minor)
                    if gpu.mig_current:
                        findings.append(Finding(
                            "whole-gpu-mig-on", f"{ln.source}: {path} is a whole GPU but MIG is "
                            f"enabled on gpu{gpu.minor}", f"MIG on gpu{gpu.minor}", ln.source, path))
                    continue
                if entry and entry[1] is not None:
                    gminor, gi, _ = entry[1]
                    live_gi = (gminor, gi) in inv.gi_caps
                    findings.append(Finding(
                        "stale-cap" if not live_gi else "unknown-device",
                        f"{ln.source}: {path} is the GPU-instance cap of gpu{gminor}/gi{gi}"
                        + ("" if live_gi else ", which does not exist")
                        + "; configure its compute-instance cap", (f"stale GI cap{entry[0]}" if not live_gi else f"unknown dev GI cap{entry[0]}"),
                        ln.source, path))
                    continue
            findings.append(Finding("unknown-device", f"{ln.source}: {', '.join(files)} matches "
                                    "no GPU or MIG compute instance on this node",
                                    "unknown dev", ln.source, files[0]))
    return out, findings


def registered(lines: Sequence[GresLine]) -> List[GresLine]:
    """The lines slurmctld 22.05 counts as gpu: it matches the GRES name case-sensitively
    (measured: a Name=GPU line leaves the node INVAL with '0 < N'), though slurmd -G lists it."""
    return [ln for ln in lines if ln.name == "gpu"]


def registered_counts(lines: Sequence[GresLine]) -> Dict[Optional[str], int]:
    """Per-type gpu count the node registers (types compared case-insensitively, as Slurm does)."""
    counts: Dict[Optional[str], int] = {}
    for ln in registered(lines):
        t = ln.type.lower() if ln.type else None
        counts[t] = counts.get(t, 0) + ln.device_count
    return counts


def check(inv: Inventory, lines: Sequence[GresLine], slurm_gres: Optional[List[GresSpec]] = None,
          slurm_source: str = "slurm.conf", exists: Callable[[str], bool] = os.path.exists,
          ignore: Sequence[str] = (), hardware_types: Optional[Dict[DeviceKey, str]] = None,
          autodetected=None, fatal: Sequence[Tuple[GresLine, str]] = ()) -> CheckResult:
    """All findings for one node. ``exists`` maps a configured path to a stat (rooted in tests).

    ``autodetected`` (an autodetect.View) adds what slurmd's AutoDetect registers: those
    devices are configured, and slurm.conf Gres= is compared with them. ``fatal`` is
    GresConf.fatal_for(node): slurmd's own errors that stop it on this file."""
    res = CheckResult()
    findings: List[Finding] = []
    for ln, text in fatal:
        findings.append(Finding("slurmd-fatal", f"{ln.source}: slurmd would not start: {text}",
                                f"slurmd fatal {ln.source}", ln.source))
    if autodetected is not None:
        findings.extend(autodetected.findings)
    for ln in lines:
        if ln.name != "gpu":
            findings.append(Finding("gres-name-case", f"{ln.source}: Name={ln.name}: slurmctld "
                                    "counts only Name=gpu (lower case); this line registers no "
                                    "gpu at all", f"Name={ln.name}", ln.source))
    lines = registered(lines)

    for g in inv.gpus:
        if g.lost:
            label = f"gpu{g.minor}" if g.minor >= 0 else (g.bus_id or f"index {g.index}")
            findings.append(Finding("gpu-lost", f"{label}: {g.lost}", f"lost {label}"))
    for text in inv.disagreements:
        findings.append(Finding("backend-disagrees", text, "smi!=procfs"))
    for g in inv.gpus:
        if g.lost:
            continue
        if g.mig_current and not inv.migs_of(g.minor):
            findings.append(Finding("mig-no-instances", f"gpu{g.minor}: MIG is enabled but no "
                                    "instances exist (recreate them, e.g. nvidia-mig-parted)",
                                    f"no MIG inst gpu{g.minor}"))
        if (g.mig_current is not None and g.mig_pending is not None
                and g.mig_current != g.mig_pending):
            want = "enable" if g.mig_pending else "disable"
            findings.append(Finding("mig-pending", f"gpu{g.minor}: MIG {want} is pending a GPU "
                                    "reset", f"MIG pending gpu{g.minor}"))

    checked_paths = set()
    for ln in lines:
        for path in ln.multiple_files or ln.files:
            if path not in checked_paths:
                checked_paths.add(path)
                if not exists(path):
                    findings.append(Finding("missing-file", f"{ln.source}: {path} does not exist "
                                            "(slurmd would fail to start)", f"no devfile {os.path.basename(path)}",
                                            ln.source, path))

    configured, resolve_findings = resolve(lines, inv)
    res.configured = configured
    findings.extend(resolve_findings)

    seen: Dict[DeviceKey, str] = {}
    for c in configured:
        if c.key is None:
            continue
        if c.key in seen:
            findings.append(Finding("duplicate-device", f"{c.line.source}: {_label(c.key)} is "
                                    f"already configured at {seen[c.key]}",
                                    f"dup {_label(c.key)}", c.line.source))
            continue
        seen[c.key] = c.line.source
        if c.line.type and type_fits(inv, c.key, c.line.type) is False:
            findings.append(Finding("type-mismatch", f"{c.line.source}: Type={c.line.type} does "
                                    f"not match {_label(c.key)} "
                                    f"({device_type_string(inv, c.key)})",
                                    f"bad Type {c.line.type}", c.line.source))

    records = autodetected.records if autodetected is not None else None
    for d in records or ():
        seen.setdefault(d.key, f"AutoDetect={autodetected.plugin}")

    for g in inv.gpus:
        if g.lost or g.minor < 0:
            continue
        if not g.mig_current and ("gpu", g.minor) not in seen:
            findings.append(Finding("unconfigured-device", f"gpu{g.minor} ({g.path}) is named by "
                                    "no gres.conf line", f"unconf gpu{g.minor}"))
    lost = {g.minor for g in inv.gpus if g.lost}
    for m in inv.migs:
        # as for whole GPUs above: a lost GPU is reported once (gpu-lost); whether its
        # instances are configured cannot be judged while it is unreadable
        if ("mig",) + m.key not in seen and m.parent_minor not in lost:
            profile = m.profile or "profile unknown"
            findings.append(Finding("unconfigured-device", f"{m.label} ({profile}, {m.files[2]}) "
                                    "is named by no gres.conf line",
                                    f"unconf {m.label}"))

    if slurm_gres is not None and records is not None:
        from .autodetect import count_findings

        findings.extend(count_findings(records, slurm_gres, slurm_source, autodetected.plugin))
    elif slurm_gres is not None:
        findings.extend(_count_findings(lines, slurm_gres, slurm_source, hardware_types or {}))

    for f in findings:
        (res.ignored if f.id in ignore else res.findings).append(f)
    return res


def _count_findings(lines: Sequence[GresLine], specs: List[GresSpec], where: str,
                    hw_types: Dict[DeviceKey, str]) -> List[Finding]:
    gres_by_type = registered_counts(lines)
    hw_by_type: Dict[str, int] = {}
    for t in hw_types.values():
        if t:
            hw_by_type[t.lower()] = hw_by_type.get(t.lower(), 0) + 1
    total = sum(gres_by_type.values())
    gpu_specs = [s for s in specs if s.name == "gpu"]
    out = []
    typed = {s.type.lower(): s for s in gpu_specs if s.type}
    untyped = [s for s in gpu_specs if not s.type]
    for t, spec in typed.items():
        have = gres_by_type.get(t, 0)
        if have != spec.count:
            hw = f", hardware {hw_by_type[t]}" if t in hw_by_type else ""
            out.append(Finding("gres-count-mismatch", f"{where}: Gres=gpu:{spec.type}:{spec.count}"
                               f" but gres.conf gives {have}{hw}",
                               f"Gres count gpu:{spec.type} {spec.count}!={have}", where))
    for spec in untyped:
        if typed:
            continue
        if spec.count != total:
            out.append(Finding("gres-count-mismatch", f"{where}: Gres=gpu:{spec.count} but "
                               f"gres.conf gives {total}", f"Gres count gpu {spec.count}!={total}", where))
    if typed:
        for t, n in gres_by_type.items():
            if t is not None and t not in typed and n:
                out.append(Finding("gres-count-mismatch", f"{where}: gres.conf gives {n} gpu:{t} "
                                   "but slurm.conf Gres= has no such type",
                                   f"Gres count gpu:{t} missing", where))
    elif not gpu_specs and total:
        out.append(Finding("gres-count-mismatch", f"{where}: gres.conf gives {total} gpu but the "
                           "node's slurm.conf line has no Gres=gpu", "Gres count no Gres=gpu", where))
    return out
