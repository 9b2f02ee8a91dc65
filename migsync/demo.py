"""`migsync demo`: the whole job on the sample node shipped inside the package."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import TextIO

from . import nodecheck, render
from .discovery import discover
from .settings import Settings

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample", "seed-node")


def run(out: TextIO) -> int:
    with tempfile.TemporaryDirectory(prefix="migsync-demo-") as tmp:
        node_dir = os.path.join(tmp, "seed-node")
        shutil.copytree(SAMPLE, node_dir, symlinks=True)
        smi = os.path.join(node_dir, "nvidia-smi")
        os.chmod(smi, 0o755)
        st = Settings(backend="nvidia-smi", nvidia_smi=smi, root=os.path.join(node_dir, "root"),
                      gres_conf=os.path.join(node_dir, "gres.conf"),
                      slurm_conf=os.path.join(node_dir, "slurm.conf"), node="c51-g002")
        out.write("migsync demo: the seed write-up's node c51-g002 (4 x A100 80GB, GPUs 2 and 3 "
                  "split into 1g.10gb)\nafter a reboot that lost gpu3/gi14; its /dev cap "
                  "nvidia-cap535 is still there.\n\n")
        out.write("$ migsync discover\n")
        out.write(render.inventory_table(discover(st.root, st.backend, st.nvidia_smi)))
        out.write("\n$ cat gres.conf   # written by the seed's shell recipe before the reboot\n")
        with open(st.gres_conf) as fh:
            out.write(fh.read())
        out.write("\n$ migsync check   # exit 1: mismatch\n")
        outcome = nodecheck.run(st)
        out.write(render.check_report(outcome))
        out.write("\n$ migsync emit --style file   # the hand-written style, fixed\n")
        st.style = "file"
        fixed = nodecheck.run(st)
        out.write(render.emit_text(fixed, "file"))
        out.write("\nOn a real node: `migsync check` (as root), then `migsync emit`.\n")
    return 0
