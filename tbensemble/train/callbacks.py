"""Training helpers: an atomic model save and one concise progress line per epoch with a run ETA."""

from __future__ import annotations

import logging
import math
import os
import time
import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger("tbensemble.train")


def save_model(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Save the model without its optimizer state (Adam's moments and the weight average would make the file
    four times the weights; an interrupted fold is retrained, never resumed), as a temp file then a rename,
    so an interrupted run never leaves a half-written ``model.keras``."""
    path = Path(path)
    twin = keras.Model.from_config(model.get_config())
    twin.set_weights(model.get_weights())
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        twin.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _batch_norms(layer: keras.layers.Layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        yield layer
    for inner in getattr(layer, "layers", []):
        yield from _batch_norms(inner)


BATCH_NORM_BATCH = 64
"""Images per forward pass when batch-norm statistics are re-estimated, whatever the training batch size. In
training mode each batch-norm normalises by its own batch, so the layers after it see inputs made from that
batch alone; from batches of 4 those were so unlike the inference-mode inputs that a from-scratch
EfficientNetB5 at 64 px, its statistics taken from 128 phantoms, gave logits near 300 on other phantoms,
against under 1 from batches of 32 or more. The pass runs as a compiled graph, which frees each activation
once the next layers have read it: called eagerly, a Keras model keeps every layer's output until the end,
and ResNet50 at 384 px then held 8.0 GB for 16 images (2-core CPU; 64 images were killed for memory at
23 GB), against 1.6 GB for 16 and 3.6 GB for 64 as a graph."""


_STATISTICS_PASSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _statistics_pass(model: keras.Model, image_shape: tuple[int, ...], trainable: tuple[bool, ...]):
    """The model's training-mode forward pass as a graph, traced once per model, image shape and set of
    trainable batch-norms (warm-up freezes the backbone's, fine-tuning frees them; a graph keeps what it was
    traced with, as it keeps each momentum at 0): one pass per validation would otherwise retrace each epoch."""
    passes = _STATISTICS_PASSES.setdefault(model, {})
    key = (image_shape, trainable)
    if key not in passes:
        spec = tf.TensorSpec((None, *image_shape), tf.float32)
        owner = weakref.ref(model)  # the cached pass must not keep the model (its weak key) alive
        passes[key] = tf.function(lambda batch: owner()(batch, training=True), input_signature=[spec])
    return passes[key]


def precise_batch_norm(model: keras.Model, images: np.ndarray, batch_size: int = BATCH_NORM_BATCH) -> None:
    """Set every trainable batch-norm's moving statistics to the mean and variance of its inputs over all of
    ``images`` (float32 (N, S, S, 1), unaugmented training images), for the weights the model holds now.

    The running averages that training leaves behind describe earlier weights (and, with an EMA of the
    weights, other weights altogether); on the small nets they shifted validation scores so far that the
    validation AUC swung between 0.5 and 0.98 from one epoch to the next (Wu & Johnson 2021, "Rethinking
    'Batch' in BatchNorm", call the fix PreciseBN). The variance is the population one (the law of total
    variance: within-batch variance plus the variance of the batch means), not the mean of the batches'
    variances, which leaves out how batches differ. Frozen batch-norms (a pretrained backbone is called in
    inference mode) are left alone: they do not update in these calls.
    """
    layers = list(_batch_norms(model))
    if not layers or len(images) == 0:
        return
    momenta = [layer.momentum for layer in layers]
    counts: list[int] = []
    means: list[list[np.ndarray]] = [[] for _ in layers]
    variances: list[list[np.ndarray]] = [[] for _ in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0  # each call leaves exactly its batch's statistics in the moving ones
        forward = _statistics_pass(model, images.shape[1:], tuple(layer.trainable for layer in layers))
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            forward(tf.constant(batch))
            counts.append(len(batch))
            for i, layer in enumerate(layers):
                means[i].append(np.asarray(layer.moving_mean, dtype=np.float64))
                variances[i].append(np.asarray(layer.moving_variance, dtype=np.float64))
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    share = np.asarray(counts, dtype=np.float64)[:, None] / sum(counts)
    for layer, batch_means, batch_variances in zip(layers, means, variances, strict=True):
        mean = (share * np.stack(batch_means)).sum(axis=0)
        spread = (share * (np.stack(batch_variances) + (np.stack(batch_means) - mean) ** 2)).sum(axis=0)
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(spread.astype(np.float32))


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recompute batch-norm statistics before each validation, so the recorded validation AUC is that of
    the model that will be saved (placed after ``SwapEMAWeights``, it sees the averaged weights)."""

    def __init__(self, images: np.ndarray):
        super().__init__()
        self.images = images

    def on_test_begin(self, logs: dict | None = None) -> None:
        precise_batch_norm(self.model, self.images)


class RunClock:
    """Progress over a whole train-folds call (all backbone × fold jobs), for an ETA that covers the run."""

    def __init__(self, n_jobs: int):
        self.n_jobs = max(n_jobs, 1)
        self.jobs_done = 0
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def eta(self, epoch: int, epochs: int) -> float:
        """Seconds left, assuming every remaining job runs its epochs at the pace seen so far."""
        progress = (self.jobs_done + epoch / max(epochs, 1)) / self.n_jobs
        return self.elapsed() * (1 - progress) / progress if progress > 0 else math.nan


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class EpochProgress(keras.callbacks.Callback):
    """One log line per epoch: backbone, fold, epoch, train loss, val AUC, epoch time, run elapsed and ETA.
    Also records each epoch's duration for history.csv."""

    def __init__(self, label: str, epochs: int, clock: RunClock):
        super().__init__()
        self.label = label
        self.epochs = epochs
        self.clock = clock
        self.seconds: dict[int, float] = {}
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.seconds[epoch + 1] = time.monotonic() - self._t0
        log.info(
            "%s epoch %d/%d  loss %.4f  val_auc %.4f  %.1fs  elapsed %s  eta %s",
            self.label,
            epoch + 1,
            self.epochs,
            logs.get("loss", math.nan),
            logs.get("val_auc", math.nan),
            self.seconds[epoch + 1],
            _clock(self.clock.elapsed()),
            _clock(self.clock.eta(epoch + 1, self.epochs)),
        )
