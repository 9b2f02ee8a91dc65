"""One run at a time: Prolog and HealthCheck can overlap. flock, waited for a bounded time.

The lock file lives in the root-only state directory, is opened without following symlinks
and is 0600, so no other account can open it, let alone hold it (flock works on a read-only
descriptor: a 0644 lock could be held by anyone to switch migsync off).
"""
from __future__ import annotations

import fcntl
import os
import time

from .errors import BusyError, ConfigError
from .fsutil import open_private


class RunLock:
    def __init__(self, path: str, wait: float):
        self.path = path
        self.wait = wait
        self.fd = -1

    def __enter__(self) -> "RunLock":
        if not self.path:
            return self
        try:
            # a lock file holds nothing or the holder's pid: anything else is not ours
            self.fd = open_private(self.path, os.O_RDWR | os.O_CREAT, 0o600,
                                   ours=("lock file", tuple(b"0123456789"[i:i + 1]
                                                            for i in range(10))))
        except ConfigError as exc:
            raise type(exc)(f"cannot open the lock file {self.path}: {exc.message}",
                            path=exc.path) from None
        end = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                try:  # the pid only names the holder for a waiting run's message
                    os.ftruncate(self.fd, 0)
                    os.write(self.fd, f"{os.getpid()}\n".encode())
                except OSError:
                    pass  # a full /run (ENOSPC) must not turn a held lock into exit 70
                return self
            except BlockingIOError:
                if time.monotonic() >= end:
                    holder = ""
                    try:
                        holder = os.pread(self.fd, 16, 0).decode("ascii", "replace").strip()
                    except OSError:
                        pass
                    os.close(self.fd)
                    self.fd = -1
                    holder = holder if holder.isdigit() else "?"
                    raise BusyError(f"another migsync run (pid {holder}) holds {self.path}; "
                                    f"waited {self.wait:.0f}s") from None
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the flock
            self.fd = -1
