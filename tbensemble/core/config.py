"""The run config: one YAML schema, validated up front so a typo fails in a second, not after an hour."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tbensemble.core.errors import ConfigError

log = logging.getLogger("tbensemble.config")

TTA_VIEWS = ("identity", "hflip", "crop90", "brighter", "darker")
"""Test-time views (numpy, in ``tbensemble.data.views``). hflip is allowed but never a default."""


@dataclass
class AugmentConfig:
    """Training-time augmentation; horizontal flip is off because a chest X-ray is not symmetric."""

    rotation_deg: float = 5.0
    shift: float = 0.05
    zoom: float = 0.10
    brightness: float = 0.10
    contrast: float = 0.10
    hflip: bool = False


@dataclass
class TrainConfig:
    """Everything ``tbens train-folds`` needs; CLI options override keys of the same name."""

    data: str = "data"
    out: str = "artifacts/run"
    backbones: list[str] = field(default_factory=lambda: ["resnet50", "densenet201", "efficientnetb5"])
    weights: str | None = "imagenet"
    image_size: int = 384
    folds: int = 5
    seed: int = 42
    batch_size: int = 16
    epochs: int = 20
    warmup_epochs: int = 2
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    lr_schedule: str = "cosine"
    """cosine: each phase decays its rate to zero over its fixed epochs; constant: no decay."""
    ema_momentum: float = 0.99
    """Exponential moving average of the weights per step (0: off). Validation and the saved model use it."""
    mixed_precision: str = "auto"
    run_eagerly: bool = False
    """Skip tracing the training graph: only for tiny smoke runs, where tracing a large backbone (about a
    minute for DenseNet201 on 2 CPU cores) costs more than its few steps."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tta: list[str] = field(default_factory=lambda: ["identity", "crop90"])
    ensemble_weights: dict[str, float] = field(default_factory=dict)
    ensemble_weighting: str = "auto"
    """How backbone weights are chosen on OOF (``core.weighting``): auto (equal unless a method wins beyond
    noise under nested cross-validation), equal, auc, greedy or stacked. ``ensemble_weights`` overrides it."""
    target_sensitivity: float = 0.90


_CHOICES: dict[str, tuple[Any, ...]] = {"mixed_precision": ("auto", "on", "off"), "lr_schedule": ("cosine", "constant")}
_POSITIVE_INTS = ("image_size", "folds", "batch_size", "epochs")
_NON_NEGATIVE_INTS = ("warmup_epochs", "seed")
_RETIRED_KEYS = ("early_stopping_patience", "reduce_lr_patience")
"""Keys of runs made before training stopped choosing epochs and rates by the validation fold (the fold then
scored as OOF). Old configs and run folders still load; the keys are dropped."""


def _fail(key: str, message: str, source: str) -> ConfigError:
    return ConfigError(f"{source}: config key '{key}' {message}")


def _check_type(key: str, value: Any, expected: Any, source: str) -> Any:
    """Coerce YAML scalars to the declared type, or fail naming the key and the type wanted."""
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected is bool and isinstance(value, bool):
        return value
    if expected is str and isinstance(value, str):
        return value
    raise _fail(key, f"must be {expected.__name__}, got {value!r}", source)


