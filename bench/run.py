#!/usr/bin/env python3
"""migsync benchmarks: each figure is a ratio against a baseline measured in the same run.

    python3 bench/run.py [--runs N] [--quick]

Whole processes are timed after a warm-up; medians are reported. Targets (issue 5):
Prolog fast path <= 2x `python3 -c pass`; full check (nvidia-smi backend, cat-style fakes)
<= 3x `python3 -c pass` and no slower than the seed's shell recipe; 10,000-node gres.conf adds
<= 150 ms; hostlist membership in microseconds; peak RSS <= 40 MB; merge of 10,000 reports
reported against a json.load loop.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

import fakenode  # noqa: E402
from migsync import hostlist  # noqa: E402

PY = sys.executable
# No MIGSYNC_CONFIG: the default /etc/migsync/migsync.toml is read if this machine has one.
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, "LC_ALL": "C"}
RESULTS = []


def run_once(argv, env=None):
    """Wall time and peak RSS (KiB) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=env or ENV, cwd="/")
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t, ru.ru_maxrss, p.returncode


def median_time(argv, runs, env=None, shell=False):
    if shell:
        argv = ["/bin/sh", "-c", argv]
    for _ in range(2):
        run_once(argv, env)  # warm-up: page cache, pyc files
    times, rss, codes = [], [], set()
    for _ in range(runs):
        t, r, c = run_once(argv, env)
        times.append(t)
        rss.append(r)
        codes.add(c)
    return statistics.median(times), max(rss), codes


