"""Files root writes: the state directory, private files, and atomic replacement.

migsync runs as root, often in directories other accounts can write (a Prometheus textfile
directory, a group-writable /etc/slurm). Nothing here follows a symlink, chmods by path, uses
a predictable name or creates a missing parent silently.
"""
from __future__ import annotations

import os
import stat
import time
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Optional, Tuple

from .errors import ConfigError

# Lock, Prolog cache and node map live here: created 0755 by root, writable by root only.
STATE_DIR = "/run/migsync"
# Who may own what root trusts: root (and, for an unprivileged test or demo run, the user
# running migsync: then nothing it writes is anyone else's business).
_GROUP_OTHER_WRITE = stat.S_IWGRP | stat.S_IWOTH


class UnsafePathError(ConfigError):
    """A path root would write through or trust is not safe (symlink, foreign owner, shared
    directory)."""


def trusted_owner(uid: int) -> bool:
    return uid == 0 or uid == os.geteuid()


def check_private_dir(directory: str, what: str = "directory") -> None:
    """lstat ``directory``: a real directory, owned by root, not writable by group or other."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise UnsafePathError(f"{what} does not exist (migsync does not create it)",
                              path=directory) from None
    except OSError as exc:
        raise UnsafePathError(f"{what}: cannot stat: {exc.strerror or exc}", path=directory) from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{what} is a symlink: refused", path=directory)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{what} is not a directory", path=directory)
    if not trusted_owner(st.st_uid):
        raise UnsafePathError(f"{what} is owned by uid {st.st_uid}, not root: refused",
                              path=directory)
    if st.st_mode & _GROUP_OTHER_WRITE:
        raise UnsafePathError(f"{what} is writable by group or other (mode "
                              f"{stat.S_IMODE(st.st_mode):04o}): refused", path=directory)


def state_dir(directory: str = STATE_DIR) -> str:
    """THE state directory helper (lock, Prolog cache, TaskProlog node map): the default one is
    created 0755 whatever the umask (its parent, e.g. /run, must exist); any directory is then
    lstat-checked (root-owned, not group/other-writable, not a symlink). Returns it."""
    directory = os.path.abspath(directory)
    if directory == STATE_DIR and not os.path.lexists(directory):
        try:
            os.mkdir(directory, 0o700)  # the umask can only narrow 0700; widened below
        except FileExistsError:
            pass
        except OSError as exc:
            raise UnsafePathError(f"cannot create the state directory: {exc.strerror or exc}",
                                  path=directory) from None
        else:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchmod(fd, 0o755)
            finally:
                os.close(fd)
    check_private_dir(directory, "state directory")
    return directory


def head_is_ours(data: bytes, starts: Tuple[bytes, ...]) -> bool:
    """Whether a file's first bytes are one of migsync's own formats (or it is empty)."""
    return not data or any(data.lstrip().startswith(s) for s in starts)


def _refuse_foreign(fd: int, path: str, what: str, starts: Tuple[bytes, ...]) -> None:
    """A lock, cache or metrics path that names someone else's file (lock_file =
    "/etc/slurm/slurm.conf", cache_file = "/etc/passwd": a typo) was truncated, chmod'ed and
    replaced without a backup. Only a file that is empty or in migsync's own format is."""
    if not head_is_ours(os.pread(fd, 256, 0), starts):
        raise UnsafePathError(f"exists and is not migsync's {what}: refused (it would be "
                              "overwritten)", path=path)


def open_private(path: str, flags: int, mode: int = 0o600,
                 ours: Optional[Tuple[str, Tuple[bytes, ...]]] = None) -> int:
    """Open a file in a checked directory without following a symlink; the descriptor is
    checked (regular file, owned by root; with ``ours`` = (what, first bytes), empty or in
    that format) and its mode set with fchmod."""
    state_dir(os.path.dirname(os.path.abspath(path)))
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        raise UnsafePathError(f"cannot open: {exc.strerror or exc}"
                              + (" (a symlink?)" if os.path.islink(path) else ""),
                              path=path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not trusted_owner(st.st_uid):
            raise UnsafePathError("not a regular file owned by root: refused", path=path)
        if ours is not None:
            _refuse_foreign(fd, path, *ours)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_write_dir(directory: str, allow_shared: bool, warn=None) -> None:
    """A directory root writes a file into must exist, not be a symlink, and be writable by
    root only, unless ``allow_shared`` (then ``warn`` is told)."""
    try:
        check_private_dir(directory)
    except UnsafePathError as exc:
        if not allow_shared or "does not exist" in exc.message or "not a directory" in exc.message:
            raise UnsafePathError(exc.message + ("" if "does not exist" in exc.message else
                                                 " (allow_shared_dirs = true to write anyway)"),
                                  path=directory) from None
        if warn is not None:
            warn(f"{directory}: {exc.message.replace(': refused', '')}; writing anyway "
                 "(allow_shared_dirs = true)")


def atomic_write(path: str, data: str, mode: int = 0o644, backup: bool = False,
                 allow_shared: bool = False, warn=None,
                 ours: Optional[Tuple[str, Tuple[bytes, ...]]] = None) -> Optional[str]:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half of one.

    The directory must exist and be root's alone (``allow_shared`` overrides, with ``warn``);
    ``path`` must not be a symlink. With ``backup`` the previous file is kept under an
    unpredictable name (``path.bak-<time>-<random>``, a hard link: nothing is copied or
    followed); its name is returned.
    """
    directory = os.path.dirname(os.path.abspath(path)) or "."
    check_write_dir(directory, allow_shared, warn)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", path=path) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UnsafePathError("exists and is not a regular file (a symlink?): refused to "
                              "write", path=path)
    if st is not None and ours is not None:  # state and metrics: only ever our own file
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigError(f"cannot write: {exc.strerror or exc}", path=path) from None
        try:
            _refuse_foreign(fd, path, *ours)
        finally:
            os.close(fd)
    try:
        fd, tmp = _create_temp(directory, os.path.basename(path))
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", path=path) from None
    saved = None
    try:
        os.fchmod(fd, mode)  # on the descriptor: a swapped-in symlink cannot redirect it
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if backup and st is not None:
            saved = f"{path}.bak-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(4).hex()}"
            os.link(path, saved, follow_symlinks=False)  # EEXIST, never a write through a link
        os.replace(tmp, path)
        tmp = ""
        try:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", path=path) from None
    finally:
        if tmp and os.path.lexists(tmp):
            os.unlink(tmp)
    return saved


def _create_temp(directory: str, name: str):
    """A new file of our own beside the target, as tempfile.mkstemp makes it (O_EXCL, 0600),
    without importing tempfile (random, hashlib...: ~3 ms for a Prolog that saves its cache)."""
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                           0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: no free temporary name")
