"""Settings: defaults, /etc/migsync/migsync.toml, then command-line flags. Unknown keys are errors."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List

from .errors import ConfigError
from .locate import builtin

DEFAULT_CONFIG = "/etc/migsync/migsync.toml"


@dataclass
class Settings:
    # discovery
    backend: str = "auto"  # auto | nvml | nvidia-smi
    nvidia_smi: str = ""  # path; empty: PATH, then the usual places
    root: str = "/"  # read /proc and /dev under this directory
    command_timeout: float = 10.0  # seconds for one nvidia-smi / scontrol call
    deadline: float = 45.0  # seconds for a whole run (slurmd kills a health check at 60)
    # configuration files
    gres_conf: str = ""
    slurm_conf: str = ""
    node: str = ""
    slurm_version: str = ""  # read gres.conf with this release's rules; empty: detect slurmd's
    # check and emit
    ignore: List[str] = field(default_factory=list)  # finding ids to ignore
    style: str = "auto"  # auto (what the current gres.conf uses) | multiple-files | file
    # acting on the node
    reason_prefix: str = "migsync:"
    drain: bool = True  # healthcheck drains on a mismatch
    resume: bool = True  # resume a node migsync drained once it is consistent
    drain_on_discovery_failure: bool = True
    slurm_backend: str = "auto"  # auto | pyslurm | scontrol
    scontrol: str = ""  # path; empty: PATH, then the usual places
    prom_file: str = ""
    lock_file: str = "/run/migsync.lock"
    lock_wait: float = 10.0
    cache_file: str = "/run/migsync/state.json"
    syslog: bool = True
    prestart_block: bool = False  # pre-start hook: fail (stop slurmd) on missing device files


KEYS = {f.name: f for f in fields(Settings)}


def _load_toml(path: str) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on older Pythons only
        import tomli as tomllib
    from .slurmsyntax import read_text  # the same one-line errors as for Slurm's files

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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{key} must be a non-negative number", path=path,
                              fragment=f"{key} = {value!r}")
        return float(value)
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of strings", path=path,
                              fragment=f"{key} = {value!r}")
        return list(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string", path=path, fragment=f"{key} = {value!r}")
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


def load(path: str = "", explicit: bool = False) -> Settings:
    """Defaults, then the config file (a missing default file is fine, a missing named one is not)."""
    settings = Settings()
    path = path or os.environ.get("MIGSYNC_CONFIG", "")
    if path:
        explicit = True
    else:
        path = builtin(DEFAULT_CONFIG)  # under $MIGSYNC_SEARCH_ROOT when set (tests)
    if not explicit and not os.path.exists(path):
        return settings
    apply(settings, _load_toml(path), path)
    return settings
