"""Backbones: structure, parameter counts, the preprocessing each backbone needs, and weights handling."""

from __future__ import annotations

import hashlib
import urllib.error

import keras
import numpy as np
import pytest

from tbensemble.core.errors import ArtifactError, ConfigError
from tbensemble.core.registry import BACKBONES, BackboneInfo
from tbensemble.train import backbones
from tbensemble.train.backbones import BackbonePreprocess, build_model

LEADERBOARD = {
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet50.preprocess_input),
    "densenet201": (keras.applications.DenseNet201, keras.applications.densenet.preprocess_input),
    "efficientnetb5": (keras.applications.EfficientNetB5, keras.applications.efficientnet.preprocess_input),
}


@pytest.mark.parametrize("name", list(LEADERBOARD))
def test_leaderboard_backbone_at_384_counts_and_preprocessing(name):
    """One build per backbone (seconds each at 384): Keras' own parameter count plus the head, and the
    pixels the backbone receives are exactly keras.applications.<family>.preprocess_input of the tiled image."""
    constructor, preprocess_input = LEADERBOARD[name]
    # Convolutional weights do not depend on the input size, so the reference is built small.
    reference = constructor(include_top=False, weights=None, input_shape=(64, 64, 3))
    model = build_model(name, 384, weights=None)
    channels = reference.output_shape[-1]
    assert model.count_params() == reference.count_params() + channels + 1
    assert model.get_layer("features").output.shape == (None, 12, 12, channels)
    assert model.get_layer("backbone").count_params() == reference.count_params()

    upto_preprocess = keras.Model(model.input, model.get_layer("preprocess").output)
    gray = np.full((2, 384, 384, 1), 200.0, np.float32)
    gray[1] = np.linspace(0, 255, 384 * 384, dtype=np.float32).reshape(384, 384, 1)
    expected = preprocess_input(np.repeat(gray, 3, axis=-1))
    np.testing.assert_allclose(np.asarray(upto_preprocess(gray)), expected, rtol=1e-5, atol=1e-4)
    # Channel order matters once channels differ (RGB -> BGR for caffe).
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    layer = BackbonePreprocess(BACKBONES[name].preprocessing)
    np.testing.assert_allclose(np.asarray(layer(rgb)), preprocess_input(rgb.copy()), rtol=1e-5, atol=1e-4)
    if name == "efficientnetb5":
        # preprocess_input is the identity: EfficientNet rescales inside its own graph.
        kinds = [type(layer).__name__ for layer in model.get_layer("backbone").layers[1:3]]
        assert kinds == ["Rescaling", "Normalization"]
    keras.backend.clear_session()


@pytest.mark.parametrize("name", ["tinycnn", "tinyresnet"])
def test_small_backbone_round_trips_through_keras_file(name, tmp_path):
    model = build_model(name, 32, weights=None)
    assert [model.get_layer(n).name for n in ("backbone", "features", "logit", "probability")]
    assert model.input.shape == (None, 32, 32, 1) and model.output.shape == (None, 1)
    images = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 1)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_small_backbones_standardise_each_image():
    """Per image: minus its mean, over its standard deviation (+1 grey level), so exposure drops out."""
    model = build_model("tinycnn", 32, weights=None)
    upto_preprocess = keras.Model(model.input, model.get_layer("preprocess").output)
    gray = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    gray[1] = gray[1] * 0.5 + 60
    rgb = np.repeat(gray, 3, axis=-1)
    mean = rgb.mean(axis=(1, 2, 3), keepdims=True)
    expected = (rgb - mean) / (rgb.std(axis=(1, 2, 3), keepdims=True) + 1.0)
    np.testing.assert_allclose(np.asarray(upto_preprocess(gray)), expected, rtol=1e-4, atol=1e-4)


def test_small_backbone_with_imagenet_weights_is_a_config_error():
    with pytest.raises(ConfigError, match="weights: tinycnn has no pretrained weights"):
        build_model("tinycnn", 32, weights="imagenet")


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown backbone 'vgg16'"):
        build_model("vgg16", 32)


def test_imagenet_offline_says_which_file_to_place_where(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path))
    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", offline)
    with pytest.raises(ArtifactError) as caught:
        build_model("resnet50", 32, weights="imagenet")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("weights: imagenet: cannot get resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert "md5 4d473c1dd8becc155b73f8504c6f6626" in message
    assert str(tmp_path / "models") in message


def test_efficientnet_weights_path_must_be_the_keras_imagenet_file(tmp_path):
    fake = tmp_path / "efficientnetb5_notop.h5"
    fake.write_bytes(b"not the weights")
    with pytest.raises(ConfigError, match=r"weights: .*efficientnetb5_notop.h5 has md5 [0-9a-f]{32}, not that of"):
        build_model("efficientnetb5", 32, weights=str(tmp_path))


def test_missing_weights_file_in_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"densenet201_weights_tf_dim_ordering_tf_kernels_notop\.h5"):
        build_model("densenet201", 32, weights=str(tmp_path))


def test_local_raw_weights_file_is_placed_where_keras_looks(tmp_path, monkeypatch):
    """The EfficientNet trap: a local file is linked into the Keras cache so weights='imagenet' still applies."""
    source = tmp_path / "mine.h5"
    source.write_bytes(b"weights bytes")
    (tmp_path / "home").mkdir()
    info = BackboneInfo("fake", "raw", 32, False, "fake_notop.h5", hashlib.md5(b"weights bytes").hexdigest())
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path / "home"))
    backbones._place_in_keras_cache(info, source)
    placed = tmp_path / "home" / "models" / "fake_notop.h5"
    assert placed.read_bytes() == b"weights bytes"
    assert backbones._keras_weights(info, str(source)) == "imagenet"
