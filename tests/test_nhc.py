"""migsync inside LBNL NHC: the real, unmodified NHC 1.4.3 runs conf/nhc/migsync.nhc.

NHC is the vendored copy in <repo>/../shared/vendor/nhc (CI keeps shared/ beside the clone),
or $MIGSYNC_NHC_DIR. Without it this module is skipped, and says why.

Two layers:
- NHC with recording node-mark-offline/online helpers: what check_migsync hands NHC for each
  outcome of migsync (real migsync on the recorded seed node, and a scripted stand-in for the
  exit codes a real node cannot produce on demand: 4, 70, a hang).
- NHC with its own helpers and NHC_RM=slurm against the real test cluster (marker `slurm`),
  on the seed node whose device files are in the real /dev (test_slurm_hooks.FakeNode).
"""
import os
import shutil
import subprocess
import sys

import pytest

import nhcdir
import slurm_cluster
from conftest import broken_nvidia_smi, node, run_cli, search_root_env
from migsync import act
from migsync.slurmctl import NodeStatus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NHC_DIR = nhcdir.nhc_dir()
CHECK_FILE = os.path.join(REPO, "conf", "nhc", "migsync.nhc")
HOOKS = os.path.join(REPO, "hooks")
N = slurm_cluster.NODE

if not os.path.isfile(os.path.join(NHC_DIR, "nhc")):
    pytest.skip(f"LBNL NHC not found at {NHC_DIR}: these tests run the real NHC (CI keeps "
                "shared/ beside the clone; or set MIGSYNC_NHC_DIR)", allow_module_level=True)

SEED_GRES_LINES = ("NodeName={n} Name=gpu Type=a100 File=/dev/nvidia[0,1]\n"
                   "NodeName={n} Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346,"
                   "355,364,373,382,391,472,481,490,508,517,526,535]\n")
# What migsync says about the seed node that lost gpu3/gi14 (hand-written from the layout).
LOST_REASON_START = "migsync: stale cap535 [stale-cap] "


class Nhc:
    """One NHC setup under ``tmp``: its conf dir, INCDIR with NHC's common.nhc and migsync.nhc,
    a log, and the wrapper a site gives slurmd as HealthCheckProgram."""

    def __init__(self, tmp, lines, helperdir=None, slurm_conf=None, timeout=20, link=True,
                 nhc_opts="", rt=None):
        self.dir = tmp / "nhc"
        self.scripts = self.dir / "scripts"
        self.rt = rt  # the Slurm runtime (host or a version's chroot) NHC runs in
        # NHC's files, unmodified, where a chroot sees them too (tmp is bound, ../shared not)
        dist = self.dir / "dist"
        (dist / "scripts").mkdir(parents=True)
        shutil.copy(os.path.join(NHC_DIR, "nhc"), dist / "nhc")
        shutil.copytree(os.path.join(NHC_DIR, "helpers"), dist / "helpers")
        self.scripts.mkdir()
        shutil.copy(os.path.join(NHC_DIR, "scripts", "common.nhc"), self.scripts)
        if link:  # as a source checkout would: the check then finds the checkout's .venv
            os.symlink(CHECK_FILE, self.scripts / "migsync.nhc")
        else:  # a copy knows no checkout: MIGSYNC_BIN or the usual places
            shutil.copy(CHECK_FILE, self.scripts / "migsync.nhc")
        self.conf = self.dir / "nhc.conf"
        self.log = self.dir / "nhc.log"
        self.runs = self.dir / "runs"
        self.set_conf(lines)
        exports = f"SLURM_CONF={slurm_conf}; export SLURM_CONF\n" if slurm_conf else ""
        self.wrapper = self.dir / "nhc-wrapper"
        # HOSTNAME/HOSTNAME_S: the test node's Slurm name is not the kernel's (nhc.md).
        self.wrapper.write_text(
            "#!/bin/sh\n" + exports +
            f"{dist}/nhc {nhc_opts} -D {self.dir} -c {self.conf} -t {timeout} "
            f"INCDIR={self.scripts} HELPERDIR={helperdir or dist / 'helpers'} NHC_RM=slurm "
            f"LOGFILE={self.log} HOSTNAME=${{SLURMD_NODENAME:-{N}}} "
            f"HOSTNAME_S=${{SLURMD_NODENAME:-{N}}}\n"
            f"rc=$?\necho $rc >> {self.runs}\nexit $rc\n")
        self.wrapper.chmod(0o755)

    def set_conf(self, lines):
        self.conf.write_text("\n".join(lines) + "\n")

    def run(self, env=None):
        """Run NHC as slurmd would: only SLURMD_NODENAME in the environment."""
        env = {"SLURMD_NODENAME": N} if env is None else env
        env = {**env, **search_root_env()}  # hermetic: never the machine's /etc/migsync
        r = run_in(self.rt, [str(self.wrapper)], env=env,
                   capture_output=True, text=True, timeout=90, cwd=str(self.dir))
        return r.returncode

    def log_text(self):
        try:
            return self.log.read_text()
        except OSError:
            return ""

    def run_count(self):
        try:
            return len(self.runs.read_text().split())
        except OSError:
            return 0


