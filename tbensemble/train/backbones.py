"""Backbones as one Keras model each: raw 0-255 grayscale in, TB probability out.

Preprocessing lives inside the model (serialisable layers), so the exported ONNX graph takes raw pixels and
no caller can normalise twice or not at all. The backbone is one nested layer named ``backbone`` (warm-up
freezes it); ``features`` marks the last conv map and ``logit``/``probability`` the head (export and CAM
rebuild a three-output model from these names).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from tbensemble.core.errors import ArtifactError, ConfigError
from tbensemble.core.registry import BACKBONE_NAMES, BACKBONES, PREPROCESSING_MODES, BackboneInfo

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="tbensemble")
class GrayToRGB(keras.layers.Layer):
    """Tile one grayscale channel to the three channels ImageNet backbones expect."""

    def call(self, inputs):
        return keras.ops.concatenate([inputs, inputs, inputs], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


@keras.saving.register_keras_serializable(package="tbensemble")
class BackbonePreprocess(keras.layers.Layer):
    """The backbone's own input normalisation on raw 0-255 RGB (what ``keras.applications.*.preprocess_input``
    does), kept in the graph and in float32 even under mixed precision."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"preprocessing mode {mode!r} is not one of {PREPROCESSING_MODES}")
        self.mode = mode

    def call(self, inputs):
        ops = keras.ops
        if self.mode == "caffe":
            bgr = ops.take(inputs, [2, 1, 0], axis=-1)
            return bgr - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=inputs.dtype)
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=inputs.dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=inputs.dtype)
            return (inputs / 255.0 - mean) / std
        if self.mode == "unit":
            return inputs / 255.0
        if self.mode == "standardize":
            mean = ops.mean(inputs, axis=(1, 2, 3), keepdims=True)
            std = ops.std(inputs, axis=(1, 2, 3), keepdims=True)
            return (inputs - mean) / (std + 1.0)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def keras_models_dir() -> Path:
    """Where keras.applications looks for (and downloads) weight files: ``$KERAS_HOME/models`` or
    ``~/.keras/models``, with Keras' own fallback to ``/tmp/.keras`` when that home is not writable."""
    from keras.src.backend.config import keras_home

    home = os.path.expanduser(keras_home())
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp", ".keras")
    return Path(home) / "models"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _info(name: str) -> BackboneInfo:
    if name not in BACKBONES:
        raise ConfigError(f"backbones: unknown backbone {name!r}; allowed: {', '.join(BACKBONE_NAMES)}")
    return BACKBONES[name]


def constructor_of(info: BackboneInfo) -> Callable[..., keras.Model]:
    """The registry's dotted constructor name, imported now (TensorFlow is only needed from here on)."""
    module, _, attribute = info.constructor.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def _place_in_keras_cache(info: BackboneInfo, source: Path) -> None:
    """Make ``source`` the file Keras finds for ``weights="imagenet"`` (a symlink in its cache).

    EfficientNet adds its input-rescaling fix only when ``weights == "imagenet"``; loading the same file
    by path silently changes preprocessing. So a local file is placed where Keras looks, and the model is
    still built with ``"imagenet"``.
    """
    target = keras_models_dir() / str(info.imagenet_file)
    if target.is_file() and _md5(target) == info.imagenet_md5:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(source.resolve(), tmp)
    os.replace(tmp, target)


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's starting weights come from: what the constructor takes (None, "imagenet" or the
    official file's path), or a file of any origin whose arrays are copied in after a shape check."""

    constructor_weights: str | None = None
    transfer: Path | None = None


def _source_file(info: BackboneInfo, path: Path) -> Path:
    """A weights folder holds, per backbone, the official ImageNet file or ``<name>.keras`` / ``<name>.weights.h5``."""
    if not path.is_dir():
        if not path.is_file():
            raise ConfigError(f"weights: {path} not found")
        return path
    names = [n for n in (info.imagenet_file, f"{info.name}.keras", f"{info.name}.weights.h5") if n]
    for name in names:
        if (path / name).is_file():
            return path / name
    raise ConfigError(f"weights: {path} holds no weights for {info.name} (one of: {', '.join(names)})")


