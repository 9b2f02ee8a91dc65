"""The node map (slurmd's index order, UUIDs) and both TaskProlog readers (issue 10).

Expected values are hand-written tables: which device each GRES index is (the rules measured
on real slurmd; tests/test_taskprolog_slurm.py checks them there) and the UUIDs the fakes report
(tests/data/nodes/*/layout.json). hooks/taskprolog (sh) and `migsync taskprolog` (Python)
run as real processes on one table of cases and must agree.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

import nvml_fake
from conftest import node, run_cli
from migsync import gresconf, nodemap
from migsync.slurmconf import GresSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOK = os.path.join(REPO, "hooks", "taskprolog")
CAPS = "/dev/nvidia-caps/nvidia-cap"


def units(text, gres_types, node_name="n1"):
    """GRES index -> files, as the map numbers them (gresconf.slurmd_order's records)."""
    specs = [GresSpec("gpu", t, 99) for t in gres_types]
    records = gresconf.slurmd_order(gresconf.parse(text, "gres.conf"), node_name, specs)
    return [u.files for u in nodemap.units(records)]


# ---- slurmd's order: hand-written tables ---------------------------------------------------

def test_types_are_grouped_in_gres_order_not_file_order():
    text = ("NodeName=n1 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346]\n"
            "NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia[0-1]\n"
            "NodeName=n1 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap355\n")
    assert units(text, ["a100", "1g.10gb"]) == [
        ("/dev/nvidia0",), ("/dev/nvidia1",),
        (CAPS + "337",), (CAPS + "346",), (CAPS + "355",)]
    # swapping the Types in Gres= moves the a100s to the end (measured: IDX 0-1 -> 7-8)
    assert units(text, ["1g.10gb", "a100"]) == [
        (CAPS + "337",), (CAPS + "346",), (CAPS + "355",),
        ("/dev/nvidia0",), ("/dev/nvidia1",)]


def test_lines_without_nodename_come_first_within_their_type():
    text = ("NodeName=n1 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap337\n"
            "NodeName=n[1-4] Name=gpu Type=a100 File=/dev/nvidia0\n"
            "NodeName=n9 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap999\n"
            "Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap346\n")
    assert units(text, ["a100", "1g.10gb"]) == [
        ("/dev/nvidia0",), (CAPS + "346",), (CAPS + "337",)]


def test_file_hostlists_keep_written_order_and_multiplefiles_is_one_device():
    text = ("NodeName=n1 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[382,373,390-391]\n"
            "NodeName=n1 Name=gpu Type=3g.40gb MultipleFiles=/dev/nvidia3,"
            "/dev/nvidia-caps/nvidia-cap[408-409]\n"
            "NodeName=n1 Name=gpu Type=A100 File=/dev/nvidia[1,0]\n")
    assert units(text, ["a100", "1G.10GB", "3g.40gb"]) == [
        ("/dev/nvidia1",), ("/dev/nvidia0",),  # Types match case-insensitively
        (CAPS + "382",), (CAPS + "373",), (CAPS + "390",), (CAPS + "391",),
        ("/dev/nvidia3", CAPS + "408", CAPS + "409")]


def test_count_only_records_take_count_indices_in_the_map():
    """A file-less record of Count=2 is two indices, without files (slurmd 22.05 keeps such
    records; the map has no device, so no UUID, for them)."""
    Rec = type("Rec", (), {})
    recs = []
    for count, typ, files in ((2, "a", ()), (1, "b", ("/dev/nvidia0",))):
        r = Rec()
        r.count, r.type, r.files, r.path, r.line = count, typ, files, "/etc/slurm/gres.conf", 3
        recs.append(r)
    got = nodemap.units(recs)
    assert [(u.files, u.type, u.source) for u in got] == [
        ((), "a", "gres.conf:3"), ((), "a", "gres.conf:3"), (("/dev/nvidia0",), "b", "gres.conf:3")]


# ---- the map the health check writes -------------------------------------------------------

SEED_GRES = ("NodeName=n1 Name=gpu Type=a100 File=/dev/nvidia[0,1]\n"
             "NodeName=n1 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346,355,"
             "364,373,382,391,472,481,490,508,517,526,535]\n")
# IDX -> (gpu minor, gi, ci) with Gres=gpu:1g.10gb:14,gpu:a100:2: slices first
SEED_IDX = [(2, gi, 0) for gi in range(7, 14)] + [(3, gi, 0) for gi in (7, 8, 9, 11, 12, 13, 14)]
SEED_IDX += [(0,), (1,)]


def layout_uuids(name):
    out = {}
    for g in json.load(open(os.path.join(node(name), "layout.json")))["gpus"]:
        out[(g["minor"],)] = g["uuid"]
        for inst in g.get("instances", []):
            for c in inst["cis"]:
                out[(g["minor"], inst["gi"], c["ci"])] = c["uuid"]
    return out


class FakeNode:
    """A copy of a recorded node, its gres.conf and slurm.conf, and a map written for it."""

    def __init__(self, tmp, name="seed", gres=SEED_GRES, slurm_gres="gpu:1g.10gb:14,gpu:a100:2"):
        self.name = name
        self.dir = tmp / "node"
        shutil.copytree(node(name), self.dir, symlinks=True)
        self.root = str(self.dir / "root")
        self.gres = tmp / "gres.conf"
        self.gres.write_text(gres)
        self.slurm = tmp / "slurm.conf"
        self.slurm.write_text(f"ClusterName=c\nSlurmctldHost=h\nGresTypes=gpu\nNodeName=n1 "
                              f"CPUs=2 Gres={slurm_gres}\nPartitionName=p Nodes=n1\n")
        self.state = tmp / "run"
        self.state.mkdir(mode=0o755)  # the root-owned state directory (/run/migsync)
        self.map = str(self.state / "node-map")
        for d, _, files in os.walk(self.dir):  # world-readable: tasks run as the job's user
            os.chmod(d, 0o755)
            for f in files:
                if not os.path.islink(os.path.join(d, f)):
                    os.chmod(os.path.join(d, f), 0o755 if f == "nvidia-smi" else 0o644)

    def healthcheck(self, backend="nvml", cache_dir=None):
        args = ["healthcheck", "--backend", backend, "--root", self.root, "--node", "n1",
                "--gres-conf", self.gres, "--slurm-conf", self.slurm,
                "--cache-file", (cache_dir or self.state) / "state.json",
                "--lock-file", self.state / "lock",
                "--no-syslog", "--no-drain", "--no-resume", "--scontrol", "/bin/false"]
        if backend == "nvidia-smi":
            return run_cli(*args, "--nvidia-smi", self.dir / "nvidia-smi")
        return run_cli(*args, nvml=nvml_fake.make(str(self.dir / "layout.json")))

    def entries(self):
        m = {}
        for line in open(self.map):
            k, sep, v = line.rstrip("\n").partition("=")
            if sep and not k.startswith("#"):
                m[k] = v.strip("'")
        return m


@pytest.fixture
def world_tmp():
    """A directory the job's user (nobody) can read. Not pytest's tmp_path: its base is 0700,
    and a concurrent pytest run resets the base's mode."""
    d = tempfile.mkdtemp(prefix="migsync-test-taskprolog-", dir="/tmp")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fake(world_tmp):
    f = FakeNode(world_tmp)
    f.healthcheck()
    return f


def test_health_check_writes_every_index_with_its_uuid(fake):
    uuids = layout_uuids("seed")
    m = fake.entries()
    assert m["MIGSYNC_MAP_COUNT"] == "16" and m["MIGSYNC_MAP_NODE"] == "n1"
    for i, key in enumerate(SEED_IDX):
        assert m[f"MIGSYNC_UUID_{i}"] == uuids[key], i
    assert m["MIGSYNC_DEV_0"] == "gpu2/gi7/ci0" and m["MIGSYNC_DEV_15"] == "gpu1"
    assert m["MIGSYNC_FILES_0"] == fake.root + CAPS + "337"
    assert m["MIGSYNC_MAP_CONF"].split() == [str(fake.gres), str(fake.slurm)]
    assert oct(os.stat(fake.map).st_mode & 0o777) == "0o644"


def test_nvidia_smi_backend_leaves_mig_uuids_out_but_keeps_gpu_uuids(tmp_path):
    """nvidia-smi -L lists MIG UUIDs by a device number, not by GI/CI: no guessing."""
    f = FakeNode(tmp_path)
    f.healthcheck("nvidia-smi")
    m = f.entries()
    uuids = layout_uuids("seed")
    assert all(m[f"MIGSYNC_UUID_{i}"] == "" for i in range(14))
    assert m["MIGSYNC_UUID_14"] == uuids[(0,)] and m["MIGSYNC_UUID_15"] == uuids[(1,)]
    assert m["MIGSYNC_MAP_BACKEND"] == "nvidia-smi"


def test_stale_cap_and_whole_gpu_with_mig_on_have_no_uuid(tmp_path):
    # gpu3/gi10 does not exist (cap 499 + 1 = its ci0 cap 500), /dev/nvidia2 has MIG on
    gres = SEED_GRES.replace("nvidia[0,1]", "nvidia[0,2]").replace("535]", "500]")
    f = FakeNode(tmp_path, gres=gres)
    r = f.healthcheck()
    assert "stale" in r.err and "MIG" in r.err, r.err  # the check reports both itself
    m = f.entries()
    assert m["MIGSYNC_UUID_13"] == "" and m["MIGSYNC_DEV_13"] == ""  # the stale cap
    assert m["MIGSYNC_UUID_15"] == "" and m["MIGSYNC_DEV_15"] == "gpu2"  # MIG on
    assert m["MIGSYNC_UUID_14"] == layout_uuids("seed")[(0,)]


def test_a_value_the_map_cannot_carry_is_one_logged_line_and_no_map(tmp_path):
    f = FakeNode(tmp_path)
    spaced = tmp_path / "my gres.conf"
    spaced.write_text(SEED_GRES)
    f.gres = spaced
    r = f.healthcheck()
    assert not os.path.exists(f.map)
    assert "node map not written" in r.err and "my gres.conf" in r.err
    assert "Traceback" not in r.err


def test_a_state_dir_others_can_write_gets_no_map(tmp_path):
    """Tasks trust the map (the sh hook sources it): root never writes it where another user
    could swap it."""
    f = FakeNode(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    r = f.healthcheck(cache_dir=shared)
    assert not os.path.exists(shared / "node-map")
    assert "node map not written" in r.err and "writable by group or other" in r.err


def test_procfs_the_job_user_cannot_list_is_a_warning(tmp_path):
    f = FakeNode(tmp_path)
    mig = os.path.join(f.root, "proc/driver/nvidia/capabilities/gpu3/mig")
    os.chmod(mig, 0o750)
    r = f.healthcheck()
    assert os.path.exists(f.map)
    assert f"tasks (the job's user) cannot list {mig}" in r.err


def test_included_gres_files_are_recorded_for_staleness(tmp_path):
    f = FakeNode(tmp_path, gres="Include more.conf\n")
    (tmp_path / "more.conf").write_text(SEED_GRES)
    f.healthcheck()
    assert str(tmp_path / "more.conf") in f.entries()["MIGSYNC_MAP_CONF"].split()


# ---- both readers, one table ---------------------------------------------------------------

def sh_reader(env):
    return subprocess.run(["/bin/sh", HOOK], env=env, capture_output=True, text=True, timeout=30)


def py_reader(env):
    return subprocess.run([sys.executable, "-m", "migsync", "taskprolog"], env=env,
                          capture_output=True, text=True, timeout=30)


READERS = {"sh": sh_reader, "python": py_reader}


def task_env(fake, **kw):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, "MIGSYNC_NODE_MAP": fake.map,
           "SLURMD_NODENAME": "n1"}
    env.update({k: v for k, v in kw.items() if v is not None})
    return env


def run_reader(reader, env):
    r = READERS[reader](env)
    assert r.returncode == 0, r.stderr  # never fails the task
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) <= 1  # one line at most
    return r


