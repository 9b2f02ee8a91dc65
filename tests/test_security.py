"""Root-safety (issue 14): each attack of the security review, run by an unprivileged user
(`setpriv --reuid=65534`, i.e. nobody) against migsync running as root on the real code
paths, and shown to fail. Without root these tests cannot make the two sides and are skipped.
"""
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import hermetic_env, node, run_cli
from migsync import fsutil, state

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SAMPLE = os.path.join(REPO, "migsync", "sample", "seed-node")
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root (victim) and setpriv (attacker)")


def as_nobody(*argv, check=True, **kw):
    """Run argv as nobody:nogroup with no supplementary groups: the local attacker."""
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv],
                       capture_output=True, text=True, timeout=30, **kw)
    if check:
        assert r.returncode == 0, (argv, r.stderr)
    return r


def open_up(path):
    """Let nobody reach ``path`` (pytest's tmp directories are root-only)."""
    p = os.path.abspath(path)
    while p not in ("/", "/tmp"):
        os.chmod(p, os.stat(p).st_mode | 0o755)
        p = os.path.dirname(p)


def migsync(*args, env=None, timeout=60):
    """migsync as root, in a process of its own, as slurmd would start it."""
    e = hermetic_env(PYTHONPATH=REPO, MIGSYNC_CONFIG=os.devnull, PATH="/usr/bin:/bin",
                     SLURM_CONF=os.path.join(SAMPLE, "slurm.conf"))  # not the machine's /run/slurm
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "migsync", *map(str, args)], env=e, cwd="/",
                          capture_output=True, text=True, timeout=timeout)


def acting(cmd, tmp_path, scontrol, state_dir, *extra, seed="seed-lost"):
    d = node(seed)
    return migsync(cmd, "--no-syslog", "--backend", "nvidia-smi",
                   "--nvidia-smi", os.path.join(d, "nvidia-smi"), "--root", os.path.join(d, "root"),
                   "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                   "--lock-file", state_dir / "lock", "--cache-file", state_dir / "state.json",
                   "--slurm-backend", "scontrol", "--scontrol", scontrol, *extra)


def one_line(err):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    return lines


@pytest.fixture
def state_dir(tmp_path):
    d = tmp_path / "run-migsync"
    d.mkdir(mode=0o755)
    open_up(d)
    return d


# --- the lock ---------------------------------------------------------------------------

def test_nobody_cannot_open_the_lock_let_alone_hold_it(tmp_path, scontrol, state_dir):
    r = acting("healthcheck", tmp_path, scontrol[0], state_dir, seed="seed")
    assert r.returncode == 0, r.stderr
    lock = state_dir / "lock"
    assert stat.S_IMODE(os.lstat(lock).st_mode) == 0o600 and os.lstat(lock).st_uid == 0
    r = as_nobody("flock", "-x", "-n", str(lock), "true", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_a_held_lock_does_not_stop_the_prologs_check(tmp_path, scontrol, state_dir):
    """Whoever holds the lock (here a process that never lets go), the Prolog still checks
    procfs and refuses the job on a mismatched node."""
    lock = state_dir / "lock"
    holder = subprocess.Popen(["flock", "-x", str(lock), "sleep", "300"])
    try:
        import time
        for _ in range(100):
            if lock.exists():
                break
            time.sleep(0.05)
        r = acting("prolog", tmp_path, scontrol[0], state_dir, "--lock-wait", "0.2")
        assert r.returncode == 1, r.stderr  # the mismatch (seed-lost) is still found
        assert "checking without the lock" in r.stderr
        r = acting("prolog", tmp_path, scontrol[0], state_dir, "--lock-wait", "0.2", seed="seed")
        assert r.returncode == 0, r.stderr
        r = acting("healthcheck", tmp_path, scontrol[0], state_dir, "--lock-wait", "0.2")
        assert r.returncode == 4 and "neither checked nor acted" in r.stderr  # reported, not silent
    finally:
        holder.kill()
        holder.wait()


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path, scontrol, state_dir):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, state_dir / "lock")
    r = acting("healthcheck", tmp_path, scontrol[0], state_dir)
    assert r.returncode == 2 and "cannot open the lock file" in r.stderr
    assert victim.read_text() == "precious\n"
    assert not scontrol[1].exists()
    r = acting("prolog", tmp_path, scontrol[0], state_dir)  # the Prolog logs it and exits 0
    assert r.returncode == 0 and "cannot open the lock file" in r.stderr


