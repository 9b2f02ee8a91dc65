"""The one subprocess helper: a timeout that kills the whole process group, and a run deadline."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .errors import CommandError

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class Deadline:
    """Wall-clock budget for one migsync run; every command gets at most what is left."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def clamp(self, timeout: float) -> float:
        return min(timeout, self.remaining())


_deadline: Optional[Deadline] = None


def set_deadline(deadline: Optional[Deadline]) -> None:
    global _deadline
    _deadline = deadline


@dataclass
class Result:
    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str


def run(argv: Sequence[str], timeout: float = 10.0, env: Optional[Dict[str, str]] = None,
        check: bool = False) -> Result:
    """Run ``argv`` in a new session; on timeout SIGKILL its whole process group."""
    return run_all([argv], timeout, env, check)[0]


def run_all(argvs: Sequence[Sequence[str]], timeout: float = 10.0,
            env: Optional[Dict[str, str]] = None, check: bool = False) -> List[Result]:
    """Start every command at once (their start-up overlaps), then collect them in order.

    All share one timeout; when it passes, or anything fails, every group still running is
    killed.
    """
    if _deadline is not None:
        timeout = _deadline.clamp(timeout)
        if timeout <= 0:
            raise CommandError(f"{os.path.basename(argvs[0][0])}: no time left before the run "
                               "deadline", argv=argvs[0], timed_out=True)
    import subprocess  # ~1.5 ms: only paid by runs that start a command

    full_env = {"PATH": SAFE_PATH, "LC_ALL": "C"}
    if env:
        full_env.update(env)
    procs = []
    end = time.monotonic() + timeout
    try:
        for argv in argvs:
            try:
                procs.append((argv, subprocess.Popen(
                    list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, start_new_session=True, env=full_env)))
            except OSError as exc:
                raise CommandError(f"cannot run {argv[0]}: {exc.strerror or exc}",
                                   argv=argv) from None
        results = []
        for argv, proc in procs:
            try:
                out, err = proc.communicate(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise CommandError(f"{os.path.basename(argv[0])} timed out after "
                                   f"{timeout:.1f}s", argv=argv, timed_out=True) from None
            res = Result(argv, proc.returncode, out.decode("utf-8", "replace"),
                         err.decode("utf-8", "replace"))
            if check and res.returncode != 0:
                raise CommandError(f"{os.path.basename(argv[0])} exited {res.returncode}: "
                                   f"{first_line(res.stderr or res.stdout)}", argv=argv,
                                   returncode=res.returncode, stderr=res.stderr)
            results.append(res)
        return results
    finally:
        for _, proc in procs:
            if proc.returncode is None:
                _kill_group(proc)


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    import subprocess

    try:
        proc.communicate(timeout=2)
    except (subprocess.TimeoutExpired, ValueError):
        pass


def first_line(text: str, limit: int = 200) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return "(no output)"


def find_program(name: str, explicit: Optional[str] = None,
                 extra_dirs: Sequence[str] = ()) -> Optional[str]:
    """Resolve a program once, to an absolute path: explicit, then the search path.

    Under root the search path is fixed (SAFE_PATH): an inherited PATH (with '.', or a
    user's directory) must not choose what root runs; a binary elsewhere is named by a
    setting. A binary root runs must be root's and writable by root only (ConfigError).
    """
    from .settings import check_trusted_file

    if explicit:
        if not os.path.isabs(explicit):
            explicit = os.path.abspath(explicit)
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            return None
        check_trusted_file(explicit, name)
        return explicit
    if os.geteuid() == 0:
        dirs = SAFE_PATH.split(os.pathsep)
    else:
        dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if os.path.isabs(d)]
        dirs += list(extra_dirs) + ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin",
                                    "/bin", "/sbin", "/opt/slurm/bin", "/opt/slurm/sbin"]
    for d in dirs:
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            check_trusted_file(cand, name)
            return cand
    return None