def _build_augment(raw: Any, source: str) -> AugmentConfig:
    if not isinstance(raw, dict):
        raise _fail("augment", f"must be a mapping with keys {_field_names(AugmentConfig)}", source)
    values: dict[str, Any] = {}
    hints = {f.name: f.type for f in dataclasses.fields(AugmentConfig)}
    for key, value in raw.items():
        if key not in hints:
            raise _fail(f"augment.{key}", f"is not known; allowed: {_field_names(AugmentConfig)}", source)
        expected = bool if hints[key] == "bool" else float
        values[key] = _check_type(f"augment.{key}", value, expected, source)
        if expected is float and values[key] < 0:
            raise _fail(f"augment.{key}", f"must be >= 0, got {value!r}", source)
    return AugmentConfig(**values)


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _validate(config: TrainConfig, source: str) -> None:
    """Cross-key checks that the type coercion cannot express."""
    from tbensemble.core.registry import BACKBONE_NAMES

    if not config.backbones:
        raise _fail("backbones", f"must list at least one of: {', '.join(BACKBONE_NAMES)}", source)
    for name in config.backbones:
        if name not in BACKBONE_NAMES:
            raise _fail("backbones", f"has unknown backbone {name!r}; allowed: {', '.join(BACKBONE_NAMES)}", source)
    if len(set(config.backbones)) != len(config.backbones):
        raise _fail("backbones", f"lists a backbone twice: {config.backbones}", source)
    for key in _POSITIVE_INTS:
        if getattr(config, key) < 1:
            raise _fail(key, f"must be >= 1, got {getattr(config, key)}", source)
    for key in _NON_NEGATIVE_INTS:
        if getattr(config, key) < 0:
            raise _fail(key, f"must be >= 0, got {getattr(config, key)}", source)
    if config.folds < 2:
        raise _fail("folds", f"must be >= 2 (out-of-fold scores need a held-out fold), got {config.folds}", source)
    if config.image_size < 32:
        raise _fail("image_size", f"must be >= 32, got {config.image_size}", source)
    for key, allowed in _CHOICES.items():
        if getattr(config, key) not in allowed:
            raise _fail(key, f"must be one of {', '.join(allowed)}; got {getattr(config, key)!r}", source)
    for key in ("learning_rate", "fine_tune_learning_rate"):
        if not getattr(config, key) > 0:
            raise _fail(key, f"must be > 0, got {getattr(config, key)}", source)
    if not 0 <= config.ema_momentum < 1:
        raise _fail("ema_momentum", f"must be in [0, 1) (0: no averaging), got {config.ema_momentum}", source)
    if not 0 < config.target_sensitivity < 1:
        raise _fail("target_sensitivity", f"must be in (0, 1), got {config.target_sensitivity}", source)
    if not config.tta:
        raise _fail("tta", f"must list at least one view of: {', '.join(TTA_VIEWS)}", source)
    for view in config.tta:
        if view not in TTA_VIEWS:
            raise _fail("tta", f"has unknown view {view!r}; allowed: {', '.join(TTA_VIEWS)}", source)
    for name, weight in config.ensemble_weights.items():
        if name not in config.backbones:
            raise _fail(f"ensemble_weights.{name}", f"names no backbone of this run ({config.backbones})", source)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            raise _fail(f"ensemble_weights.{name}", f"must be a number >= 0, got {weight!r}", source)
    from tbensemble.core.weighting import CHOICES

    if config.ensemble_weighting not in CHOICES:
        raise _fail(
            "ensemble_weighting", f"must be one of {', '.join(CHOICES)}; got {config.ensemble_weighting!r}", source
        )
    if config.ensemble_weights and not any(config.ensemble_weights.get(b, 1.0) > 0 for b in config.backbones):
        raise _fail("ensemble_weights", "gives every backbone weight 0", source)


def build_config(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    """Turn a parsed mapping into a validated ``TrainConfig``; unknown keys and bad values raise ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a YAML mapping of keys to values")
    hints = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _RETIRED_KEYS:
            log.warning("%s: config key '%s' is ignored: epochs are fixed, not chosen on the scored fold", source, key)
            continue
        if key not in hints:
            raise _fail(str(key), f"is not known; allowed: {_field_names(TrainConfig)}", source)
        if key == "augment":
            values[key] = _build_augment(value, source)
        elif key == "weights":
            if value is not None and not isinstance(value, str):
                raise _fail(key, f"must be imagenet, null or a path, got {value!r}", source)
            values[key] = value
        elif key in ("backbones", "tta"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _fail(key, f"must be a list of names, got {value!r}", source)
            values[key] = value
        elif key == "ensemble_weights":
            if not isinstance(value, dict):
                raise _fail(key, f"must map backbone names to weights, got {value!r}", source)
            values[key] = dict(value)
        else:
            expected = {"int": int, "float": float, "str": str, "bool": bool}[hints[key]]
            values[key] = _check_type(key, value, expected, source)
    config = TrainConfig(**values)
    _validate(config, source)
    return config


def load_config(path: str | os.PathLike[str] | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply CLI overrides on top."""
    raw: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        raw = loaded or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: must be a YAML mapping of keys to values")
    merged = {**raw, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return build_config(merged, source)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_config(config: TrainConfig) -> str:
    """The resolved config as YAML, written beside a run so it can be re-run exactly."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