def uuids_for(*idx):
    table = layout_uuids("seed")
    return ",".join(table[SEED_IDX[i]] for i in idx)


# (environment, expected CUDA_VISIBLE_DEVICES or None for "nothing printed", log fragment)
CASES = {
    "batch step": (dict(SLURM_JOB_GPUS="2"), uuids_for(2), ""),
    "batch, two in Slurm's order": (dict(SLURM_JOB_GPUS="3,9"), uuids_for(3, 9), ""),
    "whole gpu": (dict(SLURM_JOB_GPUS="15"), uuids_for(15), ""),
    "srun step, per-task value": (dict(SLURM_JOB_GPUS="4,5", SLURM_STEP_ID="0",
                                       SLURM_STEP_GPUS="5"), uuids_for(5), ""),
    "srun step without gpus": (dict(SLURM_JOB_GPUS="4", SLURM_STEP_ID="1"), None, ""),
    "no gpus": ({}, None, ""),
    "local vendor vars are not read": (dict(SLURM_JOB_GPUS="6", CUDA_VISIBLE_DEVICES="0"),
                                       uuids_for(6), ""),
    "unknown index": (dict(SLURM_JOB_GPUS="2,16"), None, "GPU index '16' is not in the node map"),
    "index planted in the task env": (dict(SLURM_JOB_GPUS="99", MIGSYNC_UUID_99="MIG-x"), None,
                                      "GPU index '99' is not in the node map"),
    "not an index": (dict(SLURM_JOB_GPUS="2-3"), None, "GPU index '2-3' is not in the node map"),
    "a glob, not expanded": (dict(SLURM_JOB_GPUS="2,*"), None,
                             "GPU index '*' is not in the node map"),
    "other node": (dict(SLURM_JOB_GPUS="2", SLURMD_NODENAME="n2"), None,
                   "is for node n1, not n2"),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", CASES)
def test_reader_table(fake, reader, case):
    env, want, log = CASES[case]
    r = run_reader(reader, task_env(fake, **env))
    if want is None:
        assert r.stdout == ""
    else:
        assert r.stdout == f"export CUDA_VISIBLE_DEVICES={want}\n"
    assert log in r.stderr if log else r.stderr == ""
    if log:
        assert r.stderr.startswith("migsync taskprolog: ")
        assert r.stderr.rstrip().endswith("CUDA_VISIBLE_DEVICES left as Slurm set it")


@pytest.mark.parametrize("reader", READERS)
def test_missing_map(fake, reader):
    os.unlink(fake.map)
    r = run_reader(reader, task_env(fake, SLURM_JOB_GPUS="2"))
    assert r.stdout == "" and f"no node map at {fake.map}" in r.stderr


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory"])
def test_a_map_that_is_not_a_regular_file_never_hangs_the_task(world_tmp, reader, kind):
    """The task's own environment can name the map: a FIFO nobody writes or /dev/zero must
    not hang the task (run_reader's timeout would fail this test)."""
    path = "/dev/zero" if kind == "/dev/zero" else str(world_tmp / "map")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        os.mkdir(path)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, "SLURM_JOB_GPUS": "2",
           "MIGSYNC_NODE_MAP": path}
    r = run_reader(reader, env)
    assert r.stdout == "" and f"no node map at {path} " in r.stderr


