"""ONNX Runtime static INT8 of one fold model: u8 activations, s8 per-channel weights, the head kept fp32.

Calibration images come from the fold model's own training split (never its held-out or test images),
fed as the engine feeds them: every TTA view, raw pixels 0-255. ``quant_pre_process`` (shape inference
and graph optimisation) runs first, as ONNX Runtime's quantiser expects. The head (pooling, Dense,
sigmoid) stays fp32: quantising it clips the output to its calibration range.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tbensemble.data.views import apply_views


class ViewBatches:
    """A calibration data reader: batches of uint8 images, expanded to their TTA views, as float32 NHWC."""

    def __init__(self, images: np.ndarray, views: list[str], input_name: str, batch_size: int = 8) -> None:
        self.images, self.views, self.input_name, self.batch_size = images, views, input_name, batch_size
        self._batches = self._iterate()

    def _iterate(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.images), self.batch_size):
            batch = apply_views(self.images[start : start + self.batch_size], self.views)
            yield {self.input_name: batch.astype(np.float32)[..., None]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = self._iterate()


def head_nodes(model_path: str | Path, features_output: str) -> list[str]:
    """Nodes that are not needed to compute ``features_output`` (the last conv map): pooling and the head."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    needed: set[str] = set()
    stack = [features_output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in needed:
            continue
        needed.add(node.name)
        stack.extend(node.input)
    return [node.name for node in graph.node if node.name not in needed]


def quantize_int8(
    model_path: str | Path,
    out_path: str | Path,
    calibration: ViewBatches,
    features_output: str,
    quant_format: str = "QOperator",
    op_types: list[str] | None = None,
) -> Path:
    """Write the INT8 model to ``out_path`` (the caller renames it into place); returns ``out_path``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="tbens-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            calibration,
            quant_format=QuantFormat.QOperator if quant_format == "QOperator" else QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=head_nodes(prepared, features_output),
            calibrate_method=CalibrationMethod.MinMax,
        )
    return Path(out_path)


def quantize_openvino_int8(model_path: str | Path, xml_path: Path, calibration: ViewBatches) -> Path:
    """NNCF post-training INT8 of the ONNX model as OpenVINO reads it, saved as IR (``.xml`` + ``.bin``).

    The Dense head (the only MatMul of these CNNs) stays fp32. Both files are written under temporary
    names and renamed into place, the ``.bin`` first, so a reader never pairs an old ``.xml`` with a new
    ``.bin``.
    """
    try:
        import nncf
        import openvino
    except ImportError as exc:
        raise ImportError(f"{exc.name} is not installed (pip install 'tbensemble[optimize]')") from None

    nncf.set_log_level(logging.WARNING)  # its INFO lines go to stdout, into the table optimize prints
    batches = []
    while (batch := calibration.get_next()) is not None:
        batches.append(batch[calibration.input_name])
    model = openvino.Core().read_model(str(model_path))
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars, kept off the table optimize prints
        quantized = nncf.quantize(
            model,
            nncf.Dataset(batches),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(batches),
            ignored_scope=nncf.IgnoredScope(types=["MatMul"], validate=False),
        )
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tbens-ir-", dir=xml_path.parent) as tmp:
        staged = Path(tmp) / "model.xml"
        openvino.save_model(quantized, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(staged, xml_path)
    return xml_path
