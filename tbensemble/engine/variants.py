"""Open a fold model as the variant ``tbens optimize`` chose for it, or as the fp32 ONNX Runtime session.

Both come back behind ONNX Runtime's ``run(output_names, feed) -> list[array]`` call (and its
``get_inputs``/``get_outputs``, so the session's signature is checked against the manifest either way),
so the ensemble, CAM and benchmarks need not know which runtime scores an image. A chosen variant is used
only where it can run as it was measured: a CPU variant on the CPU, with its runtime installed and the
instruction sets it needs; a CUDA variant (``tbens optimize --target cuda``) where the session really gets
CUDA; otherwise the model runs in fp32 and one log line says why. Every file is read once, checked
as ``core.manifest.read_artifact`` says (inside the folder, a regular file, its sha256), and the runtime
is given those very bytes; a variant file that fails is refused like any model file.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tbensemble.core.errors import ArtifactError, DeviceError, TbensError
from tbensemble.core.gate import FP32
from tbensemble.core.manifest import Manifest, ModelEntry, VariantEntry, read_artifact
from tbensemble.engine.session import make_session, physical_cores, why_no_cuda
from tbensemble.engine.signature import check_signature

PRECISIONS = ("auto", "fp32")
OPENVINO = "openvino"
ONNXRUNTIME = "onnxruntime"
ONNXRUNTIME_CUDA = "onnxruntime-cuda"
"""A variant built and measured on ONNX Runtime's CUDA provider (``tbens optimize --target cuda``)."""
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
"""Variant precision -> OpenVINO ``INFERENCE_PRECISION_HINT`` (an INT8 IR keeps its unquantised ops in f32)."""

log = logging.getLogger(__name__)
_LOGGED: set[str] = set()


def _log_once(message: str) -> None:
    if message not in _LOGGED:
        _LOGGED.add(message)
        log.warning(message)


@functools.cache
def openvino_core() -> Any:
    """One OpenVINO Core per process; ImportError when the ``optimize`` extra is not installed."""
    import openvino

    return openvino.Core()


