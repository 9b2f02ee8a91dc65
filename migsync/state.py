"""What the last full check learned, so the Prolog can answer from procfs alone.

The fingerprint covers the procfs capability tree, the GPU list and the config files; when it
is unchanged, the Prolog reuses the last verdict without parsing or discovering anything.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Optional

from . import __version__

FORMAT = 1


def fingerprint(root: str, files: Iterable[Optional[str]], extra: str = "",
                listing: Optional[str] = None) -> str:
    """The capability tree's listing and the config files' stat, as one string (a few KB).
    ``listing``: fastprolog.instances(root), when the caller has just read it."""
    from .fastprolog import instances  # the Prolog hit reads the same listing

    parts = [extra, instances(root) if listing is None else listing]
    for path in files:
        if not path:
            continue
        try:
            st = os.stat(path)
            parts.append(f"{path}:{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")
        except OSError:
            parts.append(f"{path}:missing")
    return "|".join(parts)


def save(path: str, node: str, fp: str, outcome, files: Iterable[str] = ()) -> None:
    """Write the verdict 0600 into the root-only state directory. ``files`` are all the
    config files the check read (Includes too): the Prolog fingerprints them all."""
    inv = outcome.inventory
    doc = {
        "format": FORMAT, "version": __version__, "node": node, "fingerprint": fp,
        "files": sorted(set(files)),
        "ok": outcome.result.ok,
        "findings": [f.to_dict() for f in outcome.result.findings],
        "gpus": [{"minor": g.minor, "index": g.index, "bus_id": g.bus_id, "uuid": g.uuid,
                  "name": g.name, "mig_current": g.mig_current, "mig_pending": g.mig_pending}
                 for g in inv.gpus if g.minor >= 0 and not g.lost],
        "profiles": {f"{m.parent_minor}/{m.gi}/{m.ci}": m.profile for m in inv.migs},
    }
    version = getattr(outcome, "slurm_version", None) or {}
    if getattr(outcome, "slurmd_id", "") and version.get("series"):
        # `slurmd -V`'s answer, kept while the binary is the same file (slurmversion.detect)
        doc["slurmd"] = {"slurmd": outcome.slurmd_id, "series": version["series"]}
    from .fsutil import atomic_write, state_dir

    import json  # the health check writes (indented, for people); jsonlite reads it back

    state_dir(os.path.dirname(os.path.abspath(path)))
    atomic_write(path, json.dumps(doc, indent=1) + "\n", 0o600,
                 ours=("state cache", (b'{\n "format"', b'{"format"')))


MAX_CACHE_BYTES = 4 << 20  # a 32-GPU node's cache is ~60 KB


def load(path: str) -> Optional[Dict[str, Any]]:
    """The cached verdict, or None when it cannot be believed: not a regular file, not
    root's, readable or writable by others, a symlink, too big, not JSON, wrong types."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid())
                or st.st_mode & 0o077 or st.st_size > MAX_CACHE_BYTES):
            return None
        data = os.read(fd, MAX_CACHE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    from .jsonlite import loads  # not json: a Prolog miss reads this, and json imports re

    try:
        doc = loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError too
        return None
    return doc if valid(doc) else None


_FINDING_KEYS = {"id": str, "message": str, "short": str}


def _opt(value: Any, kind) -> bool:
    return value is None or (isinstance(value, kind) and not isinstance(value, bool)
                             if kind is int else isinstance(value, kind))


def valid(doc: Any) -> bool:
    """Every field the Prolog uses, with its type: a cache is believed whole or not at all."""
    from .model import FINDING_IDS

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return False
    if not (isinstance(doc.get("node"), str) and isinstance(doc.get("fingerprint"), str)
            and isinstance(doc.get("ok"), bool) and isinstance(doc.get("findings"), list)
            and isinstance(doc.get("gpus"), list) and isinstance(doc.get("profiles"), dict)
            and isinstance(doc.get("files", []), list)):
        return False
    if not all(isinstance(f, str) for f in doc.get("files", [])):
        return False
    for f in doc["findings"]:
        if not isinstance(f, dict) or f.get("id") not in FINDING_IDS:
            return False
        for key, kind in _FINDING_KEYS.items():
            if not isinstance(f.get(key), kind):
                return False
        if set(f) - {"id", "message", "short", "source", "path"}:
            return False
        if not (_opt(f.get("source"), str) and _opt(f.get("path"), str)):
            return False
    if doc["ok"] != (not doc["findings"]):
        return False
    for g in doc["gpus"]:
        if not isinstance(g, dict) or not isinstance(g.get("minor"), int) or isinstance(
                g.get("minor"), bool):
            return False
        if not (_opt(g.get("bus_id"), str) and _opt(g.get("name"), str) and _opt(g.get("uuid"), str)
                and _opt(g.get("mig_current"), bool) and _opt(g.get("mig_pending"), bool)
                and _opt(g.get("index"), int)):
            return False
    memo = doc.get("slurmd", {})
    if not (isinstance(memo, dict) and all(isinstance(memo.get(k, ""), str)
                                           for k in ("slurmd", "series"))):
        return False
    return all(isinstance(k, str) and _opt(v, str) for k, v in doc["profiles"].items())


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
