"""What emit writes, read by the real slurmd (Debian's 22.05): `slurmd -G` lists exactly the
records emit meant, in both styles, and a node registered with them goes IDLE. Also the real
slurmd's AutoDetect=nvml on a Slurm without the gpu_nvml plugin: it registers nothing, which is
what `check` reports.

The seed node's device files are created as regular files in the real /dev for the test
(slurmd stats them) and removed afterwards; skipped where real /dev/nvidia* files exist.
"""
import json
import os
import re
import shutil
import subprocess

import pytest

import slurm_cluster
from conftest import node, run_cli, smi_args
from fakenode import ci_cap, gi_cap

why = slurm_cluster.available()
if not why and os.path.exists("/dev/nvidiactl"):
    why = "this machine has a real NVIDIA driver; the fake node's /dev files would clash"
pytestmark = [pytest.mark.slurm] + ([pytest.mark.skip(reason=why)] if why else [])

N = slurm_cluster.NODE
LAYOUT = json.load(open(os.path.join(node("seed"), "layout.json")))


def meant(style):
    """Per device (type, files), from the layout by hand: whole GPUs get the short GPU name,
    MIG devices their profile (emit's documented defaults on a node with no gres.conf)."""
    out = []
    for g in LAYOUT["gpus"]:
        if not g["mig"]:
            out.append(("a100", (f"/dev/nvidia{g['minor']}",)))
            continue
        for i in g["instances"]:
            for c in i["cis"]:
                gi = f"/dev/nvidia-caps/nvidia-cap{gi_cap(g['minor'], i['gi'])}"
                ci = f"/dev/nvidia-caps/nvidia-cap{ci_cap(g['minor'], i['gi'], c['ci'])}"
                files = (f"/dev/nvidia{g['minor']}", gi, ci) if style == "multiple-files" else (ci,)
                out.append((c["profile"], files))
    return sorted(out)


def expand(expr):
    """slurmd prints File= as written: a comma list, or one bracket group of numbers."""
    m = re.fullmatch(r"(.*)\[([0-9,\-]+)\](.*)", expr)
    if not m:
        return expr.split(",")
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}{n}{m.group(3)}" for n in range(int(lo), int(hi or lo) + 1)]
    return out


def slurmd_records(cluster):
    r = subprocess.run(["slurmd", "-G", "-f", cluster.slurm_conf, "-N", N], capture_output=True,
                       text=True, timeout=90)
    out = r.stdout + r.stderr
    devices = []
    for m in re.finditer(r"Gres Name=(\S+) Type=(\S+) Count=(\d+) Index=\S+ ID=\S+ File=(\S+)", out):
        files = expand(m.group(4))
        count = int(m.group(3))
        if count == 1:
            devices.append((m.group(2), tuple(files)))
        else:
            assert len(files) == count, m.group(0)
            devices += [(m.group(2), (f,)) for f in files]
    return out, sorted(devices)


@pytest.fixture
def seed_devices():
    """The seed node's device files in the real /dev, for the test's duration."""
    created = []
    if not os.path.isdir("/dev/nvidia-caps"):
        os.mkdir("/dev/nvidia-caps")
        created.append("/dev/nvidia-caps")
    for _, files in meant("multiple-files"):
        for f in files:
            if not os.path.exists(f):
                open(f, "w").close()
                created.append(f)
    yield
    for path in reversed(created):
        try:
            os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
        except OSError:
            pass


@pytest.mark.parametrize("style", ["multiple-files", "file"])
def test_slurmd_reads_what_emit_meant(tmp_path, seed_devices, style):
    args = ["--style", style, *smi_args("seed", tmp_path / "none.conf", nodename=N)]
    gres = run_cli("emit", *args)
    assert gres.code == 0 and "note" in gres.err  # no gres.conf yet: the first-hour case
    slurm = run_cli("emit", "--slurm-lines", *args)
    node_gres = slurm.out.splitlines()[1].split("Gres=", 1)[1]
    cluster = slurm_cluster.Cluster(tmp_path / "c", gres.out, node_gres)  # emit's stdout as is
    out, records = slurmd_records(cluster)
    assert "fatal" not in out and "Parse error" not in out, out
    assert not re.search(r"more configured than expected", out), out
    assert records == meant(style), out
    try:
        cluster.start()  # waits for exactly 'idle': registered >= configured for every type
        assert cluster.node_info()["Gres"] == node_gres
    finally:
        cluster.stop()


def test_autodetect_nvml_without_the_plugin_registers_nothing_and_check_says_so(tmp_path,
                                                                              seed_devices):
    from migsync import autodetect

    plugin_dir = autodetect.find_plugin_dir(None)
    if plugin_dir is None:
        pytest.skip("cannot find this Slurm's plugin directory")
    if os.path.exists(os.path.join(plugin_dir, "gpu_nvml.so")):
        pytest.skip("this Slurm has the gpu_nvml plugin")
    # PluginDir is the default one, written out: migsync run with --root (a captured node)
    # does not guess the host's default.
    cluster = slurm_cluster.Cluster(tmp_path / "c", "AutoDetect=nvml\n", "gpu:1g.10gb:14",
                                    extra_conf=f"PluginDir={plugin_dir}")
    env = dict(os.environ)
    if shutil.which("gcc"):
        # Let slurmd find an NVML library, as on a real GPU node with the driver installed:
        # then it looks for the gpu_nvml plugin itself (measured: 'cannot find gpu plugin').
        lib = tmp_path / "lib"
        lib.mkdir()
        (lib / "e.c").write_text("int migsync_probe;\n")
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib / "libnvidia-ml.so"),
                        str(lib / "e.c")], check=True, timeout=60)
        env["LD_LIBRARY_PATH"] = str(lib)
    r = subprocess.run(["slurmd", "-G", "-f", cluster.slurm_conf, "-N", N], capture_output=True,
                       text=True, timeout=90, env=env)
    out = r.stdout + r.stderr
    assert "Gres Name=gpu" not in out, out  # slurmd registers no GPU at all
    assert "nvml" in out
    res = run_cli("check", "--json", *smi_args("seed", cluster.gres_conf, cluster.slurm_conf, N))
    ids = [f["id"] for f in res.json()["findings"]]
    assert res.code == 1 and ids[0] == "autodetect-unavailable"
    assert plugin_dir in res.json()["findings"][0]["message"]
    assert "unconfigured-device" in ids  # true: with no plugin nothing configures them