def target(name, measured, limit, unit="x", detail=""):
    ok = measured <= limit
    RESULTS.append((name, measured, limit, unit, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {measured:.3g}{unit} (target <= {limit:g}{unit})"
          + (f"  [{detail}]" if detail else ""), flush=True)


def info(name, text):
    RESULTS.append((name, None, None, "", None, text))
    print(f"INFO  {name}: {text}", flush=True)


def write_big_node(tmp):
    d = os.path.join(tmp, "big")
    fakenode.write_node(fakenode.big_node(8, "g-big"), d)
    return d


def gres_for(node_dir, node="g-big", style="multiple-files"):
    out = subprocess.run([PY, "-m", "migsync", "emit", "--style", style, "--backend", "nvidia-smi",
                          "--nvidia-smi", os.path.join(node_dir, "nvidia-smi"), "--root",
                          os.path.join(node_dir, "root"), "--gres-conf", os.devnull, "--node", node],
                         capture_output=True, text=True, env=ENV, check=False).stdout
    return [ln for ln in out.splitlines() if ln.startswith("NodeName=") and "Name=gpu" in ln]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="fewer runs and a smaller merge")
    args = ap.parse_args(argv)
    runs = 5 if args.quick else args.runs
    tmp = tempfile.mkdtemp(prefix="migsync-bench-")
    try:
        return bench(tmp, runs, args.quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(tmp, runs, quick):
    node = write_big_node(tmp)
    root = os.path.join(node, "root")
    smi = os.path.join(node, "nvidia-smi")
    lines = gres_for(node)
    gres = os.path.join(tmp, "gres.conf")
    with open(gres, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    slurm = os.path.join(tmp, "slurm.conf")
    with open(slurm, "w") as fh:
        fh.write("GresTypes=gpu\nNodeName=g-big Gres=gpu:1g.10gb:56\n")
    scontrol = os.path.join(tmp, "scontrol")
    with open(scontrol, "w") as fh:
        fh.write("#!/bin/sh\necho 'NodeName=g-big State=IDLE'\n")
    os.chmod(scontrol, 0o755)
    common = ["--root", root, "--gres-conf", gres, "--slurm-conf", slurm, "--node", "g-big",
              "--lock-file", os.path.join(tmp, "lock"), "--cache-file", os.path.join(tmp, "state.json"),
              "--scontrol", scontrol, "--slurm-backend", "scontrol", "--no-syslog"]
    base, base_rss, _ = median_time([PY, "-c", "pass"], runs)
    print(f"baseline: python3 -c pass = {base * 1000:.1f} ms (median of {runs}), "
          f"peak RSS {base_rss / 1024:.1f} MB", flush=True)

    # Full check, nvidia-smi backend served by cat-style fakes.
    check = [PY, "-m", "migsync", "check", "-q", "--backend", "nvidia-smi", "--nvidia-smi", smi,
             "--root", root, "--gres-conf", gres, "--slurm-conf", slurm, "--node", "g-big"]
    t_check, rss_check, codes = median_time(check, runs)
    assert codes == {0}, f"check on the bench node exited {codes}"
    target("full check (56 MIG devices) vs python3 -c pass", t_check / base, 3.0,
           detail=f"{t_check * 1000:.1f} ms")
    recipe = (f"{smi} mig -lci | awk '/^[|][ ]+[0-9]/ {{ gsub(/^[|]/, \"\"); gsub(/[ ]+/, \" \"); "
              f"split($0, a, \" \"); printf \"gpu%s/gi%s/ci%s\\n\", a[1], a[2], a[5] }}' | "
              f"while read i; do grep \"$i\" {root}/proc/driver/nvidia-caps/mig-minors | "
              "awk '{print $NF}'; done | sort -n | uniq | paste -sd,")
    t_recipe, _, _ = median_time(recipe, runs, shell=True)
    target("full check vs the seed's shell recipe on the same node", t_check / t_recipe, 1.0,
           detail=f"{t_check * 1000:.1f} ms vs {t_recipe * 1000:.1f} ms")
    target("peak RSS of migsync check", rss_check / 1024, 40.0, " MB")

    # Prolog fast path: seed the cache with one health check, then time the Prolog.
    subprocess.run([PY, "-m", "migsync", "healthcheck", "--backend", "nvidia-smi",
                    "--nvidia-smi", smi, *common], env=ENV, capture_output=True, check=False)
    prolog = [PY, "-m", "migsync", "prolog", *common]
    t_prolog, _, codes = median_time(prolog, runs)
    assert codes == {0}, f"prolog exited {codes}"
    target("Prolog fast path (cache hit) vs python3 -c pass", t_prolog / base, 2.0,
           detail=f"{t_prolog * 1000:.1f} ms")
    os.utime(gres)  # the config changed: the Prolog parses and reads procfs, still no nvidia-smi
    cold = median_time([*prolog, "--cache-file", os.path.join(tmp, "absent.json")], runs)[0]
    info("Prolog without a cache (procfs + parse)", f"{cold * 1000:.1f} ms = {cold / base:.2f}x")

    # Scale: a 10,000-node gres.conf, checking one node.
    big = os.path.join(tmp, "gres-10k.conf")
    with open(big, "w") as fh:
        for i in range(10000):
            fh.write(f"NodeName=n{i:05d} Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap"
                     f"[{fakenode.ci_cap(0, 7, 0)},{fakenode.ci_cap(0, 8, 0)},{fakenode.ci_cap(0, 9, 0)}]\n")
            fh.write(f"NodeName=n{i:05d} Name=gpu Type=a100 File=/dev/nvidia[0-1]\n")
            fh.write(f"NodeName=n{i:05d} Name=gpu Type=2g.20gb File=/dev/nvidia-caps/nvidia-cap20\n")
        fh.write("\n".join(lines) + "\n")
    t_big, _, _ = median_time([*check[:check.index("--gres-conf") + 1], big,
                               *check[check.index("--gres-conf") + 2:]], runs)
    target("gres.conf with 10,000 nodes (30,000 lines): added time", (t_big - t_check) * 1000,
           150.0, " ms", detail=f"{t_big * 1000:.1f} ms vs {t_check * 1000:.1f} ms")

    expr = "n[000001-065536]"
    hostlist.contains(expr, "n000001")
    n = 20000
    per = timeit.timeit(lambda: hostlist.contains(expr, "n065535"), number=n) / n * 1e6
    cold_parse = timeit.timeit(lambda: (hostlist.parse.cache_clear(),
                                        hostlist.contains(expr, "n065535")), number=2000) / 2000 * 1e6
    target("membership in a 65,536-name hostlist", per, 50.0, " us",
           detail=f"{cold_parse:.1f} us including the parse; no expansion")

    # Import cost.
    out = subprocess.run([PY, "-X", "importtime", "-c", "import migsync.cli"], env=ENV,
                         capture_output=True, text=True).stderr
    own = sum(int(l.split("|")[1]) for l in out.splitlines()
              if "|" in l and l.split("|")[2].strip().startswith("migsync"))
    heavy = [m for m in ("pynvml", "pyslurm", "tomllib", "hypothesis") if f" {m}\n" in out + "\n"]
    info("import migsync.cli", f"{own / 1000:.1f} ms in migsync's own modules (cumulative), "
         f"heavy modules imported: {heavy or 'none'}")

    # Merge of 10,000 reports vs reading them with json.load in one loop.
    n_reports = 2000 if quick else 10000
    merge_bench(tmp, node, n_reports)
    failed = [r for r in RESULTS if r[4] is False]
    print(f"\n{len(RESULTS) - len(failed) - sum(1 for r in RESULTS if r[4] is None)} passed, "
          f"{len(failed)} failed")
    return 1 if failed else 0


MERGE_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {repo!r})
mode, path = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if mode == "json":
    docs = []
    with open(path) as fh:
        for line in fh:
            docs.append(json.loads(line.split(": ", 1)[1]))
else:
    from migsync import merge
    got = merge.collect([path])
    groups = merge.group(got)
    text = merge.render_gres_conf(groups, "multiple-files", [], len(got.reports))
    merge.render_slurm_include(groups)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def merge_bench(tmp, node_dir, n):
    one = subprocess.run([PY, "-m", "migsync", "report", "--no-hardware", "--backend", "nvidia-smi",
                          "--nvidia-smi", os.path.join(node_dir, "nvidia-smi"), "--root",
                          os.path.join(node_dir, "root"), "--gres-conf", os.devnull, "--node", "x"],
                         capture_output=True, text=True, env=ENV).stdout.strip()
    doc = json.loads(one)
    path = os.path.join(tmp, "reports.txt")
    layouts = 8  # a few layouts, like a real cluster
    with open(path, "w") as fh:
        for i in range(n):
            doc["node"] = f"gpu{i:05d}"
            doc["gpus"][0]["name"] = f"NVIDIA H100 80GB HBM3 rev{i % layouts}"
            fh.write(f"gpu{i:05d}: {json.dumps(doc, separators=(',', ':'))}\n")
    child = MERGE_CHILD.format(repo=REPO)
    res = {}
    for mode in ("json", "merge"):
        samples = []
        for _ in range(3):
            out = subprocess.run([PY, "-c", child, mode, path], capture_output=True, text=True,
                                 env=ENV, check=True).stdout.split()
            samples.append((float(out[0]), int(out[1])))
        res[mode] = (statistics.median(s[0] for s in samples), max(s[1] for s in samples))
    (tj, mj), (tm, mm) = res["json"], res["merge"]
    size = os.path.getsize(path) / 1e6
    info(f"merge of {n} reports ({size:.0f} MB, 56 devices each)",
         f"{tm:.2f} s and {mm / 1024:.0f} MB peak vs json.load loop {tj:.2f} s and "
         f"{mj / 1024:.0f} MB: {tm / tj:.2f}x time, {mm / mj:.2f}x memory")


if __name__ == "__main__":
    sys.exit(main())
