"""Where hook runs report: stderr always, syslog when asked (slurmd logs hook output only on failure)."""
from __future__ import annotations

import sys


class Log:
    def __init__(self, use_syslog: bool, ident: str = "migsync", echo: bool = True):
        self.echo = echo
        self._syslog = None
        if use_syslog:
            try:
                import syslog
                syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_DAEMON)
                self._syslog = syslog
            except (ImportError, OSError):
                self._syslog = None

    def _emit(self, level: int, text: str) -> None:
        from .sanitize import clean

        text = clean(text, 2000)  # one line: no forged second line, no terminal escapes
        if self.echo:
            try:
                sys.stderr.write(f"migsync: {text}\n")
            except (OSError, ValueError):
                pass  # stderr closed or full: syslog still gets it
        if self._syslog is not None:
            try:
                self._syslog.syslog(level, text)
            except OSError:
                pass

    def info(self, text: str) -> None:
        self._emit(6, text)

    def warning(self, text: str) -> None:
        self._emit(4, text)

    def error(self, text: str) -> None:
        self._emit(3, text)
