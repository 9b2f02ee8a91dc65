"""`migsync demo`: the whole job on the sample node shipped inside the package.

Every step is run through the real command line with the arguments it prints, so what the
user reads is what they can type again (with `--keep DIR` the sample stays there)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import List, Optional, TextIO

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample", "seed-node")
NODE = "c51-g002"


def _settings_text(node_dir: str) -> str:
    return (f"# Settings for the demo's sample node (see `migsync check --help`).\n"
            f'backend = "nvidia-smi"\n'
            f'nvidia_smi = "{node_dir}/nvidia-smi"   # replays recorded output\n'
            f'root = "{node_dir}/root"               # a copy of the node\'s /proc and /dev\n'
            f'gres_conf = "{node_dir}/gres.conf"\n'
            f'slurm_conf = "{node_dir}/slurm.conf"\n'
            f'node = "{NODE}"\n')


def _prepare(node_dir: str) -> str:
    try:  # --keep /proc/x, a read-only or full disk: one line and exit 2, not exit 70
        shutil.copytree(SAMPLE, node_dir, symlinks=True)
        os.chmod(os.path.join(node_dir, "nvidia-smi"), 0o755)
        cfg = os.path.join(node_dir, "migsync.toml")
        with open(cfg, "w") as fh:
            fh.write(_settings_text(node_dir))
    except (OSError, shutil.Error) as exc:
        from .errors import ConfigError

        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot copy the sample node there: {why}", path=node_dir) from None
    return cfg


def _step(out: TextIO, argv: List[str], comment: str) -> int:
    from . import cli

    out.write(f"\n$ migsync {' '.join(argv)}   # {comment}\n")
    out.flush()
    with contextlib.redirect_stdout(out):
        return cli.main(argv)


def run(out: TextIO, keep: Optional[str] = None) -> int:
    if keep:
        node_dir = os.path.abspath(keep)
        if os.path.exists(node_dir) and os.listdir(node_dir):
            from .errors import UsageError

            raise UsageError("--keep: the directory exists and is not empty; name a new one",
                             path=node_dir)
        if os.path.isdir(node_dir):
            os.rmdir(node_dir)
        return _demo(out, node_dir, kept=True)
    with tempfile.TemporaryDirectory(prefix="migsync-demo-") as tmp:
        return _demo(out, os.path.join(tmp, "sample-node"), kept=False)


def _demo(out: TextIO, node_dir: str, kept: bool) -> int:
    cfg = _prepare(node_dir)
    gres = os.path.join(node_dir, "gres.conf")
    out.write(
        f"migsync demo, on a sample node copied to {node_dir}\n"
        f"The node {NODE} has 4 NVIDIA A100 GPUs. Two of them are split into 7 small GPUs each\n"
        "(NVIDIA calls this MIG). A reboot lost one of those small GPUs, but its device file in\n"
        "/dev stayed behind, so Slurm's gres.conf still looks right at a glance. No real GPU is\n"
        f"needed: {os.path.basename(cfg)} points migsync at the copy.\n")
    # What each step must exit with for the demo to have shown what it says: the check
    # finds the lost instance (1); a step that fails otherwise fails the demo (its code).
    codes = [("discover", 0, _step(out, ["discover", "--config", cfg], "what the node really has"))]
    out.write(f"\n$ cat {gres}   # what Slurm was told, written before the reboot\n")
    with open(gres) as fh:
        out.write(fh.read())
    code = _step(out, ["check", "--config", cfg], "compare; exit 1 means they differ")
    out.write(f"(exit code {code})\n")
    codes.append(("check", 1, code))
    codes.append(("emit", 0, _step(out, ["emit", "--config", cfg], "a gres.conf for the "
                                   "hardware as it is now, in the style the old file uses")))
    failed = [(name, want, got) for name, want, got in codes if got != want]
    if failed:
        import sys

        name, want, got = failed[0]
        sys.stderr.write(f"migsync demo: the {name} step exited {got}, not {want} (its message "
                         "is above); the demo did not show what it says\n")
        return got if got not in (0, 1) else 70
    out.write(
        "\nWhat to do next on a real node (as root):\n"
        "  - If the small GPU should exist, recreate it (e.g. `nvidia-mig-parted apply`, or\n"
        "    `nvidia-smi mig -cgi 1g.10gb -C -i <GPU index>`), then run `migsync check` again.\n"
        "  - Otherwise write the corrected file: `migsync emit --write /etc/slurm/gres.conf`\n"
        "    (the old file is kept as a backup), put the printed Gres= into the node's line in\n"
        "    slurm.conf, then run `scontrol reconfigure` (or restart slurmd) and `migsync check`.\n"
        "  - To keep it in step from now on: `migsync install-hooks DIR` (see the README).\n")
    if kept:
        out.write(f"\nThe sample stays in {node_dir}: the commands above work as printed.\n")
    else:
        out.write("\nThe sample copy is removed now; `migsync demo --keep DIR` keeps it so the "
                  "commands above can be run again.\n")
    return 0
