"""A real one-node Slurm cluster under one temporary directory, on several Slurm versions.

Recipe and pitfalls: the README's "How it is tested against real Slurm". The daemons run as root
with private ports; configless mode serves slurm.conf and gres.conf from slurmctld and links
/run/slurm/conf to slurmd's conf-cache, exactly as on a production node.

Versions: 22.05 is the host's Debian 12 packages. 24.11 (Debian 13 "trixie") and 26.05 (Debian
sid) run from Debian chroots built on demand with debootstrap and cached under CHROOT_CACHE, so
nothing on the host changes. A chroot version's daemons and clients all run as
`chroot DIR prog ...` (a 22.05 client cannot talk to a 24.11 controller), with /proc, /sys,
/dev, /tmp (the tests' temporary directories), the repository and the Python installation
bound at the same paths, so hooks that slurmd starts inside the chroot find migsync where the
test put it. MIGSYNC_SLURM_VERSIONS=22.05,24.11,26.05 (the default) selects the versions.
"""
from __future__ import annotations

import fcntl
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

NODE = "gpunode1"
MUNGE_DEFAULT_SOCK = "/run/munge/munge.socket.2"
CONFIGLESS_LINK = "/run/slurm/conf"

HOST_VERSION = "22.05"
SUITES = {"24.11": "trixie", "26.05": "sid"}  # Debian suite whose slurm-wlm is that release
ALL_VERSIONS = (HOST_VERSION,) + tuple(SUITES)
CHROOT_CACHE = os.environ.get("MIGSYNC_CHROOT_CACHE", "/var/cache/migsync-test-chroots")
BUILD_LOCK = "/tmp/migsync-chroot-build.lock"
# A host-built Python (pyenv) run inside the chroot needs these of the chroot's libraries.
PYTHON_LIBS = ("libffi8", "libssl3t64", "libsqlite3-0", "libbz2-1.0", "liblzma5", "libexpat1",
               "libreadline8t64", "libncursesw6")
SLURM_PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"  # callers may pass an env without PATH
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wanted_versions():
    """The versions the real-Slurm tests run on (MIGSYNC_SLURM_VERSIONS, comma-separated)."""
    raw = os.environ.get("MIGSYNC_SLURM_VERSIONS", ",".join(ALL_VERSIONS))
    out = [v.strip() for v in raw.split(",") if v.strip()]
    return out or [HOST_VERSION]


class Runtime:
    """Where one Slurm version's programs run: the host (root None) or a chroot."""

    def __init__(self, version, root=None, full_version=None):
        self.version = version
        self.root = root
        self.full_version = full_version or version
        self._mounted = []

    def __repr__(self):
        return f"Runtime({self.version}, {self.root or 'host'})"

    def argv(self, argv):
        return list(argv) if self.root is None else [CHROOT, self.root, *argv]

    def path(self, inside):
        """The host path of a path as the Slurm programs see it (their /run is the chroot's)."""
        return inside if self.root is None else os.path.join(self.root, inside.lstrip("/"))

    def run(self, argv, **kw):
        return subprocess.run(self.argv(argv), **kw)

    # ---- binds (chroot only). Callers hold the machine-wide Slurm test lock. -----------
    def binds(self):
        """Host directories the chroot must see at the same paths."""
        dirs = ["/tmp", REPO, os.path.realpath(sys.base_prefix)]
        venv = os.path.realpath(sys.prefix)
        if not venv.startswith(REPO + "/"):
            dirs.append(venv)
        out = []
        for d in dirs:
            if d.startswith("/usr") or d == "/":
                continue  # the chroot has its own /usr; binding over it would break it
            if not any(d == o or d.startswith(o + "/") for o in out):
                out.append(d)
        return out

    def mount(self):
        if self.root is None or self._mounted:
            return
        self._unmount_all()  # leftovers of a killed run
        try:
            self._mount("-t", "proc", "proc", "proc")
            for d in ("/sys", "/dev"):
                self._mount("--rbind", d, d, recursive=True)
                subprocess.run(["mount", "--make-rslave", self.path(d)], check=True)
            for d in self.binds():
                self._mount("--bind", d, d)
        except BaseException:
            self.unmount()
            raise

    def _mount(self, *args, recursive=False):
        target = self.path(args[-1])
        os.makedirs(target, exist_ok=True)
        subprocess.run(["mount", *args[:-1], target], check=True, timeout=30)
        self._mounted.append(target)

    def unmount(self):
        for target in reversed(self._mounted):
            # lazy: a hook slurmd started may still be finishing inside; the chroot itself is
            # never removed while anything is bound into it
            subprocess.run(["umount", "-R", "-l", target], capture_output=True, timeout=30)
        self._mounted = []

    def _unmount_all(self):
        """Unmount whatever an earlier, killed run left mounted inside the chroot."""
        prefix = self.root.rstrip("/") + "/"
        with open("/proc/self/mountinfo") as fh:
            points = [ln.split()[4] for ln in fh]
        for target in sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True):
            subprocess.run(["umount", "-R", "-l", target], capture_output=True, timeout=30)


