"""Which Slurm release's gres.conf rules apply: detected from the installed slurmd, or set.

Where releases read gres.conf differently (measured with the real slurmd of each, see
README "What check finds"), the rules are keyed by the release series below. A release
between two known ones gets the rules of the older one; anything newer than the newest
known gets the newest rules.
"""
from __future__ import annotations

import re
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Optional, Tuple

from .errors import ConfigError, MigsyncError

KNOWN = ("22.05", "24.11", "26.05")  # release series whose slurmd was measured
NEWEST = KNOWN[-1]
_VERSION = re.compile(r"(\d{2})\.(\d{2})(?:\.(\d+))?")


def _key(series: str) -> Tuple[int, int]:
    major, minor = series.split(".")
    return int(major), int(minor)


def parse(text: str, where: str = "--slurm-version") -> str:
    """'24.11', '24.11.5', 'slurm 24.11.5', 'slurm-wlm 22.05.8' -> the release series."""
    m = _VERSION.search(text or "")
    if not m:
        raise ConfigError(f"not a Slurm version: {text!r} (want e.g. 24.11)", path=where)
    return f"{m.group(1)}.{m.group(2)}"


def rules(series: Optional[str]) -> str:
    """The measured release whose gres.conf rules apply to ``series`` (None: the newest)."""
    if not series:
        return NEWEST
    want = _key(series)
    chosen = KNOWN[0]
    for known in KNOWN:
        if _key(known) <= want:
            chosen = known
    return chosen


def detect(timeout: float = 5.0) -> Tuple[Optional[str], str]:
    """(series, how) of the installed Slurm: `slurmd -V`, else the Debian/RPM package."""
    from . import runner

    probes = (("slurmd -V", ["slurmd", "-V"]),
              ("dpkg-query", ["dpkg-query", "-W", "-f", "${Version}", "slurmd"]),
              ("rpm", ["rpm", "-q", "--qf", "%{VERSION}", "slurm-slurmd"]))
    for how, argv in probes:
        try:
            res = runner.run(argv, timeout=timeout)
        except MigsyncError:  # a missing program or a timeout: try the next probe
            continue
        if getattr(res, "returncode", 1) != 0:
            continue
        m = _VERSION.search(getattr(res, "stdout", "") or "")
        if m:
            return f"{m.group(1)}.{m.group(2)}", how
    return None, "not found"
