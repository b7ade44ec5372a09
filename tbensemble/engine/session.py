"""ONNX Runtime sessions on the device asked for, and the truth about which provider runs them.

onnxruntime-gpu falls back to the CPU silently when CUDA cannot start, and ``get_available_providers``
lists CUDA even on a machine without a GPU: only ``session.get_providers()`` after creation is reliable.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoModel,
    NoSuchFile,
    NotImplemented,
)

from tbensemble.core.errors import ArtifactError, DeviceError, TbensError

DEVICES = ("auto", "cuda", "cpu")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
LOAD_ERRORS = (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoModel, NoSuchFile, NotImplemented)

log = logging.getLogger(__name__)
_LOGGED: set[str] = set()


def _count_cpus(cpu_list: str) -> int:
    """Count the CPUs in a kernel CPU list such as ``0-1`` or ``0,4``."""
    count = 0
    for part in cpu_list.strip().split(","):
        start, _, end = part.partition("-")
        count += int(end or start) - int(start) + 1
    return count


def physical_cores() -> int:
    """Cores this process may use, one per physical core (ORT's conv kernels gain nothing from hyper-threads)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        per_core = _count_cpus(Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").read_text())
    except (OSError, ValueError):
        per_core = 1
    return max(1, usable // max(1, per_core))


def why_no_cuda() -> str | None:
    """A reason CUDA cannot work here, found without trying it (None when it might)."""
    if CUDA not in ort.get_available_providers():
        return f"this onnxruntime {ort.__version__} has no CUDA provider (install onnxruntime-gpu)"
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver found (libcuda.so.1 cannot be loaded)"
    return None


def _log_once(message: str) -> None:
    """Log a provider message once per process, not once per model file."""
    if message not in _LOGGED:
        _LOGGED.add(message)
        log.info("onnxruntime: %s", message)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Spinning worker threads burn the CPU they wait on: with other processes on the machine (CI, an edge
    # server's other services) ResNet50 at 384 ran 3.7 img/s spinning against 5.8 without, on 2 cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def make_session(
    path: str | os.PathLike[str], device: str = "auto", threads: int | None = None, model: bytes | None = None
) -> tuple[ort.InferenceSession, str]:
    """An inference session for ``path`` (from ``model``, its verified bytes, when given) and the provider
    actually running it.

    ``cuda`` refuses to run on anything else; ``auto`` tries CUDA where it may work and logs what it got.
    """
    if device not in DEVICES:
        raise TbensError(f"--device {device!r} is not known; allowed: {', '.join(DEVICES)}")
    reason = why_no_cuda() if device != "cpu" else None
    providers = [CPU] if device == "cpu" or (device == "auto" and reason) else [CUDA, CPU]
    try:
        session = ort.InferenceSession(
            str(path) if model is None else model, sess_options=session_options(threads), providers=providers
        )
    except LOAD_ERRORS as exc:
        raise ArtifactError(f"{path}: onnxruntime cannot load this model ({str(exc).splitlines()[0]})") from None
    provider = session.get_providers()[0]
    if device == "cuda" and provider != CUDA:
        raise DeviceError(
            f"--device cuda: {path} runs on {provider}, not CUDA ({reason or 'onnxruntime could not start CUDA; check the CUDA 12 and cuDNN 9 libraries'}); "
            "use --device cpu or auto to run on the CPU"
        )
    if device == "auto":
        why = reason or "onnxruntime could not start it (CUDA 12 / cuDNN 9 libraries missing?)"
        _log_once(f"running on {provider}" + ("" if provider == CUDA else f"; not CUDA because {why}"))
    return session, provider
