"""The suite is hermetic: a node's own Slurm and migsync files never leak into a result.

On a configless GPU node (where admins run these tests) /run/slurm/conf, /etc/slurm,
slurmd's conf-caches and /etc/migsync/migsync.toml exist. conftest points migsync's built-in
locations at an empty per-test directory ($MIGSYNC_SEARCH_ROOT, see migsync/locate.py); the
test below plants such files at the REAL locations, inside a private mount namespace so the
machine's own files are never touched, and runs the rest of the suite there.
"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import hermetic_env, smi_args

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# A configless node's files that disagree with every fixture: a test that reads any of them
# gets other findings (the audit saw exactly this: an extra gres-count-mismatch), and the site
# settings change verdicts and drain reasons.
PLANTED = {
    "run/slurm/conf/slurm.conf": "ClusterName=site\nSlurmctldHost=head\nGresTypes=gpu\n"
                                 "NodeName=c51-g002,g-7g,g-minor,h200-01,g-empty CPUs=4 "
                                 "Gres=gpu:a100:4\n",
    "run/slurm/conf/gres.conf": "NodeName=c51-g002,g-7g,g-minor,h200-01,g-empty Name=gpu "
                                "Type=a100 File=/dev/nvidia[0-3]\n",
    "etc/slurm/slurm.conf": "ClusterName=etc\nNodeName=c51-g002 Gres=gpu:7\n",
    "etc/slurm/gres.conf": "Name=gpu File=/dev/nvidia[0-6]\n",
    "var/spool/slurmd/conf-cache/gres.conf": "Name=gpu File=/dev/nvidia5\n",
    "var/lib/slurm/slurmd/conf-cache/gres.conf": "Name=gpu File=/dev/nvidia6\n",
    "etc/migsync/migsync.toml": 'ignore = ["stale-cap", "unconfigured-device"]\n'
                                'reason_prefix = "site migsync:"\nstyle = "file"\n',
}

# Inside `unshare -m`: a tmpfs for overlay upper dirs, then /etc, /run and /var become
# writable overlays of themselves; whatever is written there vanishes with the namespace.
NAMESPACE_SH = r"""
set -eu
T=$1; P=$2; shift 2
mount -t tmpfs migsync-test "$T"
for d in etc run var; do
    mkdir -p "$T/$d.upper" "$T/$d.work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/$d.upper,workdir=$T/$d.work" "/$d"
done
# a configless node's /run/slurm/conf is a symlink into slurmd's spool: replace such links
# (inside the overlay) by the planted directories
(cd "$P" && find . -mindepth 1 -type d) | while read -r d; do
    if [ -L "/$d" ]; then rm -f "/$d"; fi
done
cp -r "$P"/. /
exec "$@"
"""


def _planted_tree(tmp_path):
    p = tmp_path / "planted"
    for rel, text in PLANTED.items():
        (p / rel).parent.mkdir(parents=True, exist_ok=True)
        (p / rel).write_text(text)
    return p


def _namespace_argv(tmp_path):
    """argv prefix that runs a command with PLANTED at the real locations, or None."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    t = tmp_path / "ns"
    t.mkdir()
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACE_SH, "ns", str(t),
            str(_planted_tree(tmp_path))]
    probe = subprocess.run(argv + ["cat", "/etc/migsync/migsync.toml"], capture_output=True,
                           text=True, timeout=60)
    if probe.returncode != 0 or probe.stdout != PLANTED["etc/migsync/migsync.toml"]:
        return f"planting failed: {probe.stderr.strip()[:200]}"  # shown by pytest -ra
    return argv


@pytest.fixture
def in_namespace(tmp_path):
    argv = _namespace_argv(tmp_path)
    if argv is None:
        pytest.skip("needs root and `unshare -m` with overlayfs (a private mount namespace)")
    if isinstance(argv, str):
        pytest.skip(argv)
    return argv


def migsync_argv(*args):
    return [sys.executable, "-m", "migsync", *args]


def test_planted_files_are_what_migsync_reads_without_the_override(in_namespace):
    """The control: without $MIGSYNC_SEARCH_ROOT migsync does read the planted files, so the
    suite run below would fail if any test escaped the override."""
    r = subprocess.run(in_namespace + migsync_argv("check", "--json", *smi_args("seed-lost"),
                                                   "--node", "c51-g002"),
                       capture_output=True, text=True, timeout=120,
                       env={"PATH": os.environ["PATH"], "PYTHONPATH": REPO})
    import json
    doc = json.loads(r.stdout)
    assert doc["files"] == {"gres_conf": "/run/slurm/conf/gres.conf",
                            "slurm_conf": "/run/slurm/conf/slurm.conf", "found_by": "configless"}
    # the planted toml's ignore list applied: the seed's MIG devices are named by no line
    assert {f["id"] for f in doc["ignored"]} == {"unconfigured-device"}
    # and with the override, the same command sees none of it
    r = subprocess.run(in_namespace + migsync_argv("check", *smi_args("seed-lost"),
                                                   "--node", "c51-g002"),
                       capture_output=True, text=True, timeout=120,
                       env=hermetic_env(PYTHONPATH=REPO))
    assert r.returncode == 2 and "gres.conf not found" in r.stderr, r.stderr
    root = os.environ["MIGSYNC_SEARCH_ROOT"]
    assert f"{root}/run/slurm/conf, " in r.stderr and f"{root}/etc/slurm, " in r.stderr


def test_the_suite_passes_on_a_configless_node_with_site_settings(in_namespace, tmp_path):
    """Every non-Slurm test (this file aside), run where the planted files exist."""
    env = {k: v for k, v in os.environ.items() if k not in ("MIGSYNC_SEARCH_ROOT", "MIGSYNC_CONFIG")}
    r = subprocess.run(in_namespace + [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slurm",
                                       "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'inner'}",
                                       "--ignore", os.path.join(HERE, "test_hermetic.py"), HERE],
                       capture_output=True, text=True, timeout=1800, cwd=REPO, env=env)
    tail = "\n".join(r.stdout.splitlines()[-15:])
    assert r.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail


def test_default_settings_file_is_read_under_the_search_root(search_root):
    """The override covers /etc/migsync/migsync.toml too (and migsync does read it there)."""
    from conftest import SAMPLE_GRES, run_cli

    toml = search_root / "etc/migsync/migsync.toml"
    toml.parent.mkdir(parents=True)
    toml.write_text('ignore = ["stale-cap"]\n')
    r = run_cli("check", "--json", *smi_args("seed-lost", SAMPLE_GRES, nodename="c51-g002"))
    assert r.code == 0 and [f["id"] for f in r.json()["ignored"]] == ["stale-cap"]
    toml.write_text("no_such_key = 1\n")
    r = run_cli("check", *smi_args("seed-lost", SAMPLE_GRES, nodename="c51-g002"))
    assert r.code == 2 and f"{toml}: unknown key 'no_such_key'" in r.err
