"""The installed Prolog hook: a clean verdict that still holds answers without the CLI (and
without json, re, argparse, typing, dataclasses, subprocess); anything that changed, or any
doubt about the cache, goes to the full `migsync prolog`."""
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import node, search_root_env
from migsync import fastprolog

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "migsync", "sample", "seed-node")
# What the Prolog's hit must never import: each costs milliseconds per job (issue 11).
FORBIDDEN = ("dataclasses", "typing", "argparse", "json", "re", "subprocess", "tomllib")

# Runs the hook's own text the way the kernel would (python -I <hook>), and reports the
# modules loaded when it exits, through os._exit or otherwise.
SPY = r"""
import os, sys
hook, report = sys.argv[1], sys.argv[2]
real_exit = os._exit
def dump(code):
    with open(report, "w") as fh:
        fh.write(f"{code}\n" + "\n".join(sorted(sys.modules)
                                        + ["sys.path=" + p for p in sys.path]))
def spy_exit(code):
    dump(code)
    real_exit(code)
os._exit = spy_exit
sys.argv = [hook] + sys.argv[3:]
try:
    exec(compile(open(hook).read(), hook, "exec"), {"__name__": "__main__"})
except SystemExit as exc:
    dump(exc.code or 0)
    raise
dump(0)
"""


@pytest.fixture
def site(tmp_path):
    """A node's settings file, its gres.conf, a recording scontrol and the installed hook."""
    gres = tmp_path / "gres.conf"
    shutil.copy(os.path.join(SAMPLE, "gres.conf"), gres)
    seed = tmp_path / "node"
    shutil.copytree(node("seed"), seed, symlinks=True)
    log = tmp_path / "scontrol.log"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$*" >> {log}\necho "NodeName=c51-g002 State=IDLE"\n')
    scontrol.chmod(0o755)
    conf = tmp_path / "migsync.toml"
    conf.write_text("\n".join([
        f'root = "{seed / "root"}"', f'gres_conf = "{gres}"',
        'node = "c51-g002"', 'backend = "nvidia-smi"', f'nvidia_smi = "{seed / "nvidia-smi"}"',
        f'lock_file = "{tmp_path / "lock"}"', f'cache_file = "{tmp_path / "run" / "state.json"}"',
        f'scontrol = "{scontrol}"', 'slurm_backend = "scontrol"', "syslog = false", ""]))
    (tmp_path / "run").mkdir(mode=0o755)  # the state directory: migsync never creates others
    hook = tmp_path / "prolog"
    hook.write_text(fastprolog.hook_script(sys.executable, str(hook), REPO))
    hook.chmod(0o755)

    class Site:
        pass

    s = Site()
    s.tmp, s.gres, s.conf, s.hook, s.log, s.node = tmp_path, gres, conf, hook, log, seed
    s.sidecar = tmp_path / "run" / "state.json.hit"
    s.env = {"MIGSYNC_CONFIG": str(conf), "SLURMD_NODENAME": "c51-g002", "SLURM_JOB_ID": "7",
             **search_root_env()}  # hermetic: never the machine's /run/slurm/conf
    return s


def healthcheck(site, *args):
    return subprocess.run([sys.executable, "-I", "-c",
                           f"import sys; sys.path.insert(0, {REPO!r}); from migsync.cli import "
                           "main; sys.exit(main(sys.argv[1:]))", "healthcheck", *args],
                          env=site.env, capture_output=True, text=True, cwd="/", timeout=60)


def prolog(site, *args):
    """Run the installed hook as slurmd does; (exit code, modules loaded at exit, stderr).
    -S as well as the hook's -I: this test venv's site imports `re` for its editable install,
    which would hide the very imports this looks for (the hook puts the tree on sys.path)."""
    report = site.tmp / "modules.txt"
    r = subprocess.run([sys.executable, "-I", "-S", "-c", SPY, str(site.hook), str(report), *args],
                       env=site.env, capture_output=True, text=True, cwd="/", timeout=60)
    code, *mods = report.read_text().split("\n")
    assert int(code) == r.returncode, r.stderr
    return r.returncode, set(mods), r.stderr


