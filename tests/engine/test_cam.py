"""CAM arithmetic on hand-made ONNX models (conv → features → GAP → Gemm logit → Sigmoid), no TensorFlow.

``write_tiny_run`` is also used by the explain CLI tests: it writes a run folder with ONNX files and a
manifest like export does, small enough to build in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tbensemble.core.errors import ArtifactError
from tbensemble.core.manifest import EnsembleEntry, InputSpec, Manifest, ModelEntry, save_manifest, sha256_of
from tbensemble.engine.cam import class_activation, combine, normalise, resize_maps

SIZE = 32
BRIGHTNESS_KERNEL = np.full((2, 1, 3, 3), 0.0, dtype=np.float32)
BRIGHTNESS_KERNEL[0] = 1.0 / (9 * 255.0)
BRIGHTNESS_BIAS = np.array([0.0, 1.0], dtype=np.float32)
"""Channel 0: local brightness in [0, 1]; channel 1: a constant 1. With head (4, -1) the evidence is bright spots."""
BRIGHTNESS_HEAD = (np.array([4.0, -1.0], dtype=np.float32), -0.5)


def tiny_model(kernel: np.ndarray, bias: np.ndarray, head: np.ndarray, head_bias: float, size: int = SIZE) -> bytes:
    """NHWC image → stride-2 conv → ``features`` (N, size/2, size/2, C) → mean → Gemm ``logit`` → ``probability``."""
    channels = kernel.shape[0]
    init = [
        numpy_helper.from_array(kernel.astype(np.float32), "conv_w"),
        numpy_helper.from_array(bias.astype(np.float32), "conv_b"),
        numpy_helper.from_array(head.astype(np.float32).reshape(channels, 1), "head_w"),
        numpy_helper.from_array(np.array([head_bias], dtype=np.float32), "head_b"),
    ]
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "Conv", ["nchw", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]
        ),
        helper.make_node("Transpose", ["conv"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Identity", ["nhwc"], ["features"]),
        helper.make_node("ReduceMean", ["features"], ["pooled"], axes=[1, 2], keepdims=0),
        helper.make_node("Gemm", ["pooled", "head_w", "head_b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    half = size // 2
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 1])],
        [
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", half, half, channels]),
        ],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_tiny_run(folder: Path, n_models: int = 2, size: int = SIZE, calibration: dict | None = None) -> Path:
    """A run folder with ``n_models`` brightness-responding ONNX models and a manifest, as export writes it."""
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    entries = []
    head, head_bias = BRIGHTNESS_HEAD
    for k in range(n_models):
        path = folder / "onnx" / f"tinycnn-f{k}.onnx"
        path.write_bytes(tiny_model(BRIGHTNESS_KERNEL * (1 + 0.1 * k), BRIGHTNESS_BIAS, head, head_bias, size))
        entries.append(
            ModelEntry(
                name=f"tinycnn-f{k}",
                file=f"onnx/{path.name}",
                sha256=sha256_of(path),
                backbone="tinycnn",
                fold=k,
                input=InputSpec(size=size),
                outputs={"probability": "probability", "logit": "logit", "features": "features"},
                oof_auc=0.9,
                parity={"max_abs_diff_probability": 0.0, "max_abs_diff_logit": 0.0, "n_images": 16},
                oof_scores_sorted=[float(v) for v in np.linspace(0.05, 0.95, 50)],
                head_weights=[float(v) for v in head],
                head_bias=float(head_bias),
                weight=1.0 / n_models,
            )
        )
    point = {"name": "youden", "threshold": 0.5, "sensitivity": 0.9, "specificity": 0.8, "ppv": 0.8, "npv": 0.9}
    ensemble = EnsembleEntry(
        tta=["identity"],
        operating_points={"youden": point},
        default_operating_point="youden",
        oof_auc=0.9,
        calibration=calibration,
    )
    save_manifest(Manifest(1, "0.1.0", folder.name, "2026-01-01T00:00:00Z", entries, ensemble), folder)
    return folder


def blob_image(row: int, col: int, size: int = SIZE, radius: float = 3.0) -> np.ndarray:
    """A dark uint8 image with one bright disc centred at (row, col)."""
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size), 20, dtype=np.uint8)
    image[(yy - row) ** 2 + (xx - col) ** 2 <= radius**2] = 230
    return image


def _run(model: bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = ["features", "logit", "probability"]
    return dict(zip(names, session.run(names, {"image": images.astype(np.float32)[..., None]}), strict=True))


def test_cam_spatial_mean_plus_bias_is_the_logit() -> None:
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.01, (5, 1, 3, 3)).astype(np.float32)
    head = rng.normal(0, 1, 5).astype(np.float32)
    out = _run(tiny_model(kernel, rng.normal(0, 0.1, 5), head, 0.3), rng.integers(0, 256, (4, SIZE, SIZE)))
    cam = class_activation(out["features"], head)
    assert cam.shape == (4, SIZE // 2, SIZE // 2)
    np.testing.assert_allclose(cam.mean(axis=(1, 2)) + 0.3, out["logit"][:, 0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("row", "col"), [(6, 8), (24, 20), (16, 27)])
def test_heatmap_peaks_at_the_bright_blob(row: int, col: int) -> None:
    head, head_bias = BRIGHTNESS_HEAD
    out = _run(tiny_model(BRIGHTNESS_KERNEL, BRIGHTNESS_BIAS, head, head_bias), blob_image(row, col)[None])
    heatmap = combine({"m": class_activation(out["features"], head)}, {"m": 1.0}, SIZE)[0]
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert abs(peak[0] - row) <= 2 and abs(peak[1] - col) <= 2
    assert heatmap.max() == pytest.approx(1.0) and heatmap.min() == 0.0


def test_normalise_resize_and_combine() -> None:
    cams = np.array([[[-1.0, 2.0], [0.0, 4.0]], [[-1.0, -2.0], [-3.0, -4.0]]])
    np.testing.assert_allclose(normalise(cams), [[[0, 0.5], [0, 1]], [[0, 0], [0, 0]]])
    resized = resize_maps(np.array([[[0.0, 1.0], [0.0, 1.0]]]), 4, 8)
    assert resized.shape == (1, 4, 8) and np.all(np.diff(resized[0], axis=1) >= 0)
    left = np.zeros((1, 2, 2))
    left[0, :, 0] = 1
    right = left[:, :, ::-1]
    both = combine({"a": left, "b": right}, {"a": 3.0, "b": 1.0}, 2)
    np.testing.assert_allclose(both[0], [[1.0, 1 / 3], [1.0, 1 / 3]])


def test_mismatched_head_is_an_artifact_error() -> None:
    with pytest.raises(ArtifactError, match="do not match 3 head weights"):
        class_activation(np.zeros((1, 2, 2, 4)), np.ones(3))


def test_ensemble_heatmaps_through_the_engine(tmp_path: Path) -> None:
    from tbensemble.engine.cam import ensemble_heatmaps, model_cams
    from tbensemble.engine.ensemble import Ensemble

    ensemble = Ensemble.load(write_tiny_run(tmp_path / "run"), device="cpu")
    images = np.stack([blob_image(8, 8), blob_image(24, 22)])
    cams = model_cams(ensemble, images)
    assert sorted(cams) == ["tinycnn-f0", "tinycnn-f1"]
    logits = ensemble.sessions["tinycnn-f1"].run(["logit"], {"image": images.astype(np.float32)[..., None]})[0]
    np.testing.assert_allclose(cams["tinycnn-f1"].mean(axis=(1, 2)) + BRIGHTNESS_HEAD[1], logits[:, 0], atol=1e-4)
    heatmaps = ensemble_heatmaps(ensemble, images)
    assert heatmaps.shape == (2, SIZE, SIZE)
    peaks = [np.unravel_index(np.argmax(h), h.shape) for h in heatmaps]
    assert np.abs(np.subtract(peaks, [(8, 8), (24, 22)])).max() <= 2
