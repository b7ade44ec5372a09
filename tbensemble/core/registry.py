"""Backbones: one entry each, holding every fact about it, importable without TensorFlow.

Adding a backbone is one ``BackboneInfo`` in ``BACKBONES``: training resolves ``constructor`` (a dotted name,
imported only there), config validation and the engine read the rest, and the tests run over every entry.
"""

from __future__ import annotations

from dataclasses import dataclass

PREPROCESSING_MODES = ("caffe", "torch", "raw", "unit", "standardize")
DEFAULT_PARITY_TOLERANCE = 1e-4
"""Largest |Keras − ONNX Runtime| probability accepted at export; float32 graphs of these sizes stay well under."""


@dataclass(frozen=True)
class BackboneInfo:
    """What every layer may know about a backbone without building it."""

    name: str
    constructor: str
    """Dotted name of a callable with the ``keras.applications`` signature
    ``(include_top=False, weights=..., input_shape=..., name=...)`` returning the bare conv backbone."""
    preprocessing: str
    """caffe (BGR mean subtraction), torch (ImageNet mean/std on 0-1), raw (rescaling inside), unit (÷255),
    standardize (per image: minus its mean, over its standard deviation; removes exposure differences)."""
    default_size: int
    leaderboard: bool
    imagenet_file: str | None = None
    """The Keras ImageNet no-top weights file (looked up in ``$KERAS_HOME/models``); None: no ImageNet weights."""
    imagenet_md5: str | None = None
    """Its MD5, as keras.applications checks it (copied from the installed Keras 3.15 source)."""
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE
    """Export refuses an ONNX file whose probabilities differ from Keras by more than this."""
    relative_step_cost: float = 1.0
    """Seconds of one training step relative to ResNet50's at the same image and batch size, as measured by
    ``scripts/bench_train_step.py`` (2-core CPU, float32, 384 px, batch 8, steps interleaved); ``train-folds
    --ray`` submits the dearest jobs first by it, so only the order of these values matters there."""

    def __post_init__(self) -> None:
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(f"backbone {self.name}: preprocessing {self.preprocessing!r} not in {PREPROCESSING_MODES}")
        if (self.imagenet_file is None) != (self.imagenet_md5 is None):
            raise ValueError(f"backbone {self.name}: imagenet_file and imagenet_md5 go together")
        if not self.relative_step_cost > 0:
            raise ValueError(f"backbone {self.name}: relative_step_cost must be > 0, got {self.relative_step_cost}")
        if "." not in self.constructor:
            raise ValueError(f"backbone {self.name}: constructor {self.constructor!r} is not a dotted name")


def _registry(*entries: BackboneInfo) -> dict[str, BackboneInfo]:
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"backbone registry lists a name twice: {names}")
    return {entry.name: entry for entry in entries}


BACKBONES: dict[str, BackboneInfo] = _registry(
    BackboneInfo(
        "resnet50",
        constructor="keras.applications.ResNet50",
        preprocessing="caffe",
        default_size=384,
        leaderboard=True,
        imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        imagenet_md5="4d473c1dd8becc155b73f8504c6f6626",
    ),
    BackboneInfo(
        "densenet201",
        constructor="keras.applications.DenseNet201",
        preprocessing="torch",
        default_size=384,
        leaderboard=True,
        imagenet_file="densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
        imagenet_md5="c13680b51ded0fb44dff2d8f86ac8bb1",
        relative_step_cost=1.4,
    ),
    BackboneInfo(
        "efficientnetb5",
        constructor="keras.applications.EfficientNetB5",
        preprocessing="raw",
        default_size=384,
        leaderboard=True,
        imagenet_file="efficientnetb5_notop.h5",
        imagenet_md5="38879255a25d3c92d5e44e04ae6cec6f",
        # A from-scratch EfficientNetB5 trained for a few steps (the leaderboard-path test) is numerically
        # fragile: Keras alone moved such a model's probabilities by up to 4.5e-4 between a batch of 16 and of 1,
        # and its export measured 1e-6, 8.1e-5, 1.1e-4 and 1.06e-3 on four runs. A broken export is off by
        # orders more (a lost rescaling layer, statistics of 4 images: |Δ logit| 4.6e4).
        parity_tolerance=2e-3,
        relative_step_cost=1.6,
    ),
    BackboneInfo(
        "tinycnn", "tbensemble.train.backbones.tiny_cnn", "standardize", 128, leaderboard=False, relative_step_cost=0.08
    ),
    BackboneInfo(
        "tinyvgg", "tbensemble.train.backbones.tiny_vgg", "standardize", 128, leaderboard=False, relative_step_cost=0.11
    ),
    BackboneInfo(
        "tinyresnet",
        "tbensemble.train.backbones.tiny_resnet",
        "standardize",
        128,
        leaderboard=False,
        relative_step_cost=0.14,
    ),
)
BACKBONE_NAMES: tuple[str, ...] = tuple(BACKBONES)


def list_backbones(leaderboard: bool | None = None) -> list[str]:
    """Registered names, optionally only the leaderboard (ImageNet) ones or only the small CPU ones."""
    return [name for name, info in BACKBONES.items() if leaderboard is None or info.leaderboard == leaderboard]