def test_a_cache_hit_imports_none_of_the_expensive_modules(site):
    assert healthcheck(site).returncode == 0
    code, mods, err = prolog(site)
    assert code == 0, err
    assert "migsync.fastprolog" in mods
    assert "migsync.cli" not in mods, "the hit fell back to the full CLI"
    assert not [m for m in FORBIDDEN if m in mods], sorted(m for m in FORBIDDEN if m in mods)
    assert "site" not in mods  # the hook runs -S: site's start-up is not paid on a hit


def test_the_guard_notices_a_forbidden_import(site, monkeypatch):
    """The same check on a hook that imports json: the spy must see it."""
    assert healthcheck(site).returncode == 0
    text = site.hook.read_text()
    assert 'os.chdir("/")' in text
    site.hook.write_text(text.replace('os.chdir("/")', 'import json\nos.chdir("/")', 1))
    _, mods, _ = prolog(site)
    assert "json" in mods


def test_a_changed_gres_conf_goes_to_the_full_prolog_which_answers_and_primes_the_hit(site):
    assert healthcheck(site).returncode == 0
    os.utime(site.gres, (1, 1))
    code, mods, err = prolog(site)
    assert code == 0 and "migsync.cli" in mods, err
    # settings unchanged: their cached copy is used, no TOML parser, no argparse; and no
    # json or re either (each costs milliseconds per miss: the state cache is read by
    # migsync.jsonlite, the core parses without regexes), nor site's start-up (no pyslurm)
    missed = sorted(m for m in FORBIDDEN + ("enum", "functools", "site") if m in mods)
    assert not missed, missed
    code, mods, _ = prolog(site)  # same inputs as the full Prolog saw: the hit answers again
    assert code == 0 and "migsync.cli" not in mods


MISMATCH_WITH_PYSLURM = r"""
import sys
sys.argv = ["migsync", "prolog"]
from migsync import slurmctl
try:
    slurmctl.PyslurmBackend()
except Exception as exc:
    print("refused:", exc)
print("site" in sys.modules, "sys.path=" + ":".join(sys.path))
"""


