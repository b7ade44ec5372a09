"""Backbones: structure, parameter counts, the preprocessing each backbone needs, and weights handling."""

from __future__ import annotations

import urllib.error

import keras
import numpy as np
import pytest

from tbensemble.core.errors import ArtifactError, ConfigError
from tbensemble.core.registry import BACKBONES, list_backbones
from tbensemble.train import backbones
from tbensemble.train.backbones import BackbonePreprocess, build_model, constructor_of

KERAS_PREPROCESSING = {
    "caffe": lambda x: keras.applications.imagenet_utils.preprocess_input(x, mode="caffe"),
    "torch": lambda x: keras.applications.imagenet_utils.preprocess_input(x, mode="torch"),
    "raw": lambda x: x,
}
"""What keras.applications.<family>.preprocess_input does for each mode the registry may name."""


@pytest.mark.parametrize("name", list_backbones())
def test_registry_entry_builds_a_bare_backbone(name):
    """Every entry: its constructor resolves and gives a 3-channel backbone named ``backbone`` with a conv map."""
    info = BACKBONES[name]
    backbone = constructor_of(info)(include_top=False, weights=None, input_shape=(32, 32, 3), name="backbone")
    assert backbone.name == "backbone" and backbone.input_shape == (None, 32, 32, 3)
    assert len(backbone.output_shape) == 4
    assert info.default_size >= 32 and info.parity_tolerance > 0
    keras.backend.clear_session()


@pytest.mark.parametrize("name", list_backbones(leaderboard=True))
def test_leaderboard_backbone_at_default_size_counts_and_preprocessing(name):
    """One build per backbone (seconds each at 384): Keras' own parameter count plus the head, and the
    pixels the backbone receives are exactly keras.applications' preprocess_input of the tiled image."""
    info = BACKBONES[name]
    size = info.default_size
    # Convolutional weights do not depend on the input size, so the reference is built small.
    reference = constructor_of(info)(include_top=False, weights=None, input_shape=(64, 64, 3))
    model = build_model(name, size, weights=None)
    channels = reference.output_shape[-1]
    assert model.count_params() == reference.count_params() + channels + 1
    assert model.get_layer("features").output.shape == (None, size // 32, size // 32, channels)
    assert model.get_layer("backbone").count_params() == reference.count_params()

    preprocess_input = KERAS_PREPROCESSING[info.preprocessing]
    upto_preprocess = keras.Model(model.input, model.get_layer("preprocess").output)
    gray = np.full((2, size, size, 1), 200.0, np.float32)
    gray[1] = np.linspace(0, 255, size * size, dtype=np.float32).reshape(size, size, 1)
    expected = preprocess_input(np.repeat(gray, 3, axis=-1))
    np.testing.assert_allclose(np.asarray(upto_preprocess(gray)), expected, rtol=1e-5, atol=1e-4)
    # Channel order matters once channels differ (RGB -> BGR for caffe).
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    layer = BackbonePreprocess(info.preprocessing)
    np.testing.assert_allclose(np.asarray(layer(rgb)), preprocess_input(rgb.copy()), rtol=1e-5, atol=1e-4)
    if info.preprocessing == "raw":
        # Raw input: the backbone rescales inside its own graph.
        kinds = {type(layer).__name__ for layer in model.get_layer("backbone").layers[1:3]}
        assert "Rescaling" in kinds
    keras.backend.clear_session()


@pytest.mark.parametrize("name", list_backbones(leaderboard=False))
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
    with pytest.raises(ConfigError, match="weights: tinycnn has no ImageNet weights"):
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


@pytest.mark.parametrize("name", [n for n in list_backbones() if BACKBONES[n].imagenet_file])
def test_official_imagenet_file_must_have_its_md5(name, tmp_path):
    fake = tmp_path / str(BACKBONES[name].imagenet_file)
    fake.write_bytes(b"not the weights")
    with pytest.raises(ConfigError, match=rf"weights: .*{fake.name} has md5 [0-9a-f]{{32}}, not that of"):
        build_model(name, 32, weights=str(tmp_path))


def test_weights_folder_without_a_file_for_the_backbone_names_what_it_looks_for(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"holds no weights for densenet201 \(one of: densenet201_weights_tf.*h5, densenet201\.keras, densenet201\.weights\.h5\)",
    ):
        build_model("densenet201", 32, weights=str(tmp_path))


def test_local_raw_weights_file_is_placed_where_keras_looks(tmp_path, monkeypatch):
    """The EfficientNet trap: a local file is linked into the Keras cache so weights='imagenet' still applies."""
    info = BACKBONES["efficientnetb5"]
    source = tmp_path / "weights" / str(info.imagenet_file)
    source.parent.mkdir()
    source.write_bytes(b"weights bytes")
    (tmp_path / "home").mkdir()
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path / "home"))
    monkeypatch.setattr(backbones, "_md5", lambda path: info.imagenet_md5)
    assert backbones.weights_source(info, str(source)) == backbones.WeightsSource("imagenet")
    placed = tmp_path / "home" / "models" / str(info.imagenet_file)
    assert placed.read_bytes() == b"weights bytes"


