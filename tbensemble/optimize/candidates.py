"""The variants ``tbens optimize`` may build for a fold model on a CPU target, and how each is built.

- ``openvino-fp32`` / ``openvino-bf16``: the exported ONNX file itself, compiled by OpenVINO with the
  inference precision hint; no new file, so the variant's hash is the fp32 model's. bf16 is built only
  where OpenVINO lists ``BF16`` among the CPU's capabilities (AVX512-BF16 or AMX).
- ``openvino-int8``: NNCF post-training quantisation of the ONNX model read by OpenVINO, saved as IR
  (``.xml`` + ``.bin``, both hashed); the Dense head (the only MatMul) is left in fp32.
- ``ort-int8-qoperator`` / ``ort-int8-qdq``: ONNX Runtime static INT8 of every op but the head.
- ``ort-int8-conv``: only the convolutions in INT8 (QOperator); models whose batch-norms cannot be folded
  (DenseNet's after each concat) lose their ranking when fully quantised but keep it this way.

On the CUDA target (``--target cuda``, measured against fp32 on the same GPU):

- ``cuda-fp16``: an FP16 copy of the model on ONNX Runtime's CUDA provider, inputs, outputs and head
  in fp32 (``optimize.fp16``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tbensemble.core import atomic
from tbensemble.core.errors import TbensError
from tbensemble.core.manifest import Manifest, ModelEntry, sha256_of
from tbensemble.engine.session import make_session
from tbensemble.engine.variants import ONNXRUNTIME, ONNXRUNTIME_CUDA, OPENVINO, compile_openvino
from tbensemble.optimize.fp16 import convert_fp16
from tbensemble.optimize.quantize import CalibrationViews, quantize_int8, quantize_openvino_int8

VARIANTS_DIR = "onnx/variants"


@dataclass(frozen=True)
class VariantSpec:
    name: str
    runtime: str
    precision: str
    requires: tuple[str, ...] = ()
    quant_format: str | None = None
    op_types: tuple[str, ...] | None = None


CPU_VARIANTS: tuple[VariantSpec, ...] = (
    VariantSpec("openvino-fp32", OPENVINO, "fp32"),
    VariantSpec("openvino-bf16", OPENVINO, "bf16", requires=("BF16",)),
    VariantSpec("openvino-int8", OPENVINO, "int8", requires=("INT8",)),
    VariantSpec("ort-int8-qoperator", ONNXRUNTIME, "int8", quant_format="QOperator"),
    VariantSpec("ort-int8-qdq", ONNXRUNTIME, "int8", quant_format="QDQ"),
    VariantSpec("ort-int8-conv", ONNXRUNTIME, "int8", quant_format="QOperator", op_types=("Conv",)),
)
CUDA_VARIANTS: tuple[VariantSpec, ...] = (VariantSpec("cuda-fp16", ONNXRUNTIME_CUDA, "fp16"),)
TARGETS = {"cpu": CPU_VARIANTS, "cuda": CUDA_VARIANTS}
"""Each target is named after the device its variants and fp32 are run and timed on."""


def select_specs(target: str, names: list[str] | None) -> list[VariantSpec]:
    """The target's variants, or the named subset (an unknown name is a usage error naming the allowed)."""
    if target not in TARGETS:
        raise TbensError(f"--target {target!r}: not known; allowed: {', '.join(TARGETS)}")
    specs = {s.name: s for s in TARGETS[target]}
    unknown = [n for n in names or [] if n not in specs]
    if unknown:
        raise TbensError(f"--variants {','.join(unknown)}: not known; allowed: {', '.join(specs)}")
    return [specs[n] for n in names] if names else list(specs.values())


@dataclass
class BuiltVariant:
    spec: VariantSpec
    file: str
    """Relative to the manifest's folder."""
    sha256: str
    runner: Any
    extra_files: dict[str, str] = field(default_factory=dict)


def build_variant(
    spec: VariantSpec, manifest: Manifest, entry: ModelEntry, calibration: Callable[[], CalibrationViews]
) -> BuiltVariant:
    """Build (INT8, FP16: convert and write atomically) and open one variant of ``entry`` on its device."""
    if spec.runtime == OPENVINO and spec.precision == "int8":
        xml = f"{VARIANTS_DIR}/{entry.name}.{spec.name}.xml"
        bin_file = xml[: -len(".xml")] + ".bin"
        quantize_openvino_int8(manifest.model_path(entry), manifest.root / xml, calibration())
        runner = compile_openvino(str(manifest.root / xml), spec.precision)
        return BuiltVariant(
            spec, xml, sha256_of(manifest.root / xml), runner, {bin_file: sha256_of(manifest.root / bin_file)}
        )
    if spec.runtime == OPENVINO:
        runner = compile_openvino(str(manifest.model_path(entry)), spec.precision)
        return BuiltVariant(spec, entry.file, entry.sha256, runner)
    file = f"{VARIANTS_DIR}/{entry.name}.{spec.name}.onnx"
    path = manifest.root / file
    if spec.runtime == ONNXRUNTIME_CUDA:
        with atomic.atomic_path(path) as tmp:
            convert_fp16(manifest.model_path(entry), tmp, entry.outputs["features"])
        session, _ = make_session(path, "cuda")
        return BuiltVariant(spec, file, sha256_of(path), session)
    with atomic.atomic_path(path) as tmp:
        quantize_int8(
            manifest.model_path(entry),
            tmp,
            calibration(),
            entry.outputs["features"],
            quant_format=spec.quant_format or "QOperator",
            op_types=list(spec.op_types) if spec.op_types else None,
        )
    session, _ = make_session(path, "cpu")
    return BuiltVariant(spec, file, sha256_of(path), session)


def remove_stale(manifest: Manifest, entry: ModelEntry) -> None:
    """Delete variant files of ``entry`` left by an earlier optimize (the manifest no longer lists them)."""
    for path in Path(manifest.root / VARIANTS_DIR).glob(f"{entry.name}.*"):
        if path.suffix in (".onnx", ".xml", ".bin"):
            path.unlink()
