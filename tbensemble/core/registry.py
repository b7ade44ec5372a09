"""Backbone names and their static facts, importable without TensorFlow (config validation, engine)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneInfo:
    """What every layer may know about a backbone without building it."""

    name: str
    preprocessing: str
    """caffe (BGR mean subtraction), torch (ImageNet mean/std on 0-1), raw (rescaling inside), unit (÷255),
    standardize (per image: minus its mean, over its standard deviation; removes exposure differences)."""
    default_size: int
    leaderboard: bool
    imagenet_file: str | None = None
    """The Keras ImageNet no-top weights file (looked up in ``$KERAS_HOME/models``); None: no pretrained weights."""
    imagenet_md5: str | None = None
    """Its MD5, as keras.applications checks it (copied from the installed Keras 3.15 source)."""


BACKBONES: dict[str, BackboneInfo] = {
    "resnet50": BackboneInfo(
        "resnet50",
        "caffe",
        384,
        leaderboard=True,
        imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        imagenet_md5="4d473c1dd8becc155b73f8504c6f6626",
    ),
    "densenet201": BackboneInfo(
        "densenet201",
        "torch",
        384,
        leaderboard=True,
        imagenet_file="densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
        imagenet_md5="c13680b51ded0fb44dff2d8f86ac8bb1",
    ),
    "efficientnetb5": BackboneInfo(
        "efficientnetb5",
        "raw",
        384,
        leaderboard=True,
        imagenet_file="efficientnetb5_notop.h5",
        imagenet_md5="38879255a25d3c92d5e44e04ae6cec6f",
    ),
    "tinycnn": BackboneInfo("tinycnn", "standardize", 128, leaderboard=False),
    "tinyresnet": BackboneInfo("tinyresnet", "standardize", 128, leaderboard=False),
}
BACKBONE_NAMES: tuple[str, ...] = tuple(BACKBONES)
