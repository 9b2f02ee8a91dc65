"""What to do to the node: drain, resume, or leave it. Pure: NHC's etiquette as a function."""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import List, Optional, Sequence

from .model import FINDING_IDS, Finding
from .record import Record

if TYPE_CHECKING:  # pragma: no cover
    from .slurmctl import NodeStatus

MAX_REASON = 200


class Decision(Record):
    __slots__ = ("action", "reason", "why")

    def __init__(self, action: str, reason: str = "", why: str = "") -> None:
        self.action = action
        self.reason = reason  # the drain reason to set
        self.why = why  # one line for the log


def _clean(text: str) -> str:
    """One line of printable ASCII without double quotes (sanitize.reason_text): the
    reason is shown to every user by `sinfo -R`, and must read back exactly as written."""
    from .sanitize import reason_text

    return reason_text(text, MAX_REASON)


def reason_for_findings(prefix: str, findings: Sequence[Finding]) -> str:
    """'migsync: stale cap535 +1 [stale-cap] gres.conf:3: /dev/...' — the key fact in 20 chars."""
    rank = {fid: i for i, fid in enumerate(FINDING_IDS)}
    first = min(findings, key=lambda f: rank.get(f.id, len(rank)))
    more = f" +{len(findings) - 1}" if len(findings) > 1 else ""
    text = f"{prefix} {first.short}{more} [{first.id}] {first.message}"
    return _clean(text)


def reason_for_discovery(prefix: str, message: str) -> str:
    return _clean(f"{prefix} no GPU info [discovery] {message}")


def is_ours(status: "NodeStatus", prefix: str) -> bool:
    return status.reason.startswith(prefix)


def decide(status: "NodeStatus", problem: Optional[str], prefix: str, drain: bool = True,
           resume: bool = True) -> Decision:
    """``problem`` is the drain reason when the node is bad, None when it is consistent."""
    if status.down:
        return Decision("none", why=f"node is {'+'.join(sorted(status.states))}: left alone")
    if problem is not None:
        if not drain:
            return Decision("none", why="mismatch, but draining is disabled (drain = false)")
        if status.drained:
            if not is_ours(status, prefix):
                return Decision("none", why=f"already drained by someone else; their reason is "
                                            f"kept: {status.reason!r}")
            if status.reason == problem:
                return Decision("none", why="already drained by migsync for the same findings")
            return Decision("drain", problem, "findings changed: updating migsync's reason")
        return Decision("drain", problem, "draining")
    if status.drained and is_ours(status, prefix):
        if not resume:
            return Decision("none", why="consistent again, but resume = false: left drained")
        if status.invalid_reg:
            return Decision("none", why="consistent, but Slurm holds the node INVALID_REG "
                                        "(fix slurm.conf Gres= and restart slurmd)")
        return Decision("resume", why="consistent again: resuming the node migsync drained")
    if status.drained:
        return Decision("none", why=f"consistent; node drained by someone else "
                                    f"({status.reason!r}): not resumed")
    return Decision("none", why="consistent")


def summary(findings: List[Finding]) -> str:
    return "; ".join(f"{f.id}: {f.message}" for f in findings)
