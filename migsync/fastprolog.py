"""The Prolog's cache hit: answer "still consistent" in well under a millisecond.

A Prolog runs before every job, so its start-up is paid per job. When the last verdict was
clean and nothing it depended on changed, this answers from a plain-text sidecar of the cache
(``<cache_file>.hit``) with the standard library's os and sys only: no json, re, argparse,
typing, dataclasses, tomllib or subprocess (tests/test_fastprolog.py holds it to that).
Anything else (arguments, a changed file, a cached mismatch, an odd settings file, a
sidecar that is not ours) falls back to the full `migsync prolog`, which acts and explains.

What the verdict depended on, and is compared here: the settings file, slurm.conf, gres.conf
and the files they include (device, inode, size, mtime), the places slurmd would look for
them (still absent), the environment that chooses them, the GPU list and the live MIG
instances in procfs, the device files in /dev/nvidia-caps, and migsync's version.
"""
from __future__ import annotations

import os
import sys

from . import __version__

HEADER = "migsync-prolog-hit 1"
SUFFIX = ".hit"
DEFAULT_CONFIG = "/etc/migsync/migsync.toml"
DEFAULT_CACHE = "/run/migsync/state.json"
ENV_KEYS = ("MIGSYNC_CONFIG", "SLURMD_NODENAME", "SLURM_CONF", "MIGSYNC_SEARCH_ROOT")
NV_GPUS = "/proc/driver/nvidia/gpus"
NV_CAPS = "/proc/driver/nvidia/capabilities"
DEV_CAPS = "/dev/nvidia-caps"


def _rooted(root: str, path: str) -> str:
    return root.rstrip("/") + path if root and root != "/" else path


def stamp(path: str) -> str:
    """One file's identity: a changed, replaced or (dis)appeared file changes it."""
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}\t-"
    return f"{path}\t{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def instances(root: str) -> str:
    """The GPUs (bus ids) and live MIG instances procfs shows, as the full check reads them:
    an instance lives while its gi<G>/access (and ci<C>/access) file exists."""
    listdir, exists = os.listdir, os.path.exists
    try:
        out = [",".join(sorted(listdir(_rooted(root, NV_GPUS))))]
    except OSError:
        out = ["-"]
    caps = _rooted(root, NV_CAPS)
    try:
        gpus = sorted(listdir(caps))
    except OSError:
        return ";".join(out + ["-"])
    for gpu in gpus:
        mig = f"{caps}/{gpu}/mig"
        try:
            gis = sorted(listdir(mig))
        except OSError:
            out.append(gpu)
            continue
        for gi in gis:
            if not gi.startswith("gi"):
                continue
            d = f"{mig}/{gi}"
            if not exists(d + "/access"):
                continue
            try:
                cis = [ci for ci in sorted(listdir(d))
                       if ci.startswith("ci") and exists(f"{d}/{ci}/access")]
            except OSError:
                cis = ["?"]
            out.append(f"{gpu}/{gi}:{','.join(cis)}")
    try:  # device files: a removed or new cap node changes what slurmd would find
        st = os.stat(_rooted(root, DEV_CAPS))
        out.append(f"dev:{st.st_ino}:{st.st_mtime_ns}:{st.st_nlink}")
    except OSError:
        out.append("dev:-")
    return ";".join(out)


def environment(environ) -> str:
    return "\t".join(f"{k}={environ.get(k, '')}" for k in ENV_KEYS) + f"\thost={os.uname()[1]}"


def config_path(environ) -> str:
    # $MIGSYNC_SEARCH_ROOT (tests; see locate.builtin) roots the default settings file here too
    return environ.get("MIGSYNC_CONFIG") or _rooted(environ.get("MIGSYNC_SEARCH_ROOT", ""),
                                                    DEFAULT_CONFIG)