def weights_source(info: BackboneInfo, weights: str | None) -> WeightsSource:
    """Translate the config's ``weights`` (imagenet | None | PATH) for one backbone, checking what can be
    checked without TensorFlow work: the official ImageNet files by MD5, any other file by its kind."""
    if weights is None:
        return WeightsSource()
    if weights == "imagenet":
        if info.imagenet_file is None:
            raise ConfigError(
                f"weights: {info.name} has no ImageNet weights; use weights: null or a path to weights of its architecture"
            )
        return WeightsSource("imagenet")
    path = _source_file(info, Path(weights))
    if info.imagenet_file is not None and path.name == info.imagenet_file:
        actual = _md5(path)
        if actual != info.imagenet_md5:
            raise ConfigError(
                f"weights: {path} has md5 {actual}, not that of Keras' {info.imagenet_file} ({info.imagenet_md5}); "
                "other weights of this architecture go in a .keras or .weights.h5 file"
            )
        if info.preprocessing == "raw":
            _place_in_keras_cache(info, path)
            return WeightsSource("imagenet")
        return WeightsSource(str(path))
    if path.suffix == ".keras" or path.name.endswith(".h5"):
        return WeightsSource(transfer=path)
    raise ConfigError(f"weights: {path} is neither a .keras model nor an .h5 weights file")


def _shape_mismatch(reference: keras.Model, source: keras.Model) -> str | None:
    """None when ``source`` holds exactly ``reference``'s arrays by shape, else what differs first."""
    ours, theirs = reference.weights, source.weights
    for mine, other in zip(ours, theirs, strict=False):
        if tuple(mine.shape) != tuple(other.shape):
            return (
                f"{other.path} is {tuple(other.shape)} where {reference.name} needs {tuple(mine.shape)} ({mine.path})"
            )
    if len(ours) != len(theirs):
        return f"it holds {len(theirs)} weight arrays, the architecture {len(ours)}"
    return None


def _backbone_of(model: keras.Model) -> keras.Model:
    """The bare backbone of a loaded file: the ``backbone`` layer of a tbensemble classifier, else the model."""
    try:
        inner = model.get_layer("backbone")
    except ValueError:
        return model
    return inner if isinstance(inner, keras.Model) else model


def _rebuilt(source: keras.Model, shape: tuple[int, int, int]) -> keras.Model:
    """The same functional graph (weightless layers included, e.g. EfficientNet's ImageNet rescaling) at a new
    input size, named ``backbone``, in the current dtype policy (mixed precision on a GPU); convolutional
    weights do not depend on the input size."""
    config = source.get_config()
    config["name"] = "backbone"
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = [None, *shape]
        else:
            layer["config"].pop("dtype", None)
    model = keras.Model.from_config(config)
    model.set_weights(source.get_weights())
    return model


