"""Human-readable text for check, emit and discover. Pure functions over the core's plain data classes."""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import List

from .model import Inventory


def inventory_table(inv: Inventory) -> str:
    out: List[str] = [f"backend: {inv.backend}"]
    out.append(f"{'MINOR':>5} {'IDX':>3}  {'BUS':<13} {'MIG':<9} NAME")
    for g in inv.gpus:
        mig = {True: "on", False: "off", None: "n/a"}[g.mig_current]
        if g.mig_pending is not None and g.mig_pending != g.mig_current:
            mig += "->" + ("on" if g.mig_pending else "off")
        idx = "-" if g.index is None else str(g.index)
        name = g.name or "?"
        if g.lost:
            name += f"  [LOST: {g.lost}]"
        minor = str(g.minor) if g.minor >= 0 else "?"
        out.append(f"{minor:>5} {idx:>3}  {g.bus_id or '?':<13} {mig:<9} {name}")
    if inv.migs:
        out.append("")
        out.append(f"{'DEVICE':<16} {'PROFILE':<14} {'GI CAP':>6} {'CI CAP':>6}  FILES")
        for m in inv.migs:
            out.append(f"{m.label:<16} {m.profile or '?':<14} {m.gi_cap:>6} {m.ci_cap:>6}  "
                       + ",".join(m.files))
    for d in inv.disagreements:
        out.append(f"warning: {d}")
    return "\n".join(out) + "\n"


def check_report(outcome) -> str:
    res = outcome.result
    inv = outcome.inventory
    status = "OK" if res.ok else f"MISMATCH ({len(res.findings)} finding" + \
        ("s" if len(res.findings) != 1 else "") + ")"
    n_mig_gpus = sum(1 for g in inv.gpus if g.mig_current)
    out = [f"node {outcome.node}: {status}",
           f"  gres.conf:  {outcome.files.gres_conf} (found via {outcome.files.how})",
           f"  slurm.conf: {outcome.files.slurm_conf or '(not found: Gres= counts not checked)'}",
           f"  hardware:   {len(inv.gpus)} GPU(s), {n_mig_gpus} with MIG, "
           f"{len(inv.migs)} MIG device(s) via {inv.backend}"]
    ad = getattr(outcome, "autodetect", None)
    if ad is not None:
        if ad.records is not None:
            out.append(f"  AutoDetect: {ad.setting.value} ({ad.setting.source}): slurmd's "
                       f"{ad.plugin} autodetection registers {len(ad.records)} device(s)")
        else:
            out.append(f"  AutoDetect: {ad.setting.value} ({ad.setting.source}): detects "
                       "nothing here (see the finding)")
    for f in res.findings:
        out.append(f"  {f.id:<20} {f.message}")
    for f in res.ignored:
        out.append(f"  (ignored) {f.id:<10} {f.message}")
    for source, why in getattr(outcome, "skipped", ()):  # slurmd only logs these lines
        out.append(f"  (slurmd ignores) {source}: {why}")
    if not res.ok:
        out.append("")
        out.append(f"Lines that describe the hardware (also: migsync emit --style {outcome.style}):")
        out.append("  # gres.conf")
        out += [f"  {ln}" for ln in outcome.gres_lines]
        out.append("  # slurm.conf (merge Gres= into the node's line)")
        out.append(f"  {outcome.slurm_line}")
    return "\n".join(out) + "\n"


def slurm_conf_lines(slurm_line: str) -> List[str]:
    """What belongs in slurm.conf, not gres.conf: GresTypes and the node's Gres=."""
    return ["GresTypes=gpu", slurm_line]


def emit_text(res) -> str:
    """Exactly a gres.conf: the slurm.conf part is comment lines, which slurmd skips."""
    out = [f"# gres.conf for {res.node}, written by `migsync emit --style {res.style}` "
           f"from the hardware ({res.inventory.backend})"]
    ad = getattr(res, "autodetect", None)
    if ad is not None:
        out.append(f"# ({ad.source} had AutoDetect={ad.value}; this file lists the devices "
                   "instead, so slurmd's autodetection is off)")
    out += res.gres_lines
    out.append("#")
    out.append("# slurm.conf (not this file): GresTypes must include gpu, and the node's")
    out.append("# NodeName line needs this Gres= (merge it into the existing line):")
    out += [f"#   {ln}" for ln in slurm_conf_lines(res.slurm_line)]
    return "\n".join(out) + "\n"
