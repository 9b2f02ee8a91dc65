"""The one JSON shape every command prints with --json (and `report` always).

Every document has the same top-level names (TOP_LEVEL); a command fills what it knows and
leaves the rest null, so a consumer can read `status`, `ok`, `error` and `findings` the
same way whichever command produced them. Commands may add names of their own (e.g.
`action` details, `records`, `slurm_version`); the common names never change meaning within
a `schema_version`. Documented in the README ("JSON output").
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

from . import __version__

SCHEMA_VERSION = 1
# report is read back by `merge` on another machine: it has its own version (see report.py).
TOP_LEVEL = ("schema", "schema_version", "migsync_version", "command", "node", "status", "ok",
             "exit_code", "error", "findings", "ignored", "files", "inventory", "suggested",
             "action", "action_why", "drain_reason", "slurm_backend", "from_cache")

# status -> exit code, the same table as the README's "Exit codes".
STATUS_EXIT = {"ok": 0, "mismatch": 1, "config_error": 2, "discovery_failed": 3, "busy": 4,
               "slurm_error": 5, "internal_error": 70, "terminated": 143}
EXIT_STATUS = {v: k for k, v in STATUS_EXIT.items()}
EXIT_STATUS[129] = "terminated"  # by SIGHUP (cli.SIGNAL_NAMES)


def schema_name(command: str) -> str:
    return f"migsync-{command}"


def new(command: str, node: Optional[str] = None, version: int = SCHEMA_VERSION) -> Dict[str, Any]:
    doc: Dict[str, Any] = {k: None for k in TOP_LEVEL}
    doc.update(schema=schema_name(command), schema_version=version, migsync_version=__version__,
               command=command, node=node)
    return doc


def set_status(doc: Dict[str, Any], status: str) -> Dict[str, Any]:
    doc["status"] = status
    doc["exit_code"] = STATUS_EXIT.get(status)
    if status in ("ok", "mismatch"):
        doc["ok"] = status == "ok"
    return doc


def gpu_dict(g) -> Dict[str, Any]:
    """A GPU as JSON. `mig_pending_mode` is the MIG mode the GPU takes at its next reset
    (true: enabled); it equals `mig_current` when no change is pending."""
    return {"minor": g.minor, "index": g.index, "bus_id": g.bus_id, "uuid": g.uuid,
            "name": g.name, "mig_current": g.mig_current, "mig_pending_mode": g.mig_pending,
            "lost": g.lost}


def inventory(inv) -> Dict[str, Any]:
    return {
        "backend": inv.backend,
        "gpus": [gpu_dict(g) for g in inv.gpus],
        "mig_devices": [{"parent_minor": m.parent_minor, "gi": m.gi, "ci": m.ci,
                         "profile": m.profile, "gi_cap": m.gi_cap, "ci_cap": m.ci_cap,
                         "uuid": m.uuid, "files": list(m.files)} for m in inv.migs],
        "disagreements": list(inv.disagreements),
    }


def files(conf_files) -> Optional[Dict[str, Any]]:
    if conf_files is None:
        return None
    return {"gres_conf": conf_files.gres_conf, "slurm_conf": conf_files.slurm_conf,
            "found_by": conf_files.how}


def outcome(command: str, oc) -> Dict[str, Any]:
    """check (and the full check under healthcheck/check --drain)."""
    doc = new(command, oc.node)
    set_status(doc, "ok" if oc.result.ok else "mismatch")
    doc["findings"] = [f.to_dict() for f in oc.result.findings]
    doc["ignored"] = [f.to_dict() for f in oc.result.ignored]
    doc["files"] = files(oc.files)
    doc["inventory"] = inventory(oc.inventory)
    doc["suggested"] = {"style": oc.style, "gres_conf": list(oc.gres_lines),
                        "slurm_conf": oc.slurm_line}
    # additions of check's own: whose gres.conf rules were applied, and the node's GRES
    # records in slurmd's order (index = the job's IDX / SLURM_JOB_GPUS position)
    doc["slurm_version"] = getattr(oc, "slurm_version", None) or None
    doc["records"] = [r.to_dict() for r in getattr(oc, "records", ())]
    # gres.conf lines (or keys) slurmd passes over with a log line: no Name=, a NodeName= it
    # cannot read, a global line's AutoDetect=
    doc["ignored_by_slurmd"] = [{"source": src, "why": why} for src, why in getattr(oc, "skipped", ())]
    ad = getattr(oc, "autodetect", None)
    if ad is not None:  # an addition of check's own: what AutoDetect registers here
        doc["autodetect"] = {
            "value": ad.setting.value, "source": ad.setting.source, "plugin": ad.plugin,
            "records": None if ad.records is None else [
                {"type": r.type, "files": list(r.files)} for r in ad.records]}
    return doc


def emit_result(res) -> Dict[str, Any]:
    doc = new("emit", res.node)
    set_status(doc, "ok")
    doc["files"] = ({"gres_conf": res.gres_conf, "slurm_conf": None, "found_by": None}
                    if res.gres_conf else None)
    doc["inventory"] = inventory(res.inventory)
    doc["suggested"] = {"style": res.style, "gres_conf": list(res.gres_lines),
                        "slurm_conf": res.slurm_line}
    doc["note"] = res.note
    return doc


def run_report(command: str, report) -> Dict[str, Any]:
    """healthcheck, prolog and check --drain: the verdict plus what was done to the node."""
    if report.outcome is not None:
        doc = outcome(command, report.outcome)
    else:
        doc = new(command, report.node)
        doc["findings"] = [f.to_dict() for f in report.findings]
        doc["files"] = files(report.files)
    set_status(doc, report.status)
    if report.check_ok is not None:
        doc["ok"] = report.check_ok  # the verdict, whatever happened when acting on it
    doc["error"] = report.error or None
    d = report.decision
    doc.update(action=d.action if d else None, action_why=d.why if d else None,
               drain_reason=d.reason if d else None,
               slurm_backend=report.slurm_backend or None, from_cache=bool(report.cached))
    return doc


def error(command: Optional[str], exc: BaseException, exit_code: int,
          node: Optional[str] = None) -> Dict[str, Any]:
    """With --json an error is a JSON object on stdout too (the one line stays on stderr)."""
    doc = new(command or "migsync", node)
    set_status(doc, EXIT_STATUS.get(exit_code, "internal_error"))
    doc["exit_code"] = exit_code
    doc["error"] = str(exc)  # the stderr line without 'migsync: ': file:line: what (in '...')
    return doc
