"""Settings: defaults, /etc/migsync/migsync.toml, then command-line flags. Unknown keys are errors."""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Dict, List

from .errors import ConfigError
from .locate import builtin
from .record import Record

DEFAULT_CONFIG = "/etc/migsync/migsync.toml"


class Settings(Record):
    __slots__ = ("backend", "nvidia_smi", "root", "command_timeout", "deadline", "gres_conf", "slurm_conf", "node", "slurm_version", "ignore", "style", "reason_prefix", "drain", "resume", "drain_on_discovery_failure", "slurm_backend", "scontrol", "prom_file", "lock_file", "lock_wait", "cache_file", "syslog", "prestart_block", "allow_shared_dirs")

    def __init__(self, backend: str = "auto", nvidia_smi: str = "", root: str = "/",
                 command_timeout: float = 10.0, deadline: float = 45.0, gres_conf: str = "",
                 slurm_conf: str = "", node: str = "", slurm_version: str = "",
                 ignore: List[str] = None, style: str = "auto", reason_prefix: str = "migsync:",
                 drain: bool = True, resume: bool = True, drain_on_discovery_failure: bool = True,
                 slurm_backend: str = "auto", scontrol: str = "", prom_file: str = "",
                 lock_file: str = "/run/migsync/lock", lock_wait: float = 10.0,
                 cache_file: str = "/run/migsync/state.json", syslog: bool = True,
                 prestart_block: bool = False, allow_shared_dirs: bool = False) -> None:
        # discovery
        self.backend = backend  # auto | nvml | nvidia-smi
        self.nvidia_smi = nvidia_smi  # path; empty: PATH, then the usual places
        self.root = root  # read /proc and /dev under this directory
        self.command_timeout = command_timeout  # seconds for one nvidia-smi / scontrol call
        self.deadline = deadline  # seconds for a whole run (slurmd kills a health check at 60)
        # configuration files
        self.gres_conf = gres_conf
        self.slurm_conf = slurm_conf
        self.node = node
        self.slurm_version = slurm_version
        # check and emit
        self.ignore = [] if ignore is None else ignore  # finding ids to ignore
        self.style = style  # auto (what the current gres.conf uses) | multiple-files | file
        # acting on the node
        self.reason_prefix = reason_prefix
        self.drain = drain  # healthcheck drains on a mismatch
        self.resume = resume  # resume a node migsync drained once it is consistent
        self.drain_on_discovery_failure = drain_on_discovery_failure
        self.slurm_backend = slurm_backend  # auto | pyslurm | scontrol
        self.scontrol = scontrol  # path; empty: PATH, then the usual places
        self.prom_file = prom_file
        self.lock_file = lock_file  # in the root-only state directory (fsutil.state_dir)
        self.lock_wait = lock_wait
        self.cache_file = cache_file
        self.syslog = syslog
        self.prestart_block = prestart_block  # pre-start hook: fail (stop slurmd) on missing device files
        # write prom_file / merge output into a directory others can write (with a warning)
        self.allow_shared_dirs = allow_shared_dirs


KEYS = frozenset(Settings.__slots__)
PATH_KEYS = ("nvidia_smi", "root", "gres_conf", "slurm_conf", "scontrol", "prom_file",
             "lock_file", "cache_file")
# Seconds: below 1 no nvidia-smi or scontrol answers, so every run would time out and a
# timeout drains the node; above a day the clock arithmetic overflows (and no hook waits so
# long).
MIN_SECONDS, MAX_SECONDS = 1.0, 86400.0


def check_trusted_file(path: str, what: str) -> None:
    """Under root, a file that steers root (the settings, a named binary) must be root's and
    writable by root only, and so must every directory above it: otherwise its owner or
    group could make root run their code, or (owning a directory) rename it away and put
    another root-owned file there, or remove it and so silence migsync."""
    import stat

    if os.geteuid() != 0:
        return
    try:
        st = os.stat(path)
    except OSError:
        return  # the reader reports a missing file in its own words
    if st.st_uid != 0:
        raise ConfigError(f"{what} is owned by uid {st.st_uid}, not root: refused", path=path)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"{what} is writable by group or other (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}): refused", path=path)
    for directory in _directories_above(path):
        try:
            dst = os.stat(directory)
        except OSError:
            continue  # it was there a moment ago (the file's stat passed); nothing to judge
        if dst.st_uid != 0:
            raise ConfigError(f"{what}: its directory {directory} is owned by uid "
                              f"{dst.st_uid}, not root: refused", path=path)
        # a sticky directory (/tmp) lets no other account rename or remove root's entry
        if dst.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not dst.st_mode & stat.S_ISVTX:
            raise ConfigError(f"{what}: its directory {directory} is writable by group or "
                              f"other (mode {stat.S_IMODE(dst.st_mode):04o}): refused",
                              path=path)


def _directories_above(path: str) -> List[str]:
    """Every directory from the file up to '/', along the path as named and along where its
    symlinks lead (either route can be changed by whoever owns a directory on it)."""
    out: List[str] = []
    for start in (os.path.abspath(path), os.path.realpath(path)):
        directory = os.path.dirname(start)
        while directory not in out:
            out.append(directory)
            parent = os.path.dirname(directory)
            if parent == directory:
                break
            directory = parent
    return out