@pytest.mark.parametrize("reader", READERS)
def test_gres_conf_edited_after_the_map(fake, reader):
    st = os.stat(fake.map)
    os.utime(fake.gres, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    r = run_reader(reader, task_env(fake, SLURM_JOB_GPUS="2"))
    assert r.stdout == ""
    assert f"stale node map: {fake.gres} changed after the map was written" in r.stderr


# ---- where the map is: $MIGSYNC_NODE_MAP, else beside the settings file's cache_file ---------

def test_a_moved_cache_file_moves_the_map_and_both_readers_follow_the_settings_file(
        world_tmp, reader_names=tuple(READERS)):
    """An admin who moves cache_file (say to /var/lib/migsync) gets the map written there by
    the health check; a TaskProlog that looked only at /run/migsync/node-map would leave
    every job with Slurm's plain indices. Both readers find it through the settings file,
    with no MIGSYNC_NODE_MAP in the task's environment (slurmd passes none)."""
    f = FakeNode(world_tmp)
    moved = world_tmp / "var-lib-migsync"
    moved.mkdir(mode=0o755)
    settings = world_tmp / "migsync.toml"
    settings.write_text(f'# site settings\ncache_file = "{moved}/state.json"  # moved\n')
    r = run_cli("healthcheck", "--config", settings, "--backend", "nvml", "--root", f.root,
                "--node", "n1", "--gres-conf", f.gres, "--slurm-conf", f.slurm,
                "--lock-file", f.state / "lock", "--no-syslog", "--no-drain", "--no-resume",
                "--scontrol", "/bin/false", nvml=nvml_fake.make(str(f.dir / "layout.json")))
    # (exit 5: /bin/false as scontrol; the map is written before Slurm is asked)
    assert os.path.isfile(moved / "node-map") and not os.path.exists(f.map), r.err
    for reader in reader_names:
        env = task_env(f, SLURM_JOB_GPUS="3,9", MIGSYNC_CONFIG=str(settings))
        del env["MIGSYNC_NODE_MAP"]
        r = run_reader(reader, env)
        assert (reader, r.stdout, r.stderr) == (
            reader, f"export CUDA_VISIBLE_DEVICES={uuids_for(3, 9)}\n", "")


# settings file text -> the map both readers look for (hand-written; "D" = the default map).
# A line the hand reader cannot read with certainty leaves the default, as
# fastprolog.cache_file_of does for the Prolog.
MAP_PLACES = {
    "no cache_file line": ('backend = "nvml"\n', "D"),
    "double quotes": ('cache_file = "/srv/m/state.json"\n', "/srv/m/node-map"),
    "single quotes, blanks, comment": ("\t cache_file='/srv/m/s.json'   # here\r\n",
                                       "/srv/m/node-map"),
    "quoted key": ('"cache_file" = "/srv/q/s.json"\n', "/srv/q/node-map"),
    "the last line wins": ('cache_file = "/a/s"\ncache_file = "/b/s"\n', "/b/node-map"),
    "commented out": ('# cache_file = "/srv/m/state.json"\n', "D"),
    "in the root directory": ('cache_file = "/state.json"\n', "/node-map"),
    "relative: to /, where the hook runs": ('cache_file = "var/m/s.json"\n', "/var/m/node-map"),
    "no final newline": ('cache_file = "/srv/n/s.json"', "/srv/n/node-map"),
    "empty value": ('cache_file = ""\n', "D"),
    "unquoted value": ("cache_file = /srv/m/s.json\n", "D"),
    "an escape": ('cache_file = "/srv/m\\\\x/s.json"\n', "D"),
    "text after the value": ('cache_file = "/srv/m/s.json" x\n', "D"),
    "unterminated": ('cache_file = "/srv/m/s.json\n', "D"),
    "a table": ('[x]\ncache_file = "/srv/m/s.json"\n', "D"),
    "a multi-line string": ('reason_prefix = """a\nb"""\ncache_file = "/srv/m/s.json"\n', "D"),
    "a key without =": ("cache_file\n", "D"),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", MAP_PLACES)
def test_both_readers_take_the_map_place_from_the_settings_file_alike(world_tmp, reader, case):
    text, want = MAP_PLACES[case]
    settings = world_tmp / "migsync.toml"
    settings.write_text(text)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, "SLURMD_NODENAME": "n1",
           "SLURM_JOB_GPUS": "2", "MIGSYNC_CONFIG": str(settings)}
    r = run_reader(reader, env)
    assert r.stdout == ""  # no map at any of these places
    if want == "D":  # a real node's own map may be there: the message names it either way
        assert " /run/migsync/node-map " in r.stderr, r.stderr
    else:
        assert f"no node map at {want} (the health check writes it)" in r.stderr, r.stderr


@pytest.mark.parametrize("reader", READERS)
def test_the_environment_names_the_map_before_the_settings_file(world_tmp, reader):
    settings = world_tmp / "migsync.toml"
    settings.write_text('cache_file = "/srv/m/state.json"\n')
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, "SLURM_JOB_GPUS": "2",
           "MIGSYNC_CONFIG": str(settings), "MIGSYNC_NODE_MAP": str(world_tmp / "elsewhere")}
    r = run_reader(reader, env)
    assert f"no node map at {world_tmp / 'elsewhere'} " in r.stderr