def run_in(rt, argv, **kw):
    """Run where that Slurm version's clients are: the host, or its chroot."""
    return rt.run(argv, **kw) if rt is not None else subprocess.run(argv, **kw)


def recording_helpers(tmp):
    """node-mark-offline/online that record what NHC asks of them, instead of scontrol."""
    d = tmp / "helpers"
    d.mkdir()
    for name, word in (("node-mark-offline", "offline"), ("node-mark-online", "online")):
        h = d / name
        h.write_text(f"#!/bin/sh\nhost=$1; shift\nprintf '%s\\t%s\\t%s\\n' {word} \"$host\" "
                     f"\"$*\" >> {tmp}/marks\n")
        h.chmod(0o755)
    return d


def marks(tmp):
    try:
        return [ln.split("\t") for ln in (tmp / "marks").read_text().splitlines()]
    except OSError:
        return []


def seed_args(name, gres):
    d = node(name)
    return (f"--backend nvidia-smi --nvidia-smi {d}/nvidia-smi --root {d}/root "
            f"--gres-conf {gres} --node {N}")


@pytest.fixture
def seed_gres(tmp_path):
    p = tmp_path / "gres.conf"
    p.write_text(SEED_GRES_LINES.format(n=N))
    return p


# ---- migsync check --reason-only: the one line check_migsync hands NHC ----------------------

def test_reason_only_prints_nothing_on_a_consistent_node(seed_gres):
    r = run_cli("check", "--reason-only", *seed_args("seed", seed_gres).split())
    assert (r.code, r.out, r.err) == (0, "", "")


def test_reason_only_prints_the_drain_reason_healthcheck_would_use(seed_gres):
    r = run_cli("check", "--reason-only", *seed_args("seed-lost", seed_gres).split())
    assert r.code == 1
    assert r.out.startswith(LOST_REASON_START) and r.out.count("\n") == 1
    assert "nvidia-cap535" in r.out and "gpu3/gi14" in r.out
    r = run_cli("check", "--reason-only", "--reason-prefix", "NHC: migsync:",
                *seed_args("seed-lost", seed_gres).split())
    assert r.out.startswith("NHC: migsync: stale cap535 [stale-cap] ")


def test_reason_only_gives_the_discovery_reason_with_exit_3(seed_gres, tmp_path):
    args = seed_args("seed", seed_gres).replace(f"{node('seed')}/nvidia-smi",
                                                broken_nvidia_smi(tmp_path))
    r = run_cli("check", "--reason-only", *args.split())
    assert r.code == 3
    assert r.out.startswith("migsync: no GPU info [discovery] nvidia-smi ") and r.out.count("\n") == 1
    assert "couldn't communicate with the NVIDIA driver" in r.out, r.out


def test_reason_only_refuses_drain(seed_gres):
    r = run_cli("check", "--reason-only", "--drain", *seed_args("seed", seed_gres).split())
    assert r.code == 2 and "--reason-only" in r.err and r.out == ""


# ---- a node drained by NHC, seen by migsync's own health check --------------------------------