def _load_toml(path: str) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on older Pythons only
        import tomli as tomllib
    from .slurmsyntax import read_text  # the same one-line errors as for Slurm's files

    if path == os.devnull:
        return {}  # "no settings": /dev/null is not a regular file, but it is empty
    check_trusted_file(path, "settings file")
    text = read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=path) from None


def _coerce(path: str, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false", path=path, fragment=f"{key} = {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 <= value < float("inf")):  # NaN fails every comparison
            raise ConfigError(f"{key} must be a non-negative number", path=path,
                              fragment=f"{key} = {value!r}")
        return float(value)
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) and "\x00" not in v
                                                  for v in value):
            raise ConfigError(f"{key} must be a list of strings", path=path,
                              fragment=f"{key} = {value!r}")
        return list(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string", path=path, fragment=f"{key} = {value!r}")
    if "\x00" in value:  # no path or name holds one; os calls would fail with ValueError
        raise ConfigError(f"{key} must not contain a NUL byte", path=path,
                          fragment=f"{key} = {value!r}")
    if key in PATH_KEYS and value and path != "command line" and not os.path.isabs(value):
        # a settings file is read from every working directory (slurmd's spool, /, a shell)
        raise ConfigError(f"{key} must be an absolute path in a settings file (a relative one "
                          "would depend on the directory migsync runs in)", path=path,
                          fragment=f"{key} = {value!r}")
    return value


def apply(settings: Settings, values: Dict[str, Any], source: str) -> None:
    for key, value in values.items():
        if key not in KEYS:
            raise ConfigError(f"unknown key {key!r}", path=source, fragment=key)
        setattr(settings, key, _coerce(source, key, value, getattr(Settings(), key)))
    validate(settings, source)


CHOICES = {"backend": ("auto", "nvml", "nvidia-smi"), "style": ("auto", "multiple-files", "file"),
           "slurm_backend": ("auto", "pyslurm", "scontrol")}


def validate(settings: Settings, source: str) -> None:
    from .model import FINDING_IDS

    for key, allowed in CHOICES.items():
        if getattr(settings, key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}", path=source,
                              fragment=f"{key} = {getattr(settings, key)!r}")
    if settings.slurm_version:
        from . import slurmversion

        slurmversion.parse(settings.slurm_version, source)  # a ConfigError names the value
    for fid in settings.ignore:
        if fid not in FINDING_IDS:
            raise ConfigError(f"ignore: unknown finding id {fid!r}", path=source, fragment=fid)
    validate_harmful(settings, source)


def validate_harmful(settings: Settings, source: str) -> None:
    """Settings that would make migsync do harm are refused, not interpreted."""
    import math

    from .sanitize import node_name_problem, reason_text

    for key in ("command_timeout", "deadline"):
        value = getattr(settings, key)
        if not (isinstance(value, (int, float)) and math.isfinite(value)
                and MIN_SECONDS <= value <= MAX_SECONDS):
            raise ConfigError(f"{key} must be a number of seconds from 1 to 86400 (below 1 "
                              "every run would time out, and a timeout drains the node)",
                              path=source, fragment=f"{key} = {value!r}")
    if not (math.isfinite(settings.lock_wait) and 0 <= settings.lock_wait <= MAX_SECONDS):
        raise ConfigError("lock_wait must be a number of seconds from 0 to 86400",
                          path=source, fragment=f"lock_wait = {settings.lock_wait!r}")
    prefix = settings.reason_prefix
    if not prefix.strip():
        raise ConfigError("reason_prefix must not be empty: every drain reason would look like "
                          "migsync's, and admins' drains would be resumed", path=source,
                          fragment=f"reason_prefix = {prefix!r}")
    if "migsync" not in prefix.lower():
        raise ConfigError("reason_prefix must contain 'migsync': a node drained with a reason "
                          "that starts with the prefix is resumed, so a generic one ('NHC:', "
                          "'m') would resume other people's drains", path=source,
                          fragment=f"reason_prefix = {prefix!r}")
    if reason_text(prefix, 64) != prefix:
        raise ConfigError("reason_prefix must be at most 64 printable ASCII characters without "
                          "double quotes or surrounding spaces (Slurm must read it back "
                          "unchanged)", path=source, fragment=f"reason_prefix = {prefix!r}")
    if settings.node:
        problem = node_name_problem(settings.node)
        if problem:
            raise ConfigError(f"node: {problem}", path=source, fragment=settings.node)
    root = settings.root or "/"
    if not os.path.isdir(root):
        raise ConfigError(f"root {root!r} is not a directory (--root / root: read /proc and "
                          "/dev under it)", path=source, fragment=root)


def load(path: str = "", explicit: bool = False) -> Settings:
    """Defaults, then the config file (a missing default file is fine, a missing named one is not)."""
    settings = Settings()
    path = path or os.environ.get("MIGSYNC_CONFIG", "")
    if path:
        explicit = True
    else:
        path = builtin(DEFAULT_CONFIG)  # under $MIGSYNC_SEARCH_ROOT when set (tests)
    # lexists: a dangling symlink at the default place is a settings file that is missing
    # (exit 2), not "no settings": its ignore list or prefix must not be dropped silently
    if not explicit and not os.path.lexists(path):
        return settings
    apply(settings, _load_toml(path), path)
    return settings