def _float32_policies(config: Any) -> Any:
    """A model config with every layer's dtype policy set to float32 (nested backbones included)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def float32_clone(model: keras.Model) -> keras.Model:
    """The same graph and weights in float32 (a model trained with mixed precision, for export): rebuilt from
    its own config, so weightless layers that a fresh build would lack (EfficientNet's ImageNet rescaling)
    stay."""
    clone = keras.Model.from_config(_float32_policies(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone


def _transferred(info: BackboneInfo, path: Path, shape: tuple[int, int, int]) -> keras.Model:
    """The backbone built from weights of any origin: a .keras model (a previous run's fold model, or a bare
    backbone) or an .h5 weights file; refused in one line when its arrays do not fit the architecture."""
    reference = constructor_of(info)(include_top=False, weights=None, input_shape=shape, name="backbone")
    if path.suffix == ".keras":
        try:
            source = _backbone_of(keras.models.load_model(path, compile=False))
        except Exception as exc:  # a foreign or damaged file: Keras raises many kinds
            raise ConfigError(f"weights: {path} cannot be loaded as a Keras model ({_first_line(exc)})") from None
        mismatch = _shape_mismatch(reference, source)
        if mismatch:
            raise ConfigError(f"weights: {path} does not fit {info.name}: {mismatch}")
        return _rebuilt(source, shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            reference.load_weights(path)
        except Exception as exc:  # Keras reports a mismatch as ValueError, a foreign file as OSError or KeyError
            raise ConfigError(f"weights: {path} does not fit {info.name}: {_first_line(exc)}") from None
    # Keras only warns when it skips parts of the file and leaves those layers freshly initialised.
    skipped = [w for w in caught if "Skipping" in str(w.message) or "retain" in str(w.message)]
    if skipped:
        raise ConfigError(
            f"weights: {path} does not fit {info.name}: {_first_line(Exception(str(skipped[0].message)))}"
        )
    return reference


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_weights(names: Sequence[str], weights: str | None) -> None:
    """Fail before any training when ``weights`` cannot serve one of ``names``: imagenet for a backbone without
    it, a wrong official file, or a file whose arrays do not fit (checked at 32 px; shapes do not depend on it)."""
    for name in names:
        info = _info(name)
        source = weights_source(info, weights)
        if source.transfer is not None:
            _transferred(info, source.transfer, (32, 32, 3))
            keras.backend.clear_session()


_BN_MOMENTUM = 0.9
"""Keras' default 0.99 leaves the moving statistics far from the batch ones after the few hundred steps a
small CPU run takes, so validation (inference mode) would lag training by epochs."""


def _conv_bn_relu(x, filters: int, name: str = ""):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _small_net_arguments(include_top: bool, weights: str | None) -> None:
    if include_top or weights is not None:
        raise ValueError("the small backbones have no top and no built-in weights (a weights file is loaded after)")


def tiny_cnn(
    include_top: bool = False,
    weights: str | None = None,
    input_shape: tuple[int, int, int] = (128, 128, 3),
    name: str = "backbone",
) -> keras.Model:
    """A plain VGG-style net (about 0.2 M parameters): fast enough to train k folds on 2 CPU cores."""
    _small_net_arguments(include_top, weights)
    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate((16, 32, 64, 96)):
        x = _conv_bn_relu(x, filters, name=f"block{i + 1}a")
        x = keras.layers.MaxPooling2D(name=f"block{i + 1}_pool")(x)
    x = _conv_bn_relu(x, 128, name="top")
    return keras.Model(inputs, x, name=name)


def tiny_vgg(
    include_top: bool = False,
    weights: str | None = None,
    input_shape: tuple[int, int, int] = (128, 128, 3),
    name: str = "backbone",
) -> keras.Model:
    """tinycnn with two convs per max-pooled stage (about 0.3 M parameters): tinyresnet's layout without its
    shortcuts, so the quickstart's two members are of the same strength.

    On ``scripts/bench_ensemble.py``'s seeds 2 and 4 (5 folds, 1,000 test phantoms each) it scored 0.9823 /
    0.9819, tinyresnet 0.9822 / 0.9859 and tinycnn 0.9728 / 0.9695: with tinycnn beside tinyresnet the
    equally weighted ensemble fell below tinyresnet alone, beyond noise on two seeds of five (issue 11)."""
    _small_net_arguments(include_top, weights)
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 16, name="stem")
    x = keras.layers.MaxPooling2D(name="stem_pool")(x)
    for i, filters in enumerate((32, 64, 96)):
        x = _conv_bn_relu(x, filters, name=f"stage{i + 1}a")
        x = _conv_bn_relu(x, filters, name=f"stage{i + 1}b")
        x = keras.layers.MaxPooling2D(name=f"stage{i + 1}_pool")(x)
    x = _conv_bn_relu(x, 128, name="top")
    return keras.Model(inputs, x, name=name)


def _residual_block(x, filters: int, name: str):
    """Two 3x3 convs beside a 1x1-projected shortcut, at the input's resolution."""
    shortcut = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(x)
    shortcut = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    y = _conv_bn_relu(x, filters, name=f"{name}_a")
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_b_bn")(y)
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([shortcut, y]))