@pytest.mark.parametrize("problem", [None, "migsync: stale cap535 [stale-cap] gres.conf:2: x"])
def test_migsync_healthcheck_leaves_a_node_nhc_drained_alone(problem):
    # NHC's exact format: node-mark-offline sets Reason="NHC: <die message>".
    status = NodeStatus(N, {"IDLE", "DRAIN"}, "NHC: migsync: stale cap535 [stale-cap] gres.conf:2: x")
    d = act.decide(status, problem, "migsync:")
    assert d.action == "none" and "someone else" in d.why


# ---- real NHC, recording helpers ------------------------------------------------------------

def nhc_recording(tmp, lines, **kw):
    return Nhc(tmp, lines, helperdir=recording_helpers(tmp), **kw)


def test_nhc_marks_a_consistent_node_online(tmp_path, seed_gres):
    nhc = nhc_recording(tmp_path, [f"* || check_migsync {seed_args('seed', seed_gres)}"])
    assert nhc.run() == 0
    assert marks(tmp_path) == [["online", N, ""]]


def test_nhc_fails_a_mismatched_node_with_migsyncs_reason(tmp_path, seed_gres):
    nhc = nhc_recording(tmp_path, [f"* || check_migsync {seed_args('seed-lost', seed_gres)}"])
    assert nhc.run() == 1
    (what, host, msg), = marks(tmp_path)
    assert (what, host) == ("offline", N)
    assert msg.startswith(LOST_REASON_START) and "nvidia-cap535" in msg
    assert f"Health check failed:  {LOST_REASON_START}" in nhc.log_text()


def fake_migsync(tmp, code, out="", err="", sleep=0):
    """A stand-in for exit codes a recorded node cannot produce on demand; records its argv."""
    p = tmp / "fake-migsync"
    p.write_text("#!/bin/sh\n"
                 f"for a in \"$@\"; do printf '%s\\n' \"$a\"; done > {tmp}/argv\n"
                 + (f"sleep {sleep}\n" if sleep else "")
                 + (f"cat <<'EOF'\n{out}\nEOF\n" if out else "")
                 + (f"cat >&2 <<'EOF'\n{err}\nEOF\n" if err else "")
                 + f"exit {code}\n")
    p.chmod(0o755)
    return p


# (exit code, stdout, stderr, check args) -> (NHC exit, offline message or None, log must say)
EXIT_TABLE = [
    (0, "", "", "", 0, None, None),
    (1, "migsync: stale cap535 [stale-cap] gres.conf:2: x (in 'NodeName=\"a\"')", "", "",
     1, "migsync: stale cap535 [stale-cap] gres.conf:2: x (in NodeName=a)", None),
    (1, "NHC: migsync: stale cap535 [stale-cap] y", "", "",
     1, "migsync: stale cap535 [stale-cap] y", None),
    (1, "", "/usr/bin/python3: No module named migsync", "",
     0, None, "migsync's own error (exit 1 without a reason)"),
    (2, "", "migsync: /etc/migsync/migsync.toml:3: unknown key 'drian'", "",
     0, None, "migsync's own error (exit 2"),
    (3, "migsync: no GPU info [discovery] NVML: driver not loaded", "", "",
     0, None, "GPUs not readable, node not failed (check_migsync -d would): migsync: no GPU info"),
    (3, "migsync: no GPU info [discovery] NVML: driver not loaded", "", "-d",
     1, "migsync: no GPU info [discovery] NVML: driver not loaded", None),
    (3, "", "", "-d", 1, "migsync: no GPU info [discovery]", None),
    (4, "", "migsync: another run holds /run/migsync.lock", "",
     0, None, "migsync's own error (exit 4"),
    (70, "", "migsync: internal error: KeyError: 'x'", "-d",
     0, None, "migsync's own error (exit 70"),
]


