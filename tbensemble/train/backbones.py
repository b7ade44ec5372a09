"""Backbones as one Keras model each: raw 0-255 grayscale in, TB probability out.

Preprocessing lives inside the model (serialisable layers), so the exported ONNX graph takes raw pixels and
no caller can normalise twice or not at all. The backbone is one nested layer named ``backbone`` (warm-up
freezes it); ``features`` marks the last conv map and ``logit``/``probability`` the head (export and CAM
rebuild a three-output model from these names).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras

from tbensemble.core.errors import ArtifactError, ConfigError
from tbensemble.core.registry import BACKBONE_NAMES, BACKBONES, BackboneInfo

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
PREPROCESSING_MODES = ("caffe", "torch", "raw", "unit", "standardize")


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


def _place_in_keras_cache(info: BackboneInfo, source: Path) -> None:
    """Make ``source`` the file Keras finds for ``weights="imagenet"`` (a symlink in its cache).

    EfficientNet adds its input-rescaling fix only when ``weights == "imagenet"``; loading the same file
    by path silently changes preprocessing. So a local file is placed where Keras looks, and the model is
    still built with ``"imagenet"``. The MD5 must match, or Keras would try to download a replacement.
    """
    actual = _md5(source)
    if actual != info.imagenet_md5:
        raise ConfigError(
            f"weights: {source} has md5 {actual}, not that of Keras' {info.imagenet_file} ({info.imagenet_md5}); "
            f"{info.name} only loads that exact file"
        )
    target = keras_models_dir() / str(info.imagenet_file)
    if target.is_file() and _md5(target) == info.imagenet_md5:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(source.resolve(), tmp)
    os.replace(tmp, target)


def _keras_weights(info: BackboneInfo, weights: str | None) -> str | None:
    """Translate the config's ``weights`` (imagenet | None | PATH) into what the Keras constructor takes."""
    if weights is None:
        return None
    if info.imagenet_file is None:
        raise ConfigError(
            f"weights: {info.name} has no pretrained weights ({weights!r} given); use weights: null for it"
        )
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights)
    if path.is_dir():
        path = path / info.imagenet_file
    if not path.is_file():
        raise ConfigError(f"weights: {path} not found; a weights folder must hold {info.imagenet_file}")
    if info.preprocessing == "raw":
        _place_in_keras_cache(info, path)
        return "imagenet"
    return str(path)


def check_weights(names: Sequence[str], weights: str | None) -> None:
    """Fail before any training when ``weights`` cannot serve one of ``names`` (e.g. imagenet for tinycnn)."""
    for name in names:
        _keras_weights(_info(name), weights)


def _imagenet_constructor(name: str) -> Callable[..., keras.Model]:
    return {
        "resnet50": keras.applications.ResNet50,
        "densenet201": keras.applications.DenseNet201,
        "efficientnetb5": keras.applications.EfficientNetB5,
    }[name]


_BN_MOMENTUM = 0.9
"""Keras' default 0.99 leaves the moving statistics far from the batch ones after the few hundred steps a
small CPU run takes, so validation (inference mode) would lag training by epochs."""


def _conv_bn_relu(x, filters: int, strides: int = 1, name: str = ""):
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def tiny_cnn(input_shape: tuple[int, int, int]) -> keras.Model:
    """A plain VGG-style net (about 0.1 M parameters): fast enough to train k folds on 2 CPU cores."""
    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate((16, 32, 64, 96)):
        x = _conv_bn_relu(x, filters, name=f"block{i + 1}a")
        x = keras.layers.MaxPooling2D(name=f"block{i + 1}_pool")(x)
    x = _conv_bn_relu(x, 128, name="top")
    return keras.Model(inputs, x, name="backbone")


def tiny_resnet(input_shape: tuple[int, int, int]) -> keras.Model:
    """A small residual net (pooled stem, then three strided residual stages): a second, different CPU member.

    Shortcuts average-pool before their 1x1 projection (ResNet-D): a strided 1x1 conv would see only one
    pixel in four and could step over a small lesion."""
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 16, name="stem")
    x = keras.layers.MaxPooling2D(name="stem_pool")(x)
    for i, filters in enumerate((32, 64, 128)):
        shortcut = keras.layers.AveragePooling2D(2, name=f"stage{i + 1}_pool")(x)
        shortcut = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"stage{i + 1}_proj")(shortcut)
        shortcut = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"stage{i + 1}_proj_bn")(shortcut)
        y = _conv_bn_relu(x, filters, strides=2, name=f"stage{i + 1}_a")
        y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"stage{i + 1}_b_conv")(y)
        y = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"stage{i + 1}_b_bn")(y)
        x = keras.layers.ReLU(name=f"stage{i + 1}_out")(keras.layers.Add(name=f"stage{i + 1}_add")([shortcut, y]))
    return keras.Model(inputs, x, name="backbone")


_SMALL: dict[str, Callable[[tuple[int, int, int]], keras.Model]] = {"tinycnn": tiny_cnn, "tinyresnet": tiny_resnet}


def build_backbone(name: str, image_size: int, weights: str | None = None) -> keras.Model:
    """The bare backbone (no top, 3-channel input, its own preprocessing *not* included), named ``backbone``."""
    info = _info(name)
    keras_weights = _keras_weights(info, weights)
    shape = (image_size, image_size, 3)
    if name in _SMALL:
        return _SMALL[name](shape)
    constructor = _imagenet_constructor(name)
    try:
        return constructor(include_top=False, weights=keras_weights, input_shape=shape, name="backbone")
    except Exception as exc:
        if keras_weights != "imagenet":
            raise
        cached = keras_models_dir() / str(info.imagenet_file)
        if cached.is_file() and _md5(cached) == info.imagenet_md5:
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(
            f"weights: imagenet: cannot get {info.imagenet_file} ({reason}); place that file "
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