@pytest.mark.parametrize("how", ["world-writable", "owned-by-nobody", "symlink"])
def test_an_unsafe_state_directory_is_refused(tmp_path, scontrol, how):
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    d = tmp_path / "run-migsync"
    if how == "world-writable":
        d.mkdir()
        os.chmod(d, 0o777)
    elif how == "owned-by-nobody":
        d.mkdir(mode=0o755)
        os.chown(d, NOBODY, NOBODY)
    else:
        os.symlink(real, d)
    r = acting("healthcheck", tmp_path, scontrol[0], d)
    lines = one_line(r.stderr)
    assert r.returncode == 2 and "refused" in lines[0], r.stderr
    assert not scontrol[1].exists()
    r = acting("prolog", tmp_path, scontrol[0], d)
    assert r.returncode == 0 and "refused" in r.stderr
    assert not os.path.exists(real / "lock") and not os.path.exists(real / "state.json")


def test_the_state_directory_is_created_0755_whatever_the_umask(tmp_path, monkeypatch):
    target = str(tmp_path / "run" / "migsync")
    os.mkdir(tmp_path / "run")
    monkeypatch.setattr(fsutil, "STATE_DIR", target)
    old = os.umask(0)
    try:
        assert fsutil.state_dir(target) == target
    finally:
        os.umask(old)
    st = os.lstat(target)
    assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == 0
    other = tmp_path / "elsewhere" / "x"  # only THE state directory is ever created
    with pytest.raises(fsutil.UnsafePathError, match="does not exist"):
        fsutil.state_dir(str(other))


# --- the Prolog cache -----------------------------------------------------------------

def forged_ok(tmp_path, scontrol, state_dir):
    """A full check on the mismatched node writes the real cache; return it with ok forged."""
    r = acting("healthcheck", tmp_path, scontrol[0], state_dir)
    assert r.returncode == 1, r.stderr
    cache = state_dir / "state.json"
    assert stat.S_IMODE(os.lstat(cache).st_mode) == 0o600
    doc = json.loads(cache.read_text())
    assert doc["ok"] is False
    doc["ok"], doc["findings"] = True, []
    return cache, json.dumps(doc)


@pytest.mark.parametrize("how", ["owned-by-nobody", "mode-0644", "symlink-to-nobodys-file"])
def test_a_forged_cache_is_ignored(tmp_path, scontrol, state_dir, how):
    cache, forged = forged_ok(tmp_path, scontrol, state_dir)
    attacker = tmp_path / "attacker"
    attacker.mkdir()
    os.chown(attacker, NOBODY, NOBODY)
    open_up(attacker)
    mine = attacker / "state.json"
    as_nobody("sh", "-c", f"cat > {mine}", input=forged)  # the attacker writes the verdict
    os.unlink(cache)
    if how == "owned-by-nobody":  # as if planted in the directory
        shutil.copy(mine, cache)
        os.chown(cache, NOBODY, NOBODY)
        os.chmod(cache, 0o600)
    elif how == "mode-0644":
        shutil.copy(mine, cache)
        os.chmod(cache, 0o644)
    else:
        os.symlink(mine, cache)
    r = acting("prolog", tmp_path, scontrol[0], state_dir)
    assert r.returncode == 1, r.stderr  # the full procfs check ran and found the mismatch
    assert state.load(str(cache)) is None