@pytest.mark.parametrize("code,out,err,opts,nhc_rc,offline,logged", EXIT_TABLE)
def test_check_migsync_maps_migsync_exit_codes(tmp_path, code, out, err, opts, nhc_rc, offline,
                                               logged):
    fake = fake_migsync(tmp_path, code, out, err)
    nhc = nhc_recording(tmp_path, [f"* || export MIGSYNC_BIN={fake}",
                                   f"* || check_migsync {opts} --ignore gres-count-mismatch"])
    assert nhc.run() == nhc_rc
    got = marks(tmp_path)
    if offline is None:
        assert got == [["online", N, ""]]
    else:
        assert got == [["offline", N, offline]]
    log = nhc.log_text()
    if logged:
        assert logged in log
        assert err in log  # migsync's own message reaches NHC's log
    # ARGS reach `migsync check` as they are; SLURMD_NODENAME is set, so no --node is added
    assert (tmp_path / "argv").read_text().split("\n")[:-1] == [
        "check", "--reason-only", "--ignore", "gres-count-mismatch"]


def test_check_migsync_names_the_node_nhc_marks_when_slurmd_did_not_start_it(tmp_path):
    fake = fake_migsync(tmp_path, 0)
    nhc = nhc_recording(tmp_path, [f"* || export MIGSYNC_BIN={fake}", "* || check_migsync"])
    assert nhc.run(env={}) == 0  # NHC from cron or by hand: no SLURMD_NODENAME
    assert (tmp_path / "argv").read_text().split() == ["check", "--reason-only", "--node", N]


@pytest.mark.parametrize("opts,nhc_rc,offline", [
    ("-t 1", 0, None),
    ("-d -t 1", 1, "migsync: no GPU info [timeout] migsync check ran over 1s"),
])
def test_a_hanging_migsync_is_cut_off_before_nhcs_watchdog(tmp_path, opts, nhc_rc, offline):
    fake = fake_migsync(tmp_path, 0, sleep=120)
    nhc = nhc_recording(tmp_path, [f"* || export MIGSYNC_BIN={fake}",
                                   f"* || check_migsync {opts}"], timeout=25)
    assert nhc.run() == nhc_rc
    got = marks(tmp_path)
    # NHC's own watchdog would have failed the node with "Script timed out ..."
    assert got == ([["online", N, ""]] if offline is None else [["offline", N, offline]])
    if offline is None:
        assert "ran over 1s" in nhc.log_text()


def test_the_watchdog_budget_caps_migsyncs_time(tmp_path):
    # nhc -t 6 leaves 6 - 4 = 2 s at most: less than the default 20 s, and than NHC's watchdog
    fake = fake_migsync(tmp_path, 0, sleep=120)
    nhc = nhc_recording(tmp_path, [f"* || export MIGSYNC_BIN={fake}", "* || check_migsync"],
                        timeout=6)
    assert nhc.run() == 0
    assert marks(tmp_path) == [["online", N, ""]]
    log = nhc.log_text()
    assert "watchdog" not in log.lower() or "leaves no time" in log
    assert "migsync check ran over" in log


@pytest.mark.parametrize("opts,say", [("-t", "whole number of seconds"),
                                      ("-t 2.5", "whole number of seconds")])
def test_a_bad_check_option_is_logged_not_a_failure(tmp_path, opts, say):
    fake = fake_migsync(tmp_path, 1, out="migsync: would drain")
    nhc = nhc_recording(tmp_path, [f"* || export MIGSYNC_BIN={fake}", f"* || check_migsync {opts}"])
    assert nhc.run() == 0
    assert marks(tmp_path) == [["online", N, ""]]
    assert say in nhc.log_text()


def test_check_migsync_leaks_no_variables_and_keeps_nhcs_shell_settings(tmp_path):
    fake = fake_migsync(tmp_path, 0)
    probe = "{ compgen -v; printf '%q\\n' \"$IFS\" \"$-\"; }"
    nhc = nhc_recording(tmp_path, [f"* || export MIGSYNC_BIN={fake}",
                                   f"* || {probe} > {tmp_path}/before",
                                   "* || check_migsync -d -t 5 --ignore x",
                                   f"* || {probe} > {tmp_path}/after"])
    assert nhc.run() == 0
    before = (tmp_path / "before").read_text().splitlines()
    after = (tmp_path / "after").read_text().splitlines()
    assert after == before