@pytest.mark.parametrize("reader", READERS)
def test_slurm_conf_gone(fake, reader):
    os.unlink(fake.slurm)
    r = run_reader(reader, task_env(fake, SLURM_JOB_GPUS="2"))
    assert r.stdout == "" and f"{fake.slurm} is gone" in r.stderr


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("change", ["ci-gone", "ci-added", "gpu-gone"])
def test_layout_changed_after_the_map(fake, reader, change):
    caps = os.path.join(fake.root, "proc/driver/nvidia/capabilities")
    if change == "ci-gone":
        os.unlink(os.path.join(caps, "gpu2/mig/gi9/ci0/access"))
    elif change == "ci-added":
        os.makedirs(os.path.join(caps, "gpu3/mig/gi10/ci0"))
        open(os.path.join(caps, "gpu3/mig/gi10/ci0/access"), "w").close()
    else:
        shutil.rmtree(os.path.join(fake.root, "proc/driver/nvidia/gpus/0000:17:00.0"))
    r = run_reader(reader, task_env(fake, SLURM_JOB_GPUS="2"))
    assert r.stdout == ""
    assert "the GPU/MIG layout changed after the map was written" in r.stderr


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("damage", ["format", "syntax", "empty"])
def test_damaged_map_changes_nothing(fake, reader, damage):
    text = open(fake.map).read()
    with open(fake.map, "w") as fh:
        if damage == "format":
            fh.write(text.replace("MIGSYNC_MAP_FORMAT=1", "MIGSYNC_MAP_FORMAT=9"))
        elif damage == "syntax":
            fh.write(text + "if then fi (\n")
        else:
            fh.write("")
    r = run_reader(reader, task_env(fake, SLURM_JOB_GPUS="2"))
    assert r.stdout == ""
    assert r.stderr.startswith("migsync taskprolog: ")