def cache_file_of(config: str):
    """``cache_file`` from the settings file without a TOML parser; None when the file holds
    anything this cannot read with certainty (then the full CLI decides)."""
    try:  # non-blocking: a FIFO named as the settings file must not hang a Prolog
        fd = os.open(config, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return DEFAULT_CACHE if config == DEFAULT_CONFIG else None
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        # Only a regular file root trusts (root's, not group/other-writable, issue 14);
        # anything else goes to the full CLI, which says why in one line.
        if (st.st_mode >> 12) != 8 or (os.geteuid() == 0 and (st.st_uid != 0
                                                               or st.st_mode & 0o022)):
            return None
        data = os.read(fd, 1 << 20)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeError:
        return None
    value = DEFAULT_CACHE
    for line in text.split("\n"):
        s = line.strip()
        if not s or s[0] == "#":
            continue
        if s[0] == "[" or '"""' in s or "'''" in s:
            return None  # tables, multi-line strings: not ours to guess
        key, sep, rest = s.partition("=")
        key = key.strip().strip('"')
        if key != "cache_file":
            continue
        rest = rest.strip()
        if not sep or len(rest) < 2 or rest[0] not in "\"'":
            return None
        end = rest.find(rest[0], 1)
        tail = rest[end + 1:].strip() if end > 0 else "?"
        if end < 0 or "\\" in rest[:end] or (tail and tail[0] != "#"):
            return None
        value = rest[1:end]
    return value or None


def sidecar(cache_file: str) -> str:
    return cache_file + SUFFIX


# ---- the writing side, run by the full check (health check, Prolog miss): may import more

def inputs(root: str, environ=None, listing=None) -> str:
    """What a verdict is about to depend on, read BEFORE the check: if anything changes while
    it runs, the next Prolog sees a difference and checks again. ``listing``: instances(root)
    when the caller has just read it."""
    environ = os.environ if environ is None else environ
    listing = instances(root) if listing is None else listing
    return "\n".join([HEADER, f"version\t{__version__}", f"root\t{root}",
                      f"env\t{environment(environ)}", f"instances\t{listing}",
                      f"stat\t{stamp(config_path(environ))}"])


def candidates(environ=None):
    """Where slurmd (and locate.find) would look: a file appearing there changes the answer."""
    from .locate import candidate_dirs

    environ = os.environ if environ is None else environ
    out = []
    for d, _label in candidate_dirs(environ.get("SLURM_CONF")):
        out += [os.path.join(d, "slurm.conf"), os.path.join(d, "gres.conf")]
    return out


def save(st, before: str, ok: bool, files, environ=None) -> None:
    """After a check under the node's own settings: keep a clean verdict for the hit, or
    remove the sidecar so an older clean one can never answer for this state. A check run
    with flags or another settings file (an admin trying something) leaves it alone."""
    environ = os.environ if environ is None else environ
    if not st.cache_file or not plain(st, environ):
        return
    path = sidecar(st.cache_file)
    if not ok:
        forget(path)
        return
    from .jsonlite import dumps  # not json: it imports re, ~7 ms of a Prolog miss
    from .settings import KEYS

    try:
        lines = [before, "settings\t" + dumps({k: getattr(st, k) for k in KEYS})]
    except ValueError:  # a value JSON cannot hold (inf): no sidecar, no hit
        forget(path)
        return
    seen = {config_path(environ)}
    for p in list(files) + candidates(environ):
        if p and p not in seen:
            seen.add(p)
            lines.append(f"stat\t{stamp(p)}")
    lines.append("verdict\tok\n")
    from .errors import ConfigError
    from .fsutil import atomic_write

    try:
        atomic_write(path, "\n".join(lines), 0o600,  # never over someone else's <cache>.hit
                     ours=("Prolog sidecar", (HEADER.encode(),)))
    except ConfigError:
        forget(path)  # no hit then: the full path answers every time


def forget(path: str) -> None:
    """Remove the sidecar, but only ours: <cache_file>.hit may name someone else's file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            head = os.pread(fd, len(HEADER), 0)
        finally:
            os.close(fd)
        if head and head != HEADER.encode():
            return
        os.unlink(path)
    except OSError:  # gone, a symlink (O_NOFOLLOW), not ours to touch
        pass


def plain(st, environ) -> bool:
    """Were these settings exactly the settings file's (no flags, no --config elsewhere)?"""
    from . import settings as settings_mod
    from .errors import ConfigError

    if cached_settings(environ) == st:  # the file is unchanged since a plain run: no TOML
        return True
    try:
        return settings_mod.load() == st
    except ConfigError:
        return False


def read_sidecar(path: str):
    """Its lines, or None unless it is root's own (the caller's uid) regular 0600 file: one
    that anyone else could have written says nothing."""
    try:  # its directory as fsutil.state_dir checks it (issue 14): a real dir, root's alone
        dst = os.lstat(path.rpartition("/")[0] or "/")
        if (dst.st_mode >> 12) != 4 or dst.st_uid != os.geteuid() or dst.st_mode & 0o022:
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o777 != 0o600 or (st.st_mode >> 12) != 8:
            return None
        data = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8").split("\n")
    except UnicodeError:
        return None


def cached_settings(environ):
    """The settings the last check ran under, while the settings file is unchanged: a Prolog
    that must check again need not parse TOML (tomllib costs ~4 ms). None: read the file."""
    config = config_path(environ)
    cache_file = cache_file_of(config)
    lines = read_sidecar(sidecar(cache_file)) if cache_file else None
    if not lines or len(lines) < 9 or lines[0] != HEADER or lines[1] != f"version\t{__version__}":
        return None
    if lines[5] != f"stat\t{stamp(config)}" or not lines[6].startswith("settings\t"):
        return None
    from .jsonlite import loads
    from .settings import Settings

    try:
        values = loads(lines[6].partition("\t")[2])
        st = Settings()
        for k, v in values.items():
            setattr(st, k, v)
        return st
    except (ValueError, TypeError, AttributeError):
        return None


def hit(environ) -> bool:
    """True only when the sidecar is ours, unchanged inputs say the verdict still holds, and
    that verdict was clean."""
    config = config_path(environ)
    cache_file = cache_file_of(config)
    if not cache_file:
        return False
    lines = read_sidecar(sidecar(cache_file))
    if lines is None:
        return False
    if len(lines) < 9 or lines[0] != HEADER or lines[-1] != "" or lines[-2] != "verdict\tok":
        return False
    if lines[1] != f"version\t{__version__}" or lines[3] != f"env\t{environment(environ)}":
        return False
    root = lines[2].partition("\t")[2]
    if lines[5] != f"stat\t{stamp(config)}":  # made under this very settings file
        return False
    if not lines[6].startswith("settings\t"):
        return False
    for line in lines[7:-2]:
        kind, _, rest = line.partition("\t")
        if kind != "stat" or line != f"stat\t{stamp(rest.partition(chr(9))[0])}":
            return False
    return lines[4] == f"instances\t{instances(root)}"


# The hooks' Python part exits with this, not 1, to keep a job off a mismatched node: the sh
# hook around it turns it into the Prolog's exit 1 and anything else (the interpreter dying of
# a signal, a fatal start-up error, an uncaught exception: all exit 1 or 128+N) into a log
# line and exit 0, so that only a verdict, never a crash, makes slurmd drain the node as
# "Prolog error".
HOOK_BLOCK = 86


def main(block: int = 1) -> None:
    """The Prolog's entry: the hit, else the full `migsync prolog`. A Prolog exits ``block``
    only to keep a job off a mismatched node; migsync's own trouble exits 0."""
    argv = sys.argv[1:]
    try:
        if not argv and hit(os.environ):
            os._exit(0)
    except Exception:  # the fast path never decides on a surprise: the full CLI does
        pass
    code = full(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(block if code == 1 else code)


def hook_main() -> None:
    """main() as the sh hooks run it: the block verdict is HOOK_BLOCK (see there)."""
    main(HOOK_BLOCK)


class _Args:
    """`migsync prolog` with no arguments, as argparse would have given it."""

    command, json, config, ignore = "prolog", False, None, None

    def __init__(self, settings) -> None:
        self.settings = settings


def full(argv) -> int:
    try:  # site's start-up (python -S) waits for an import of pyslurm (migsync.site_packages)
        from . import cli

        cli.install_sigterm()  # unwind, as the console script does
        if argv:
            code = cli.main(["prolog", *argv])
        else:
            code = cli.dispatch(_Args(cached_settings(os.environ)))
    except BaseException as exc:  # cannot even start: one line, and the job runs
        code = 70
        sys.stderr.write(f"migsync prolog: cannot run migsync: {type(exc).__name__}: {exc}\n")
    if code in (0, 1):
        return code
    try:
        import syslog

        syslog.openlog("migsync", 0, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR, f"prolog hook: migsync exited {code}; the job runs anyway")
    except Exception:
        pass
    return 0


HOOK = '''#!{python} -IS
# slurm.conf:  Prolog={path}   (written by `migsync install-hooks`)
# Before every job: a clean verdict that still holds answers at once (migsync.fastprolog);
# otherwise `migsync prolog` checks procfs, drains on a mismatch and exits {block} (the sh
# wrapper's exit 1) so the job does not start here. migsync's own trouble exits 0.
# -S: no site start-up (it needs os and sys only); pyslurm's import runs site when needed.
import os, sys
os.chdir("/")  # as the shell hooks do: nothing may depend on slurmd's working directory
# Where migsync is (without site, the site-packages are not on the path). Appended: it may
# be a site-packages directory, whose modules must never shadow the standard library's.
sys.path.append({src!r})
try:
    from migsync.fastprolog import hook_main
except BaseException as exc:
    sys.stderr.write("migsync prolog: cannot start migsync with %s: %s\\n" % (sys.executable, exc))
    raise SystemExit(0)
hook_main()  # exits {block} to keep the job off this node: the sh wrapper makes that exit 1
'''


# The Prolog slurmd starts. A "#!python" script alone would be faster by ~1 ms, but when its
# interpreter is gone (a removed or rebuilt venv) the kernel's exec fails, and when Python dies
# (a signal, a fatal start-up error) its exit status is not a verdict: either way slurmd would
# drain the node as "Prolog error", the one thing migsync's own trouble must never do. So the
# wrapper waits for Python instead of exec'ing it (measured: no visible cost) and maps its exit.
SH_HOOK = """#!/bin/sh
# slurm.conf:  Prolog={path}   (written by `migsync install-hooks`)
# Runs {script} with {python} -I -S from /: exit 0, or 1 for a mismatch (the Python part
# says so with {block}). Anything else (that interpreter gone, a crash) is one log line and
# exit 0: migsync's own trouble never blocks a job.
cd / || exit 0
if [ -x {python_q} ]; then
    {python_q} -I -S {script_q} "$@"
    rc=$?
    [ $rc = 0 ] && exit 0
    [ $rc = {block} ] && exit 1  # a mismatch: the node is drained, the job must not start here
    why="migsync exited $rc (a crash or a signal, not a verdict)"
else
    why={python_q}" is gone"
fi
echo "migsync prolog: $why; the job runs unchecked" >&2
PATH=/usr/bin:/bin logger -t migsync -p daemon.err "prolog: $why; the job runs unchecked" 2>/dev/null
exit 0
"""


def hook_script(python: str, path: str, src: str = "") -> str:
    """The Prolog's Python part: run isolated and without site (-I -S) by absolute path, no
    console-script wrapper; straight into the cache hit. ``src`` is the directory migsync
    imports from ('' = this install's)."""
    return HOOK.format(python=python, path=path, block=HOOK_BLOCK,
                       src=src or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hook_wrapper(python: str, path: str, script: str) -> str:
    """The /bin/sh Prolog slurmd runs: exec of ``script`` by ``python``, or exit 0."""
    import shlex

    return SH_HOOK.format(python=python, path=path, script=script, block=HOOK_BLOCK,
                          python_q=shlex.quote(python), script_q=shlex.quote(script))