HOST = Runtime(HOST_VERSION)


class Unavailable(Exception):
    """This Slurm version cannot run here; the message says why (a visible pytest skip)."""


def _debian_mirror():
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            text = open(path).read()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+)", text, re.M) or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)",
                                                                 text, re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def _slurmd_version(rt):
    try:
        r = rt.run(["slurmd", "-V"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, str(exc)
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", r.stdout + r.stderr)
    return (m.group(0) if m else None), (r.stdout + r.stderr).strip()


def _host_runtime():
    if os.geteuid() != 0:
        raise Unavailable("needs root")
    for prog in ("munged", "slurmctld", "slurmd", "scontrol", "sinfo"):
        if shutil.which(prog) is None and not os.path.exists(f"/usr/sbin/{prog}"):
            raise Unavailable(f"{prog} not installed (tests/run installs it as root)")
    full, out = _slurmd_version(HOST)
    if not full or not full.startswith(HOST_VERSION + "."):
        raise Unavailable(f"the host's slurmd is not {HOST_VERSION}: {out[:80]!r}")
    HOST.full_version = full
    return HOST


def _build_chroot(version, final):
    """debootstrap a minimal Debian with that release's Slurm into ``final`` (under the lock)."""
    suite = SUITES[version]
    work = final + ".building"
    if os.path.exists(work):
        Runtime(version, work)._unmount_all()
        shutil.rmtree(work)
    log = final + ".log"
    started = time.time()
    with open(log, "w") as out:
        def step(argv, timeout):
            out.write("+ " + " ".join(argv) + "\n")
            out.flush()
            r = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C"))
            if r.returncode != 0:
                raise Unavailable(f"building the {suite} chroot failed at '{' '.join(argv[:4])}' "
                                  f"(exit {r.returncode}); see {log}")

        if shutil.which("debootstrap") is None:
            raise Unavailable("debootstrap is not installed (tests/run installs it as root)")
        step(["debootstrap", "--variant=minbase", suite, work, _debian_mirror()], 1200)
        policy = os.path.join(work, "usr/sbin/policy-rc.d")
        with open(policy, "w") as fh:
            fh.write("#!/bin/sh\nexit 101\n")  # no service starts inside the chroot
        os.chmod(policy, 0o755)
        shutil.copy("/etc/hosts", os.path.join(work, "etc/hosts"))
        proc = os.path.join(work, "proc")
        subprocess.run(["mount", "-t", "proc", "proc", proc], check=True)
        try:
            step(["chroot", work, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                  *SLURM_PACKAGES, *PYTHON_LIBS], 1200)
            step(["chroot", work, "apt-get", "clean"], 120)
        finally:
            subprocess.run(["umount", "-l", proc], capture_output=True)
        full, text = _slurmd_version(Runtime(version, work))
        if not full:
            raise Unavailable(f"the {suite} chroot's slurmd -V said {text[:80]!r}")
        if not full.startswith(version + "."):
            # sid moves: say which Slurm really is there instead of testing a wrong label
            raise Unavailable(f"Debian {suite} now ships Slurm {full}, not {version}")
        out.write(f"built in {time.time() - started:.1f} s: slurm {full}\n")
    with open(os.path.join(work, ".migsync-chroot"), "w") as fh:
        fh.write(f"{full} {time.time() - started:.1f}\n")
    os.rename(work, final)


def runtime(version):
    """The Runtime for a Slurm version, building its chroot if needed. Raises Unavailable."""
    if version == HOST_VERSION:
        return _host_runtime()
    if version not in SUITES:
        raise Unavailable(f"unknown Slurm version {version!r} (known: {', '.join(ALL_VERSIONS)})")
    if os.geteuid() != 0:
        raise Unavailable("needs root (chroot, mount)")
    final = os.path.join(CHROOT_CACHE, SUITES[version])
    stamp = os.path.join(final, ".migsync-chroot")
    if not os.path.exists(stamp):
        os.makedirs(CHROOT_CACHE, exist_ok=True)
        with open(BUILD_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two checkouts never build at once
            if not os.path.exists(stamp):
                try:
                    _build_chroot(version, final)
                except subprocess.TimeoutExpired as exc:
                    raise Unavailable(f"building the chroot timed out: {exc}") from None
    full = open(stamp).read().split()[0]
    return Runtime(version, final, full)


_RUNTIMES = {}


def runtime_cached(version):
    """runtime(), remembered for the session, failures included (one build attempt per run)."""
    if version not in _RUNTIMES:
        try:
            _RUNTIMES[version] = runtime(version)
        except Unavailable as exc:
            _RUNTIMES[version] = exc
    got = _RUNTIMES[version]
    if isinstance(got, Unavailable):
        raise got
    return got


def available():
    """Why the host's Slurm cluster cannot run (None when it can). Tests parametrised with
    slurm_rt skip per version on their own."""
    if os.geteuid() != 0:
        return "needs root"
    for prog in ("munged", "slurmctld", "slurmd", "scontrol", "sinfo"):
        if shutil.which(prog) is None and not os.path.exists(f"/usr/sbin/{prog}"):
            return f"{prog} not installed (tests/run installs it as root)"
    return None


@pytest.fixture(params=wanted_versions(), ids=lambda v: f"slurm{v}")
def slurm_rt(request):
    """Parametrises a real-Slurm test over the selected versions; mounts a chroot's binds for
    the test. An unbuildable version is a visible skip with the reason."""
    try:
        rt = runtime_cached(request.param)
    except Unavailable as exc:
        pytest.skip(f"Slurm {request.param}: {exc}")
    rt.mount()
    try:
        yield rt
    finally:
        rt.unmount()


def _cpu_line(rt=HOST):
    out = rt.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
    first = out.splitlines()[0].split()
    keep = [kv for kv in first[1:] if kv.split("=")[0] in
            ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")]
    return " ".join(keep)


class Cluster:
    def __init__(self, base, gres_conf, node_gres, configless=False, extra_conf="",
                 health_check=None, prolog=None, interval=5, node_include=None, runtime=None):
        self.rt = runtime or HOST  # which Slurm version runs it (host, or a chroot)
        self.version = self.rt.version
        self.base = str(base)
        self.configless = configless
        self.etc = os.path.join(self.base, "etc")
        self.slurm_conf = os.path.join(self.etc, "slurm.conf")
        self.gres_conf = os.path.join(self.etc, "gres.conf")
        self.sock = os.path.join(self.base, "munge", "munge.socket.2")
        port = random.randint(20000, 29000)
        self.ctld_port, self.slurmd_port = port, port + 1
        self.node_gres = node_gres
        self.extra_conf = extra_conf
        self.health_check = health_check
        self.prolog = prolog
        self.interval = interval
        self.node_include = node_include  # a file with the node's complete NodeName line
        self.procs = {}
        self.links = []
        for d in ("etc", "munge", "state", "spool", "log", "run"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        os.chmod(os.path.join(self.base, "munge"), 0o755)
        self.write_gres(gres_conf)
        self.write_slurm_conf()

    # ---- configuration -------------------------------------------------------------
    def write_slurm_conf(self, node_gres=None):
        if node_gres is not None:
            self.node_gres = node_gres
        b = self.base
        lines = [
            "ClusterName=migsynctest", "SlurmctldHost=localhost",
            f"SlurmctldPort={self.ctld_port}", f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={self.sock}", f"StateSaveLocation={b}/state",
            f"SlurmdSpoolDir={b}/spool/%n", f"SlurmctldPidFile={b}/run/slurmctld.pid",
            f"SlurmdPidFile={b}/run/slurmd.pid", f"SlurmctldLogFile={b}/log/slurmctld.log",
            f"SlurmdLogFile={b}/log/slurmd.log", "SlurmdDebug=debug", "MailProg=/bin/true",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres", "ReturnToService=2", "GresTypes=gpu",
            "SlurmctldTimeout=30", "SlurmdTimeout=30",
        ]
        if self.configless:
            lines.append("SlurmctldParameters=enable_configless")
        if self.health_check:
            lines += [f"HealthCheckProgram={self.health_check}",
                      f"HealthCheckInterval={self.interval}", "HealthCheckNodeState=ANY"]
        if self.prolog:
            lines.append(f"Prolog={self.prolog}")
        lines.append(self.extra_conf)
        gres = f" Gres={self.node_gres}" if self.node_gres else ""
        if self.node_include:
            lines.append(f"Include {self.node_include}")
        else:
            lines.append(f"NodeName={NODE} NodeAddr=127.0.0.1 {self._cpu()} RealMemory=1000{gres} "
                         "State=UNKNOWN")
        lines.append(f"PartitionName=gpu Nodes={NODE} Default=YES MaxTime=INFINITE State=UP")
        with open(self.slurm_conf, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def _cpu(self):
        if not hasattr(self, "_cpu_cached"):
            self._cpu_cached = _cpu_line(self.rt)
        return self._cpu_cached

    def run(self, argv, **kw):
        """Run a Slurm client (or a hook) where this version's programs live."""
        kw.setdefault("env", self.env)
        return self.rt.run(argv, **kw)

    def path(self, inside):
        """Host path of a path the node's programs see (/run/slurm/conf is the chroot's)."""
        return self.rt.path(inside)

    def write_gres(self, text):
        with open(self.gres_conf, "w") as fh:
            fh.write(text)

    @property
    def env(self):
        return dict(os.environ, SLURM_CONF=self.slurm_conf)

    # ---- daemons ------------------------------------------------------------------
    def start_munge(self):
        """munged alone: 24.11+ `slurmd -G` needs it."""
        if os.path.exists(os.path.join(self.base, "run", "munged.pid")):
            return
        b = self.base
        key = os.path.join(b, "munge", "munge.key")
        if not os.path.exists(key):
            with open(key, "wb") as fh:
                fh.write(os.urandom(1024))
            os.chmod(key, 0o400)
        self.rt.run(["munged", f"--key-file={key}", f"--socket={self.sock}",
                     f"--pid-file={b}/run/munged.pid", f"--log-file={b}/log/munged.log",
                     f"--seed-file={b}/munge/seed", "--force"], check=True, timeout=30)
        self._wait(lambda: os.path.exists(os.path.join(b, "run", "munged.pid")), 10,
                   "munged wrote no pid file")

    def slurmd_g(self):
        """`slurmd -G`: the GRES this node's slurmd would register, and its verdict."""
        os.makedirs(os.path.join(self.base, "spool", NODE), exist_ok=True)
        if self.version != "22.05":
            self.start_munge()
        env = dict(self.env, SLURM_CONF=self.slurm_conf)
        return self.rt.run(["slurmd", "-G", "-f", self.slurm_conf, "-N", NODE], env=env,
                           capture_output=True, text=True, timeout=90)

    def start(self, wait_idle=True):
        self.start_munge()
        self.rt.run(["slurmctld", "-f", self.slurm_conf, "-c"], check=True, timeout=30)
        self._wait(lambda: self.run(["scontrol", "ping"], capture_output=True,
                                    text=True, timeout=10).stdout.count("UP") > 0,
                   30, "slurmctld did not answer scontrol ping")
        self.start_slurmd()
        if wait_idle:
            self.wait_state("idle")
        return self

    def start_slurmd(self):
        os.makedirs(os.path.join(self.base, "spool", NODE), exist_ok=True)
        if self.configless:
            self._link_default_munge()
            env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
            argv = ["slurmd", "-N", NODE, "--conf-server", f"localhost:{self.ctld_port}"]
        else:
            env = self.env
            argv = ["slurmd", "-f", self.slurm_conf, "-N", NODE]
        self.rt.run(argv, env=env, check=True, timeout=60)
        self._wait(lambda: os.path.exists(os.path.join(self.base, "run", "slurmd.pid")), 30,
                   "slurmd wrote no pid file")

    def _link_default_munge(self):
        sock = self.path(MUNGE_DEFAULT_SOCK)  # the chroot's own /run for chroot versions
        os.makedirs(os.path.dirname(sock), exist_ok=True)
        if os.path.exists(sock) and not os.path.islink(sock):
            raise RuntimeError(f"a real munged owns {sock}; not touching it")
        if os.path.lexists(sock):
            os.unlink(sock)
        os.symlink(self.sock, sock)
        self.links.append(sock)

    def stop_slurmd(self):
        self._kill_pidfile("slurmd.pid")

    def stop(self):
        for pidfile in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            self._kill_pidfile(pidfile)
        for link in self.links:
            if os.path.islink(link) and os.readlink(link).startswith(self.base):
                os.unlink(link)
        link = self.path(CONFIGLESS_LINK)
        if os.path.islink(link) and os.readlink(link).startswith(self.base):
            os.unlink(link)

    def _kill_pidfile(self, name):
        path = os.path.join(self.base, "run", name)
        try:
            pid = int(open(path).read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.unlink(path)
        except OSError:
            pass

    # ---- queries ------------------------------------------------------------------
    def scontrol(self, *args, check=True):
        r = self.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"scontrol {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def node_info(self):
        out = self.scontrol("show", "node", NODE, "-o")
        info = {}
        for tok in out.split():
            k, _, v = tok.partition("=")
            info[k] = v
        reason = out.split("Reason=", 1)[1] if "Reason=" in out else ""
        info["Reason"] = reason.strip().rsplit(" [", 1)[0].strip() if reason else ""
        return info

    def state(self):
        r = self.run(["sinfo", "-h", "-N", "-n", NODE, "-o", "%T"],
                     capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def sinfo_reason(self):
        r = self.run(["sinfo", "-R", "-h", "-n", NODE, "-o", "%E"],
                     capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def sinfo_reason_20(self):
        """What a plain `sinfo -R` shows in its REASON column (first 20 characters)."""
        r = self.run(["sinfo", "-R", "-h", "-n", NODE],
                     capture_output=True, text=True, timeout=30)
        return r.stdout

    def wait_state(self, want, timeout=40):
        self._wait(lambda: self.state() == want, timeout,
                   lambda: f"node state {self.state()!r}, wanted {want!r}; "
                           f"reason {self.node_info().get('Reason')!r}")

    def wait_for(self, pred, timeout, what):
        self._wait(pred, timeout, what)

    def log(self, which="slurmd"):
        try:
            return open(os.path.join(self.base, "log", f"{which}.log")).read()
        except OSError:
            return ""

    @staticmethod
    def _wait(pred, timeout, what):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if pred():
                    return
            except (subprocess.SubprocessError, OSError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(what() if callable(what) else what)