def test_the_cache_fingerprint_covers_included_files(tmp_path, scontrol, state_dir):
    """An edited Include must not leave a stale verdict: the fingerprint covers every file
    the check read."""
    inc = tmp_path / "gpus.conf"
    inc.write_text(open(os.path.join(SAMPLE, "gres.conf")).read())
    top = tmp_path / "gres.conf"
    top.write_text(f"Include {inc}\n")
    d = node("seed")
    args = ["--no-syslog", "--backend", "nvidia-smi", "--nvidia-smi", os.path.join(d, "nvidia-smi"),
            "--root", os.path.join(d, "root"), "--gres-conf", top, "--node", "c51-g002",
            "--lock-file", state_dir / "lock", "--cache-file", state_dir / "state.json",
            "--slurm-backend", "scontrol", "--scontrol", scontrol[0], "--json"]
    assert migsync("healthcheck", *args).returncode == 0
    r = migsync("prolog", *args)
    assert r.returncode == 0 and json.loads(r.stdout)["from_cache"] is True
    inc.write_text(inc.read_text().replace("[337,", "["))  # one device less, same size class
    r = migsync("prolog", *args)
    assert json.loads(r.stdout)["from_cache"] is False
    assert r.returncode == 1  # the included file lost a device: found without the cache


# --- writes that cannot be redirected -------------------------------------------------

def test_a_symlinked_prom_target_is_refused(tmp_path, scontrol, state_dir):
    """node_exporter's textfile directory belongs to another account, which plants a
    symlink where the metrics file goes."""
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    os.chown(textfile, NOBODY, NOBODY)
    open_up(textfile)
    victim = tmp_path / "victim"
    victim.write_text("root only\n")
    os.chmod(victim, 0o600)
    as_nobody("ln", "-s", str(victim), str(textfile / "migsync.prom"))
    r = acting("healthcheck", tmp_path, scontrol[0], state_dir, "--prom-file",
               textfile / "migsync.prom", seed="seed")
    assert "owned by uid 65534, not root: refused" in r.stderr
    cfg = tmp_path / "allow.toml"
    cfg.write_text("allow_shared_dirs = true\n")
    r = acting("healthcheck", tmp_path, scontrol[0], state_dir, "--prom-file",
               textfile / "migsync.prom", "--config", cfg, seed="seed")
    assert "is not a regular file (a symlink?): refused" in r.stderr
    assert victim.read_text() == "root only\n" and stat.S_IMODE(os.stat(victim).st_mode) == 0o600
    assert os.path.islink(textfile / "migsync.prom")
    os.unlink(textfile / "migsync.prom")  # a plain shared directory: written, with a warning
    r = acting("healthcheck", tmp_path, scontrol[0], state_dir, "--prom-file",
               textfile / "migsync.prom", "--config", cfg, seed="seed")
    assert "writing anyway (allow_shared_dirs = true)" in r.stderr
    st = os.lstat(textfile / "migsync.prom")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == 0


def reports_file(tmp_path, *docs):
    d = tmp_path / "reports"
    d.mkdir()
    os.chown(d, NOBODY, NOBODY)
    open_up(d)
    text = "".join(json.dumps(doc) + "\n" for doc in docs)
    as_nobody("sh", "-c", f"cat > {d}/r.txt", input=text)  # forged by the attacker
    return d / "r.txt"


def base_report(name, hardware="CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=16 "
                              "ThreadsPerCore=2 RealMemory=500000"):
    return {"schema": "migsync-report", "schema_version": 1, "migsync_version": "0.1.0",
            "node": name, "generated": "2026-11-28T00:00:00Z", "hardware": hardware,
            "backend": "nvidia-smi",
            "gpus": [{"minor": 0, "name": "NVIDIA A100 80GB PCIe", "mig_current": False,
                      "mig_pending": False, "bus_id": "0000:17:00.0",
                      "uuid": "GPU-5a1c0de0-0000-0000-0000-000000000000", "lost": None}],
            "devices": [{"kind": "gpu", "minor": 0, "type": "a100", "files": ["/dev/nvidia0"]}],
            "findings": []}


