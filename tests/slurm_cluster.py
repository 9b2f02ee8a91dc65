"""A real one-node Slurm 22.05 cluster (Debian's packages) under one temporary directory.

Recipe and pitfalls: the README's "How it is tested against real Slurm". The daemons run as root
with private ports; configless mode serves slurm.conf and gres.conf from slurmctld and links
/run/slurm/conf to slurmd's conf-cache, exactly as on a production node.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time

NODE = "gpunode1"
MUNGE_DEFAULT_SOCK = "/run/munge/munge.socket.2"
CONFIGLESS_LINK = "/run/slurm/conf"


def available():
    if os.geteuid() != 0:
        return "needs root"
    for prog in ("munged", "slurmctld", "slurmd", "scontrol", "sinfo"):
        if shutil.which(prog) is None and not os.path.exists(f"/usr/sbin/{prog}"):
            return f"{prog} not installed (tests/run installs it as root)"
    return None


def _cpu_line():
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
    first = out.splitlines()[0].split()
    keep = [kv for kv in first[1:] if kv.split("=")[0] in
            ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")]
    return " ".join(keep)


class Cluster:
    def __init__(self, base, gres_conf, node_gres, configless=False, extra_conf="",
                 health_check=None, prolog=None, interval=5, node_include=None):
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
            lines.append(f"NodeName={NODE} NodeAddr=127.0.0.1 {_cpu_line()} RealMemory=1000{gres} "
                         "State=UNKNOWN")
        lines.append(f"PartitionName=gpu Nodes={NODE} Default=YES MaxTime=INFINITE State=UP")
        with open(self.slurm_conf, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def write_gres(self, text):
        with open(self.gres_conf, "w") as fh:
            fh.write(text)

    @property
    def env(self):
        return dict(os.environ, SLURM_CONF=self.slurm_conf)

    # ---- daemons ------------------------------------------------------------------
    def start(self, wait_idle=True):
        b = self.base
        key = os.path.join(b, "munge", "munge.key")
        with open(key, "wb") as fh:
            fh.write(os.urandom(1024))
        os.chmod(key, 0o400)
        subprocess.run(["munged", f"--key-file={key}", f"--socket={self.sock}",
                        f"--pid-file={b}/run/munged.pid", f"--log-file={b}/log/munged.log",
                        f"--seed-file={b}/munge/seed", "--force"], check=True, timeout=30)
        subprocess.run(["slurmctld", "-f", self.slurm_conf, "-c"], check=True, timeout=30)
        self._wait(lambda: subprocess.run(["scontrol", "ping"], env=self.env, capture_output=True,
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
        subprocess.run(argv, env=env, check=True, timeout=60)
        self._wait(lambda: os.path.exists(os.path.join(self.base, "run", "slurmd.pid")), 30,
                   "slurmd wrote no pid file")

    def _link_default_munge(self):
        os.makedirs(os.path.dirname(MUNGE_DEFAULT_SOCK), exist_ok=True)
        if os.path.exists(MUNGE_DEFAULT_SOCK) and not os.path.islink(MUNGE_DEFAULT_SOCK):
            raise RuntimeError(f"a real munged owns {MUNGE_DEFAULT_SOCK}; not touching it")
        if os.path.lexists(MUNGE_DEFAULT_SOCK):
            os.unlink(MUNGE_DEFAULT_SOCK)
        os.symlink(self.sock, MUNGE_DEFAULT_SOCK)
        self.links.append(MUNGE_DEFAULT_SOCK)

    def stop_slurmd(self):
        self._kill_pidfile("slurmd.pid")

    def stop(self):
        for pidfile in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            self._kill_pidfile(pidfile)
        for link in self.links:
            if os.path.islink(link) and os.readlink(link).startswith(self.base):
                os.unlink(link)
        if os.path.islink(CONFIGLESS_LINK) and os.readlink(CONFIGLESS_LINK).startswith(self.base):
            os.unlink(CONFIGLESS_LINK)

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
        r = subprocess.run(["scontrol", *args], env=self.env, capture_output=True, text=True,
                           timeout=30)
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
        r = subprocess.run(["sinfo", "-h", "-N", "-n", NODE, "-o", "%T"], env=self.env,
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def sinfo_reason(self):
        r = subprocess.run(["sinfo", "-R", "-h", "-n", NODE, "-o", "%E"], env=self.env,
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def sinfo_reason_20(self):
        """What a plain `sinfo -R` shows in its REASON column (first 20 characters)."""
        r = subprocess.run(["sinfo", "-R", "-h", "-n", NODE], env=self.env,
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
