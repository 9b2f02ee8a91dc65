"""One run at a time: Prolog and HealthCheck can overlap. flock, waited for a bounded time."""
from __future__ import annotations

import fcntl
import os
import time

from .errors import BusyError, ConfigError


class RunLock:
    def __init__(self, path: str, wait: float):
        self.path = path
        self.wait = wait
        self.fd = -1

    def __enter__(self) -> "RunLock":
        if not self.path:
            return self
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open the lock file: {exc.strerror or exc} (run as root, "
                              "or set lock_file / --lock-file)", path=self.path) from None
        end = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.ftruncate(self.fd, 0)
                os.write(self.fd, f"{os.getpid()}\n".encode())
                return self
            except BlockingIOError:
                if time.monotonic() >= end:
                    holder = ""
                    try:
                        holder = os.pread(self.fd, 32, 0).decode().strip()
                    except OSError:
                        pass
                    os.close(self.fd)
                    self.fd = -1
                    raise BusyError(f"another migsync run (pid {holder or '?'}) holds {self.path}; "
                                    f"waited {self.wait:.0f}s") from None
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the flock
            self.fd = -1
