#!/usr/bin/env python3
"""What check_migsync adds to an NHC run, on a consistent node.

    python3 bench/nhc.py [--runs N] [--nhc DIR]

Times whole NHC 1.4.3 runs (the vendored copy, or --nhc / $MIGSYNC_NHC_DIR) with the seed
node's recorded procfs tree and nvidia-smi output:
  baseline       NHC with an empty nhc.conf (INCDIR holds NHC's common.nhc)
  nhc+/bin/true  NHC running one trivial external check: what NHC itself spends on any check
                 that starts a program (its watchdog teardown polls in 10 ms sleeps)
  nhc+bare line  NHC running `migsync check --reason-only ...` as a plain check line (no
                 check_migsync: no timeout, no reason handling): isolates check_migsync's glue
  nhc+check      NHC running `* || check_migsync ...` (INCDIR adds migsync.nhc)
and, for scale, `migsync check --reason-only` alone and `python3 -c pass`. Runs are
interleaved (A B C D, B C D A, ...) after a warm-up so drift hits every variant alike; the
figures are medians. NHC marks nothing here (MARK_OFFLINE=0): the helpers' scontrol calls
cost the same with or without the check.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SEED = os.path.join(REPO, "tests", "data", "nodes", "seed")
sys.path.insert(0, os.path.join(REPO, "tests"))
import nhcdir  # noqa: E402  (the tests' lookup: beside the clone, or beside a worktree's main)

GRES = ("NodeName=gpunode1 Name=gpu Type=a100 File=/dev/nvidia[0,1]\n"
        "NodeName=gpunode1 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346,355,"
        "364,373,382,391,472,481,490,508,517,526,535]\n")


def migsync_cmd():
    """The installed console script where there is one (what a site runs), else -m."""
    script = os.path.join(os.path.dirname(sys.executable), "migsync")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "migsync"]


def setup(tmp, nhc_dir):
    with open(os.path.join(tmp, "gres.conf"), "w") as fh:
        fh.write(GRES)
    args = (f"--backend nvidia-smi --nvidia-smi {SEED}/nvidia-smi --root {SEED}/root "
            f"--gres-conf {tmp}/gres.conf --node gpunode1")
    variants = {}
    for name, lines, with_check in (("baseline", [], False),
                                    ("nhc+/bin/true", ["* || /bin/true"], False),
                                    ("nhc+bare line", [f"* || {' '.join(migsync_cmd())} check "
                                                       f"--reason-only {args}"], False),
                                    ("nhc+check", [f"* || check_migsync {args}"], True)):
        d = os.path.join(tmp, name)
        os.makedirs(os.path.join(d, "scripts"))
        shutil.copy(os.path.join(nhc_dir, "scripts", "common.nhc"), os.path.join(d, "scripts"))
        if with_check:
            shutil.copy(os.path.join(REPO, "conf", "nhc", "migsync.nhc"), os.path.join(d, "scripts"))
        conf = os.path.join(d, "nhc.conf")
        with open(conf, "w") as fh:
            fh.write("".join(ln + "\n" for ln in lines))
        variants[name] = [os.path.join(nhc_dir, "nhc"), "-D", d, "-c", conf, "-t", "30",
                          f"INCDIR={d}/scripts", f"HELPERDIR={nhc_dir}/helpers", "NHC_RM=slurm",
                          "MARK_OFFLINE=0", f"LOGFILE={d}/nhc.log", "HOSTNAME=gpunode1",
                          "HOSTNAME_S=gpunode1"]
    variants["migsync alone"] = migsync_cmd() + ["check", "--reason-only"] + args.split()
    variants["python3 -c pass"] = [sys.executable, "-c", "pass"]
    return variants


def run_once(argv, env):
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       cwd="/")
    return time.perf_counter() - t, r.returncode


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--nhc", default=None, help="NHC source dir (default: the vendored copy)")
    opts = ap.parse_args(argv)
    nhc_dir = os.path.abspath(opts.nhc or nhcdir.nhc_dir())
    if not os.path.isfile(os.path.join(nhc_dir, "nhc")):
        print(f"NHC not found at {nhc_dir}: pass --nhc DIR or set MIGSYNC_NHC_DIR")
        return 2
    # MIGSYNC_BIN: the same migsync for both ways of running it; SLURMD_NODENAME as slurmd sets.
    cmd = migsync_cmd()
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "SLURMD_NODENAME": "gpunode1",
           "MIGSYNC_BIN": " ".join(cmd), "PYTHONPATH": REPO}
    with tempfile.TemporaryDirectory(prefix="migsync-bench-nhc-") as tmp:
        env["MIGSYNC_CONFIG"] = os.path.join(tmp, "empty.toml")
        open(env["MIGSYNC_CONFIG"], "w").close()
        variants = setup(tmp, nhc_dir)
        names = list(variants)
        times = {n: [] for n in names}
        for n in names:  # warm-up: page cache, .pyc files
            for _ in range(2):
                _, rc = run_once(variants[n], env)
                if rc != 0:
                    print(f"{n}: exit {rc} on the consistent seed node; see {tmp}/{n}/nhc.log")
                    print(open(os.path.join(tmp, "nhc+check", "nhc.log")).read()
                          if os.path.exists(os.path.join(tmp, "nhc+check", "nhc.log")) else "")
                    return 1
        for i in range(opts.runs):
            order = names[i % len(names):] + names[:i % len(names)]
            for n in order:
                times[n].append(run_once(variants[n], env)[0])
    med = {n: statistics.median(v) for n, v in times.items()}
    base, full, alone = med["baseline"], med["nhc+check"], med["migsync alone"]
    print(f"NHC {nhc_dir}; migsync: {' '.join(cmd)}; {opts.runs} interleaved runs, medians")
    for n in names:
        print(f"  {n:<16} {med[n] * 1000:8.1f} ms")
    print(f"nhc+check / baseline NHC:          {full / base:5.2f}x  "
          f"(+{(full - base) * 1000:.1f} ms per NHC run)")
    triv = med["nhc+/bin/true"]
    print(f"nhc+check / nhc+/bin/true:         {full / triv:5.2f}x  "
          f"(+{(full - triv) * 1000:.1f} ms over a trivial check)")
    bare = med["nhc+bare line"]
    print(f"nhc+check / nhc+bare line:         {full / bare:5.2f}x  "
          f"(check_migsync's glue: {(full - bare) * 1000:+.1f} ms)")
    print(f"migsync alone / python3 -c pass:   {alone / med['python3 -c pass']:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