def test_a_copy_of_the_check_without_migsync_anywhere_is_logged(tmp_path, seed_gres):
    if any(os.path.exists(p) for p in ("/usr/local/bin/migsync", "/usr/bin/migsync",
                                       "/opt/migsync/bin/python3")):
        pytest.skip("this machine has migsync installed in a place the check searches")
    nhc = nhc_recording(tmp_path, [f"* || check_migsync {seed_args('seed-lost', seed_gres)}"],
                        link=False)
    assert nhc.run() == 0
    assert marks(tmp_path) == [["online", N, ""]]
    assert "check_migsync: migsync not found (no MIGSYNC_BIN in nhc.conf" in nhc.log_text()


# ---- real NHC, its own helpers, NHC_RM=slurm, the real test cluster ----------------------------

from test_slurm_hooks import FakeNode, SEED_GRES, SEED_SLURM_GRES, write_config  # noqa: E402,F401
from test_slurm_hooks import why as SLURM_WHY  # noqa: E402



try:  # 22.05 on the host, 24.11 and 26.05 in chroots, where the fixture has them
    from slurm_cluster import slurm_rt  # noqa: F401
except ImportError:
    @pytest.fixture
    def slurm_rt():
        return None


def slurm_test(fn):
    fn = pytest.mark.slurm(fn)
    return pytest.mark.skip(reason=SLURM_WHY)(fn) if SLURM_WHY else fn


@pytest.fixture
def nhc_cluster(tmp_path, slurm_rt):
    """The seed node in a real cluster; NHC set up to run check_migsync on it. With
    ``by_slurmd`` slurmd runs NHC as its HealthCheckProgram every 5 s; otherwise the test
    runs NHC itself (the same wrapper, the same bare environment), one run at a time."""
    made = []

    def make(lines=None, by_slurmd=False, toml_extra="", configless=False):
        fake = FakeNode(tmp_path)
        made.append((None, fake))
        cluster = slurm_cluster.Cluster(tmp_path / "slurm", SEED_GRES, SEED_SLURM_GRES, interval=5,
                                        configless=configless,
                                        **({"runtime": slurm_rt} if slurm_rt is not None else {}))
        made[-1] = (cluster, fake)
        cfg = write_config(tmp_path, fake, cluster, configless)
        if toml_extra:
            cfg.write_text(cfg.read_text() + toml_extra + "\n")
        # configless: neither NHC's scontrol/sinfo nor migsync are told where slurm.conf is
        nhc = Nhc(tmp_path, lines or [f"* || check_migsync --config {cfg}"],
                  slurm_conf=None if configless else cluster.slurm_conf, rt=slurm_rt)
        cluster.rt_ = slurm_rt
        if by_slurmd:
            cluster.health_check = str(nhc.wrapper)
            cluster.write_slurm_conf()
        cluster.cfg, cluster.tmp = cfg, tmp_path
        cluster.start()
        return cluster, fake, nhc

    yield make
    for cluster, fake in made:
        if cluster is not None:
            cluster.stop()
        fake.cleanup()


def reason(cluster):
    return cluster.node_info().get("Reason", "")


def standalone_healthcheck(cluster):
    """migsync's own health check run by hand beside NHC (hooks/healthcheck)."""
    r = run_in(cluster.rt_, [os.path.join(HOOKS, "healthcheck"), "--json", "--no-syslog"],
               env={"SLURMD_NODENAME": N, "MIGSYNC_CONFIG": str(cluster.cfg), **search_root_env()},
               capture_output=True, text=True, timeout=60)
    import json
    return json.loads(r.stdout)


