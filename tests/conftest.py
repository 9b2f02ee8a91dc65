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
SAMPLE = os.path.join(os.path.dirname(HERE), "migsync", "sample", "seed-node")
SAMPLE_GRES = os.path.join(SAMPLE, "gres.conf")


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


SEARCH_ROOT_ENV = "MIGSYNC_SEARCH_ROOT"  # migsync/locate.py: where built-in locations are read


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path, request):
    """No test reads the machine's /etc/migsync, /etc/slurm, /run/slurm/conf, conf-caches,
    SLURM_CONF or node name by accident.

    $MIGSYNC_SEARCH_ROOT points migsync's built-in locations at an empty directory of this
    test's own; subprocesses inherit it (tests that pass env= must pass hermetic_env()).
    Real-Slurm tests keep the machine's locations: the cluster they start links the real
    /run/slurm/conf, as slurmd does on a configless node, and that is what they test."""
    monkeypatch.delenv("SLURM_CONF", raising=False)
    monkeypatch.delenv("SLURMD_NODENAME", raising=False)
    monkeypatch.delenv("MIGSYNC_CONFIG", raising=False)
    if request.node.get_closest_marker("slurm") is None:
        root = tmp_path / "search-root"
        root.mkdir()
        monkeypatch.setenv(SEARCH_ROOT_ENV, str(root))
        # nor the slurmd the suite may run under (an srun, a test node): in process, slurmd
        # is only what a test plants (tests/test_slurmversion.py tests the walk itself)
        from migsync import slurmversion

        monkeypatch.setattr(slurmversion, "running_slurmd", lambda *a, **k: None)
    else:
        monkeypatch.delenv(SEARCH_ROOT_ENV, raising=False)
        # ... but never the machine's own migsync settings
        (tmp_path / "empty-migsync.toml").write_text("")
        monkeypatch.setenv("MIGSYNC_CONFIG", str(tmp_path / "empty-migsync.toml"))


@pytest.fixture(autouse=True)
def _fresh_hostlist_cache():
    """hostlist.parse is memoised: a result cached by one test (or, under mutation testing,
    by the unmutated code before the fork) must not answer for another."""
    from migsync import hostlist

    memo = getattr(hostlist, "_PARSED", None)  # the memo itself: under mutmut, `parse` is a
    if memo is not None:                        # trampoline without parse.cache_clear
        memo.clear()


@pytest.fixture
def search_root():
    """The directory this test's migsync treats as "/" for /run/slurm/conf, /etc/slurm,
    the conf-caches and /etc/migsync/migsync.toml (create files under it to plant them)."""
    import pathlib

    return pathlib.Path(os.environ[SEARCH_ROOT_ENV])


def search_root_env():
    """Just $MIGSYNC_SEARCH_ROOT, for subprocesses that mimic slurmd's bare environment."""
    return {k: os.environ[k] for k in (SEARCH_ROOT_ENV,) if k in os.environ}


def hermetic_env(**extra):
    """An environment for a subprocess that must not see the caller's, but must stay hermetic."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if SEARCH_ROOT_ENV in os.environ:
        env[SEARCH_ROOT_ENV] = os.environ[SEARCH_ROOT_ENV]
    env.update({k: str(v) for k, v in extra.items()})
    return env


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


def broken_nvidia_smi(directory):
    """An nvidia-smi that runs but cannot reach the driver (its real message and exit 9): the
    discovery failure of a node whose driver is wedged. (An nvidia-smi path that does not
    exist, on a node whose driver shows GPUs, is a wrong setting instead: exit 2.)"""
    path = os.path.join(str(directory), "broken-nvidia-smi")
    with open(path, "w") as fh:
        fh.write("#!/bin/sh\necho 'NVIDIA-SMI has failed because it couldn'\\''t communicate "
                 "with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed "
                 "and running.'\nexit 9\n")
    os.chmod(path, 0o755)
    return path


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


@pytest.fixture
def scontrol(tmp_path):
    """A recording scontrol: every call is appended to the log; `show` says the node is IDLE.
    Tests assert on the log that migsync's own errors never reach `scontrol update`."""
    log = tmp_path / "scontrol.log"
    s = tmp_path / "scontrol"
    s.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                 '[ "$1" = show ] && echo "NodeName=c51-g002 State=IDLE"\nexit 0\n')
    s.chmod(0o755)
    return s, log


def corpus_texts(text, etc, dev):
    """{path: content} of the files a corpus case's `#@ Text:REL=line` headers write (Include
    targets): REL is relative to gres.conf's directory ``etc``, each header adds one line, and
    @D@ / @E@ in it stand for the device directory ``dev`` / ``etc``."""
    out = {}
    for line in text.split("\n"):
        if line.startswith("#@ Text:"):
            rel, _, content = line[len("#@ Text:"):].rstrip("\r").partition("=")
            path = os.path.join(etc, rel)
            out[path] = out.get(path, "") + content.replace("@D@", dev).replace("@E@", etc) + "\n"
    return out


def write_corpus_texts(text, etc, dev):
    """Write a case's `#@ Text:` files (see corpus_texts)."""
    for path, content in corpus_texts(text, etc, dev).items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(content)


def corpus_slurm_lines(text):
    """The slurm.conf lines a corpus case's `#@ Slurm:line` headers put before the node's
    NodeName line (NodeName=DEFAULT lines, for example)."""
    return [ln[len("#@ Slurm:"):].rstrip("\r") for ln in text.split("\n")
            if ln.startswith("#@ Slurm:")]


def corpus_slurm_conf(text, node):
    """The slurm.conf keys of a corpus case that migsync reads, as the differential's
    cluster writes them: GresTypes, the `#@ Slurm:` lines, then the node's line with
    `#@ Gres=` (`gpu:1` when the case has none; an empty `#@ Gres=` writes no Gres=)."""
    h = corpus_headers(text)
    gres = h.get("Gres", "gpu:1")
    return "\n".join([f"GresTypes={h.get('GresTypes', 'gpu')}", *corpus_slurm_lines(text),
                      f"NodeName={node} CPUs=2" + (f" Gres={gres}" if gres else "")]) + "\n"


def corpus_gres_types(text):
    """The GresTypes of a case's slurm.conf: `#@ GresTypes=`, else the cluster's `gpu`."""
    return corpus_headers(text).get("GresTypes", "gpu").split(",")


def corpus_headers(text):
    """The `#@ Key=value` lines of a gres.conf corpus case (comments to slurmd): what the
    case's slurm.conf says (Gres=, Capped=...). Shared by the replay and the live differential."""
    out = {}
    for line in text.split("\n"):
        if line.startswith("#@ "):
            key, _, value = line[3:].strip().partition("=")
            out[key] = value
    return out
