"""Backbone names and their static facts, importable without TensorFlow (config validation, engine)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneInfo:
    """What every layer may know about a backbone without building it."""

    name: str
    preprocessing: str
    """caffe (BGR mean subtraction), torch (ImageNet mean/std on 0-1), raw (rescaling inside), unit (÷255)."""
    default_size: int
    leaderboard: bool


BACKBONES: dict[str, BackboneInfo] = {
    "resnet50": BackboneInfo("resnet50", "caffe", 384, leaderboard=True),
    "densenet201": BackboneInfo("densenet201", "torch", 384, leaderboard=True),
    "efficientnetb5": BackboneInfo("efficientnetb5", "raw", 384, leaderboard=True),
    "tinycnn": BackboneInfo("tinycnn", "unit", 128, leaderboard=False),
    "tinyresnet": BackboneInfo("tinyresnet", "unit", 128, leaderboard=False),
}
BACKBONE_NAMES: tuple[str, ...] = tuple(BACKBONES)
