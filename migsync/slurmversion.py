"""Which Slurm release's gres.conf rules apply: detected from the installed slurmd, or set.

Where releases read gres.conf differently (measured with the real slurmd of each, see
README "What check finds"), the rules are keyed by the release series below. A release
between two known ones gets the rules of the older one; anything newer than the newest
known gets the newest rules.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Optional, Tuple

from .errors import ConfigError, MigsyncError

KNOWN = ("22.05", "24.11", "26.05")  # release series whose slurmd was measured
NEWEST = KNOWN[-1]
_DIGITS = "0123456789"


def _search(text: str) -> Optional[str]:
    """The first "NN.NN" in ``text`` (two ASCII digits, a dot, two digits), as "NN.NN". A
    loop, not a regex: `re` costs ~3 ms at start-up, and a Prolog pays start-up per job."""
    dot = text.find(".")
    while dot >= 0:
        major, minor = text[dot - 2:dot] if dot >= 2 else "", text[dot + 1:dot + 3]
        if (len(major) == 2 and len(minor) == 2
                and all(c in _DIGITS for c in major + minor)):
            return f"{major}.{minor}"
        dot = text.find(".", dot + 1)
    return None


def _key(series: str) -> Tuple[int, int]:
    major, minor = series.split(".")
    return int(major), int(minor)


def parse(text: str, where: str = "--slurm-version") -> str:
    """'24.11', '24.11.5', 'slurm 24.11.5', 'slurm-wlm 22.05.8' -> the release series."""
    series = _search(text or "")
    if not series:
        raise ConfigError(f"not a Slurm version: {text!r} (want e.g. 24.11)", path=where)
    return series


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


def running_slurmd(proc: str = "/proc", pid: Optional[int] = None) -> Optional[str]:
    """The slurmd this run descends from, by its binary's path: slurmd starts the health
    check and the Prolog (slurmstepd does with PrologFlags=RunInJob; slurmd is then the
    binary beside it). That is the very Slurm whose gres.conf rules apply, wherever it is
    installed: /opt/slurm/sbin or /usr/local/sbin are not on root's fixed PATH. None when
    no ancestor is slurmd/slurmstepd, /proc cannot say, or the binary is gone (upgraded
    under the running daemon) or not root's own (see settings.check_trusted_file)."""
    from .settings import check_trusted_file

    pid = os.getppid() if pid is None else pid
    for _ in range(32):  # a hook is a few levels below slurmd; a loop in a fake tree ends
        if pid <= 1:
            return None
        try:
            with open(f"{proc}/{pid}/stat", "rb") as fh:
                stat = fh.read(4096).decode("utf-8", "replace")
        except OSError:
            return None
        # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so the last ')'
        comm, after = stat[stat.find("(") + 1:stat.rfind(")")], stat[stat.rfind(")") + 1:].split()
        if comm in ("slurmd", "slurmstepd"):
            try:
                exe = os.readlink(f"{proc}/{pid}/exe")
            except OSError:
                return None
            if comm == "slurmstepd":
                exe = os.path.join(os.path.dirname(exe), "slurmd")
            if not (os.path.isabs(exe) and os.path.isfile(exe) and os.access(exe, os.X_OK)):
                return None  # "/usr/sbin/slurmd (deleted)": replaced since it started
            try:
                check_trusted_file(exe, "slurmd")
            except ConfigError:
                return None
            return exe
        if len(after) < 2 or not after[1].isdigit():
            return None
        pid = int(after[1])
    return None


def slurmd_identity() -> Tuple[str, str]:
    """(path, identity) of the slurmd `detect` runs: the running slurmd this run descends
    from, else the one on root's fixed PATH; identity is '' when there is none. The
    identity (device, inode, size, mtime) changes when the binary is upgraded or replaced."""
    from .runner import lookup

    path = running_slurmd() or lookup("slurmd")
    if path is None:
        return "slurmd", ""
    try:
        st = os.stat(path)
    except OSError:
        return path, ""
    return path, f"{path}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def detect(timeout: float = 5.0, memo: Optional[dict] = None) -> Tuple[Optional[str], str, str]:
    """(series, how, slurmd identity) of the installed Slurm: `slurmd -V`, else the
    Debian/RPM package. ``memo`` is an earlier answer ({"slurmd": identity, "series": ...},
    kept in the state cache): while slurmd is the very same file, its version is too, so a
    Prolog that must check again does not start slurmd (milliseconds per start, more on a
    busy node). The identity is '' unless the answer came from `slurmd -V`."""
    return ask(timeout, memo).answer()


class Asked:
    """A version question under way: `slurmd -V` runs while the caller starts other
    commands (nodecheck: nvidia-smi), answer() waits for it; the package managers are asked
    only after it failed. cancel() kills it when the caller gives up."""

    __slots__ = ("known", "batch", "ident", "timeout")

    def __init__(self, known: Optional[Tuple[Optional[str], str, str]] = None, batch: Any = None,
                 ident: str = "", timeout: float = 5.0) -> None:
        self.known = known  # the answer, when no process is needed
        self.batch = batch  # the running `slurmd -V`, or None when it could not start
        self.ident = ident
        self.timeout = timeout

    def answer(self) -> Tuple[Optional[str], str, str]:
        from . import runner

        if self.known is not None:
            return self.known
        if self.batch is not None:
            try:
                (res,) = self.batch.collect()
            except MigsyncError:  # a timeout: try the packages
                res = None
            if res is not None and res.returncode == 0:
                series = _search(res.stdout)
                if series:
                    return series, "slurmd -V", self.ident
        for how, argv in (("dpkg-query", ["dpkg-query", "-W", "-f", "${Version}", "slurmd"]),
                          ("rpm", ["rpm", "-q", "--qf", "%{VERSION}", "slurm-slurmd"])):
            try:
                res = runner.run(argv, timeout=self.timeout)
            except MigsyncError:  # a missing program or a timeout: try the next probe
                continue
            if getattr(res, "returncode", 1) != 0:
                continue
            series = _search(getattr(res, "stdout", "") or "")
            if series:
                return series, how, ""
        return None, "not found", ""

    def cancel(self) -> None:
        if self.batch is not None:
            self.batch.kill()


def ask(timeout: float = 5.0, memo: Optional[dict] = None) -> Asked:
    """Start `slurmd -V` (unless ``memo`` answers, see detect) and return at once."""
    from . import runner

    path, ident = slurmd_identity()
    if (ident and isinstance(memo, dict) and memo.get("slurmd") == ident
            and isinstance(memo.get("series"), str) and _search(memo["series"]) == memo["series"]):
        return Asked((memo["series"], "slurmd -V", ident))
    try:
        batch = runner.start_all([[path, "-V"]], timeout)
    except MigsyncError:  # no slurmd, or no time left: the packages may still say
        batch = None
    return Asked(None, batch, ident, timeout)
