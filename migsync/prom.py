"""node_exporter textfile-collector metrics, written atomically (no timestamps: node_exporter skips those)."""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, List, Optional

from .fsutil import atomic_write
from .model import FINDING_IDS


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(node: str, ok: Optional[bool], findings: Dict[str, int], devices: Dict[str, int],
           duration: float, now: float, status: str) -> str:
    n = _esc(node)
    out: List[str] = [
        "# HELP migsync_consistent 1 when gres.conf matches the hardware, 0 on a mismatch, -1 when unknown.",
        "# TYPE migsync_consistent gauge",
        f'migsync_consistent{{node="{n}"}} {-1 if ok is None else int(ok)}',
        "# HELP migsync_findings Findings of the last run, per finding id.",
        "# TYPE migsync_findings gauge",
    ]
    for fid in sorted(FINDING_IDS):
        out.append(f'migsync_findings{{node="{n}",id="{fid}"}} {findings.get(fid, 0)}')
    out += ["# HELP migsync_devices Real GPU/MIG devices per type.", "# TYPE migsync_devices gauge"]
    for t, count in sorted(devices.items()):
        out.append(f'migsync_devices{{node="{n}",type="{_esc(t)}"}} {count}')
    out += [
        "# HELP migsync_run_status 1 for the status of the last run (ok, mismatch, config_error, discovery_failed, slurm_error, busy).",
        "# TYPE migsync_run_status gauge",
    ]
    for s in ("ok", "mismatch", "config_error", "discovery_failed", "slurm_error", "busy"):
        out.append(f'migsync_run_status{{node="{n}",status="{s}"}} {int(s == status)}')
    out += [
        "# HELP migsync_run_duration_seconds Wall time of the last run.",
        "# TYPE migsync_run_duration_seconds gauge",
        f'migsync_run_duration_seconds{{node="{n}"}} {duration:.3f}',
        "# HELP migsync_last_run_timestamp_seconds When the last run ended (Unix time).",
        "# TYPE migsync_last_run_timestamp_seconds gauge",
        f'migsync_last_run_timestamp_seconds{{node="{n}"}} {now:.0f}',
    ]
    return "\n".join(out) + "\n"


def write(path: str, text: str, allow_shared: bool = False, warn=None) -> None:
    """node_exporter's textfile directory is often the prometheus user's: refused unless
    allow_shared_dirs (see fsutil.atomic_write)."""
    atomic_write(path, text, 0o644, allow_shared=allow_shared, warn=warn,
                 ours=("metrics file", (b"# HELP migsync_",)))
