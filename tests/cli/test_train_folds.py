"""``tbens train-folds``: options override the config, an AUC table at the end, one-line errors with exit 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core.config import load_config
from tbensemble.data.phantoms import write_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root, n_train=40, n_test=0, seed=5, size=64)
    return root


def write_config(path, **values):
    lines = [f"{key}: {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run_cli(*args):
    return CliRunner().invoke(cli, ["train-folds", *args], obj={})


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.slow
def test_tiny_run_end_to_end_with_overrides_prints_auc_table(demo, tmp_path):
    config = write_config(
        tmp_path / "c.yaml", backbones=["tinycnn"], weights="imagenet", folds=2, epochs=5, image_size=64, batch_size=16
    )
    run = tmp_path / "run"
    result = run_cli(
        "--config",
        config,
        "--data",
        str(demo),
        "--out",
        str(run),
        "--weights",
        "none",
        "--epochs",
        "1",
        "--image-size",
        "32",
    )
    assert result.exit_code == 0, result.output
    resolved = load_config(run / "config.yaml")
    assert (resolved.weights, resolved.epochs, resolved.image_size, resolved.data) == (None, 1, 32, str(demo))
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("backbone"))
    assert lines[header].split() == ["backbone", "fold0", "fold1", "OOF", "pooled"]
    metrics = json.loads((run / "metrics.json").read_text())
    tiny = lines[header + 2].split()
    assert tiny[0] == "tinycnn" and float(tiny[-2]) == pytest.approx(
        metrics["backbones"]["tinycnn"]["oof_auc"], abs=1e-4
    )
    ensemble = lines[header + 3].split()
    assert ensemble[0] == "ensemble" and float(ensemble[-1]) == pytest.approx(metrics["ensemble"]["oof_auc"], abs=1e-4)
    again = run_cli("--config", str(run / "config.yaml"))
    assert again.exit_code == 0 and "trained 0, skipped 2" in again.stdout


def test_unknown_config_key_names_the_key(tmp_path):
    config = write_config(tmp_path / "c.yaml", backbones=["tinycnn"], epoch=3)
    error = one_error_line(run_cli("--config", config))
    assert error.startswith(f"error: {config}: config key 'epoch' is not known")


def test_bad_value_names_key_and_allowed_values(tmp_path):
    config = write_config(tmp_path / "c.yaml", backbones=["tinycnn", "vgg16"])
    error = one_error_line(run_cli("--config", config))
    assert "config key 'backbones' has unknown backbone 'vgg16'; allowed: resnet50" in error


def test_fold_out_of_range_and_foreign_backbone(demo, tmp_path):
    config = write_config(
        tmp_path / "c.yaml", data=str(demo), out=str(tmp_path / "run"), backbones=["tinycnn"], weights=None, folds=2
    )
    assert (
        one_error_line(run_cli("--config", config, "--folds", "0,2")) == "error: --folds: fold 2 is out of range 0..1"
    )
    error = one_error_line(run_cli("--config", config, "--backbones", "tinyresnet"))
    assert error == "error: --backbones: 'tinyresnet' is not a backbone of this run (tinycnn)"
    bad = run_cli("--config", config, "--folds", "zero")
    assert bad.exit_code == 2 and "is not a comma-separated list of fold numbers" in bad.stderr


def test_missing_data_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    config = write_config(tmp_path / "c.yaml", backbones=["tinycnn"], weights=None, out=str(tmp_path / "run"))
    error = one_error_line(run_cli("--config", config, "--data", str(missing)))
    assert str(missing) in error
    assert not (tmp_path / "run").exists()


def test_small_backbone_with_imagenet_weights_fails_before_training(demo, tmp_path):
    config = write_config(tmp_path / "c.yaml", data=str(demo), out=str(tmp_path / "run"), backbones=["tinycnn"])
    error = one_error_line(run_cli("--config", config))
    assert error.startswith("error: weights: tinycnn has no ImageNet weights")


@pytest.mark.parametrize("name", ["quickstart", "leaderboard"])
def test_shipped_configs_are_valid(name):
    config = load_config(f"configs/{name}.yaml")
    if name == "leaderboard":
        assert config.backbones == ["resnet50", "densenet201", "efficientnetb5"]
        assert (config.image_size, config.folds, config.weights) == (384, 5, "imagenet")
    else:
        assert len(config.backbones) == 2 and config.weights is None and config.data == "data/demo"
    assert "hflip" not in config.tta and not config.augment.hflip


def test_ensemble_weighting_is_reported_after_the_table(demo, tmp_path, monkeypatch):
    metrics = {
        "folds": 2,
        "backbones": {b: {"fold_auc": {"0": 0.9, "1": 0.9}, "oof_auc": 0.9, "pooled_auc": 0.9} for b in ("a", "b")},
        "missing": [],
        "ensemble": {"weights": {"a": 0.75, "b": 0.25}, "weighting": "stacked", "oof_auc": 0.93, "nested_auc": 0.92},
    }
    summary = {"run": str(tmp_path), "trained": [], "skipped": [], "metrics": metrics, "seconds": 1.0}
    monkeypatch.setattr("tbensemble.train.trainer.train_folds", lambda *args, **kwargs: summary)
    config = write_config(tmp_path / "c.yaml", data=str(demo), out=str(tmp_path / "run"), weights=None)
    result = run_cli("--config", config)
    assert result.exit_code == 0, result.output
    assert (
        "ensemble weights: stacked (a 0.75, b 0.25, nested-CV AUC 0.9200); every method in metrics.json"
        in result.output
    )
