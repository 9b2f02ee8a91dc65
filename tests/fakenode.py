"""Write a fake GPU node from a layout: procfs tree, /dev nodes, recorded-format nvidia-smi output.

The formats are those of real drivers (NVIDIA's MIG User Guide, nvidia-smi output); the layouts
are the scenarios the tests and the bench name. Run as a script to regenerate tests/data and
the sample shipped in migsync/sample.
"""
from __future__ import annotations

import json
import os
import sys

# The exact argument lists the fake answers, as migsync's backends call nvidia-smi. Anything
# else (another field list, another order, -i, a new flag) fails loudly: a changed query must
# break the tests, not be served yesterday's CSV.
QUERY_FIELDS = "index,pci.bus_id,uuid,name,mig.mode.current,mig.mode.pending"
RECORDED = {  # argument list -> (output file, exit-code file) under <node>/smi/
    f"--query-gpu={QUERY_FIELDS} --format=csv,noheader": ("query-gpu.csv", "query-gpu.rc"),
    "mig -lgi": ("lgi.txt", "lgi.rc"),
    "mig -lci": ("lci.txt", "lci.rc"),
    "-L": ("L.txt", "L.rc"),
}

SMI_SCRIPT = """#!/bin/sh
# Fake nvidia-smi: serves output recorded for exactly these argument lists (tests/fakenode.py).
# Env FAKE_SMI_MODE=hang|garbage|fail for faults.
d=${0%/*}/smi
case "$FAKE_SMI_MODE" in
  hang) exec sleep 300 ;;
  garbage) echo 'Segmentation fault (core dumped) ??? @@@'; exit 0 ;;
  fail) echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9 ;;
esac
case "$*" in
@CASES@
esac
echo "fake nvidia-smi: no recorded output for arguments: $*" >&2
exit 2
"""


def _smi_script():
    cases = "\n".join(f'  "{args}") cat "$d/{out}"; exit $(cat "$d/{rc}") ;;'
                      for args, (out, rc) in RECORDED.items())
    return SMI_SCRIPT.replace("@CASES@", cases)


def gi_cap(minor, gi):
    return 3 + 135 * minor + 9 * gi


def ci_cap(minor, gi, ci):
    return gi_cap(minor, gi) + 1 + ci


def mig_minors_text():
    lines = ["config 1", "monitor 2"]
    for g in range(32):
        for gi in range(15):
            lines.append(f"gpu{g}/gi{gi}/access {gi_cap(g, gi)}")
            for ci in range(8):
                lines.append(f"gpu{g}/gi{gi}/ci{ci}/access {ci_cap(g, gi, ci)}")
    return "\n".join(lines) + "\n"


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _touch(path):
    _write(path, "")


def _smi_bus(bus):
    dom, rest = bus.split(":", 1)
    return ("0000" + dom).upper() + ":" + rest.upper()


def instances(gpu):
    return gpu.get("instances", [])


