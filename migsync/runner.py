"""The one subprocess helper: a timeout that kills the whole process group, and a run deadline."""
from __future__ import annotations

import os
import time
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence

from .errors import CommandError

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# What one command may print (stdout and stderr together). The largest real answer is a few
# KB (nvidia-smi -L on 8 GPUs x 7 MIG devices, scontrol --json show node): a broken command
# that prints without end (1.5 GB in 3 s, measured) must not fill a GPU node's memory.
MAX_OUTPUT = 16 << 20


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
# Process groups started and not reaped yet. SIGTERM unwinds the run by an exception, which can
# land after a child is spawned and before a Batch (or its caller) holds it: kill_all() then
# still finds the child.
_live: set = set()


def set_deadline(deadline: Optional[Deadline]) -> None:
    global _deadline
    _deadline = deadline


class Result:
    __slots__ = ("argv", "returncode", "stdout", "stderr")

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


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
    return start_all(argvs, timeout, env).collect(check)


class _Child:
    __slots__ = ("argv", "pid", "status", "out_fd", "err_fd", "chunks", "open", "size")

    def __init__(self, argv: Sequence[str], pid: int, out_fd: int, err_fd: int) -> None:
        self.argv, self.pid, self.status, self.size = argv, pid, None, 0
        self.out_fd, self.err_fd = out_fd, err_fd
        self.chunks: Dict[int, List[bytes]] = {out_fd: [], err_fd: []}
        self.open = {out_fd, err_fd}  # pipe ends not yet closed

    def text(self, fd: int) -> str:
        return b"".join(self.chunks[fd]).decode("utf-8", "replace")

    def close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            os.close(fd)


class Batch:
    """Commands started together: read while they run (the caller can do its own work
    meanwhile), then collected, or killed with their process groups."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.end = time.monotonic() + timeout
        self.children: List[_Child] = []

    def collect(self, check: bool = False) -> List[Result]:
        try:
            self._drain()
            results = []
            for c in self.children:
                res = Result(c.argv, os.waitstatus_to_exitcode(c.status), c.text(c.out_fd),
                             c.text(c.err_fd))
                if check and res.returncode != 0:
                    raise CommandError(f"{os.path.basename(c.argv[0])} exited {res.returncode}: "
                                       f"{first_line(res.stderr or res.stdout)}", argv=c.argv,
                                       returncode=res.returncode, stderr=res.stderr)
                results.append(res)
            return results
        finally:
            self.kill()

    def _drain(self) -> None:
        """Read every pipe to its end and reap every child, within the shared timeout."""
        import select

        poller = select.poll()
        owner = {}
        for c in self.children:
            for fd in c.open:
                poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
                owner[fd] = c
        while owner:
            left = self.end - time.monotonic()
            if left <= 0:
                self._timed_out()
            for fd, _ev in poller.poll(left * 1000):
                chunk = os.read(fd, 65536)
                if chunk:
                    c = owner[fd]
                    c.chunks[fd].append(chunk)
                    c.size += len(chunk)
                    if c.size > MAX_OUTPUT:  # collect() kills it on the way out
                        raise CommandError(f"{os.path.basename(c.argv[0])} printed more than "
                                           f"{MAX_OUTPUT >> 20} MiB: stopped", argv=c.argv)
                else:
                    poller.unregister(fd)
                    owner.pop(fd).close(fd)
        for c in self.children:  # pipes closed: the child has exited or is about to
            while c.status is None:
                pid, status = os.waitpid(c.pid, os.WNOHANG)
                if pid:
                    c.status = status
                    _live.discard(c.pid)
                elif time.monotonic() >= self.end:
                    self._timed_out()
                else:
                    time.sleep(0.0005)

    def _timed_out(self) -> None:
        c = next((c for c in self.children if c.status is None), self.children[0])
        raise CommandError(f"{os.path.basename(c.argv[0])} timed out after {self.timeout:.1f}s",
                           argv=c.argv, timed_out=True)

    def kill(self) -> None:
        """SIGKILL every group still running and reap it; close what is still open."""
        for c in self.children:
            for fd in list(c.open):
                c.close(fd)
            if c.status is None:
                c.status = _kill_group(c.pid)


def _kill_group(pid: int) -> int:
    """SIGKILL the process group ``pid`` leads and reap its leader; its wait status."""
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        status = os.waitpid(pid, 0)[1]
    except ChildProcessError:
        status = 0
    _live.discard(pid)
    return status


def kill_all() -> None:
    """Kill every process group this run started and has not reaped (SIGTERM's unwinding)."""
    for pid in list(_live):
        _kill_group(pid)


def start_all(argvs: Sequence[Sequence[str]], timeout: float = 10.0,
              env: Optional[Dict[str, str]] = None) -> Batch:
    """Start each command in a new session (its own process group), stdin from /dev/null.

    posix_spawn, not subprocess: importing subprocess costs more than the spawns themselves.
    """
    if _deadline is not None:
        timeout = _deadline.clamp(timeout)
        if timeout <= 0:
            raise CommandError(f"{os.path.basename(argvs[0][0])}: no time left before the run "
                               "deadline", argv=argvs[0], timed_out=True)
    full_env = {"PATH": SAFE_PATH, "LC_ALL": "C"}
    if env:
        full_env.update(env)
    batch = Batch(timeout)
    try:
        for argv in argvs:
            batch.children.append(_spawn(list(argv), full_env))
    except BaseException:
        batch.kill()
        raise
    return batch


def lookup(name: str, search: str = SAFE_PATH) -> Optional[str]:
    """The program ``run([name, ...])`` starts: as subprocess does, the first executable
    ``name`` in the child's PATH (SAFE_PATH unless env says otherwise), None when there is
    none; a name with a '/' is itself."""
    if os.sep in name:
        return name
    for d in search.split(os.pathsep):
        if os.path.isabs(d) and os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return None


def _spawn(argv: List[str], env: Dict[str, str]) -> _Child:
    try:  # _signal: without the enum module `signal` wraps it in (~2 ms)
        import _signal as sig
    except ImportError:  # pragma: no cover - other Pythons
        import signal as sig
    path = lookup(argv[0], env.get("PATH", ""))
    if path is None:
        # never fall back to the bare name: posix_spawn would run it from the working
        # directory (root running `migsync check` in /tmp must not start /tmp/slurmd)
        raise CommandError(f"cannot run {argv[0]}: not found in {env.get('PATH', '')}",
                           argv=argv)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    # SIGTERM (and SIGHUP, SIGINT) waits until the child is in _live: its handler raises, and
    # raised right after posix_spawn returned it would lose the pid (the child, a new
    # session, would live on).
    # The child gets the mask the run had before (setsigmask).
    held = sig.pthread_sigmask(sig.SIG_BLOCK, (sig.SIGTERM, sig.SIGHUP, sig.SIGINT))
    try:
        pid = os.posix_spawn(path, argv, env, setsid=True, setsigmask=held, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2)])
        _live.add(pid)
    except OSError as exc:
        os.close(out_r)
        os.close(err_r)
        raise CommandError(f"cannot run {argv[0]}: {exc.strerror or exc}", argv=argv) from None
    finally:
        os.close(out_w)
        os.close(err_w)
        os.close(null)
        sig.pthread_sigmask(sig.SIG_SETMASK, held)  # a SIGTERM that came meanwhile: now
    return _Child(argv, pid, out_r, err_r)


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
