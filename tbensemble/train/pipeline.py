"""tf.data input pipelines: parallel decode through the engine's own ``load_image``, cache, shuffle, augment,
batch, prefetch.

Decoding goes through ``tbensemble.data.decode.load_image`` (via ``tf.numpy_function``) so a model is
trained on exactly the pixels the ONNX engine will give it. Augmentation runs after batching, as seeded
Keras preprocessing layers, on raw 0-255 values (the model normalises inside).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tbensemble.core.config import AugmentConfig
from tbensemble.core.errors import DataError
from tbensemble.data.decode import load_image

AUTOTUNE = tf.data.AUTOTUNE


def decode_dataset(paths: Sequence[str], image_size: int) -> tf.data.Dataset:
    """Paths → uint8 (S, S, 1) images, decoded in parallel, in the order given."""

    def _load(path: bytes) -> np.ndarray:
        return load_image(path.decode("utf-8"), image_size)[..., None]

    def _decode(path: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(_load, [path], tf.uint8, stateful=False)
        image.set_shape((image_size, image_size, 1))
        return image

    return tf.data.Dataset.from_tensor_slices([str(p) for p in paths]).map(
        _decode, num_parallel_calls=AUTOTUNE, deterministic=True
    )


def decode_error(exc: tf.errors.OpError) -> DataError:
    """The DataError raised by ``load_image`` inside tf.data, recovered as one line naming the file."""
    match = re.search(r"DataError: (.+?)(?:\n|$)", exc.message)
    return DataError(match.group(1) if match else exc.message.splitlines()[0])


def load_images(paths: Sequence[str], image_size: int) -> np.ndarray:
    """Decode every path into one uint8 array (N, S, S), in parallel (used to score images with TTA)."""
    batches = []
    try:
        for batch in decode_dataset(paths, image_size).batch(256).prefetch(AUTOTUNE):
            batches.append(batch.numpy()[..., 0])
    except tf.errors.OpError as exc:
        raise decode_error(exc) from None
    if not batches:
        return np.zeros((0, image_size, image_size), dtype=np.uint8)
    return np.concatenate(batches)


def make_augmenter(augment: AugmentConfig, seed: int) -> keras.Sequential:
    """Small geometric and photometric jitter; each layer seeded, a zero factor leaves its layer out."""
    layers: list[keras.layers.Layer] = []
    if augment.hflip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if augment.rotation_deg > 0:
        layers.append(keras.layers.RandomRotation(augment.rotation_deg / 360.0, fill_mode="nearest", seed=seed + 1))
    if augment.shift > 0:
        layers.append(keras.layers.RandomTranslation(augment.shift, augment.shift, fill_mode="nearest", seed=seed + 2))
    if augment.zoom > 0:
        layers.append(keras.layers.RandomZoom(augment.zoom, augment.zoom, fill_mode="nearest", seed=seed + 3))
    if augment.brightness > 0:
        layers.append(keras.layers.RandomBrightness(augment.brightness, value_range=(0.0, 255.0), seed=seed + 4))
    if augment.contrast > 0:
        layers.append(keras.layers.RandomContrast(augment.contrast, value_range=(0.0, 255.0), seed=seed + 5))
    return keras.Sequential(layers, name="augment")


def training_dataset(
    paths: Sequence[str],
    labels: Sequence[int],
    image_size: int,
    batch_size: int,
    augment: AugmentConfig,
    class_weights: Mapping[int, float],
    seed: int,
) -> tf.data.Dataset:
    """(image float32 0-255, label, sample weight) batches: decoded once and cached in memory, reshuffled
    every epoch, augmented; the sample weight is the fold's class weight for that label.

    The last partial batch is dropped (its images come back in later epochs): a handful of images would
    otherwise give batch-norm one noisy step at the end of every epoch, right before validation."""
    weights = tf.constant([float(class_weights[0]), float(class_weights[1])], dtype=tf.float32)
    label_ds = tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.int32))
    augmenter = make_augmenter(augment, seed)

    def _augment(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        images = tf.cast(images, tf.float32)
        if augmenter.layers:
            images = tf.clip_by_value(augmenter(images, training=True), 0.0, 255.0)
        return images, tf.cast(labels, tf.float32)[:, None], tf.gather(weights, labels)

    return (
        tf.data.Dataset.zip(decode_dataset(paths, image_size), label_ds)
        .cache()
        .shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=len(paths) >= batch_size)
        .map(_augment, num_parallel_calls=AUTOTUNE)
        .prefetch(AUTOTUNE)
    )


def validation_dataset(
    paths: Sequence[str], labels: Sequence[int], image_size: int, batch_size: int
) -> tf.data.Dataset:
    """(image float32 0-255, label) batches, unaugmented and cached, for the per-epoch validation AUC."""
    label_ds = tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.float32)[:, None])
    images = decode_dataset(paths, image_size).map(lambda image: tf.cast(image, tf.float32))
    return tf.data.Dataset.zip(images, label_ds).cache().batch(batch_size).prefetch(AUTOTUNE)