def tiny_resnet(
    include_top: bool = False,
    weights: str | None = None,
    input_shape: tuple[int, int, int] = (128, 128, 3),
    name: str = "backbone",
) -> keras.Model:
    """A small residual net (about 0.3 M parameters): tinycnn's layout, with each stage a two-conv residual block
    that is max-pooled after, rather than a strided conv.

    Max pooling keeps a small bright lesion wherever it falls; a strided conv sees one position in four. On
    ``scripts/bench_ensemble.py``'s seeds 1, 2, 3 (5 folds, 1,000 test phantoms each) the earlier strided
    version scored 0.9882 / 0.9620 / 0.9844, tinycnn 0.9932 / 0.9728 / 0.9893, and this one 0.9913 / 0.9822 /
    0.9916. The quickstart pairs it with tinyvgg, which is of its strength; tinycnn is not (issue 11)."""
    _small_net_arguments(include_top, weights)
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 16, name="stem")
    x = keras.layers.MaxPooling2D(name="stem_pool")(x)
    for i, filters in enumerate((32, 64, 96)):
        x = _residual_block(x, filters, name=f"stage{i + 1}")
        x = keras.layers.MaxPooling2D(name=f"stage{i + 1}_pool")(x)
    x = _conv_bn_relu(x, 128, name="top")
    return keras.Model(inputs, x, name=name)


def build_backbone(name: str, image_size: int, weights: str | None = None) -> keras.Model:
    """The bare backbone (no top, 3-channel input, its own preprocessing *not* included), named ``backbone``."""
    info = _info(name)
    source = weights_source(info, weights)
    shape = (image_size, image_size, 3)
    if source.transfer is not None:
        return _transferred(info, source.transfer, shape)
    try:
        return constructor_of(info)(
            include_top=False, weights=source.constructor_weights, input_shape=shape, name="backbone"
        )
    except Exception as exc:
        if source.constructor_weights != "imagenet":
            raise
        cached = keras_models_dir() / str(info.imagenet_file)
        if cached.is_file() and _md5(cached) == info.imagenet_md5:
            raise
        raise ArtifactError(
            f"weights: imagenet: cannot get {info.imagenet_file} ({_first_line(exc)}); place that file "
            f"(md5 {info.imagenet_md5}) in {keras_models_dir()} (or $KERAS_HOME/models), "
            "or set weights to its path or folder"
        ) from None


def build_model(name: str, image_size: int, weights: str | None = None, dropout: float = 0.2) -> keras.Model:
    """The full classifier: ``image`` (N, S, S, 1) float32 raw 0-255 → ``probability`` (N, 1).

    With pretrained weights the backbone runs in inference mode (frozen batch-norm statistics), the usual
    Keras fine-tuning recipe for small batches; from scratch its batch-norms train normally.
    """
    info = _info(name)
    backbone = build_backbone(name, image_size, weights)
    image = keras.Input((image_size, image_size, 1), name="image", dtype="float32")
    x = GrayToRGB(name="gray_to_rgb", dtype="float32")(image)
    x = BackbonePreprocess(info.preprocessing, name="preprocess", dtype="float32")(x)
    x = backbone(x, training=False) if weights is not None else backbone(x)
    x = keras.layers.Identity(name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logit = keras.layers.Dense(1, name="logit", dtype="float32")(x)
    probability = keras.layers.Activation("sigmoid", name="probability", dtype="float32")(logit)
    return keras.Model(image, probability, name=f"tbens_{name}")