def write_node(layout, out):
    """Write the node described by ``layout`` under directory ``out``."""
    root = os.path.join(out, "root")
    caps = os.path.join(root, "proc/driver/nvidia/capabilities")
    _write(os.path.join(root, "proc/driver/nvidia/version"),
           f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {layout.get('driver', '535.129.03')}\n")
    _write(os.path.join(caps, "mig/config"), "DeviceFileMinor: 1\nDeviceFileMode: 256\nDeviceFileModify: 1\n")
    _write(os.path.join(caps, "mig/monitor"), "DeviceFileMinor: 2\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
    _write(os.path.join(root, "proc/driver/nvidia-caps/mig-minors"), mig_minors_text())
    for path in ("dev/nvidiactl", "dev/nvidia-uvm", "dev/nvidia-caps/nvidia-cap1",
                 "dev/nvidia-caps/nvidia-cap2"):
        _touch(os.path.join(root, path))
    proc_hidden = {tuple(x) for x in layout.get("procfs_missing", [])}
    for g in layout["gpus"]:
        minor = g["minor"]
        _write(os.path.join(root, "proc/driver/nvidia/gpus", g["bus"], "information"),
               f"Model: \t\t {g['name']}\nIRQ:   \t\t {100 + minor}\nGPU UUID: \t {g['uuid']}\n"
               f"Video BIOS: \t 92.00.36.00.10\nBus Type: \t PCIe\nDMA Size: \t 47 bits\n"
               f"DMA Mask: \t 0x7fffffffffff\nBus Location: \t {g['bus']}\n"
               f"Device Minor: \t {minor}\nGPU Excluded:\t No\n")
        _touch(os.path.join(root, f"dev/nvidia{minor}"))
        if g.get("mig") is not None and g.get("mig_supported", True):
            os.makedirs(os.path.join(caps, f"gpu{minor}/mig"), exist_ok=True)
        for inst in instances(g):
            gi = inst["gi"]
            _touch(os.path.join(root, f"dev/nvidia-caps/nvidia-cap{gi_cap(minor, gi)}"))
            if (minor, gi) in proc_hidden:
                continue
            _write(os.path.join(caps, f"gpu{minor}/mig/gi{gi}/access"),
                   f"DeviceFileMinor: {gi_cap(minor, gi)}\nDeviceFileMode: 292\nDeviceFileModify: 1\n")
            for c in inst["cis"]:
                _touch(os.path.join(root, f"dev/nvidia-caps/nvidia-cap{ci_cap(minor, gi, c['ci'])}"))
                _write(os.path.join(caps, f"gpu{minor}/mig/gi{gi}/ci{c['ci']}/access"),
                       f"DeviceFileMinor: {ci_cap(minor, gi, c['ci'])}\nDeviceFileMode: 292\n"
                       "DeviceFileModify: 1\n")
    for cap in layout.get("stale_dev_caps", []):
        _touch(os.path.join(root, f"dev/nvidia-caps/nvidia-cap{cap}"))
    _write_smi(layout, out)
    with open(os.path.join(out, "layout.json"), "w") as fh:
        json.dump(layout, fh, indent=1)
        fh.write("\n")


def _rows(rows, sep):
    """Real nvidia-smi prints a separator line after every row of -lgi and -lci."""
    out = []
    for row in rows:
        out += [row, sep]
    return out


# Table frames exactly as nvidia-smi (R470 and later, with the placement column) prints them:
# -lgi is 57 characters wide, -lci 70.
LGI_SEP = "+" + "-" * 55 + "+"
LGI_HEAD = [LGI_SEP,
            "| GPU instances:                                        |",
            "| GPU   Name             Profile  Instance   Placement  |",
            "|                          ID       ID       Start:Size |",
            "|" + "=" * 55 + "|"]
LCI_SEP = "+" + "-" * 68 + "+"
LCI_HEAD = [LCI_SEP,
            "| Compute instances:                                                 |",
            "| GPU     GPU       Name             Profile   Instance   Placement  |",
            "|       Instance                       ID        ID       Start:Size |",
            "|         ID                                                         |",
            "|" + "=" * 68 + "|"]


def lgi_row(index, profile, gi_profile_id, gi, placement):
    """|   0  MIG 1g.10gb         19        7          0:1     |"""
    return (f"|  {index:>2}  MIG {profile:<13}{gi_profile_id:>5}{gi:>9}        "
            f"{placement:>5}     |")


def lci_row(index, gi, profile, ci_profile_id, ci, placement):
    """|   0      7       MIG 1g.10gb          0         0          0:1     |"""
    return (f"|  {index:>2}    {gi:>3}       MIG {profile:<13}{ci_profile_id:>5}{ci:>10}        "
            f"{placement:>5}     |")


def smi_bus(bus):
    """nvidia-smi's bus id: 8-hex-digit domain, upper case (procfs has 4, lower case)."""
    return _smi_bus(bus)


def lost_line(g):
    """What nvidia-smi prints for a GPU that fell off the bus (driver R450-R535 wording)."""
    dom_bus = _smi_bus(g["bus"])[4:]  # 0000:4E:00.0
    return f"Unable to determine the device handle for GPU{dom_bus}: Unknown Error"


def _query_row(g):
    mode = {True: "Enabled", False: "Disabled", None: "[N/A]"}
    fields = {"index": str(g["index"]), "pci.bus_id": _smi_bus(g["bus"]), "uuid": g["uuid"],
              "name": g["name"], "mig.mode.current": mode[g.get("mig")],
              "mig.mode.pending": mode[g.get("pending", g.get("mig"))]}
    fields.update(g.get("smi_fields", {}))  # e.g. '[GPU requires reset]', '[Unknown Error]'
    return ", ".join(fields[f] for f in QUERY_FIELDS.split(","))


def _write_smi(layout, out):
    smi = os.path.join(out, "smi")
    gpus = sorted(layout["gpus"], key=lambda g: g["index"])
    lost = [g for g in gpus if g.get("lost")]
    lost_rc = "15\n" if lost else "0\n"  # nvidia-smi: 15 = GPU has fallen off the bus
    rows = [lost_line(g) if g.get("lost") else _query_row(g) for g in gpus]
    _write(os.path.join(smi, "query-gpu.csv"), "\n".join(rows) + "\n")
    _write(os.path.join(smi, "query-gpu.rc"), lost_rc)
    lgi, lci = [], []
    for g in gpus:
        if not g.get("mig") or g.get("lost"):
            continue
        for inst in instances(g):
            if inst.get("smi_hidden"):
                continue
            lgi.append(lgi_row(g["index"], inst["profile"], inst["gi_profile_id"], inst["gi"],
                               inst.get("placement", "0:1")))
            for c in inst["cis"]:
                lci.append(lci_row(g["index"], inst["gi"], c["profile"], c["ci_profile_id"],
                                   c["ci"], c.get("placement", "0:1")))
    errors = [lost_line(g) for g in lost]
    for name, head, sep, body, none in (
            ("lgi", LGI_HEAD, LGI_SEP, lgi, "No GPU instances found: Not Found"),
            ("lci", LCI_HEAD, LCI_SEP, lci, "No compute instances found: Not Found")):
        if body:
            text, rc = "\n".join(errors + head + _rows(body, sep)) + "\n", lost_rc
        else:
            text, rc = "\n".join(errors + [none]) + "\n", "6\n"
        _write(os.path.join(smi, f"{name}.txt"), text)
        _write(os.path.join(smi, f"{name}.rc"), rc)
    lines = []
    for g in gpus:
        if g.get("lost"):
            lines.append(lost_line(g))
            continue
        lines.append(f"GPU {g['index']}: {g['name']} (UUID: {g['uuid']})")
        if g.get("mig"):
            n = 0
            for inst in instances(g):
                if inst.get("smi_hidden"):
                    continue
                for c in inst["cis"]:
                    lines.append(f"  MIG {c['profile']:<12}Device {n:>2}: (UUID: {c['uuid']})")
                    n += 1
    _write(os.path.join(smi, "L.txt"), "\n".join(lines) + "\n")
    _write(os.path.join(smi, "L.rc"), "0\n")
    path = os.path.join(out, "nvidia-smi")
    _write(path, _smi_script(), 0o755)


# ---- layouts -------------------------------------------------------------------------

A100 = "NVIDIA A100 80GB PCIe"
A100_SXM = "NVIDIA A100-SXM4-80GB"
H100 = "NVIDIA H100 80GB HBM3"
H200 = "NVIDIA H200"
V100 = "Tesla V100-SXM2-32GB"  # no MIG: nvidia-smi prints [N/A], NVML says Not Supported

GI_PROFILE_ID = {"1g": 19, "1g+me": 20, "1g.20gb": 15, "1g.35gb": 15, "2g": 14, "3g": 9,
                 "4g": 5, "7g": 0}
CI_PROFILE_ID = {"1c": 0, "2c": 1, "3c": 2, "4c": 3, "7c": 4}


def _uuid(kind, *nums):
    """A fixed UUID of the real shape, 8-4-4-4-12 lower-case hex: GPU-... for a GPU,
    MIG-... for a MIG device (drivers >= R470; older ones printed MIG-GPU-<uuid>/gi/ci)."""
    import hashlib

    h = hashlib.sha256(repr((kind,) + nums).encode()).hexdigest()
    return f"{kind}-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def gi_profile_id(profile):
    if "+me" in profile:
        return 20
    size = profile.split(".")[0]
    if profile in ("1g.20gb", "1g.35gb"):
        return 15
    return GI_PROFILE_ID[size]


def inst(minor, gi, profile, placement="0:1", cis=None):
    """A GI with one full CI (or the given (ci, ci_profile) pairs)."""
    slices = int(profile.split("g")[0])
    full_ci_id = CI_PROFILE_ID[f"{slices if slices != 7 else 7}c"] if slices in (1, 2, 3, 4, 7) else 0
    full = cis is None
    if full:
        cis = [(0, profile, full_ci_id)]
    # a CI's placement counts compute slices inside its GI: a full CI spans them all (0:4
    # for a 4g GI), each 1c CI of a split GI takes one (0:1, 1:1, ...)
    return {"gi": gi, "profile": profile, "gi_profile_id": gi_profile_id(profile),
            "placement": placement,
            "cis": [{"ci": ci, "profile": p, "ci_profile_id": pid,
                     "placement": f"0:{slices}" if full else f"{ci}:1",
                     "uuid": _uuid("MIG", minor, gi, ci)} for ci, p, pid in cis]}


def gpu(index, minor, bus, name=A100, mig=False, instances=(), pending=None):
    g = {"index": index, "minor": minor, "bus": bus, "name": name,
         "uuid": _uuid("GPU", minor, index), "mig": mig, "instances": list(instances)}
    if pending is not None:
        g["pending"] = pending
    return g


def seed_node():
    """The seed write-up's c51-g002: 2 whole A100s, 2 with seven 1g.10gb each (GI 10 gone on GPU 3)."""
    g2 = [inst(2, gi, "1g.10gb", f"{gi - 7}:1") for gi in range(7, 14)]
    g3 = [inst(3, gi, "1g.10gb", f"{i}:1") for i, gi in enumerate((7, 8, 9, 11, 12, 13, 14))]
    return {"node": "c51-g002", "gpus": [
        gpu(0, 0, "0000:17:00.0"), gpu(1, 1, "0000:65:00.0"),
        gpu(2, 2, "0000:ca:00.0", mig=True, instances=g2),
        gpu(3, 3, "0000:e3:00.0", mig=True, instances=g3)]}


SEED_GRES = """# gres.conf as written by the seed's recipe (hand-written style)
NodeName=c51-g002 Name=gpu Type=a100 File=/dev/nvidia[0,1]
NodeName=c51-g002 Name=gpu Type=1g.10gb File=/dev/nvidia-caps/nvidia-cap[337,346,355,364,373,382,391,472,481,490,508,517,526,535]
"""
SEED_SLURM = """ClusterName=demo
SlurmctldHost=head
GresTypes=gpu
NodeName=c51-g002 CPUs=64 Sockets=2 CoresPerSocket=16 ThreadsPerCore=2 RealMemory=515275 Gres=gpu:a100:2,gpu:1g.10gb:14
PartitionName=gpu2 MaxTime=INFINITE Nodes=c51-g002 State=UP
"""


def seed_lost():
    """The seed node after a reboot that lost gpu3/gi14: its /dev cap 535 remains."""
    layout = seed_node()
    layout["gpus"][3]["instances"] = [i for i in layout["gpus"][3]["instances"] if i["gi"] != 14]
    layout["stale_dev_caps"] = [ci_cap(3, 14, 0), gi_cap(3, 14)]
    return layout


def minor_not_index():
    """Four A100s whose nvidia-smi index order differs from the device minors."""
    return {"node": "g-minor", "gpus": [
        gpu(0, 2, "0000:17:00.0", mig=True, instances=[inst(2, 7, "1g.10gb"), inst(2, 8, "1g.10gb", "1:1")]),
        gpu(1, 3, "0000:31:00.0"),
        gpu(2, 0, "0000:b1:00.0", mig=True, instances=[inst(0, 1, "3g.40gb", "4:4")]),
        gpu(3, 1, "0000:ca:00.0")]}


def seven_g():
    """A 7g GI whose full CI has CI profile id 4 (the seed recipe reads that as the CI id)."""
    return {"node": "g-7g", "gpus": [
        gpu(0, 0, "0000:17:00.0", H100, mig=True, instances=[inst(0, 0, "7g.80gb", "0:8")])]}


def h200_mixed():
    """An H200 with mixed profiles, including a 3g GI split into 1c CIs."""
    split = inst(0, 2, "3g.71gb", "4:4", cis=[(0, "1c.3g.71gb", 0), (1, "1c.3g.71gb", 0),
                                                (2, "1c.3g.71gb", 0)])
    return {"node": "h200-01", "gpus": [
        gpu(0, 0, "0000:1b:00.0", H200, mig=True, instances=[
            split, inst(0, 3, "2g.35gb", "0:2"), inst(0, 9, "1g.18gb", "2:1"),
            inst(0, 10, "1g.18gb", "3:1")]),
        gpu(1, 1, "0000:43:00.0", H200)]}


def mig_empty():
    """MIG enabled after a reboot, no instances recreated yet."""
    return {"node": "g-empty", "gpus": [gpu(0, 0, "0000:17:00.0", H100, mig=True),
                                        gpu(1, 1, "0000:31:00.0", H100, mig=True, pending=False)]}


def big_node(n_gpus=8, node="g-big"):
    """8 GPUs x 7 instances = 56 MIG devices (the bench's node)."""
    gpus = []
    for g in range(n_gpus):
        gpus.append(gpu(g, g, f"0000:{0x10 + g * 0x10:02x}:00.0", H100, mig=True,
                        instances=[inst(g, gi, "1g.10gb", f"{gi - 7}:1") for gi in range(7, 14)]))
    return {"node": node, "gpus": gpus}


def sxm_mixed():
    """What real DGX/HGX nodes look like and the other fixtures do not: device minors with
    gaps (1, 3, 6, 7: GPUs excluded at driver load keep their numbers), SXM4 and HBM3 names
    containing '-' (Slurm's Type rule cuts there), and a GPU without MIG support. (A GI that
    procfs has but the backend does not list is partial data, a discovery failure since
    issue 12: tests hide one on a copy.)"""
    hidden = inst(6, 10, "1g.10gb", "5:1")
    return {"node": "g-sxm", "driver": "550.54.15", "gpus": [
        gpu(0, 1, "0000:07:00.0", A100_SXM, mig=True,
            instances=[inst(1, 1, "3g.40gb", "4:4"), inst(1, 2, "3g.40gb", "0:4")]),
        gpu(1, 3, "0000:0f:00.0", A100_SXM),
        gpu(2, 6, "0000:47:00.0", H100, mig=True,
            instances=[inst(6, 1, "4g.40gb", "0:4"), inst(6, 9, "1g.10gb", "4:1"), hidden]),
        gpu(3, 7, "0000:4e:00.0", V100, mig=None)]}


def lost_gpu():
    """Three H100s with MIG on. GPU 1 fell off the bus: nvidia-smi prints 'Unable to determine
    the device handle for GPU0000:4E:00.0: Unknown Error' in its place (and in -L, -lgi, -lci)
    and exits 15; NVML raises GpuIsLost; procfs still lists it and its capability files.
    GPU 2 needs a reset after an Xid: its MIG fields read '[GPU requires reset]'."""
    g1 = gpu(1, 1, "0000:4e:00.0", H100, mig=True, instances=[inst(1, 1, "4g.40gb", "0:4")])
    g1["lost"] = True
    g2 = gpu(2, 2, "0000:ca:00.0", H100, mig=True, instances=[inst(2, 1, "4g.40gb", "0:4")])
    g2["smi_fields"] = {"mig.mode.current": "[GPU requires reset]",
                        "mig.mode.pending": "[GPU requires reset]"}
    g2["nvml_error"] = "RESET_REQUIRED"
    return {"node": "g-lost", "gpus": [
        gpu(0, 0, "0000:1b:00.0", H100, mig=True, instances=[inst(0, 1, "4g.40gb", "0:4")]),
        g1, g2]}


LAYOUTS = {"seed": seed_node, "seed-lost": seed_lost, "minor-not-index": minor_not_index,
           "seven-g": seven_g, "h200-mixed": h200_mixed, "mig-empty": mig_empty,
           "big": big_node, "sxm-mixed": sxm_mixed, "lost-gpu": lost_gpu}


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    import shutil
    for name, make in LAYOUTS.items():
        out = os.path.join(here, "data", "nodes", name)
        shutil.rmtree(out, ignore_errors=True)
        write_node(make(), out)
    sample = os.path.join(here, "..", "migsync", "sample", "seed-node")
    shutil.rmtree(sample, ignore_errors=True)
    write_node(seed_lost(), sample)
    _write(os.path.join(sample, "gres.conf"), SEED_GRES)
    _write(os.path.join(sample, "slurm.conf"), SEED_SLURM)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