def test_forged_report_keys_never_reach_the_slurm_include(tmp_path):
    forged = [
        base_report("gpu02", "CPUs=64 NodeAddr=203.0.113.66 Features=pwned"),
        base_report("gpu03", "CPUs=64\nNodeName=evil"),
        base_report("gpu04 NodeAddr=203.0.113.66"),
        base_report("-gpu05"),
        base_report("gpu[06-07]"),
        dict(base_report("gpu08"), devices=[{"kind": "gpu", "minor": 0, "type": "a100 Flags=x",
                                             "files": ["/dev/nvidia0"]}]),
        dict(base_report("gpu09"), devices=[{"kind": "gpu", "minor": 0, "type": "a100",
                                             "files": ["/etc/shadow"]}]),
        dict(base_report("gpu10"), gpus=[dict(base_report("x")["gpus"][0], minor="0")]),
        dict(base_report("gpu11"), schema_version=2,  # version 2's name for the pending mode
             gpus=[dict(base_report("x")["gpus"][0], mig_pending_mode="on; NodeAddr=x")]),
    ]
    path = reports_file(tmp_path, base_report("gpu01"), *forged)
    out = tmp_path / "etc"
    out.mkdir()
    r = run_cli("merge", path, "--write", out / "gres.conf", "--slurm-include", out / "nodes.conf")
    assert r.code == 0, r.err
    include = (out / "nodes.conf").read_text()
    gres = (out / "gres.conf").read_text()
    for bad in ("203.0.113.66", "pwned", "evil", "Flags", "shadow", "gpu0[2-9]", "gpu10",
                "-gpu05", "gpu[06", "gpu11"):
        assert bad not in include and bad not in gres, bad
    assert "NodeName=gpu01 CPUs=64" in include
    skipped = [ln for ln in r.err.splitlines() if "skipped" in ln]
    assert len(skipped) == len(forged), r.err


def test_merge_refuses_a_group_writable_directory_and_a_symlinked_target(tmp_path):
    """A group-writable /etc/slurm: a member plants a dangling symlink where root writes."""
    path = reports_file(tmp_path, base_report("gpu01"))
    etc = tmp_path / "etc-slurm"
    etc.mkdir()
    os.chown(etc, 0, NOBODY)
    os.chmod(etc, 0o775)
    open_up(etc)
    os.chmod(etc, 0o775)
    cron = tmp_path / "cron.d"
    cron.mkdir(mode=0o700)
    as_nobody("ln", "-s", str(cron / "pwn"), str(etc / "gres.conf.bak-anything"))
    r = run_cli("merge", path, "--write", etc / "gres.conf")
    assert r.code == 2 and "writable by group or other (mode 0775): refused" in r.err
    assert not os.path.lexists(cron / "pwn") and not os.path.exists(etc / "gres.conf")
    # the target itself a symlink, in a root-only directory
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o755)
    os.symlink(cron / "pwn", safe / "gres.conf")
    r = run_cli("merge", path, "--write", safe / "gres.conf")
    assert r.code == 2 and "not a regular file (a symlink?)" in r.err
    assert not os.path.lexists(cron / "pwn")


def test_backups_are_hard_links_with_unpredictable_names(tmp_path):
    path = reports_file(tmp_path, base_report("gpu01"))
    out = tmp_path / "out"
    out.mkdir()
    target = out / "gres.conf"
    target.write_text("# old\n")
    old_ino = os.stat(target).st_ino
    for _ in range(2):
        r = run_cli("merge", path, "--write", target)
        assert r.code == 0, r.err
    backups = sorted(f for f in os.listdir(out) if f.startswith("gres.conf.bak-"))
    assert len(backups) == 2
    suffixes = {b.rsplit("-", 1)[1] for b in backups}  # 32 random bits each, not the time
    assert len(suffixes) == 2 and all(len(x) == 8 for x in suffixes)
    first = [b for b in backups if os.stat(out / b).st_ino == old_ino]
    assert first and (out / first[0]).read_text() == "# old\n"  # the old inode, not a copy


# --- programs and config that root trusts ----------------------------------------------

