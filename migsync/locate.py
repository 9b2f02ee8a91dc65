"""Find slurm.conf, gres.conf and the node name the way slurmd does."""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

from .errors import ConfigError
from .record import Record

CONFIGLESS_DIR = "/run/slurm/conf"
# Where slurmd keeps configless files when /run/slurm/conf is gone (it is on tmpfs: before
# slurmd's first start after a boot): <SlurmdSpoolDir>/conf-cache, upstream's and Debian's
# default SlurmdSpoolDir.
CONF_CACHES = ("/var/spool/slurmd/conf-cache", "/var/lib/slurm/slurmd/conf-cache")
DEFAULT_DIR = "/etc/slurm"
# $MIGSYNC_SEARCH_ROOT, when set, is the directory the built-in locations above (and
# settings.DEFAULT_CONFIG) are looked up under instead of "/". Meant for tests: they set it to
# an empty per-test directory so that a real node's /run/slurm/conf, /etc/slurm or
# /etc/migsync never leaks into a result. Flags, the migsync config and $SLURM_CONF are not
# affected: they are paths the user gave.
SEARCH_ROOT_ENV = "MIGSYNC_SEARCH_ROOT"


def builtin(path: str, env: Optional[dict] = None) -> str:
    """A built-in location, under $MIGSYNC_SEARCH_ROOT when that is set."""
    root = (os.environ if env is None else env).get(SEARCH_ROOT_ENV, "")
    return os.path.join(root, path.lstrip("/")) if root else path


class ConfFiles(Record):
    __slots__ = ("slurm_conf", "gres_conf", "how")

    def __init__(self, slurm_conf: Optional[str], gres_conf: str, how: str) -> None:
        self.slurm_conf = slurm_conf
        self.gres_conf = gres_conf
        self.how = how


def _is_file(path: str) -> bool:
    try:
        return os.path.isfile(path)
    except OSError:  # e.g. a symlink loop
        return False


def candidate_dirs(slurm_conf_env: Optional[str], env: Optional[dict] = None) -> List[Tuple[str, str]]:
    dirs = []
    if slurm_conf_env:
        dirs.append((os.path.dirname(slurm_conf_env) or ".", "$SLURM_CONF"))
    dirs.append((builtin(CONFIGLESS_DIR, env), "configless"))
    dirs.append((builtin(DEFAULT_DIR, env), DEFAULT_DIR))
    dirs += [(builtin(d, env), "configless conf-cache") for d in CONF_CACHES]
    return dirs


def find(gres_conf: str = "", slurm_conf: str = "", configured_gres: str = "",
         configured_slurm: str = "", env: Optional[dict] = None) -> ConfFiles:
    """Flags first, then migsync.toml, then $SLURM_CONF's directory, /run/slurm/conf, /etc/slurm."""
    env = os.environ if env is None else env
    how = "explicit"
    sconf = slurm_conf
    gconf = gres_conf
    if not sconf and configured_slurm:
        sconf, how = configured_slurm, "migsync config"
    if not gconf and configured_gres:
        gconf, how = configured_gres, "migsync config"
    if not sconf:
        sc_env = env.get("SLURM_CONF", "")
        if sc_env and _is_file(sc_env):
            sconf, how = sc_env, "$SLURM_CONF"
        else:
            for d, label in candidate_dirs(None, env):
                if _is_file(os.path.join(d, "slurm.conf")):
                    sconf, how = os.path.join(d, "slurm.conf"), label
                    break
    if not gconf:
        dirs = [(os.path.dirname(sconf), how)] if sconf else []
        dirs += candidate_dirs(env.get("SLURM_CONF"), env)
        for d, label in dirs:
            if _is_file(os.path.join(d, "gres.conf")):
                gconf = os.path.join(d, "gres.conf")
                how = label
                break
    if not gconf:
        looked = ", ".join(sorted({d for d, _ in candidate_dirs(env.get("SLURM_CONF"), env)}))
        raise ConfigError(f"gres.conf not found (looked beside slurm.conf and in {looked}); "
                          "use --gres-conf, or write one with `migsync emit --write PATH`")
    if sconf and not _is_file(sconf):
        raise ConfigError("slurm.conf not found", path=sconf)
    return ConfFiles(sconf or None, gconf, how)


def node_name(explicit: str = "", configured: str = "", env: Optional[dict] = None) -> str:
    env = os.environ if env is None else env
    name = explicit or configured or env.get("SLURMD_NODENAME", "")
    if not name:
        name = os.uname().nodename.split(".", 1)[0]
    return name