@slurm_test
@pytest.mark.parametrize("configless", [False, True], ids=["slurm.conf", "configless"])
def test_slurmd_running_nhc_keeps_drains_and_resumes_the_node(nhc_cluster, configless):
    cluster, fake, nhc = nhc_cluster(by_slurmd=True, configless=configless)
    cluster.wait_for(lambda: nhc.run_count() >= 3, 40, "slurmd did not run NHC three times")
    assert cluster.state() == "idle", reason(cluster)
    assert set(nhc.runs.read_text().split()) == {"0"}, nhc.log_text()
    fake.lose_instance()
    cluster.wait_for(lambda: reason(cluster).startswith("NHC: "), 30,
                     lambda: f"not drained by NHC; state {cluster.state()}; log {nhc.log_text()[-1500:]}")
    got = reason(cluster)
    assert got.startswith("NHC: " + LOST_REASON_START) and "nvidia-cap535" in got
    assert cluster.state() == "drained"
    assert "NHC: migsync: stale " in cluster.sinfo_reason_20()  # sinfo -R's 20 characters
    fake.restore_instance()
    cluster.wait_state("idle", timeout=30)
    assert cluster.sinfo_reason() == ""


@slurm_test
def test_an_admins_drain_is_never_resumed_or_overwritten_by_nhc(nhc_cluster):
    cluster, fake, nhc = nhc_cluster()
    cluster.scontrol("update", f"nodename={N}", "state=drain", "reason=admin: swapping PSU")
    fake.lose_instance()
    assert nhc.run() == 1  # the check fails ...
    assert f"Health check failed:  {LOST_REASON_START}" in nhc.log_text()
    assert reason(cluster) == "admin: swapping PSU"  # ... but the admin's reason stays
    fake.restore_instance()
    assert nhc.run() == 0
    assert cluster.state() == "drained" and reason(cluster) == "admin: swapping PSU"
    assert "Not onlining gpunode1:  Down for non-NHC reason (admin: swapping PSU)" in nhc.log_text()


@slurm_test
@pytest.mark.parametrize("case", ["MIGSYNC_BIN absent", "python without migsync",
                                  "bad migsync.toml", "bad gres.conf"])
def test_migsync_missing_or_misconfigured_never_drains_and_nhc_logs_why(nhc_cluster, tmp_path,
                                                                          case):
    cluster, fake, nhc = nhc_cluster()
    cfg = cluster.cfg
    lines, why = [], []
    if case == "MIGSYNC_BIN absent":
        lines = [f"* || export MIGSYNC_BIN={tmp_path}/opt/bin/migsync"]
        why = [f"check_migsync: migsync not found at {tmp_path}/opt/bin/migsync"]
        check = f"check_migsync --config {cfg}"
    elif case == "python without migsync":
        # the interpreter the venv was made from: there in every chroot the fixture binds
        base = os.path.join(os.path.realpath(sys.base_prefix), "bin", "python3")
        lines = [f"* || export MIGSYNC_BIN='{base} -I -m migsync'"]
        why = ["No module named migsync", "migsync's own error (exit 1 without a reason)"]
        check = f"check_migsync --config {cfg}"
    elif case == "bad migsync.toml":
        bad = tmp_path / "bad.toml"
        bad.write_text(cfg.read_text() + "drian = true\n")
        why = [str(bad), "drian", "migsync's own error (exit 2)"]
        check = f"check_migsync -d --config {bad}"
    else:
        bad = tmp_path / "bad-gres.conf"
        bad.write_text(SEED_GRES + f"NodeName={N} Name=gpu File=/dev/nvidia[0-\n")
        why = [f"{bad}:3", "migsync's own error (exit 2)"]
        check = f"check_migsync -d --config {cfg} --gres-conf {bad}"
    nhc.set_conf(lines + [f"* || {check}"])
    fake.lose_instance()  # a working check would drain now
    assert nhc.run() == 0
    assert cluster.state() == "idle" and reason(cluster) == ""
    log = nhc.log_text()
    for w in why:
        assert w in log
    assert "node not checked" in log or "node not failed" in log


@slurm_test
def test_a_discovery_failure_is_logged_and_with_d_fails_the_node(nhc_cluster, tmp_path):
    cluster, fake, nhc = nhc_cluster()
    smi = broken_nvidia_smi(tmp_path)  # runs, cannot reach the driver
    nhc.set_conf([f"* || check_migsync --config {cluster.cfg} --nvidia-smi {smi}"])
    assert nhc.run() == 0
    assert cluster.state() == "idle"
    assert ("GPUs not readable, node not failed (check_migsync -d would): migsync: no GPU info "
            "[discovery] nvidia-smi") in nhc.log_text()
    nhc.set_conf([f"* || check_migsync -d --config {cluster.cfg} --nvidia-smi {smi}"])
    assert nhc.run() == 1
    assert reason(cluster).startswith("NHC: migsync: no GPU info [discovery] nvidia-smi ")
    nhc.set_conf([f"* || check_migsync -d --config {cluster.cfg}"])
    assert nhc.run() == 0
    cluster.wait_state("idle", timeout=30)


