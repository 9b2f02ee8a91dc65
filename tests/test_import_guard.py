"""What a full check must not import, on real runs in a fresh interpreter: dataclasses (with
inspect, ast, dis: ~10 ms), typing, subprocess, shutil, tempfile (issue 11: paid by every
health check and Prolog miss). The Prolog's cache hit and the TaskProlog have their own,
stricter guard in test_fastprolog.py."""
import os
import subprocess
import sys

import pytest

from conftest import node

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_GRES = os.path.join(REPO, "migsync", "sample", "seed-node", "gres.conf")

# -I -S: nothing but the interpreter's own start-up modules before migsync runs (this test
# venv's site imports `re` for its editable install, which would hide what we look for).
RUN = r"""
import sys
sys.path.insert(0, {repo!r})
from migsync import cli
code = cli.main(sys.argv[1:])
print(code)
print(" ".join(sorted(sys.modules)))
"""


def modules_after(tmp_path, *argv):
    """No settings file (MIGSYNC_SEARCH_ROOT: an empty tree): a settings file brings tomllib,
    which imports typing itself (the Prolog avoids it with its cached copy)."""
    r = subprocess.run([sys.executable, "-I", "-S", "-c", RUN.format(repo=REPO), *argv],
                       capture_output=True, text=True, cwd="/", timeout=60,
                       env={"MIGSYNC_SEARCH_ROOT": str(tmp_path)})
    lines = r.stdout.strip().split("\n")
    return int(lines[-2]), set(lines[-1].split()), r.stderr


@pytest.mark.parametrize("command", ["check", "emit"])
def test_a_full_check_needs_no_dataclasses_typing_or_subprocess(command, tmp_path):
    d = node("seed")
    code, mods, err = modules_after(tmp_path, command, "--backend", "nvidia-smi", "--nvidia-smi",
                                    os.path.join(d, "nvidia-smi"), "--root",
                                    os.path.join(d, "root"), "--gres-conf", SAMPLE_GRES,
                                    "--node", "c51-g002")
    assert code == 0, err
    assert "migsync.nodecheck" in mods  # it really ran the check
    bad = {"dataclasses", "typing", "subprocess", "shutil", "tempfile"} & mods
    assert not bad, sorted(bad)
