import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from migsync import cli  # noqa: E402

DATA = os.path.join(HERE, "data")
NODES = os.path.join(DATA, "nodes")
CONF = os.path.join(DATA, "conf")


def node(name):
    return os.path.join(NODES, name)


SLURM_LOCK = os.environ.get("MIGSYNC_SLURM_TEST_LOCK", "/tmp/migsync-slurm-tests.lock")


@pytest.fixture(autouse=True)
def _one_real_slurm_at_a_time(request):
    """Real-Slurm tests use the machine's /dev, /run/slurm/conf and munge's default socket:
    two test runs on one machine (two checkouts) must not interleave them."""
    if request.node.get_closest_marker("slurm") is None:
        yield
        return
    import fcntl

    with open(SLURM_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    """No test reads the machine's /etc/migsync, SLURM_CONF or node name by accident."""
    monkeypatch.setenv("MIGSYNC_CONFIG", str(tmp_path / "no-migsync.toml.absent"))
    monkeypatch.delenv("SLURM_CONF", raising=False)
    monkeypatch.delenv("SLURMD_NODENAME", raising=False)
    # an explicit but absent config would be an error: use an empty one instead
    (tmp_path / "no-migsync.toml.absent").write_text("")


class Run:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def json(self):
        import json
        return json.loads(self.out)


def run_cli(*args, nvml=None):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main([str(a) for a in args], nvml_module=nvml)
    return Run(code, out.getvalue(), err.getvalue())


def smi_args(name, gres=None, slurm=None, nodename=None):
    """CLI args that point migsync at a recorded node served by its fake nvidia-smi."""
    d = node(name)
    args = ["--backend", "nvidia-smi", "--nvidia-smi", os.path.join(d, "nvidia-smi"),
            "--root", os.path.join(d, "root")]
    if gres:
        args += ["--gres-conf", gres]
    if slurm:
        args += ["--slurm-conf", slurm]
    if nodename:
        args += ["--node", nodename]
    return args
