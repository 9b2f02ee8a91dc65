"""The per-node report the controller merges: versioned, self-contained, one JSON line."""
from __future__ import annotations

import json
import time
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

from . import runner
from .check import DeviceKey
from .errors import CommandError, ConfigError
from .model import Gpu, Inventory, MigDevice

SCHEMA = "migsync-report"
# 2: the common top-level names of every migsync JSON document (jsondoc.TOP_LEVEL), and
# gpus[].mig_pending renamed mig_pending_mode. merge still reads version 1.
SCHEMA_VERSION = 2
HARDWARE_KEYS = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore",
                 "RealMemory")


def slurmd_hardware(timeout: float = 10.0) -> Optional[str]:
    """The node's CPU/memory line from `slurmd -C`, for complete slurm.conf node lines."""
    path = runner.find_program("slurmd")
    if path is None:
        return None
    try:
        res = runner.run([path, "-C"], timeout=timeout)
    except CommandError:
        return None
    first = res.stdout.splitlines()[0] if res.stdout.strip() else ""
    keep = [kv for kv in first.split() if kv.split("=", 1)[0] in HARDWARE_KEYS]
    return " ".join(keep) or None


def build(node: str, inv: Inventory, types: Dict[DeviceKey, Optional[str]],
          hardware: Optional[str], findings: Optional[list] = None) -> Dict[str, Any]:
    migs = {m.key: m for m in inv.migs}
    devices: List[Dict[str, Any]] = []
    for key, t in types.items():
        if key[0] == "gpu":
            devices.append({"kind": "gpu", "minor": key[1], "type": t,
                            "files": [f"/dev/nvidia{key[1]}"]})
        else:
            m = migs[key[1:]]
            devices.append({"kind": "mig", "minor": m.parent_minor, "gi": m.gi, "ci": m.ci,
                            "profile": m.profile, "gi_cap": m.gi_cap, "ci_cap": m.ci_cap,
                            "type": t, "files": list(m.files)})
    from . import jsondoc

    doc = jsondoc.new("report", node, SCHEMA_VERSION)
    jsondoc.set_status(doc, "ok")
    doc["ok"] = None if findings is None else not findings
    doc.update({
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hardware": hardware, "backend": inv.backend,
        "gpus": [{"minor": g.minor, "name": g.name, "mig_current": g.mig_current,
                  "mig_pending_mode": g.mig_pending, "bus_id": g.bus_id, "uuid": g.uuid,
                  "lost": g.lost} for g in inv.gpus],
        "devices": devices,
        "findings": findings,
    })
    return doc


def dumps(report: Dict[str, Any]) -> str:
    return json.dumps(report, separators=(",", ":"), sort_keys=True)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ConfigError(f"not a migsync report: {what}")


def validate(doc: Any) -> Dict[str, Any]:
    """Check a parsed report; raise ConfigError saying what is wrong."""
    _need(isinstance(doc, dict), "not a JSON object")
    _need(doc.get("schema") == SCHEMA, f"schema is {doc.get('schema')!r}, want {SCHEMA!r}")
    v = doc.get("schema_version")
    _need(isinstance(v, int) and not isinstance(v, bool), "schema_version missing")
    _need(v <= SCHEMA_VERSION, f"schema_version {str(v)[:12]} is newer than this migsync "
                               f"understands ({SCHEMA_VERSION}); upgrade migsync on the controller")
    _need(v >= 1, f"schema_version {str(v)[:12]} is not a version (they start at 1)")
    _need(isinstance(doc.get("node"), str) and bool(doc["node"].strip()), "node missing")
    _need(isinstance(doc.get("gpus"), list) and isinstance(doc.get("devices"), list),
          "gpus/devices missing")
    for d in doc["devices"]:
        _need(isinstance(d, dict) and d.get("kind") in ("gpu", "mig")
              and isinstance(d.get("minor"), int), f"bad device entry {str(d)[:60]}")
        if d["kind"] == "mig":
            for k in ("gi", "ci", "gi_cap", "ci_cap"):
                _need(isinstance(d.get(k), int), f"MIG device without {k}")
        _need(d.get("type") is None or isinstance(d["type"], str), "type must be a string")
    lost = [g for g in doc["gpus"] if isinstance(g, dict) and g.get("lost")]
    _need(not lost, f"GPU {lost[0].get('minor') if lost else ''} was lost when the report was "
                    "made; fix the node and report again")
    return doc


def to_inventory(doc: Dict[str, Any]) -> Tuple[Inventory, Dict[DeviceKey, Optional[str]]]:
    inv = Inventory(backend=doc.get("backend", ""))
    for g in doc["gpus"]:
        inv.gpus.append(Gpu(g["minor"], None, g.get("bus_id"), g.get("uuid"), g.get("name"),
                            g.get("mig_current"),
                            g.get("mig_pending_mode", g.get("mig_pending"))))  # version 1 name
    types: Dict[DeviceKey, Optional[str]] = {}
    for d in doc["devices"]:
        if d["kind"] == "gpu":
            types[("gpu", d["minor"])] = d.get("type")
            if inv.gpu(d["minor"]) is None:
                inv.gpus.append(Gpu(d["minor"], mig_current=False))
        else:
            m = MigDevice(d["minor"], d["gi"], d["ci"], d.get("profile"), d["gi_cap"], d["ci_cap"])
            inv.migs.append(m)
            inv.gi_caps[(m.parent_minor, m.gi)] = m.gi_cap
            inv.cap_table[m.gi_cap] = (m.parent_minor, m.gi, None)
            inv.cap_table[m.ci_cap] = m.key
            types[("mig",) + m.key] = d.get("type")
    return inv, types


def layout_key(doc: Dict[str, Any]) -> str:
    """What makes two nodes' gres.conf lines identical: devices and types, not UUIDs or buses."""
    devices = [{k: v for k, v in d.items() if k != "files"} for d in doc["devices"]]
    gpus = sorted((g["minor"], g.get("name") or "", bool(g.get("mig_current"))) for g in doc["gpus"])
    return json.dumps({"devices": devices, "gpus": gpus}, sort_keys=True)