def test_a_hook_without_site_still_finds_pyslurm_in_the_site_packages(tmp_path):
    """The Prolog hook starts -S; acting through pyslurm (a mismatch) runs site first, so a
    pyslurm installed in the venv's site-packages is found, not refused as missing."""
    purelib = sysconfig.get_paths()["purelib"]
    r = subprocess.run([sys.executable, "-I", "-S", "-c",
                        f"import sys; sys.path.append({REPO!r})\n" + MISMATCH_WITH_PYSLURM],
                       capture_output=True, text=True, cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("True ") and purelib in last.split("=", 1)[1].split(":"), r.stdout


def test_a_sidecar_others_could_write_is_not_trusted(site):
    assert healthcheck(site).returncode == 0
    os.chmod(site.sidecar, 0o644)
    assert "migsync.cli" in prolog(site)[1]
    os.chmod(site.sidecar, 0o600)
    assert "migsync.cli" not in prolog(site)[1]
    os.chown(site.sidecar, 12345, 0)
    assert "migsync.cli" in prolog(site)[1]


def test_a_mismatch_found_by_the_health_check_removes_the_hit_and_the_prolog_blocks(site):
    assert healthcheck(site).returncode == 0 and site.sidecar.exists()
    # nvidia-smi now names one instance's profile differently: only a full check can see
    # that, nothing the sidecar records has changed. (An instance nvidia-smi lists and procfs
    # does not is a discovery failure since issue 12, not a mismatch.)
    lci = site.node / "smi" / "lci.txt"
    lci.write_text(lci.read_text().replace("|   3     14       MIG 1g.10gb ",
                                           "|   3     14       MIG 2g.20gb "))
    assert healthcheck(site).returncode == 1
    assert not site.sidecar.exists()
    code, mods, _ = prolog(site)
    # the Python part says "keep the job off" with HOOK_BLOCK; its sh wrapper exits 1 for it
    assert code == fastprolog.HOOK_BLOCK == 86 and "migsync.cli" in mods
    assert "update" in site.log.read_text()  # drained by the full path
    r = subprocess.run([str(wrapper(site))], env=site.env, capture_output=True, text=True,
                       cwd="/", timeout=60)
    assert r.returncode == 1, r.stderr


def wrapper(site):
    """The /bin/sh Prolog slurmd runs, around this site's Python part."""
    path = site.tmp / "prolog-wrapper"
    path.write_text(fastprolog.hook_wrapper(sys.executable, str(path), str(site.hook)))
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("death", [
    "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",  # a crash in a C extension
    "raise RuntimeError('a bug before migsync caught anything')",  # Python's own exit 1
    "import os; os._exit(1)",
    "import os; os._exit(3)",
])
def test_a_prolog_whose_python_dies_lets_the_job_run_and_says_why(site, death):
    """Only the verdict (HOOK_BLOCK) may make the Prolog fail: slurmd drains a node whose
    Prolog fails as "Prolog error", and a crash is migsync's fault, not the node's."""
    site.hook.write_text(death + "\n")
    r = subprocess.run([str(wrapper(site))], env=site.env, capture_output=True, text=True,
                       cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[-1].startswith("migsync prolog: migsync exited ")
    assert r.stderr.splitlines()[-1].endswith("the job runs unchecked")


def test_a_check_with_flags_leaves_the_hit_alone(site, tmp_path):
    assert healthcheck(site).returncode == 0
    before = site.sidecar.read_text()
    other = tmp_path / "other-root"
    shutil.copytree(os.path.join(node("seed-lost"), "root"), other)
    r = healthcheck(site, "--root", str(other), "--no-drain")  # an admin trying something
    assert r.returncode == 3  # procfs lost an instance nvidia-smi lists: a discovery failure
    assert site.sidecar.read_text() == before


def test_arguments_and_another_instance_layout_go_to_the_full_prolog(site):
    assert healthcheck(site).returncode == 0
    assert "migsync.cli" in prolog(site, "--json")[1]
    assert "migsync.cli" not in prolog(site)[1]
    root = site.node / "root"  # a new instance appears in procfs
    gi = next(p for p, d, f in os.walk(root / "proc/driver/nvidia/capabilities") if
              p.endswith("/mig"))
    os.makedirs(os.path.join(gi, "gi99", "ci0"))
    for sub in ("gi99", "gi99/ci0"):
        open(os.path.join(gi, sub, "access"), "w").close()
    assert "migsync.cli" in prolog(site)[1]


@pytest.mark.parametrize("text,want", [
    ('cache_file = "/x/state.json"\n', "/x/state.json"),
    ("cache_file = '/x/s.json'  # a comment\n", "/x/s.json"),
    ('root = "/"\n', fastprolog.DEFAULT_CACHE),
    ('cache_file = ""\n', None),  # the cache is off: no hit
    ('[table]\ncache_file = "/x"\n', None),
    ('cache_file = "/x\\u0041"\n', None),  # escapes: not guessed
    ('cache_file = """/x"""\n', None),
    ('cache_file = "/x" junk\n', None),
])
def test_cache_file_is_read_from_the_settings_only_when_certain(tmp_path, text, want):
    conf = tmp_path / "migsync.toml"
    conf.write_text(text)
    assert fastprolog.cache_file_of(str(conf)) == want


def test_the_default_cache_file_is_the_settings_default():
    from migsync.settings import DEFAULT_CONFIG, Settings

    assert Settings().cache_file == fastprolog.DEFAULT_CACHE
    assert DEFAULT_CONFIG == fastprolog.DEFAULT_CONFIG


def test_changed_settings_are_read_again_not_taken_from_the_cache(site):
    assert healthcheck(site).returncode == 0
    lost = os.path.join(node("seed-lost"), "root")  # this root lacks an instance gres.conf names
    site.conf.write_text(site.conf.read_text().replace(str(site.node / "root"), lost)
                         + "drain = false\n")
    code, mods, err = prolog(site)
    assert code == fastprolog.HOOK_BLOCK and "tomllib" in mods, err
    assert not site.log.exists() or "update" not in site.log.read_text()  # drain = false held


def test_install_hooks_installs_this_prolog_and_it_answers_as_slurmd_runs_it(site, tmp_path):
    dest = tmp_path / "installed"
    r = subprocess.run([sys.executable, "-m", "migsync", "install-hooks", str(dest)],
                       capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    text = (dest / "prolog").read_text()
    assert text.startswith("#!/bin/sh\n")
    assert f"\n    {os.path.abspath(sys.executable)} -I -S {dest / 'prolog.py'} \"$@\"\n" in text
    assert "from migsync.fastprolog import hook_main" in (dest / "prolog.py").read_text()
    assert healthcheck(site).returncode == 0
    logdir = tmp_path / "var-log-slurm"
    logdir.mkdir()
    r = subprocess.run([str(dest / "prolog")], env=site.env, capture_output=True, text=True,
                       cwd=str(logdir), timeout=60)  # no PATH, slurmd's working directory
    assert r.returncode == 0 and r.stderr == "", r.stderr


ENTRY_SPY = r"""
import os, sys
repo, report = sys.argv[1], sys.argv[2]
sys.path.insert(0, repo)
sys.argv = ["migsync"] + sys.argv[3:]
def dump(code):
    with open(report, "w") as fh:
        fh.write(f"{code}\n" + "\n".join(sorted(sys.modules)))
try:
    from migsync.entry import main
    main()
    dump(0)
except SystemExit as exc:
    dump(exc.code or 0)
    raise
"""


def test_the_taskprolog_imports_none_of_the_expensive_modules(site):
    """`migsync taskprolog` (the console script's entry) runs per task of every job."""
    assert healthcheck(site).returncode == 0
    node_map = site.tmp / "run" / "node-map"
    assert node_map.exists()
    report = site.tmp / "modules.txt"
    env = dict(site.env, MIGSYNC_NODE_MAP=str(node_map), SLURM_JOB_GPUS="0,1")  # batch step; whole GPUs
    r = subprocess.run([sys.executable, "-I", "-S", "-c", ENTRY_SPY, REPO, str(report),
                        "taskprolog"], env=env, capture_output=True, text=True, cwd="/",
                       timeout=60)
    code, *mods = report.read_text().split("\n")
    assert r.returncode == 0 and int(code) == 0, r.stderr
    assert "export CUDA_VISIBLE_DEVICES=" in r.stdout, (r.stdout, r.stderr)
    assert "migsync.taskprolog" in mods and "migsync.cli" not in mods
    assert not [m for m in FORBIDDEN if m in mods], sorted(m for m in FORBIDDEN if m in mods)


def test_installed_prolog_whose_interpreter_is_gone_lets_the_job_run(site, tmp_path):
    """A removed venv must not make slurmd drain the node as "Prolog error" (issue 8.5)."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    python = venv_bin / "python3"
    python.symlink_to(sys.executable)
    dest = tmp_path / "installed"
    r = subprocess.run([str(python), "-m", "migsync", "install-hooks", str(dest)],
                       capture_output=True, text=True, timeout=120, cwd=REPO,
                       env=dict(site.env, PYTHONPATH=REPO))
    assert r.returncode == 0, r.stderr
    assert str(python) in (dest / "prolog").read_text()
    python.unlink()  # the venv is gone; slurm.conf still names the hook
    r = subprocess.run([str(dest / "prolog")], env={"SLURMD_NODENAME": "n1"},
                       capture_output=True, text=True, cwd=str(tmp_path), timeout=60)
    assert r.returncode == 0
    assert r.stderr.count("\n") == 1 and "is gone" in r.stderr


def test_the_hooks_migsync_directory_never_shadows_the_standard_library(site, tmp_path):
    """The hook puts migsync's directory on the path itself (it starts Python without site).
    That directory may be a site-packages holding a module named like a stdlib one (an old
    backport); the Prolog's full path must still get the real one."""
    src = tmp_path / "site-packages"
    src.mkdir()
    os.symlink(os.path.join(REPO, "migsync"), src / "migsync")
    (src / "fcntl.py").write_text("raise ImportError('the stand-in fcntl was imported')\n")
    site.hook.write_text(fastprolog.hook_script(sys.executable, str(site.hook), str(src)))
    assert healthcheck(site).returncode == 0
    os.utime(site.gres, (1, 1))  # a miss: the full Prolog imports fcntl (its run lock)
    code, mods, err = prolog(site)
    assert code == 0 and "migsync.cli" in mods and "fcntl" in mods, err
    assert "stand-in" not in err