@pytest.mark.parametrize("reader", READERS)
def test_index_without_uuid(tmp_path, reader):
    f = FakeNode(tmp_path)
    f.healthcheck("nvidia-smi")
    r = run_reader(reader, task_env(f, SLURM_JOB_GPUS="14,2"))
    assert r.stdout == "" and "GPU index '2' is without a UUID in the node map" in r.stderr
    r = run_reader(reader, task_env(f, SLURM_JOB_GPUS="14"))
    assert r.stdout == f"export CUDA_VISIBLE_DEVICES={uuids_for(14)}\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the reader as nobody")
@pytest.mark.parametrize("reader", READERS)
def test_runs_as_the_job_user_and_respects_an_inaccessible_device(fake, reader):
    """As nobody: the map and procfs are readable, so the UUID comes out; a device file the
    task may not open (the device cgroup, here its mode) means Slurm's value stays."""
    def as_nobody(env):
        return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                               "--", *(["/bin/sh", HOOK] if reader == "sh" else
                                       [sys.executable, "-m", "migsync", "taskprolog"])],
                              env=env, capture_output=True, text=True, timeout=30, cwd="/")
    env = task_env(fake, SLURM_JOB_GPUS="2")
    r = as_nobody(env)
    assert r.returncode == 0 and r.stdout == f"export CUDA_VISIBLE_DEVICES={uuids_for(2)}\n", \
        r.stderr
    os.chmod(fake.root + CAPS + "355", 0)
    r = as_nobody(env)
    assert r.returncode == 0 and r.stdout == ""
    assert f"GPU index 2: {fake.root + CAPS}355 is not accessible to this task" in r.stderr


