"""Config loading: defaults, overrides, and one-line errors that name the key and what is allowed."""

from pathlib import Path

import pytest

from tbensemble.core.config import TrainConfig, dump_config, load_config
from tbensemble.core.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_leaderboard_shape() -> None:
    config = load_config(None)
    assert config.backbones == ["resnet50", "densenet201", "efficientnetb5"]
    assert config.image_size == 384 and config.folds == 5 and config.weights == "imagenet"
    assert config.augment.hflip is False
    assert "hflip" not in config.tta


def test_overrides_beat_file_and_none_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "image_size: 128\nfolds: 3\nbackbones: [tinycnn]\nweights: null\n")
    config = load_config(path, {"image_size": 64, "folds": None})
    assert config.image_size == 64 and config.folds == 3 and config.weights is None


def test_comma_separated_backbones_from_cli(tmp_path: Path) -> None:
    config = load_config(None, {"backbones": "resnet50, densenet201"})
    assert config.backbones == ["resnet50", "densenet201"]


def test_dump_round_trips(tmp_path: Path) -> None:
    config = load_config(None, {"backbones": "tinycnn", "weights": None, "image_size": 64})
    path = write(tmp_path, dump_config(config))
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("imagesize: 64\n", "config key 'imagesize' is not known; allowed: data, out"),
        ("backbones: [resnet51]\n", "'backbones' has unknown backbone 'resnet51'; allowed: resnet50"),
        ("folds: 1\n", "'folds' must be >= 2"),
        ("image_size: 'big'\n", "'image_size' must be int"),
        ("mixed_precision: maybe\n", "'mixed_precision' must be one of auto, on, off"),
        ("tta: [identity, spin]\n", "'tta' has unknown view 'spin'; allowed: identity, hflip"),
        ("augment: {rotate: 3}\n", "'augment.rotate' is not known; allowed: rotation_deg"),
        ("augment: {zoom: -1}\n", "'augment.zoom' must be >= 0"),
        ("weights: 3\n", "'weights' must be imagenet, null or a path"),
        ("ensemble_weights: {vgg16: 1}\n", "'ensemble_weights.vgg16' names no backbone"),
        ("learning_rate: 0\n", "'learning_rate' must be > 0"),
        ("epochs: true\n", "'epochs' must be int"),
        ("ema_momentum: 1.0\n", "'ema_momentum' must be in [0, 1)"),
        ("lr_schedule: step\n", "'lr_schedule' must be one of cosine, constant"),
        ("ensemble_weighting: best\n", "'ensemble_weighting' must be one of auto, equal, auc, greedy, stacked"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert fragment in message
    assert message.startswith(str(path))
    assert "\n" not in message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_dataclass_defaults_validate() -> None:
    assert isinstance(load_config(None), TrainConfig)


def test_keys_that_chose_epochs_on_the_scored_fold_still_load_and_are_ignored(tmp_path: Path, caplog) -> None:
    """Runs made before fixed schedules hold early_stopping_patience / reduce_lr_patience: export reads them."""
    config = load_config(write(tmp_path, "early_stopping_patience: 5\nreduce_lr_patience: 2\nepochs: 7\n"))
    assert config.epochs == 7
    assert "early_stopping_patience" not in dump_config(config)
    assert "config key 'early_stopping_patience' is ignored" in caplog.text
