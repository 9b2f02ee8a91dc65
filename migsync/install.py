"""`migsync install-hooks DIR`: the hook scripts, bound to this installation's interpreter.

Every file shipped in hooks/ is installed as it is, except that the helper every hook sources
(`_find_migsync.sh`) gets this interpreter's absolute path written into it, so the hooks never
search: slurmd runs them with no PATH from its log directory, and what they start must not
depend on either. The interpreter runs isolated (-I) from `/`: a `migsync/` directory in the
working directory or on PYTHONPATH is never imported.
"""
from __future__ import annotations

import os
import stat
import sys
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

from .errors import ConfigError
from .record import Record

PKG = os.path.dirname(os.path.abspath(__file__))
HELPER = "_find_migsync.sh"
BAKED_PY = 'MIGSYNC_PYTHON_BAKED=""'
BAKED_SRC = 'MIGSYNC_SRC_BAKED=""'
NHC_CHECK = os.path.join("nhc", "migsync.nhc")
NHC_BIN = 'local INSTALLED_BIN=""'  # where conf/nhc/migsync.nhc takes the installed command

# What slurm.conf / systemd need for each known hook; other scripts are installed too and
# named in the output.
SLURM_LINES = {
    "healthcheck": ["HealthCheckProgram={path}", "HealthCheckInterval=300",
                    "HealthCheckNodeState=ANY"],
    "prolog": ["Prolog={path}"],
    "taskprolog": ["TaskProlog={path}"],
}
SYSTEMD_LINES = {"slurmd-prestart": ["ExecStartPre=-{path}"]}
COMMAND = "migsync"  # hooks/migsync: the command itself, for NHC and scripts


class Installed(Record):
    __slots__ = ("dir", "python", "src", "hooks", "nhc", "notes")

    def __init__(self, dir: str, python: str, src: str, hooks: List[str] = None,
                 nhc: Optional[str] = None, notes: List[str] = None) -> None:
        self.dir = dir
        self.python = python
        self.src = src
        self.hooks = [] if hooks is None else hooks
        self.nhc = nhc
        self.notes = [] if notes is None else notes


MARKERS = {"hooks": HELPER, "conf": "migsync.toml"}


def shipped_dir(name: str) -> Optional[str]:
    """hooks/ or conf/ of this migsync: the source tree's (checkout, editable install) or the
    copy packaged inside migsync (a wheel). A marker file tells ours from a stranger's
    site-packages/hooks."""
    for d in (os.path.join(os.path.dirname(PKG), name), os.path.join(PKG, "_shipped", name)):
        if os.path.isfile(os.path.join(d, MARKERS[name])):
            return d
    return None


def hook_files(hooks_dir: str) -> List[str]:
    out = []
    for name in sorted(os.listdir(hooks_dir)):
        path = os.path.join(hooks_dir, name)
        if name.startswith(".") or name.endswith((".pyc", "~")) or not os.path.isfile(path):
            continue
        out.append(name)
    return out


def import_root(python: str) -> str:
    """'' when ``python -I`` imports this very migsync on its own; else the directory to put
    first on sys.path (a source checkout used without installing)."""
    from . import runner
    from .errors import CommandError

    here = os.path.dirname(PKG)
    probe = "import migsync, os; print(os.path.dirname(os.path.dirname(os.path.abspath(migsync.__file__))))"
    try:
        res = runner.run([python, "-I", "-c", probe], timeout=30)
    except CommandError:
        return here
    if res.returncode == 0 and os.path.realpath(res.stdout.strip()) == os.path.realpath(here):
        return ""
    return here


def bake(text: str, python: str, src: str) -> str:
    """Write the interpreter (and source tree) into the helper's marked lines."""
    if BAKED_PY not in text or BAKED_SRC not in text:
        raise ConfigError(f"{HELPER} lacks the lines install-hooks fills in ({BAKED_PY})")
    for value in (python, src):
        if any(c in value for c in "\"$`\\\n"):
            raise ConfigError(f"cannot write {value!r} into a shell script (quote characters)")
    return (text.replace(BAKED_PY, f'MIGSYNC_PYTHON_BAKED="{python}"', 1)
                .replace(BAKED_SRC, f'MIGSYNC_SRC_BAKED="{src}"', 1))


def _check_start(python: str, src: str, helper_text: str) -> None:
    """Start migsync exactly as the installed hooks will; refuse to leave hooks that cannot."""
    from . import runner
    from .errors import CommandError

    boot = helper_text.split("MIGSYNC_BOOT='", 1)[1].split("'", 1)[0]
    try:
        res = runner.run([python, "-I", "-c", boot, src, "--version"], timeout=30)
    except CommandError as exc:
        raise ConfigError(f"the hooks could not start migsync with {python}: {exc.message}") from None
    if res.returncode != 0:
        raise ConfigError(f"the hooks could not start migsync with {python}: "
                          f"{runner.first_line(res.stderr or res.stdout)}")


