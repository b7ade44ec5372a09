"""Keras-side TTA scoring: the same views and the same mean as the ONNX engine, so OOF scores, parity
checks and test scores all mean one thing."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tbensemble.data.views import apply_views


def predict_views(
    model: keras.Model, images: np.ndarray, views: Sequence[str], batch_size: int = 32, chunk: int = 256
) -> np.ndarray:
    """Probability per view for each uint8 image of ``images`` (N, S, S) → float64 (V, N).

    Every view of a chunk of images goes through the model as one batch, as the engine does.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"predict_views wants uint8 images (N, S, S), got shape {images.shape}")
    scores = np.empty((len(views), len(images)), dtype=np.float64)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk]
        stacked = apply_views(part, views).astype(np.float32)[..., None]
        probs = np.asarray(model.predict(stacked, batch_size=batch_size, verbose=0), dtype=np.float64)
        scores[:, start : start + len(part)] = probs.reshape(len(views), len(part))
    return scores


def predict_tta(
    model: keras.Model, images: np.ndarray, views: Sequence[str], batch_size: int = 32, chunk: int = 256
) -> np.ndarray:
    """Mean probability over TTA ``views`` for each uint8 image of ``images`` (N, S, S) → float64 (N,)."""
    return predict_views(model, images, views, batch_size, chunk).mean(axis=0)
