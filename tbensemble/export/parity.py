"""Keras against ONNX Runtime on the same images: an export that changes the scores must not ship.

Both the probability and the logit are compared: with a saturated sigmoid a wrong graph can still give
equal probabilities, while the logit shows the error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tbensemble.core.errors import ArtifactError, TbensError
from tbensemble.core.manifest import OUTPUT_ROLES
from tbensemble.export import validate
from tbensemble.export.validate import INPUT_NAME

PROBABILITY_TOLERANCE = 1e-4

log = logging.getLogger(__name__)


def compare(keras_out: dict[str, np.ndarray], onnx_out: dict[str, np.ndarray]) -> dict[str, float]:
    """Max absolute differences of probability and logit, and the number of images compared."""
    return {
        "max_abs_diff_probability": float(np.max(np.abs(keras_out["probability"] - onnx_out["probability"]))),
        "max_abs_diff_logit": float(np.max(np.abs(keras_out["logit"] - onnx_out["logit"]))),
        "n_images": int(keras_out["probability"].shape[0]),
    }


def enforce(figures: dict[str, float], label: str, tolerance: float = PROBABILITY_TOLERANCE) -> None:
    """Refuse the export when the probabilities differ by more than ``tolerance``."""
    if figures["max_abs_diff_probability"] > tolerance:
        raise ArtifactError(
            f"{label}: parity failed, max |Δ probability| {figures['max_abs_diff_probability']:.2e} > {tolerance:.0e} "
            f"(max |Δ logit| {figures['max_abs_diff_logit']:.2e}) on {figures['n_images']} images"
        )


def _eager(model: Any, batch: np.ndarray, n_outputs: int, chunk: int = 4) -> list[tuple[np.ndarray, ...]]:
    """Direct calls in small chunks: no tf.function tracing per model (``predict`` traces each new model,
    tens of seconds for the big backbones) and bounded activation memory at 384 px."""
    parts = []
    for i in range(0, len(batch), chunk):
        outputs = model([batch[i : i + chunk]], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        parts.append(tuple(np.asarray(out) for out in outputs[:n_outputs]))
    return parts


def check(
    model3: Any,
    onnx_path: Path,
    images: np.ndarray,
    label: str,
    tolerance: float | None = None,
    head: tuple[list[float], float] | None = None,
) -> dict[str, float]:
    """Score uint8 images (N, S, S) with the three-output Keras model and the ONNX file, in layers: output
    names, their shapes, the values (fail above tolerance), then, given the ``head`` (w, b), the CAM identity."""
    import onnxruntime as ort

    batch = images.astype(np.float32)[..., None]
    parts = _eager(model3, batch, len(OUTPUT_ROLES))
    keras_out = {
        role: np.concatenate(column) for role, column in zip(OUTPUT_ROLES, zip(*parts, strict=True), strict=True)
    }
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    if names != list(OUTPUT_ROLES):
        raise ArtifactError(f"{label}: ONNX Runtime sees outputs {names}; the engine needs {list(OUTPUT_ROLES)}")
    onnx_out = dict(zip(OUTPUT_ROLES, session.run(list(OUTPUT_ROLES), {INPUT_NAME: batch}), strict=True))
    validate.check_shapes(keras_out, onnx_out, label)
    figures = compare(keras_out, onnx_out)
    enforce(figures, label, PROBABILITY_TOLERANCE if tolerance is None else tolerance)
    if head is None:
        return figures
    cam = validate.check_cam_identity(onnx_out["features"], onnx_out["logit"], *head, label)
    return {**figures, "max_abs_diff_cam_logit": cam}


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Uniform random 0-255 images, used when the run's data is no longer on disk."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)


def parity_images(run_dir: Path, data_dir: str, fold: int, n: int, size: int) -> tuple[np.ndarray, str]:
    """Up to ``n`` images of the fold's validation split (then the others), decoded as the engine does.

    Returns the images and where they came from (``run data`` or ``random``), which the manifest records.
    """
    from tbensemble.data.decode import load_image
    from tbensemble.data.layout import load_training_set

    data_path = Path(data_dir)
    if not data_path.is_absolute() and not data_path.exists():
        data_path = run_dir / data_dir
    try:
        frame = load_training_set(data_path)
        folds_csv = run_dir / "folds.csv"
        if folds_csv.is_file():
            folds = pd.read_csv(folds_csv, usecols=["image_id", "fold"], dtype={"image_id": str})
            frame = frame.merge(folds, on="image_id", how="left")
            frame = frame.assign(own=(frame["fold"] == fold)).sort_values("own", ascending=False, kind="stable")
        paths = frame["path"].head(n).tolist()
        images = np.stack([load_image(p, size) for p in paths])
    except (TbensError, OSError, KeyError, ValueError) as exc:
        log.warning("parity: run data %s not usable (%s); comparing on %d random images", data_dir, exc, n)
        return random_images(n, size), "random"
    if len(images) < n:
        log.warning("parity: only %d images in %s; topping up with random ones", len(images), data_dir)
        images = np.concatenate([images, random_images(n - len(images), size)])
        return images, "run data + random"
    return images, "run data"


def unsaturate_head(model: Any, images: np.ndarray) -> None:
    """Rescale the ``logit`` Dense so its logits on ``images`` have mean 0 and std 1.

    Random-weight backbones (parity checks, benchmarks) push the sigmoid to 0 or 1, where any export
    error vanishes from the probability; a centred, unit-spread logit keeps the probability sensitive.
    """
    import keras

    features = keras.Model(model.inputs, [model.get_layer("features").output])
    parts = _eager(features, images.astype(np.float32)[..., None], 1)
    pooled = np.concatenate([part[0] for part in parts]).mean(axis=(1, 2))
    dense = model.get_layer("logit")
    kernel, _ = dense.get_weights()
    logits = pooled @ kernel
    scale = float(np.std(logits)) or 1.0
    dense.set_weights([kernel / scale, np.array([-float(np.mean(logits)) / scale], dtype=np.float32)])