def test_a_users_path_does_not_choose_what_root_runs(tmp_path, scontrol, state_dir):
    evil = tmp_path / "evil-bin"
    evil.mkdir()
    os.chown(evil, NOBODY, NOBODY)
    open_up(evil)
    marker = tmp_path / "ran"
    as_nobody("sh", "-c", f"printf '#!/bin/sh\\ntouch {marker}\\n' > {evil}/nvidia-smi && "
              f"cp {evil}/nvidia-smi {evil}/scontrol && chmod 755 {evil}/nvidia-smi {evil}/scontrol")
    d = node("seed")
    r = migsync("healthcheck", "--no-syslog", "--backend", "nvidia-smi", "--root",
                os.path.join(d, "root"), "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
                "--node", "c51-g002", "--lock-file", state_dir / "lock",
                "--cache-file", state_dir / "state.json", "--slurm-backend", "scontrol",
                env={"PATH": f"{evil}:.:/usr/bin:/bin"})
    assert not marker.exists(), "root ran a binary found through the user's PATH"
    assert r.returncode in (3, 5) and "Traceback" not in r.stderr


@pytest.mark.parametrize("what", ["nvidia-smi", "scontrol", "settings"])
def test_binaries_and_settings_root_trusts_must_be_roots(tmp_path, scontrol, state_dir, what):
    d = node("seed")
    smi = tmp_path / "nvidia-smi"
    shutil.copy(os.path.join(d, "nvidia-smi"), smi)
    os.symlink(os.path.join(d, "smi"), tmp_path / "smi")
    cfg = tmp_path / "migsync.toml"
    cfg.write_text("deadline = 30\n")
    victim = {"nvidia-smi": smi, "scontrol": scontrol[0], "settings": cfg}[what]
    os.chown(victim, NOBODY, NOBODY)
    args = ["healthcheck", "--no-syslog", "--backend", "nvidia-smi", "--nvidia-smi", smi,
            "--root", os.path.join(d, "root"), "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
            "--node", "c51-g002", "--lock-file", state_dir / "lock",
            "--cache-file", state_dir / "state.json", "--slurm-backend", "scontrol",
            "--scontrol", scontrol[0], "--config", cfg]
    for attempt in ("owned by uid 65534, not root: refused", "writable by group or other"):
        r = migsync(*args)
        lines = one_line(r.stderr)
        assert r.returncode == 2, r.stderr
        assert len([ln for ln in lines if attempt in ln]) == 1, lines
        assert not scontrol[1].exists() or "update" not in scontrol[1].read_text()
        os.chown(victim, 0, 0)
        os.chmod(victim, 0o777 if what != "settings" else 0o666)


@pytest.mark.parametrize("what", ["settings", "nvidia-smi"])
def test_a_directory_another_account_owns_cannot_steer_root(tmp_path, scontrol, state_dir, what):
    """Root's own file in a directory nobody owns: nobody cannot edit it, but can rename it
    away and put a link to another root-owned file in its place (here an admin's settings
    for a test node, with drain = false: the node is no longer drained), or remove it."""
    quiet = tmp_path / "test-node.toml"
    quiet.write_text("drain = false\n")
    d = node("seed-lost")
    shared = tmp_path / "shared"
    shared.mkdir()
    cfg = (shared if what == "settings" else tmp_path) / "migsync.toml"
    cfg.write_text("deadline = 30\n")
    smi = shared / "nvidia-smi"
    shutil.copy(os.path.join(d, "nvidia-smi"), smi)
    os.symlink(os.path.join(d, "smi"), shared / "smi")
    open_up(shared)
    open_up(quiet)
    os.chown(shared, NOBODY, NOBODY)
    if what == "settings":
        as_nobody("sh", "-c", f"mv {cfg} {shared}/old && ln -s {quiet} {cfg}")
    r = acting("healthcheck", tmp_path, scontrol[0], state_dir, "--config", cfg,
               "--nvidia-smi", smi)
    lines = one_line(r.stderr)
    assert r.returncode == 2, r.stderr
    victim = cfg if what == "settings" else smi
    said = "settings file" if what == "settings" else "nvidia-smi"
    assert lines[0] == (f"migsync: {victim}: {said}: its directory {shared} is owned by uid "
                        "65534, not root: refused"), lines
    assert not scontrol[1].exists() or "update" not in scontrol[1].read_text()


