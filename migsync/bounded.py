"""The one way migsync reads a file it did not write: regular files only, a byte cap, and one
budget per configuration load shared by Include fan-out and hostlist expansion.

A FIFO named as gres.conf (or reached through Include) would block open() forever; /dev/zero
would fill memory; a few KB of `File=/dev/x[0-65535][0-15]` lines would expand to millions of
names. Every config reader (gres.conf, slurm.conf, Include targets, migsync.toml, the Prolog
cache, procfs files) goes through ``read_bytes``.
"""
from __future__ import annotations

import errno
import os
import stat
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Type

MAX_FILE_BYTES = 64 << 20  # per file: far above any real gres.conf/slurm.conf (a 10,000-node
#                            gres.conf is ~1 MB)
MAX_FILES = 256  # files one configuration load may open (Include fan-out)
MAX_NAMES = 1 << 18  # hostlist names one configuration load may expand, all lines together


class Budget:
    """What one configuration load has spent; the paths it read (for the Prolog cache)."""

    def __init__(self, max_files: int = MAX_FILES, max_names: int = MAX_NAMES):
        self.max_files = max_files
        self.max_names = max_names
        self.files = 0
        self.names = 0
        self.paths: List[str] = []


_active: Optional[Budget] = None


class session:
    """``with session() as budget``: open a budget, or join the one already open (an Include
    inside a load, or a caller that wants every path the load read). A class rather than
    @contextmanager: importing contextlib costs ~0.4 ms, paid by every Prolog."""

    def __init__(self, budget: Optional[Budget] = None) -> None:
        self._budget = budget
        self._opened = False

    def __enter__(self) -> Budget:
        global _active
        if _active is None:
            _active = self._budget or Budget()
            self._opened = True
        return _active

    def __exit__(self, *exc) -> None:
        global _active
        if self._opened:
            _active = None
            self._opened = False


def charge_names(n: int, make_error: Callable[[str], Exception]) -> None:
    """Count ``n`` expanded hostlist names against the open budget (none open: no limit)."""
    b = _active
    if b is None:
        return
    b.names += n
    if b.names > b.max_names:
        raise make_error(f"hostlists in this configuration expand to more than {b.max_names} "
                         "names in all")


def read_bytes(path: str, error: Type[Exception], limit: int = MAX_FILE_BYTES,
               what: str = "", charge: bool = True) -> bytes:
    """Read a regular file, at most ``limit`` bytes; ``error(message, path=path)`` otherwise.

    Opened non-blocking so that a FIFO cannot hang the open; the type is checked on the open
    descriptor (fstat), so a file swapped after a check cannot slip through. ``charge=False``
    (procfs) keeps the read out of the configuration budget and its list of paths.
    """
    b = _active if charge else None
    if b is not None:
        b.files += 1
        if b.files > b.max_files:
            raise error(f"more than {b.max_files} files read for one configuration "
                        "(Include fan-out)", path=path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{what}file not found", path=path) from None
    except PermissionError:
        raise error("permission denied", path=path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error("symlink loop", path=path) from None
        raise error(f"cannot open: {exc.strerror or exc}", path=path) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error("is a directory, not a file", path=path)
        if not stat.S_ISREG(st.st_mode):
            raise error("not a regular file (a FIFO, device or socket is never read)", path=path)
        if st.st_size > limit:
            raise error(f"larger than {limit >> 20} MiB: not read", path=path)
        chunks = []
        got = 0
        while True:  # procfs files report size 0: read to EOF, still capped
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            if got > limit:
                raise error(f"larger than {limit >> 20} MiB: not read", path=path)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", path=path) from None
    finally:
        os.close(fd)
    if b is not None:
        b.paths.append(path)
    return b"".join(chunks)