@slurm_test
def test_migsyncs_own_healthcheck_leaves_a_node_nhc_drained_alone(nhc_cluster):
    cluster, fake, nhc = nhc_cluster()
    fake.lose_instance()
    assert nhc.run() == 1
    drained = reason(cluster)
    assert drained.startswith("NHC: " + LOST_REASON_START)
    doc = standalone_healthcheck(cluster)  # still mismatched: must not rewrite NHC's reason
    assert doc["action"] == "none" and "someone else" in doc["action_why"]
    assert reason(cluster) == drained
    fake.restore_instance()
    doc = standalone_healthcheck(cluster)  # consistent: NHC's drain is NHC's to resume
    assert doc["ok"] is True and doc["action"] == "none"
    assert cluster.state() == "drained" and reason(cluster) == drained
    assert nhc.run() == 0
    cluster.wait_state("idle", timeout=30)


@slurm_test
def test_with_prefix_nhc_migsync_the_prolog_drain_is_nhcs_to_resume(nhc_cluster):
    # reason_prefix = "NHC: migsync:" (README, With NHC): drains by migsync's Prolog or
    # health check carry NHC's leader, so NHC resumes them; check_migsync does not double it.
    cluster, fake, nhc = nhc_cluster(toml_extra='reason_prefix = "NHC: migsync:"')
    fake.lose_instance()
    doc = standalone_healthcheck(cluster)
    assert doc["action"] == "drain"
    assert reason(cluster).startswith("NHC: " + LOST_REASON_START)
    assert nhc.run() == 1
    assert reason(cluster).startswith("NHC: " + LOST_REASON_START)  # not "NHC: NHC: ..."
    fake.restore_instance()
    assert nhc.run() == 0
    cluster.wait_state("idle", timeout=30)


@pytest.mark.parametrize("host,runs", [
    ("gpu-a007", [[], []]),  # * and {gpu-a[001-064]}; -d and -t are check_migsync's own
    ("gpu-h200-3", [[], ["--ignore", "gres-count-mismatch"]]),
    ("gpu-test2", [[], ["--config", "/etc/migsync/test.toml", "--gres-conf",
                        "/etc/slurm/gres.test.conf"]]),
    ("login1", [[]]),
])
def test_the_example_nhc_conf_runs_the_checks_it_says(tmp_path, host, runs):
    """conf/nhc/nhc.conf.example with every line uncommented, through NHC's host matching."""
    fake = tmp_path / "fake-migsync"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/calls\n")
    fake.chmod(0o755)
    lines = []
    for ln in open(os.path.join(REPO, "conf", "nhc", "nhc.conf.example")):
        ln = ln.strip()
        if "||" in ln:
            ln = ln.lstrip("# ")
            if "MIGSYNC_BIN=" in ln:
                ln = f"* || export MIGSYNC_BIN={fake}"
            lines.append(ln)
    nhc = nhc_recording(tmp_path, lines)
    assert nhc.run(env={"SLURMD_NODENAME": host}) == 0, nhc.log_text()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [" ".join(["check", "--reason-only"] + r) for r in runs]