def install_hooks(dest: str, nhc_dir: Optional[str] = None,
                  python: Optional[str] = None) -> Installed:
    from .slurmsyntax import read_text

    hooks_dir = shipped_dir("hooks")
    if hooks_dir is None or not os.path.isfile(os.path.join(hooks_dir, HELPER)):
        raise ConfigError("this migsync has no hooks/ directory to install from")
    nhc_src = None
    if nhc_dir:
        conf = shipped_dir("conf")
        nhc_src = os.path.join(conf, NHC_CHECK) if conf else None
        if nhc_src is None or not os.path.isfile(nhc_src):
            raise ConfigError("--nhc-dir: this migsync ships no NHC check (conf/nhc/migsync.nhc)")
        if not os.path.isdir(nhc_dir):
            raise ConfigError("--nhc-dir: no such directory (install LBNL NHC first)",
                              path=nhc_dir)
    # slurmd runs the hooks as root: an interpreter or a migsync another account can change
    # (a venv in a user's home) would let that account run code as root on every node
    from .settings import check_trusted_file

    check_trusted_file(python or os.path.abspath(sys.executable),
                       "the interpreter the hooks would run")
    check_trusted_file(os.path.join(PKG, "__init__.py"), "the migsync the hooks would run")
    dest = os.path.abspath(dest)
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise ConfigError("the parent directory does not exist; create it first", path=parent)
    if not os.path.isdir(dest):
        try:
            os.mkdir(dest, 0o755)
            os.chmod(dest, 0o755)  # whatever the umask: slurmd runs these as root
        except OSError as exc:
            raise ConfigError(f"cannot create: {exc.strerror or exc}", path=dest) from None
    # sys.executable as called (a venv's bin/python is a symlink: resolving it would leave
    # the venv and lose its site-packages).
    python = python or os.path.abspath(sys.executable)
    src = import_root(python)
    done = Installed(dest, python, src)
    helper = bake(read_text(os.path.join(hooks_dir, HELPER)), python, src)
    _check_start(python, src, helper)
    targets = [os.path.join(dest, n) for n in hook_files(hooks_dir) + ["prolog.py"]]
    _check_targets(targets, [os.path.join(os.path.abspath(nhc_dir), os.path.basename(NHC_CHECK))]
                   if nhc_dir else [])
    for name in hook_files(hooks_dir):
        path = os.path.join(hooks_dir, name)
        text = helper if name == HELPER else read_text(path)
        if name == "prolog" and not any(c.isspace() for c in python):
            # Before every job: a one-test sh wrapper execs the interpreter straight into the
            # cache hit (no subshells, no search: ~2 ms of a ~9 ms hook), perf, issue 11.
            from .fastprolog import hook_script, hook_wrapper

            script = os.path.join(dest, "prolog.py")
            _write(script, hook_script(python, os.path.join(dest, name), src), 0o644, done)
            text = hook_wrapper(python, os.path.join(dest, name), script)
        mode = 0o644 if name == HELPER else 0o755
        _write(os.path.join(dest, name), text, mode, done)
        if name != HELPER:
            done.hooks.append(name)
    if nhc_src and nhc_dir:
        text = read_text(nhc_src)
        if BAKED_PY in text:  # the check starts migsync itself, like the hooks
            text = bake(text, python, src)
        elif NHC_BIN in text and COMMAND in done.hooks:  # an older check: a command to run
            text = text.replace(NHC_BIN, f'local INSTALLED_BIN="{os.path.join(dest, "migsync")}"', 1)
        done.nhc = os.path.join(os.path.abspath(nhc_dir), os.path.basename(nhc_src))
        _write(done.nhc, text, 0o644, done)
    return done


def _check_targets(hooks: List[str], nhc: List[str]) -> None:
    """Before anything is written: every target directory is root's alone and every target
    is a regular file or absent. A symlink planted as the fifth hook used to stop the
    install after four files were already replaced."""
    from .fsutil import UnsafePathError, check_write_dir

    for directory in sorted({os.path.dirname(t) for t in hooks + nhc}):
        check_write_dir(directory, False)
    for target in hooks + nhc:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError("exists and is not a regular file (a symlink?): refused to "
                                  "write (nothing was installed)", path=target)


def _write(path: str, text: str, mode: int, done: Installed) -> None:
    """Install one file. One already there with other contents (the site's own hook, an
    older install) is kept as a backup first: installing into an existing directory must
    destroy nothing. An identical one is not backed up again on every re-install."""
    from .fsutil import atomic_write

    try:
        with open(path, "rb") as fh:  # a regular file in a root-only directory (checked)
            changed = fh.read() != text.encode("utf-8")
    except FileNotFoundError:
        changed = False  # nothing to keep
    saved = atomic_write(path, text, mode, backup=changed)
    if saved:
        done.notes.append(f"{path} was there with other contents: kept as {saved}")


def config_lines(done: Installed) -> str:
    """The slurm.conf and systemd lines for hooks installed in ``done.dir``."""
    slurm: List[str] = []
    systemd: List[str] = []
    other: List[Tuple[str, str]] = []
    for name in done.hooks:
        path = os.path.join(done.dir, name)
        if name in SLURM_LINES:
            slurm += [ln.format(path=path) for ln in SLURM_LINES[name]]
        elif name in SYSTEMD_LINES:
            systemd += [ln.format(path=path) for ln in SYSTEMD_LINES[name]]
        elif name == COMMAND:
            continue
        else:
            other.append((name, path))
    runs = done.python + (f" (migsync from {done.src})" if done.src else "")
    if COMMAND in done.hooks:
        runs += f"; {os.path.join(done.dir, COMMAND)} is migsync itself, started the same way"
    out = [f"# migsync hooks installed in {done.dir}; they run {runs} -I from /.",
           "# slurm.conf on every GPU node (configless ships slurm.conf, but not these scripts:",
           "# install them on each node):", "GresTypes=gpu"] + slurm
    if systemd:
        out += ["", "# /etc/systemd/system/slurmd.service.d/migsync.conf, then "
                    "`systemctl daemon-reload`:", "[Service]"] + systemd
    for name, path in other:
        out.append(f"# also installed: {path} (see its first lines for where it goes)")
    if done.nhc:
        out += ["", f"# LBNL NHC: {done.nhc} installed; enable it in /etc/nhc/nhc.conf "
                    "(see the README, \"NHC\")"]
    return "\n".join(out) + "\n"