def test_a_group_writable_directory_is_refused_and_a_sticky_one_is_not(tmp_path, scontrol,
                                                                       state_dir):
    d = node("seed")
    group = tmp_path / "group"
    group.mkdir()
    os.chmod(group, 0o775)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)  # as /tmp: nobody else may rename or remove root's entry
    for where in (group, sticky):
        (where / "migsync.toml").write_text("deadline = 30\n")
    args = ["check", "-q", "--backend", "nvidia-smi", "--nvidia-smi", os.path.join(d, "nvidia-smi"),
            "--root", os.path.join(d, "root"), "--gres-conf", os.path.join(SAMPLE, "gres.conf"),
            "--node", "c51-g002"]
    r = migsync(*args, "--config", group / "migsync.toml")
    assert r.returncode == 2 and one_line(r.stderr) == [
        f"migsync: {group / 'migsync.toml'}: settings file: its directory {group} is writable "
        "by group or other (mode 0775): refused"], r.stderr
    r = migsync(*args, "--config", sticky / "migsync.toml")
    assert r.returncode == 0, r.stderr


def test_install_hooks_refuses_an_interpreter_another_account_can_replace(tmp_path):
    """slurmd runs the hooks as root with the interpreter install-hooks writes into them: one
    in a directory nobody owns (a venv in a user's home) would let nobody run code as root."""
    home = tmp_path / "home-nobody"
    (home / "bin").mkdir(parents=True)
    os.symlink(sys.executable, home / "bin" / "python3")
    open_up(home)
    os.chown(home, NOBODY, NOBODY)
    dest = tmp_path / "hooks"
    r = subprocess.run([str(home / "bin" / "python3"), "-m", "migsync", "install-hooks",
                        str(dest)], env=hermetic_env(PYTHONPATH=REPO), cwd="/",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr) == [
        f"migsync: {home}/bin/python3: the interpreter the hooks would run: its directory "
        f"{home} is owned by uid 65534, not root: refused"]
    assert not dest.exists()


@pytest.mark.parametrize("key", ["cache_file", "lock_file", "prom_file"])
def test_a_state_path_naming_someone_elses_file_never_overwrites_it(tmp_path, scontrol,
                                                                    state_dir, key):
    """cache_file = "/etc/passwd" (a typo, a copied line) replaced /etc/passwd with the state
    JSON, mode 0600; lock_file truncated it and wrote a pid; prom_file replaced it. None kept
    a backup. Only an empty file or one in migsync's own format is overwritten."""
    victim = state_dir / "passwd"
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    os.chmod(victim, 0o644)
    paths = {"cache_file": state_dir / "state.json", "lock_file": state_dir / "lock",
             "prom_file": state_dir / "m.prom"}
    paths[key] = victim
    d = node("seed")
    r = migsync("healthcheck", "--no-syslog", "--backend", "nvidia-smi",
                "--nvidia-smi", os.path.join(d, "nvidia-smi"), "--root", os.path.join(d, "root"),
                "--gres-conf", os.path.join(SAMPLE, "gres.conf"), "--node", "c51-g002",
                "--lock-file", paths["lock_file"], "--cache-file", paths["cache_file"],
                "--prom-file", paths["prom_file"], "--slurm-backend", "scontrol",
                "--scontrol", scontrol[0])
    said = {"cache_file": "state cache", "lock_file": "lock file", "prom_file": "metrics file"}
    assert f"{victim}: exists and is not migsync's {said[key]}: refused" in r.stderr, r.stderr
    assert r.returncode == (2 if key == "lock_file" else 0), r.stderr
    assert victim.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert sorted(p.name for p in state_dir.iterdir() if p.name.startswith("passwd")) == [
        "passwd"]


