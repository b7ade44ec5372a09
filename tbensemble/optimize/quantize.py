"""ONNX Runtime static INT8 of one fold model: u8 activations, s8 per-channel weights, the head kept fp32.

Calibration images come from the fold model's own training split (never its held-out or test images),
fed as the engine feeds them: every TTA view, raw pixels 0-255. ``quant_pre_process`` (shape inference
and graph optimisation) runs first, as ONNX Runtime's quantiser expects. The head (pooling, Dense,
sigmoid) stays fp32: quantising it clips the output to its calibration range.

Calibration memory is bounded by feeding one view of one image per run: ORT's MinMax calibrator runs an
augmented copy of the model (a ReduceMin and ReduceMax on every tensor, graph optimisations off) whose
activation memory grows with the batch, about 2.2 GB per view for DenseNet201 at 384 px, and not with the
number of images. Min and max over single views equal those over batches, so the ranges do not change.
The per-run reductions ORT keeps are merged every ``CalibStridedMinMax`` runs (ORT's own chunking, which
computes and merges each chunk's ranges). ``CalibMaxIntermediateOutputs`` is not used: in onnxruntime
1.26 it discards the collected outputs without computing their ranges (microsoft/onnxruntime#18893).
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


class CalibrationViews:
    """A calibration data reader: every TTA view of every image, one at a time, as float32 (1, S, S, 1).

    It follows ONNX Runtime's ``CalibrationDataReader`` protocol (``get_next``, ``rewind``, and ``__len__``
    with ``set_range`` for ``CalibStridedMinMax``) and is iterable afresh for NNCF's ``Dataset``.
    """

    def __init__(self, images: np.ndarray, views: list[str], input_name: str) -> None:
        self.images, self.views, self.input_name = images, views, input_name
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return len(self.images) * len(self.views)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self._feeds(0, len(self))

    def _feeds(self, start: int, end: int) -> Iterator[dict[str, np.ndarray]]:
        for index in range(start, end):
            image, view = divmod(index, len(self.views))
            pixels = apply_views(self.images[image : image + 1], [self.views[view]])
            yield {self.input_name: pixels.astype(np.float32)[..., None]}

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = (start_index, end_index)
        self._next = self._feeds(start_index, end_index)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._next, None)

    def rewind(self) -> None:
        self.set_range(*self._range)


def merge_stride(count: int, most: int = 64) -> int:
    """The largest divisor of ``count`` up to ``most``: ORT's ``CalibStridedMinMax`` needs one that divides."""
    return max(d for d in range(1, min(count, most) + 1) if count % d == 0)


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
    calibration: CalibrationViews,
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
            extra_options={"CalibStridedMinMax": merge_stride(len(calibration))},
        )
    return Path(out_path)


def quantize_openvino_int8(model_path: str | Path, xml_path: Path, calibration: CalibrationViews) -> Path:
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
    model = openvino.Core().read_model(str(model_path))
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars, kept off the table optimize prints
        quantized = nncf.quantize(
            model,
            nncf.Dataset(calibration, lambda feed: feed[calibration.input_name]),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(types=["MatMul"], validate=False),
        )
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tbens-ir-", dir=xml_path.parent) as tmp:
        staged = Path(tmp) / "model.xml"
        openvino.save_model(quantized, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(staged, xml_path)
    return xml_path