def test_cli_help_lists_taskprolog_and_its_map_flag():
    r = run_cli("taskprolog", "--map", "/nonexistent/map")
    assert r.code == 0  # no GPUs in the test's environment: nothing to do
    r = subprocess.run([sys.executable, "-m", "migsync", "taskprolog", "--help"],
                       env={"PYTHONPATH": REPO}, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "CUDA_VISIBLE_DEVICES" in r.stdout


def test_the_python_reader_imports_nothing_but_os_and_sys():
    """It runs once per task of every job: no json, re, argparse, typing, dataclasses: only
    modules the interpreter has loaded anyway (os and sys come with site)."""
    code = ("import os, sys; before = set(sys.modules); import migsync.entry, migsync.taskprolog; "
            "migsync.taskprolog.decide(os.environ); "  # finding the map reads the settings file
            "print(' '.join(sorted(set(sys.modules) - before)))")
    r = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": REPO,
                                                          "SLURM_JOB_GPUS": "0"},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) <= {"migsync", "migsync.entry", "migsync.taskprolog",
                                     "migsync.fastprolog"}, r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the reader as nobody")
@pytest.mark.parametrize("reader", READERS)
def test_per_task_binding_under_constraindevices_follows_the_device_cgroup(fake, reader):
    """Slurm's bug: with per-task binding under ConstrainDevices every task gets task 0's
    SLURM_STEP_GPUS. The task's cgroup (here: file modes, as nobody) allows its own device:
    the UUID follows the cgroup, as many devices as Slurm gave, else nothing changes."""
    for i, key in enumerate(SEED_IDX):
        if i != 5:  # the only device this task may open
            path = fake.root + (CAPS + str(3 + 135 * key[0] + 9 * key[1] + 1 + key[2])
                                if len(key) == 3 else f"/dev/nvidia{key[0]}")
            os.chmod(path, 0)
    env = task_env(fake, SLURM_JOB_GPUS="4,5", SLURM_STEP_ID="0", SLURM_STEP_GPUS="4")
    argv = ["/bin/sh", HOOK] if reader == "sh" else [sys.executable, "-m", "migsync", "taskprolog"]
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                        *argv], env=env, capture_output=True, text=True, timeout=30, cwd="/")
    assert r.returncode == 0
    assert r.stdout == f"export CUDA_VISIBLE_DEVICES={uuids_for(5)}\n", r.stderr
    assert "its device cgroup allows index 5" in r.stderr
    # a two-device task whose cgroup allows only one: nothing changes
    env["SLURM_STEP_GPUS"] = "4,6"
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                        *argv], env=env, capture_output=True, text=True, timeout=30, cwd="/")
    assert r.returncode == 0 and r.stdout == "" and "not accessible" in r.stderr


def test_the_bench_runs():
    """bench/taskprolog.py works (a smoke run: its figures are not judged here)."""
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "taskprolog.py"), "--runs", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 1), r.stderr  # 1: a ratio over its target on this run
    assert "hooks/taskprolog, 1 slice" in r.stdout and "Traceback" not in r.stderr
