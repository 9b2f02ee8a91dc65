"""The hook scripts as slurmd starts them (a bare environment, a foreign working directory),
`migsync install-hooks`, and the Prolog's rule: exit 1 only for a real mismatch.

Real processes throughout: the shipped hooks/ scripts run the real interpreter. The same
hooks under a real slurmd are in test_slurm_hooks.py."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import node, search_root_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOKS = os.path.join(REPO, "hooks")
SAMPLE = os.path.join(REPO, "migsync", "sample", "seed-node")
GRES = os.path.join(SAMPLE, "gres.conf")


def settings(tmp_path, name="seed", **extra):
    """A migsync.toml for a recorded node: what a site's /etc/migsync/migsync.toml would say."""
    d = node(name)
    values = {"backend": "nvidia-smi", "nvidia_smi": f"{d}/nvidia-smi", "root": f"{d}/root",
              "gres_conf": GRES, "node": "c51-g002", "lock_file": str(tmp_path / "lock"),
              "cache_file": str(tmp_path / "state.json"), "syslog": False}
    values.update(extra)
    cfg = tmp_path / f"migsync-{name}.toml"
    cfg.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return cfg


def run_hook(path, cfg, *args, cwd="/", env=None):
    """As slurmd does: only SLURMD_NODENAME (plus where the settings are), no PATH."""
    e = {"SLURMD_NODENAME": "c51-g002", "MIGSYNC_CONFIG": str(cfg),
         **search_root_env()}  # hermetic: never the machine's /run/slurm/conf
    e.update(env or {})
    return subprocess.run([str(path), *args], cwd=str(cwd), env=e, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def shadow(tmp_path):
    """A directory holding a `migsync` package that leaves a mark when imported."""
    d = tmp_path / "evil"
    (d / "migsync").mkdir(parents=True)
    marker = tmp_path / "shadow-imported"
    (d / "migsync" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n__version__ = 'evil'\n")
    (d / "migsync" / "cli.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\ndef main_exit():\n    raise SystemExit(0)\n")
    return d, marker


# ---- 14.3: hooks import only migsync --------------------------------------------------------

def test_checkout_hooks_ignore_a_migsync_in_the_working_directory_and_pythonpath(tmp_path, shadow):
    d, marker = shadow
    cfg = settings(tmp_path)
    r = run_hook(os.path.join(HOOKS, "healthcheck"), cfg, "--json", "--no-drain", cwd=d,
                 env={"PYTHONPATH": str(d), "PYTHONSTARTUP": str(d / "migsync" / "cli.py")})
    assert not marker.exists(), "the hook imported the working directory's migsync"
    doc = json.loads(r.stdout)
    assert doc["command"] == "healthcheck" and doc["migsync_version"] != "evil"
    assert doc["ok"] is True


def test_installed_hooks_ignore_a_shadowing_migsync_too(tmp_path, shadow):
    d, marker = shadow
    dest = tmp_path / "hooks"
    r = subprocess.run([sys.executable, "-m", "migsync", "install-hooks", str(dest)],
                       capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    r = run_hook(dest / "prolog", settings(tmp_path), "--json", cwd=d,
                 env={"PYTHONPATH": str(d)})
    assert r.returncode == 0 and not marker.exists()
    assert json.loads(r.stdout)["command"] == "prolog"


# ---- install-hooks ----------------------------------------------------------------------------

def test_install_hooks_writes_every_shipped_hook_bound_to_this_interpreter(tmp_path):
    dest = tmp_path / "etc-slurm-migsync"
    r = subprocess.run([sys.executable, "-m", "migsync", "install-hooks", str(dest)],
                       capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    shipped = sorted(f for f in os.listdir(HOOKS) if not f.startswith("."))
    # generic: whatever hooks/ holds, plus the Prolog's Python part beside its sh wrapper
    assert sorted(os.listdir(dest)) == sorted(shipped + ["prolog.py"])
    helper = (dest / "_find_migsync.sh").read_text()
    assert f'MIGSYNC_PYTHON_BAKED="{os.path.abspath(sys.executable)}"' in helper
    for name in shipped + ["prolog.py"]:
        mode = (dest / name).stat().st_mode & 0o777
        assert mode == (0o644 if name in ("_find_migsync.sh", "prolog.py") else 0o755), name
    assert f"HealthCheckProgram={dest}/healthcheck" in r.stdout
    assert f"Prolog={dest}/prolog" in r.stdout
    assert f"ExecStartPre=-{dest}/slurmd-prestart" in r.stdout
    if "taskprolog" in shipped:
        assert f"TaskProlog={dest}/taskprolog" in r.stdout
    # the installed hook runs with nothing but SLURMD_NODENAME, from slurmd's log directory
    logdir = tmp_path / "var-log-slurm"
    logdir.mkdir()
    out = run_hook(dest / "healthcheck", settings(tmp_path), "--json", "--no-drain", cwd=logdir)
    assert json.loads(out.stdout)["ok"] is True, out.stderr
    # DIR/migsync is migsync itself, started the same isolated way
    out = run_hook(dest / "migsync", settings(tmp_path), "check", "--json", cwd=logdir)
    assert out.returncode == 0 and json.loads(out.stdout)["command"] == "check"


def test_install_hooks_into_an_existing_directory_keeps_what_was_there(tmp_path):
    """The site's own healthcheck and prolog in DIR were overwritten without a backup; and
    a symlink planted as a later hook stopped the install with the first ones replaced."""
    dest = tmp_path / "etc-slurm-hooks"
    dest.mkdir()
    (dest / "healthcheck").write_text("#!/bin/sh\n/usr/sbin/nhc\n")
    (dest / "prolog").write_text("#!/bin/sh\n/etc/slurm/site-prolog\n")
    (dest / "slurmd-prestart").symlink_to("/etc/passwd")
    argv = [sys.executable, "-m", "migsync", "install-hooks", str(dest)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"migsync: {dest}/slurmd-prestart: exists and is not a regular file (a symlink?): "
        "refused to write (nothing was installed)"]
    assert sorted(os.listdir(dest)) == ["healthcheck", "prolog", "slurmd-prestart"]
    assert (dest / "healthcheck").read_text() == "#!/bin/sh\n/usr/sbin/nhc\n"
    (dest / "slurmd-prestart").unlink()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    kept = {}
    for line in r.stderr.splitlines():
        path, _, backup = line[len("migsync: "):].partition(" was there with other contents: "
                                                            "kept as ")
        kept[os.path.basename(path)] = backup
    assert sorted(kept) == ["healthcheck", "prolog"], r.stderr
    assert open(kept["healthcheck"]).read() == "#!/bin/sh\n/usr/sbin/nhc\n"
    assert open(kept["prolog"]).read() == "#!/bin/sh\n/etc/slurm/site-prolog\n"
    assert (dest / "healthcheck").read_text() == open(os.path.join(HOOKS, "healthcheck")).read()
    # installing again changes nothing: no backup of identical files on every re-install
    before = sorted(os.listdir(dest))
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0 and r.stderr == "" and sorted(os.listdir(dest)) == before


def test_install_hooks_nhc_dir_installs_the_nhc_check_or_says_there_is_none(tmp_path):
    nhc_dir = tmp_path / "nhc-scripts"
    nhc_dir.mkdir()
    r = subprocess.run([sys.executable, "-m", "migsync", "install-hooks", str(tmp_path / "h"),
                        "--nhc-dir", str(nhc_dir)], capture_output=True, text=True, timeout=120)
    shipped = os.path.join(REPO, "conf", "nhc", "migsync.nhc")
    if os.path.exists(shipped):
        assert r.returncode == 0, r.stderr
        assert str(nhc_dir / "migsync.nhc") in r.stdout
        text = (nhc_dir / "migsync.nhc").read_text()
        # check_migsync starts this interpreter, isolated, like the hooks do
        baked = f'MIGSYNC_PYTHON_BAKED="{os.path.abspath(sys.executable)}"'
        assert baked in text
        assert text.replace(baked, 'MIGSYNC_PYTHON_BAKED=""') == open(shipped).read()
    else:
        assert r.returncode == 2 and "migsync.nhc" in r.stderr and r.stderr.count("\n") == 1
        assert not (tmp_path / "h").exists()  # nothing half-installed


def test_install_hooks_refuses_a_missing_parent_directory(tmp_path):
    r = subprocess.run([sys.executable, "-m", "migsync", "install-hooks",
                        str(tmp_path / "no" / "such" / "dir")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "parent directory does not exist" in r.stderr
    assert not (tmp_path / "no").exists()


def test_hooks_copied_into_a_venv_find_the_interpreter_beside_them(tmp_path):
    venv = tmp_path / "opt-migsync"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    site = subprocess.run([str(venv / "bin" / "python3"), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "migsync-here.pth"), "w") as fh:
        fh.write(REPO + "\n")  # what `pip install` into the venv amounts to
    shutil.copytree(HOOKS, venv / "hooks")
    r = run_hook(venv / "hooks" / "prolog", settings(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True
    r = run_hook(venv / "hooks" / "prolog", settings(tmp_path, "seed-lost", drain=False))
    assert r.returncode == 1, r.stderr  # it really ran migsync: the lost instance is seen


# ---- migsync cannot be found or cannot start ----------------------------------------------------

def test_missing_migsync_fails_the_health_check_loudly_but_never_blocks_a_job(tmp_path):
    lonely = tmp_path / "somewhere" / "hooks"
    shutil.copytree(HOOKS, lonely)  # no interpreter beside it, not a checkout
    cfg = settings(tmp_path)
    r = run_hook(lonely / "healthcheck", cfg)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "not found" in r.stderr
    r = run_hook(lonely / "prolog", cfg)
    assert r.returncode == 0 and "not found" in r.stderr


def test_migsync_that_cannot_start_is_one_line_for_the_health_check_and_0_for_the_prolog(tmp_path):
    dest = tmp_path / "hooks"
    shutil.copytree(HOOKS, dest)
    helper = dest / "_find_migsync.sh"
    text = helper.read_text().replace('MIGSYNC_PYTHON_BAKED=""', 'MIGSYNC_PYTHON_BAKED="/usr/bin/python3"')
    text = text.replace('MIGSYNC_SRC_BAKED=""', f'MIGSYNC_SRC_BAKED="{tmp_path}/gone"')
    helper.write_text(text)
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("no /usr/bin/python3")
    probe = subprocess.run(["/usr/bin/python3", "-I", "-c", "import migsync"], capture_output=True,
                           cwd="/")
    if probe.returncode == 0:
        pytest.skip("/usr/bin/python3 has a migsync of its own installed")
    cfg = settings(tmp_path)
    r = run_hook(dest / "healthcheck", cfg)
    assert r.returncode == 70
    assert r.stderr.count("\n") == 1 and "cannot start migsync" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_hook(dest / "prolog", cfg)
    assert r.returncode == 0 and "cannot start migsync" in r.stderr


# ---- 6. the Prolog: 0 for every error of migsync's own, 1 only for a mismatch -----------------

def test_prolog_exits_1_for_a_real_mismatch(tmp_path):
    cfg = settings(tmp_path, "seed-lost", drain=False)
    r = run_hook(os.path.join(HOOKS, "prolog"), cfg)
    assert r.returncode == 1, r.stderr


def test_prolog_exits_0_when_its_lock_file_cannot_be_opened(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = settings(tmp_path, "seed-lost", drain=False, lock_file=str(blocker / "lock"))
    r = run_hook(os.path.join(HOOKS, "prolog"), cfg)
    assert r.returncode == 0, r.stderr
    assert "lock" in r.stderr


def test_prolog_exits_0_on_bad_settings_and_a_bad_flag(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("deadline = \n")
    r = run_hook(os.path.join(HOOKS, "prolog"), cfg)
    assert r.returncode == 0 and "invalid TOML" in r.stderr
    r = run_hook(os.path.join(HOOKS, "prolog"), settings(tmp_path, "seed-lost", drain=False),
                 "--frobnicate")
    assert r.returncode == 0


def test_prolog_exits_0_on_a_cache_it_cannot_use(tmp_path):
    cache = tmp_path / "state.json"
    cache.write_text(json.dumps({"format": 1, "node": "c51-g002", "fingerprint": "x",
                                 "gpus": "not a list of GPUs", "profiles": []}))
    r = run_hook(os.path.join(HOOKS, "prolog"), settings(tmp_path, "seed", drain=False))
    assert r.returncode == 0, r.stderr
    cache.unlink()
    cache.mkdir()  # a directory where the cache file should be
    r = run_hook(os.path.join(HOOKS, "prolog"), settings(tmp_path, "seed", drain=False))
    assert r.returncode == 0, r.stderr


def test_prolog_exits_0_when_python_crashes_and_the_command_keeps_exit_1(tmp_path):
    """A Python killed by a signal (a C extension's segfault) or dying with its own exit 1
    must not block the job: only migsync's verdict may. `DIR/migsync prolog` (a site's own
    Prolog calling migsync) keeps the documented exit 1 for a mismatch."""
    tree = checkout_copy(tmp_path)
    cfg = settings(tmp_path, "seed-lost", drain=False)
    r = run_hook(tree / "hooks" / "migsync", cfg, "prolog")
    assert r.returncode == 1, r.stderr
    nc = tree / "migsync" / "nodecheck.py"
    text = nc.read_text()
    for death, code in (("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", -11),
                        ("import os; os._exit(1)", 1)):
        nc.write_text(text.replace(
            '    """Parse first (a config error must not cost a discovery)',
            f'    {death}\n    """Parse first (a config error must not cost a discovery)', 1))
        assert run_hook(tree / "hooks" / "migsync", cfg, "prolog").returncode == code
        r = run_hook(tree / "hooks" / "prolog", cfg)
        assert r.returncode == 0, (death, r.stderr)


def checkout_copy(tmp_path):
    """A copy of the source tree with its own .venv/bin/python, as the hooks find it."""
    tree = tmp_path / "checkout"
    shutil.copytree(os.path.join(REPO, "migsync"), tree / "migsync",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(HOOKS, tree / "hooks")
    shutil.copy(os.path.join(REPO, "pyproject.toml"), tree / "pyproject.toml")
    os.makedirs(tree / ".venv" / "bin")
    os.symlink(os.path.abspath(sys.executable), tree / ".venv" / "bin" / "python")
    return tree


def test_prolog_exits_0_on_an_internal_error(tmp_path):
    """A bug in migsync (injected into a copy of the source tree) must not block jobs."""
    tree = checkout_copy(tmp_path)
    nc = tree / "migsync" / "nodecheck.py"
    nc.write_text(nc.read_text().replace(
        '    """Parse first (a config error must not cost a discovery)',
        '    raise RuntimeError("injected bug")\n    """Parse first (a config error must not cost a discovery)', 1))
    assert "injected bug" in nc.read_text()
    cfg = settings(tmp_path, "seed-lost", drain=False)
    r = run_hook(tree / "hooks" / "prolog", cfg)
    assert r.returncode == 0
    assert "internal error" in r.stderr and "injected bug" in r.stderr
    r = run_hook(tree / "hooks" / "healthcheck", cfg)
    assert r.returncode == 70 and "injected bug" in r.stderr
