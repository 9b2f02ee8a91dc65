"""An NVML fake that behaves like pynvml: same function names, NVML's own error classes.

Built from a node's layout.json. Faults: ``lost={index}`` makes those GPUs raise GpuIsLost,
``no_library=True`` makes nvmlInit raise LibraryNotFound, as on a node without a driver.
"""
from __future__ import annotations

import json
import types

import pynvml  # the real module provides the exception classes and constants



class _Pci:
    def __init__(self, bus):
        self.busId = bus


def _smi_bus(bus):
    dom, rest = bus.split(":", 1)
    return (("0000" + dom).upper() + ":" + rest.upper()).encode()


def make(layout_path, lost=(), no_library=False, lost_after_handle=False):
    with open(layout_path) as fh:
        layout = json.load(fh)
    gpus = sorted(layout["gpus"], key=lambda g: g["index"])
    lost = set(lost) | {g["index"] for g in gpus if g.get("lost")}  # recorded in the layout
    state = {"init": False}
    mod = types.SimpleNamespace()
    for name in dir(pynvml):
        if name.startswith("NVMLError") or name.startswith("NVML_"):
            setattr(mod, name, getattr(pynvml, name))

    def err(code):
        return pynvml.NVMLError(code)  # NVMLError.__new__ returns the specific subclass

    def need_init():
        if not state["init"]:
            raise err(pynvml.NVML_ERROR_UNINITIALIZED)

    def nvmlInit():
        if no_library:
            raise err(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        state["init"] = True

    def nvmlShutdown():
        need_init()
        state["init"] = False

    def nvmlDeviceGetCount():
        need_init()
        return len(gpus)

    def nvmlDeviceGetHandleByIndex(i):
        need_init()
        if i >= len(gpus):
            raise err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if i in lost and not lost_after_handle:
            raise err(pynvml.NVML_ERROR_GPU_IS_LOST)
        return ("gpu", i)

    def gpu_of(h):
        need_init()
        if h[0] != "gpu":
            raise err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if h[1] in lost:
            raise err(pynvml.NVML_ERROR_GPU_IS_LOST)
        return gpus[h[1]]

    def mig_list(g):
        out = []
        for inst in g.get("instances", []):
            if inst.get("smi_hidden"):
                continue
            for c in inst["cis"]:
                out.append((inst["gi"], c))
        return out

    def nvmlDeviceGetPciInfo(h):
        return _Pci(_smi_bus(gpu_of(h)["bus"]))

    def nvmlDeviceGetMinorNumber(h):
        return gpu_of(h)["minor"]

    def nvmlDeviceGetUUID(h):
        if h[0] == "mig":
            return h[3]["uuid"]
        return gpu_of(h)["uuid"]

    def nvmlDeviceGetName(h):
        if h[0] == "mig":
            return f"{gpus[h[1]]['name']} MIG {h[3]['profile']}"
        return gpu_of(h)["name"]

    def nvmlDeviceGetMigMode(h):
        g = gpu_of(h)
        if g.get("nvml_error"):  # e.g. RESET_REQUIRED after an Xid
            raise err(getattr(pynvml, f"NVML_ERROR_{g['nvml_error']}"))
        if g.get("mig") is None:
            raise err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        cur = 1 if g["mig"] else 0
        pend = 1 if g.get("pending", g["mig"]) else 0
        return [cur, pend]

    def nvmlDeviceGetMaxMigDeviceCount(h):
        gpu_of(h)
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(h, slot):
        g = gpu_of(h)
        if not g.get("mig"):
            raise err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        devs = mig_list(g)
        if slot >= 7:
            raise err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if slot >= len(devs):
            raise err(pynvml.NVML_ERROR_NOT_FOUND)
        gi, c = devs[slot]
        return ("mig", h[1], gi, c)

    def nvmlDeviceGetGpuInstanceId(h):
        if h[0] != "mig":
            raise err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return h[2]

    def nvmlDeviceGetComputeInstanceId(h):
        if h[0] != "mig":
            raise err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return h[3]["ci"]

    for name, fn in list(locals().items()):
        if name.startswith("nvml"):
            setattr(mod, name, fn)
    mod.NVMLError = pynvml.NVMLError
    return mod
