"""Class activation maps from the ONNX models' ``features`` output and the manifest's head (no TensorFlow).

A model's logit is ``mean_hw(F) · w + b`` (global average pooling, then the Dense head), so the map
``F · w`` is exactly the per-location contribution to the logit: its spatial mean plus ``b`` is the logit.
The heatmap keeps the positive evidence (ReLU), scaled to [0, 1] per image and model, so models with
different logit ranges weigh in by their manifest weight alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from tbensemble.core.errors import ArtifactError

if TYPE_CHECKING:
    from tbensemble.engine.ensemble import Ensemble


def class_activation(features: np.ndarray, head_weights: np.ndarray) -> np.ndarray:
    """(N, h, w, C) features · (C,) head weights -> (N, h, w) logit contributions, before any ReLU."""
    weights = np.asarray(head_weights, dtype=np.float64)
    if features.ndim != 4 or features.shape[-1] != weights.size:
        raise ArtifactError(
            f"features of shape {features.shape} do not match {weights.size} head weights (expected N, h, w, C)"
        )
    return np.tensordot(features.astype(np.float64), weights, axes=([3], [0]))


def normalise(cams: np.ndarray) -> np.ndarray:
    """ReLU, then each map divided by its maximum; a map with no positive evidence stays all zero."""
    positive = np.maximum(cams, 0.0)
    peak = positive.max(axis=(1, 2), keepdims=True)
    return np.divide(positive, peak, out=np.zeros_like(positive), where=peak > 0)


def resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (N, h, w) float maps with Pillow (mode F), as images are resized elsewhere."""
    out = np.empty((maps.shape[0], height, width), dtype=np.float32)
    for i, single in enumerate(maps.astype(np.float32)):
        out[i] = np.asarray(Image.fromarray(single, mode="F").resize((width, height), Image.Resampling.BILINEAR))
    return out


def combine(maps: Mapping[str, np.ndarray], weights: Mapping[str, float], size: int) -> np.ndarray:
    """Normalise each model's raw CAM, resize to size×size, take the weighted mean, rescale to [0, 1]."""
    total = sum(float(weights.get(name, 1.0)) for name in maps)
    if total <= 0:
        raise ArtifactError("CAM: every model has weight 0")
    mean = sum(float(weights.get(name, 1.0)) * resize_maps(normalise(cam), size, size) for name, cam in maps.items())
    return normalise(np.asarray(mean, dtype=np.float64) / total)


def model_cams(ensemble: Ensemble, images: np.ndarray) -> dict[str, np.ndarray]:
    """Each model's raw CAM (N, h, w) on the identity view of a uint8 batch (N, S, S): one session call each."""
    batch = images.astype(np.float32)[..., None]
    cams = {}
    for entry in ensemble.manifest.models:
        if "features" not in entry.outputs:
            raise ArtifactError(f"{ensemble.manifest.model_path(entry)}: manifest lists no 'features' output for CAM")
        (features,) = ensemble.sessions[entry.name].run([entry.outputs["features"]], {entry.input.name: batch})
        cams[entry.name] = class_activation(features, np.asarray(entry.head_weights))
    return cams


def ensemble_heatmaps(ensemble: Ensemble, images: np.ndarray) -> np.ndarray:
    """The ensemble's heatmaps (N, S, S) in [0, 1] for a uint8 batch at the models' input size."""
    return combine(model_cams(ensemble, images), ensemble.weights, ensemble.image_size)