def _trained_looking(name: str, size: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = build_model(name, size, weights=None)
    for variable in model.weights:
        variable.assign(np.random.default_rng(seed).normal(0, 0.1, variable.shape).astype("float32"))
    return model


@pytest.mark.parametrize("kind", ["run model", "bare backbone", "weights file"])
def test_weights_of_any_origin_load_by_shape_at_another_size(kind, tmp_path):
    """A previous run's fold model, a bare backbone or a .weights.h5 file: same arrays, any input size."""
    source = _trained_looking("tinyresnet", 48, seed=4)
    backbone = source.get_layer("backbone")
    path = {
        "run model": tmp_path / "m.keras",
        "bare backbone": tmp_path / "b.keras",
        "weights file": tmp_path / "b.weights.h5",
    }[kind]
    if kind == "run model":
        source.save(path)
    elif kind == "bare backbone":
        backbone.save(path)
    else:
        backbone.save_weights(path)
    model = build_model("tinyresnet", 32, weights=str(path))
    loaded = model.get_layer("backbone")
    assert loaded.input_shape == (None, 32, 32, 3)
    for mine, theirs in zip(loaded.get_weights(), backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_weights_folder_holds_one_file_per_backbone(tmp_path):
    source = _trained_looking("tinycnn", 32, seed=5)
    source.save(tmp_path / "tinycnn.keras")
    model = build_model("tinycnn", 32, weights=str(tmp_path))
    np.testing.assert_array_equal(
        model.get_layer("backbone").get_weights()[0], source.get_layer("backbone").get_weights()[0]
    )


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_weights_of_another_architecture_are_one_line_errors(suffix, tmp_path):
    other = build_model("tinycnn", 32, weights=None)
    path = tmp_path / f"other{suffix}"
    other.save(path) if suffix == ".keras" else other.get_layer("backbone").save_weights(path)
    with pytest.raises(ConfigError) as caught:
        build_model("tinyresnet", 32, weights=str(path))
    message = str(caught.value)
    assert message.startswith(f"weights: {path} does not fit tinyresnet: ") and "\n" not in message


def test_weights_that_are_no_model_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"weights: .*junk.keras cannot be loaded as a Keras model \("):
        build_model("tinycnn", 32, weights=str(junk))
    text = tmp_path / "weights.txt"
    text.write_text("x")
    with pytest.raises(ConfigError, match=r"weights: .*weights.txt is neither a .keras model nor an .h5 weights file"):
        build_model("tinycnn", 32, weights=str(text))
    with pytest.raises(ConfigError, match=r"weights: .*missing.keras not found"):
        build_model("tinycnn", 32, weights=str(tmp_path / "missing.keras"))


def test_rebuilt_backbone_keeps_weightless_layers_and_takes_the_new_size():
    """EfficientNet built for ImageNet has a Rescaling no weights file records; a transfer must keep it."""
    inputs = keras.Input((40, 40, 3))
    x = keras.layers.Rescaling(0.5, name="imagenet_fix")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    source = keras.Model(inputs, x, name="somename")
    source.get_layer("conv").kernel.assign(np.ones((3, 3, 3, 4), "float32"))
    rebuilt = backbones._rebuilt(source, (32, 32, 3))
    assert rebuilt.name == "backbone" and rebuilt.input_shape == (None, 32, 32, 3)
    assert [type(layer).__name__ for layer in rebuilt.layers] == [type(layer).__name__ for layer in source.layers]
    image = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(rebuilt(image))[0, :5, :5],
        np.asarray(source(np.pad(image, ((0, 0), (0, 8), (0, 8), (0, 0)))))[0, :5, :5],
        rtol=1e-5,
    )


def test_float32_clone_of_a_mixed_precision_model_keeps_graph_and_weights():
    """Export's float32 rebuild (a GPU-trained model): same layers, weights and outputs, float32 everywhere."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = _trained_looking("tinyresnet", 32, seed=6)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    clone = backbones.float32_clone(mixed)
    kinds = [type(layer).__name__ for layer in clone.get_layer("backbone").layers]
    assert kinds == [type(layer).__name__ for layer in mixed.get_layer("backbone").layers]
    assert all(layer.compute_dtype == "float32" for layer in clone.get_layer("backbone").layers)
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(clone(images)), np.asarray(mixed(images), dtype="float32"), atol=2e-2)
