"""tf.data pipelines: the engine's decode, per-label sample weights, seeded augmentation, clear decode errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tbensemble.core.config import AugmentConfig
from tbensemble.core.errors import DataError
from tbensemble.data.decode import load_image
from tbensemble.train.pipeline import load_images, make_augmenter, training_dataset, validation_dataset


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_load_images_is_load_image_in_order(images):
    batch = load_images(images, 32)
    assert batch.shape == (6, 32, 32) and batch.dtype == np.uint8
    for i, path in enumerate(images):
        np.testing.assert_array_equal(batch[i], load_image(path, 32))


def test_training_batches_carry_class_weights_and_stay_in_pixel_range(images):
    labels = [0, 0, 0, 0, 1, 1]
    dataset = training_dataset(images, labels, 32, 6, AugmentConfig(), {0: 0.75, 1: 1.5}, seed=3)
    x, y, w = next(iter(dataset))
    assert x.shape == (6, 32, 32, 1) and y.shape == (6, 1)
    np.testing.assert_allclose(w.numpy(), np.where(y.numpy()[:, 0] == 1, 1.5, 0.75))
    assert float(x.numpy().min()) >= 0.0 and float(x.numpy().max()) <= 255.0


def test_augmentation_is_seeded_and_changes_every_epoch(images):
    def first_batch(dataset):
        return next(iter(dataset))[0].numpy()

    dataset = training_dataset(images, [0, 1] * 3, 32, 6, AugmentConfig(), {0: 1.0, 1: 1.0}, seed=7)
    again = training_dataset(images, [0, 1] * 3, 32, 6, AugmentConfig(), {0: 1.0, 1: 1.0}, seed=7)
    epoch1, epoch2 = first_batch(dataset), first_batch(dataset)
    np.testing.assert_array_equal(epoch1, first_batch(again))
    assert np.abs(np.sort(epoch1.reshape(6, -1).mean(1)) - np.sort(epoch2.reshape(6, -1).mean(1))).max() > 0.1


def test_horizontal_flip_only_when_asked():
    assert "RandomFlip" not in [type(layer).__name__ for layer in make_augmenter(AugmentConfig(), 0).layers]
    flipping = make_augmenter(AugmentConfig(hflip=True), 0)
    assert "RandomFlip" in [type(layer).__name__ for layer in flipping.layers]
    off = AugmentConfig(rotation_deg=0, shift=0, zoom=0, brightness=0, contrast=0)
    assert make_augmenter(off, 0).layers == []


def test_validation_batches_are_the_decoded_pixels(images):
    x, y = next(iter(validation_dataset(images, [0, 1, 0, 1, 0, 1], 32, 6)))
    np.testing.assert_array_equal(x.numpy()[..., 0], load_images(images, 32).astype(np.float32))
    np.testing.assert_array_equal(y.numpy()[:, 0], [0, 1, 0, 1, 0, 1])


def test_undecodable_file_is_one_data_error_naming_it(images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError) as caught:
        load_images([*images, str(broken)], 32)
    assert str(caught.value).startswith(f"{broken}: cannot decode")
    assert "\n" not in str(caught.value)