def cpu_capabilities() -> frozenset[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of this CPU (``BF16``, ``INT8``, ...)."""
    return frozenset(openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


@dataclass(frozen=True)
class PortInfo:
    """An OpenVINO port described as ONNX Runtime's ``NodeArg`` is: name, type string, shape (str: dynamic)."""

    name: str
    type: str
    shape: list[int | str]


def _port_info(port: Any) -> PortInfo:
    dims = [d.get_length() if d.is_static else "N" for d in port.get_partial_shape()]
    kind = "tensor(float)" if port.get_element_type().get_type_name() == "f32" else str(port.get_element_type())
    return PortInfo(port.any_name, kind, dims)


class OpenVinoModel:
    """An OpenVINO compiled model called like an ONNX Runtime session.

    One infer request serves every call under a lock: a request is not safe to share between threads,
    and on a CPU engine concurrent calls would only compete for the same cores.
    """

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def run(self, output_names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            results = self._request.infer(dict(feed))
            return [np.array(results[self.compiled.output(name)]) for name in output_names]

    def get_inputs(self) -> list[PortInfo]:
        return [_port_info(p) for p in self.compiled.inputs]

    def get_outputs(self) -> list[PortInfo]:
        return [_port_info(p) for p in self.compiled.outputs]


def compile_openvino(
    path: str, precision: str, threads: int | None = None, model: bytes | None = None, weights: bytes | None = None
) -> OpenVinoModel:
    """Compile an ONNX file (or IR ``.xml`` with its ``.bin``) for the CPU with the precision hint, from the
    verified bytes when given; the batch dimension stays dynamic."""
    import openvino

    core = openvino_core()
    config = {
        "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision],
        "INFERENCE_NUM_THREADS": threads or physical_cores(),
        "PERFORMANCE_HINT": "LATENCY",
    }
    try:
        if model is None:
            network = core.read_model(path)
        elif weights is None:
            network = core.read_model(model)
        else:
            network = core.read_model(model, openvino.Tensor(np.frombuffer(weights, dtype=np.uint8)))
        return OpenVinoModel(core.compile_model(network, "CPU", config))
    except RuntimeError as exc:
        raise TbensError(f"{path}: OpenVINO cannot compile this model ({str(exc).splitlines()[0]})") from None


def why_unavailable(runtime: str, requires: Sequence[str]) -> str | None:
    """Why a variant on ``runtime`` needing CPU capabilities ``requires`` cannot run here (None: it can)."""
    if runtime == ONNXRUNTIME:
        return None
    if runtime == ONNXRUNTIME_CUDA:
        return why_no_cuda()
    if runtime != OPENVINO:
        return f"runtime {runtime!r} is not known to this tbensemble"
    try:
        capabilities = cpu_capabilities()
    except ImportError:
        return "openvino is not installed (pip install 'tbensemble[optimize]')"
    missing = [c for c in requires if c not in capabilities]
    return f"this CPU lacks {', '.join(missing)}" if missing else None


def read_variant(manifest: Manifest, entry: ModelEntry, variant: VariantEntry) -> tuple[bytes, bytes | None]:
    """A variant's model bytes (and an IR's weights), each file checked like a model file."""
    where = f"{entry.name} variant {variant.name}"
    data = read_artifact(manifest, variant.file, variant.sha256, f"{where} file", (".onnx", ".xml"))
    weights = [read_artifact(manifest, f, sha, f"{where} {f}", (".bin",)) for f, sha in variant.extra_files.items()]
    if variant.file.endswith(".xml") and len(weights) != 1:
        raise ArtifactError(f"{manifest.root / variant.file}: an IR needs its one .bin in extra_files")
    return data, (weights[0] if weights else None)


def open_variant(
    manifest: Manifest, variant: VariantEntry, data: bytes, weights: bytes | None, threads: int | None = None
) -> tuple[Any, str]:
    """A runner for ``variant`` from its verified bytes, and a label naming runtime and precision."""
    path = manifest.root / variant.file
    if variant.runtime == OPENVINO:
        runner = compile_openvino(str(path), variant.precision, threads, model=data, weights=weights)
        return runner, f"OpenVINO CPU {variant.precision}"
    device = "cuda" if variant.runtime == ONNXRUNTIME_CUDA else "cpu"
    session, provider = make_session(path, device, threads, model=data)
    return session, f"{provider} {variant.precision}"


def open_model(
    manifest: Manifest,
    entry: ModelEntry,
    fp32_bytes: bytes,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
) -> tuple[Any, str, str]:
    """The runner for one fold model, the provider label, and the variant name actually running.

    ``precision=auto`` runs the manifest's chosen variant where it can run here; ``fp32`` always runs the
    exported model. A variant runs only on the device it was built for (CPU variants on the CPU, CUDA ones
    where the session really gets CUDA); elsewhere the fp32 model runs. ``fp32_bytes`` are the exported
    model's verified bytes (``read_model``), read whether or not a variant runs, so a tampered shipment is
    refused whichever file would have run.
    """
    if precision not in PRECISIONS:
        raise TbensError(f"--precision {precision!r} is not known; allowed: {', '.join(PRECISIONS)}")
    path = manifest.model_path(entry)
    name = entry.default_variant if precision == "auto" else FP32
    if name != FP32:
        variant = entry.variant(name)
        data, weights = read_variant(manifest, entry, variant)
        on_cpu = device == "cpu" or (device == "auto" and why_no_cuda() is not None)
        if variant.runtime == ONNXRUNTIME_CUDA:
            reason = "it is a CUDA build and this run uses the CPU" if on_cpu else None
        else:
            reason = (
                why_unavailable(variant.runtime, variant.requires)
                if on_cpu
                else "it is a CPU build and this run uses CUDA"
            )
        if reason is None:
            try:
                runner, label = open_variant(manifest, variant, data, weights, threads)
            except DeviceError:  # onnxruntime fell back to the CPU silently
                reason = "its session did not get CUDA (onnxruntime could not start it)"
            except TbensError as exc:  # e.g. another OpenVINO version that cannot compile it: fp32 still can
                reason = str(exc)
            else:
                check_signature(runner, entry, str(manifest.root / variant.file))
                return runner, label, name
        _log_once(f"{entry.name}: variant {name} not used ({reason}); running the fp32 model")
    session, provider = make_session(path, device, threads, model=fp32_bytes)
    check_signature(session, entry, str(path))
    return session, provider, FP32


def reference_for(entry: ModelEntry, variant_name: str) -> list[float]:
    """The historical-rank reference of the model as it runs: the variant's own OOF scores, or fp32's."""
    if variant_name == FP32:
        return entry.oof_scores_sorted
    reference = entry.variant(variant_name).oof_scores_sorted
    if not reference:
        raise ArtifactError(f"model {entry.name}: variant {variant_name} has no OOF reference scores")
    return reference
