"""What the last full check learned, so the Prolog can answer from procfs alone.

The fingerprint covers the procfs capability tree, the GPU list and the config files; when it
is unchanged, the Prolog reuses the last verdict without parsing or discovering anything.
"""
from __future__ import annotations

import json
import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Optional

from . import __version__

FORMAT = 1


def fingerprint(root: str, files: Iterable[Optional[str]], extra: str = "") -> str:
    """The capability tree's listing and the config files' stat, as one string (a few KB)."""
    from .fastprolog import instances  # the Prolog hit reads the same listing

    parts = [extra, instances(root)]
    for path in files:
        if not path:
            continue
        try:
            st = os.stat(path)
            parts.append(f"{path}:{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")
        except OSError:
            parts.append(f"{path}:missing")
    return "|".join(parts)


def save(path: str, node: str, fp: str, outcome) -> None:
    inv = outcome.inventory
    doc = {
        "format": FORMAT, "version": __version__, "node": node, "fingerprint": fp,
        "ok": outcome.result.ok,
        "findings": [f.to_dict() for f in outcome.result.findings],
        "gpus": [{"minor": g.minor, "index": g.index, "bus_id": g.bus_id, "uuid": g.uuid,
                  "name": g.name, "mig_current": g.mig_current, "mig_pending": g.mig_pending}
                 for g in inv.gpus if g.minor >= 0 and not g.lost],
        "profiles": {f"{m.parent_minor}/{m.gi}/{m.ci}": m.profile for m in inv.migs},
    }
    from .fsutil import atomic_write

    atomic_write(path, json.dumps(doc, indent=1) + "\n", 0o644)


def load(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    return doc


def procfs_view(snap, cached: Optional[Dict[str, Any]]):
    """A backend view from procfs plus the last full check's names, modes and profiles."""
    from .backends import BackendView, BGpu, BMig

    view = BackendView("procfs")
    by_bus = {g.get("bus_id"): g for g in (cached or {}).get("gpus", [])}
    profiles = (cached or {}).get("profiles", {})
    with_instances = {minor for minor, _gi in snap.gi_caps}
    for minor, pg in sorted(snap.gpus.items()):
        c = by_bus.get(pg.bus_id, {})
        mig = c.get("mig_current")
        if mig is None and minor in with_instances:
            mig = True
        view.gpus.append(BGpu(index=-1, minor=minor, bus_id=pg.bus_id, uuid=pg.uuid,
                              name=c.get("name") or pg.model, mig_current=mig,
                              mig_pending=c.get("mig_pending", mig)))
    for (minor, gi, ci) in sorted(snap.ci_caps):
        view.migs.append(BMig(-1, gi, ci, profiles.get(f"{minor}/{gi}/{ci}"), minor=minor))
    return view