def test_migsync_is_started_isolated_from_cwd_and_pythonpath(tmp_path, seed_gres):
    # A `migsync` package where NHC runs and on PYTHONPATH would fail the node if imported.
    evil = tmp_path / "evil"
    (evil / "migsync").mkdir(parents=True)
    (evil / "migsync" / "__init__.py").write_text("")
    (evil / "migsync" / "cli.py").write_text(
        "import sys\ndef main_exit():\n    print('migsync: imported from PYTHONPATH')\n"
        "    sys.exit(1)\n")
    nhc = nhc_recording(tmp_path, [f"* || check_migsync {seed_args('seed', seed_gres)}"],
                        link=False)
    # As install-hooks leaves it: this interpreter written in, migsync from its site-packages.
    check = nhc.scripts / "migsync.nhc"
    text = check.read_text()
    assert text.count('MIGSYNC_PYTHON_BAKED=""') == 1
    check.write_text(text.replace('MIGSYNC_PYTHON_BAKED=""', f'MIGSYNC_PYTHON_BAKED="{sys.executable}"'))
    r = subprocess.run([str(nhc.wrapper)], env={"SLURMD_NODENAME": N, "PYTHONPATH": str(evil),
                                                 **search_root_env()},
                       cwd=str(evil), capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, nhc.log_text()
    assert marks(tmp_path) == [["online", N, ""]]


def test_install_hooks_places_the_check_and_nhc_runs_the_installed_migsync(tmp_path, seed_gres):
    r = run_cli("install-hooks", "--help")
    if r.code != 0:
        pytest.skip("this migsync has no install-hooks command yet")
    incdir = tmp_path / "etc-nhc-scripts"
    incdir.mkdir()
    r = run_cli("install-hooks", tmp_path / "hooks", "--nhc-dir", incdir)
    assert r.code == 0, r.err
    installed = (incdir / "migsync.nhc").read_text()
    assert 'MIGSYNC_PYTHON_BAKED=""' not in installed  # the interpreter was written in
    nhc = nhc_recording(tmp_path, [f"* || check_migsync {seed_args('seed-lost', seed_gres)}"],
                        link=False)
    shutil.copy(incdir / "migsync.nhc", nhc.scripts / "migsync.nhc")  # a copy: no checkout
    assert nhc.run() == 1
    (what, host, msg), = marks(tmp_path)
    assert what == "offline" and msg.startswith(LOST_REASON_START)


@pytest.mark.parametrize("mode", ["-a", "-f"], ids=["check-all", "forked"])
@pytest.mark.parametrize("code,out,offline", [
    (1, "migsync: stale cap535 [stale-cap] x", "migsync: stale cap535 [stale-cap] x"),
    (2, "", None)])
def test_nhcs_check_all_and_forked_modes(tmp_path, mode, code, out, offline):
    fake = fake_migsync(tmp_path, code, out, "migsync: bad setting" if code == 2 else "")
    nhc = nhc_recording(tmp_path, [f"* || export MIGSYNC_BIN={fake}", "* || check_migsync",
                                   "* || /bin/true"], nhc_opts=mode)
    assert nhc.run() == (0 if offline is None else 1)
    assert marks(tmp_path) == ([["online", N, ""]] if offline is None else
                               [["offline", N, offline]])


# Slurm releases that keep an admin's reason on a node the admin resumed (nhc.md and
# slurm-test-cluster.md in ../shared/reference: 24.11.5 only).
KEEPS_OLD_REASON_AFTER_RESUME = {"24.11"}


@slurm_test
def test_after_an_admin_resumed_the_node_an_nhc_failure_drains_as_the_release_allows(nhc_cluster,
                                                                                       slurm_rt):
    cluster, fake, nhc = nhc_cluster()
    version = slurm_rt.version if slurm_rt is not None else "22.05"
    cluster.scontrol("update", f"nodename={N}", "state=drain", "reason=admin: swapping PSU")
    cluster.scontrol("update", f"nodename={N}", "state=resume")
    cluster.wait_state("idle")
    fake.lose_instance()
    assert nhc.run() == 1
    if version in KEEPS_OLD_REASON_AFTER_RESUME:
        # NHC's node-mark-offline sees the admin's leftover reason on an idle node, keeps it
        # as a foreign note, and so never resumes the node: the trap the README warns about.
        assert reason(cluster) == "admin: swapping PSU"
        fake.restore_instance()
        assert nhc.run() == 0
        assert cluster.state() == "drained"
    else:
        assert reason(cluster).startswith("NHC: " + LOST_REASON_START)
        fake.restore_instance()
        assert nhc.run() == 0
        cluster.wait_state("idle", timeout=30)
