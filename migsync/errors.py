"""Typed errors. The CLI turns each into a one-line message and an exit code (cli.main)."""
from __future__ import annotations

# Exit codes, documented in the README. Decided in one place: cli.main.
EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_CONFIG = 2
EXIT_DISCOVERY = 3
EXIT_BUSY = 4
EXIT_SLURM = 5
EXIT_INTERNAL = 70
EXIT_OUTPUT = 74  # stdout closed, broken or full


class MigsyncError(Exception):
    """Base class for every expected failure."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 fragment: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.fragment = fragment

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        frag = ""
        if self.fragment is not None:
            # Short: the fragment may come from a root-only file and this line goes to syslog.
            shown = self.fragment if len(self.fragment) <= 80 else self.fragment[:77] + "..."
            frag = f" (in {shown!r})"
        return f"{where}{self.message}{frag}"


class OutputError(MigsyncError):
    """stdout could not be written (closed, a full disk, a broken pipe)."""

    exit_code = EXIT_OUTPUT


class ConfigError(MigsyncError):
    """A configuration file (gres.conf, slurm.conf, migsync.toml) is missing or invalid."""

    exit_code = EXIT_CONFIG


class UsageError(ConfigError):
    """The command line is invalid."""


class HostlistError(ConfigError):
    """A Slurm hostlist expression is malformed."""


class DiscoveryError(MigsyncError):
    """The node's GPUs could not be discovered (driver gone, NVML error, nvidia-smi failed)."""

    exit_code = EXIT_DISCOVERY


class BusyError(MigsyncError):
    """Another migsync run holds the lock for longer than we may wait."""

    exit_code = EXIT_BUSY


class SlurmError(MigsyncError):
    """Slurm could not be queried or updated (scontrol failed, timed out, refused)."""

    exit_code = EXIT_SLURM


class Terminated(BaseException):
    """SIGTERM arrived (slurmd's 60 s kill, systemd stop). A BaseException, so that only
    cli.main catches it; the finally blocks on the way kill child process groups and remove
    temp files."""


class CommandError(MigsyncError):
    """An external command failed or timed out; callers rewrap it with context."""

    def __init__(self, message: str, *, argv=None, returncode=None, timed_out=False, stderr=""):
        super().__init__(message)
        self.argv = argv
        self.returncode = returncode
        self.timed_out = timed_out
        self.stderr = stderr