def test_the_node_map_and_prolog_sidecar_never_overwrite_someone_elses_file(tmp_path, scontrol,
                                                                            state_dir):
    """Both are written beside cache_file (`node-map`, `<cache_file>.hit`), and the sidecar
    is unlinked after an unclean check: files of those names that are not migsync's were
    replaced or removed."""
    d = node("seed")
    (state_dir / "node-map").write_text("precious\n")
    (state_dir / "state.json.hit").write_text("precious too\n")
    cfg = tmp_path / "migsync.toml"
    cfg.write_text("\n".join([
        'backend = "nvidia-smi"', f'nvidia_smi = "{d}/nvidia-smi"', f'root = "{d}/root"',
        f'gres_conf = "{SAMPLE}/gres.conf"', f'lock_file = "{state_dir}/lock"',
        f'cache_file = "{state_dir}/state.json"', 'slurm_backend = "scontrol"',
        f'scontrol = "{scontrol[0]}"', "syslog = false", ""]))
    for cmd in ("healthcheck", "prolog"):
        r = migsync(cmd, env={"MIGSYNC_CONFIG": str(cfg), "SLURMD_NODENAME": "c51-g002"})
        assert r.returncode == 0, r.stderr
    assert (state_dir / "node-map").read_text() == "precious\n"
    assert (state_dir / "state.json.hit").read_text() == "precious too\n"
    # an unclean check removes a sidecar: only its own
    (state_dir / "gres-bad.conf").write_text("NodeName=c51-g002 Name=gpu File=/dev/nvidia9\n")
    cfg.write_text(cfg.read_text().replace(f"{SAMPLE}/gres.conf", f"{state_dir}/gres-bad.conf"))
    r = migsync("healthcheck", env={"MIGSYNC_CONFIG": str(cfg), "SLURMD_NODENAME": "c51-g002"})
    assert r.returncode == 1, r.stderr
    assert (state_dir / "state.json.hit").read_text() == "precious too\n"


def test_control_characters_never_reach_a_drain_reason_or_the_log(tmp_path, scontrol, state_dir):
    gres = tmp_path / "gres.conf"
    text = open(os.path.join(SAMPLE, "gres.conf")).read()
    gres.write_text(text.replace("Type=1g.10gb", "Type=1g.10gb\x1b[31m\x07", 1))
    d = node("seed")
    r = migsync("healthcheck", "--no-syslog", "--backend", "nvidia-smi", "--nvidia-smi",
                os.path.join(d, "nvidia-smi"), "--root", os.path.join(d, "root"),
                "--gres-conf", gres, "--node", "c51-g002", "--lock-file", state_dir / "lock",
                "--cache-file", state_dir / "state.json", "--slurm-backend", "scontrol",
                "--scontrol", scontrol[0])
    assert r.returncode == 1, r.stderr
    update = [ln for ln in scontrol[1].read_text().splitlines() if ln.startswith("update")]
    assert update and "\x1b" not in update[0] and "\x07" not in update[0]
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr


# --- the installed Prolog's cache hit (migsync.fastprolog) ---------------------------------

from test_fastprolog import healthcheck as fp_healthcheck, prolog as fp_prolog, site  # noqa: E402,F401


@pytest.mark.parametrize("how", ["dir-world-writable", "dir-owned-by-nobody", "sidecar-nobodys",
                                 "sidecar-0644", "sidecar-symlink"])
def test_the_prolog_hit_believes_only_roots_own_sidecar(site, how):
    assert fp_healthcheck(site).returncode == 0 and site.sidecar.exists()
    assert "migsync.cli" not in fp_prolog(site)[1]  # a hit, as long as nothing is odd
    run = site.sidecar.parent
    if how == "dir-world-writable":
        os.chmod(run, 0o777)
    elif how == "dir-owned-by-nobody":
        os.chown(run, NOBODY, NOBODY)
    elif how == "sidecar-nobodys":
        os.chown(site.sidecar, NOBODY, NOBODY)
    elif how == "sidecar-0644":
        os.chmod(site.sidecar, 0o644)
    else:
        real = site.tmp / "elsewhere.hit"
        os.rename(site.sidecar, real)
        os.symlink(real, site.sidecar)
    code, mods, err = fp_prolog(site)
    assert "migsync.cli" in mods, "an untrustworthy sidecar answered the Prolog"
    assert code == 0 and "Traceback" not in err
