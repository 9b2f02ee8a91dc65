"""NVML backend (module pynvml from nvidia-ml-py), imported only when used."""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~4 ms per run; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Optional

from ..errors import DiscoveryError
from ..procfs import normalise_bus_id
from . import BackendView, BGpu, BMig, profile_from_name
from .smi import _profile as is_profile  # one rule for what a MIG profile name is


# NVML errors that say the GPU itself is broken (fell off the bus, needs a reset, an
# interrupt or InfoROM fault, no power, the driver's catch-all): that GPU is `gpu-lost`, a
# finding, and the other GPUs are still checked. Any other error on a GPU says NVML cannot
# be asked (no permission, a pynvml newer than the driver, UNINITIALIZED, a bad argument):
# nothing is then known about the GPU, so it is a discovery failure, never a finding that
# drains the node as a mismatch (and `backend = auto` asks nvidia-smi instead).
GPU_FAULTS = ("GPU_IS_LOST", "RESET_REQUIRED", "IRQ_ISSUE", "CORRUPTED_INFOROM",
              "INSUFFICIENT_POWER", "TIMEOUT", "UNKNOWN")


def _gpu_fault(nvml: Any, exc: Exception) -> bool:
    codes = {getattr(nvml, "NVML_ERROR_" + name, None) for name in GPU_FAULTS} - {None}
    return getattr(exc, "value", None) in codes


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NoPynvml(DiscoveryError):
    """pynvml is missing from migsync's own environment: with backend = auto, nvidia-smi is
    asked; with backend = nvml it is an installation error (discovery.probe_backend), since
    nothing is wrong with the node."""


def load_module() -> Any:
    from .. import site_packages

    site_packages()  # a Prolog hook runs without site (python -S)
    try:
        import pynvml  # noqa: WPS433 - deliberately lazy: ~25 ms
    except ImportError as exc:
        raise NoPynvml(f"NVML: module pynvml not installed (pip install nvidia-ml-py): {exc}")
    return pynvml


def probe(nvml: Optional[Any] = None) -> BackendView:
    """Enumerate GPUs and MIG devices through NVML; a failing GPU becomes data, not a crash."""
    nvml = nvml or load_module()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise DiscoveryError(f"NVML: init failed: {exc}") from None
    try:
        view = BackendView("nvml")
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            raise DiscoveryError(f"NVML: cannot count GPUs: {exc}") from None
        for index in range(count):
            gpu = BGpu(index)
            view.gpus.append(gpu)
            try:
                _read_gpu(nvml, index, gpu, view)
            except nvml.NVMLError as exc:
                if not _gpu_fault(nvml, exc):
                    raise DiscoveryError(f"NVML: cannot read GPU {index}: {exc}") from None
                gpu.lost = f"NVML: {exc}"
        return view
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass


def _read_gpu(nvml: Any, index: int, gpu: BGpu, view: BackendView) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    gpu.bus_id = normalise_bus_id(_text(nvml.nvmlDeviceGetPciInfo(handle).busId))
    gpu.minor = nvml.nvmlDeviceGetMinorNumber(handle)
    gpu.uuid = _text(nvml.nvmlDeviceGetUUID(handle))
    gpu.name = _text(nvml.nvmlDeviceGetName(handle))
    try:
        current, pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError_NotSupported:
        return
    enabled = getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)
    gpu.mig_current, gpu.mig_pending = current == enabled, pending == enabled
    if not gpu.mig_current:
        return
    for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mh = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError_NotFound:
            continue  # empty slot: NVML's normal answer
        gi, ci = nvml.nvmlDeviceGetGpuInstanceId(mh), nvml.nvmlDeviceGetComputeInstanceId(mh)
        name = _text(nvml.nvmlDeviceGetName(mh))
        profile = profile_from_name(name)
        if not is_profile(profile):
            # the Type check compares against this profile: a name NVML gave without one
            # ('', no 'MIG <profile>') would be read as a type mismatch and drain the node;
            # it is data we cannot read, as an unparseable `nvidia-smi mig -lci` row is
            raise DiscoveryError(f"NVML: MIG device gpu index {index}/gi{gi}/ci{ci} is named "
                                 f"{name[:60]!r}, which holds no MIG profile")
        view.migs.append(BMig(index, gi, ci, profile, _text(nvml.nvmlDeviceGetUUID(mh))))
