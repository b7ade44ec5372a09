"""The leaderboard path end to end on a CPU: ResNet50, DenseNet201 and EfficientNetB5 through
``tbens train-folds`` with warm-up (frozen backbone) then fine-tuning, from weights made by a short phantom
pretraining (a previous run's fold models), then ``tbens export`` and ``tbens predict``.

Small on purpose (64 px; pretraining: one epoch on 128 phantoms, the fewest whose batch-norm statistics are
re-estimated; then 16 images, 2 folds, one epoch per phase): it proves the path, not the accuracy.
On a GPU machine the same test also runs mixed precision and export's float32 rebuild.
"""

from __future__ import annotations

import json
import shutil
import time

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core.registry import list_backbones
from tbensemble.data.phantoms import write_demo_dataset

pytestmark = pytest.mark.slow
LEADERBOARD = list_backbones(leaderboard=True)


def tbens(*args):
    result = CliRunner().invoke(cli, list(args), obj={})
    assert result.exit_code == 0, result.output
    return result


def write_config(path, **values):
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_warm_up_then_fine_tune_from_pretrained_weights_exports_and_predicts(tmp_path):
    start = time.monotonic()
    common = {
        "backbones": LEADERBOARD,
        "image_size": 64,
        "folds": 2,
        "batch_size": 4,
        "tta": ["identity", "crop90"],
        "run_eagerly": True,  # tracing these graphs takes longer than their few steps
    }
    pretrain_data, data = tmp_path / "pretrain-data", tmp_path / "data"
    # 256 phantoms: fold 0 trains on 128, enough for batch-norm statistics (trainer.BATCH_NORM_SAMPLE).
    write_demo_dataset(pretrain_data, n_train=256, n_test=0, seed=21, size=64, positive_rate=0.5)
    write_demo_dataset(data, n_train=16, n_test=4, seed=22, size=64, positive_rate=0.5)

    # A short phantom pretraining from scratch: its fold-0 models become the weights folder.
    pretrain = tmp_path / "pretrain"
    config = write_config(
        tmp_path / "pretrain.yaml", **{**common, "tta": ["identity"], "batch_size": 16}, weights=None, epochs=1
    )
    tbens("train-folds", "--config", config, "--data", str(pretrain_data), "--out", str(pretrain), "--folds", "0")
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in LEADERBOARD:
        shutil.copy(pretrain / "models" / name / "fold0" / "model.keras", weights / f"{name}.keras")

    import tensorflow as tf

    gpu = bool(tf.config.list_physical_devices("GPU"))
    run = tmp_path / "run"
    config = write_config(
        tmp_path / "lb.yaml", **common, weights=str(weights), epochs=2, warmup_epochs=1, mixed_precision="auto"
    )
    tbens("train-folds", "--config", config, "--data", str(data), "--out", str(run))
    for name in LEADERBOARD:
        for fold in (0, 1):
            folder = run / "models" / name / f"fold{fold}"
            assert pd.read_csv(folder / "history.csv")["phase"].tolist() == ["warmup", "fine_tune"]
            done = json.loads((folder / "done.json").read_text())
            # Mixed precision only where a GPU is (then export rebuilds the model in float32).
            assert done["weights"] == str(weights) and done["mixed_precision"] is gpu

    tbens("export", str(run))
    manifest = json.loads((run / "manifest.json").read_text())
    assert sorted(m["name"] for m in manifest["models"]) == sorted(f"{b}-f{k}" for b in LEADERBOARD for k in (0, 1))
    tbens("predict", "--artifacts", str(run), "--images", str(data / "test"), "--out", str(tmp_path / "sub.csv"))
    submission = pd.read_csv(tmp_path / "sub.csv")
    assert len(submission) == 4 and submission["label"].between(0, 1).all()

    metrics = json.loads((run / "metrics.json").read_text())
    print(
        f"leaderboard path: {time.monotonic() - start:.0f}s, OOF AUC "
        + ", ".join(f"{b} {metrics['backbones'][b]['oof_auc']:.3f}" for b in LEADERBOARD)
        + f", ensemble {metrics['ensemble']['oof_auc']:.3f}; largest |Δ logit| Keras vs ONNX "
        + ", ".join(f"{m['name']} {m['parity']['max_abs_diff_logit']:.1e}" for m in manifest["models"])
    )

    # Weights of another architecture: one line naming the file, before any training.
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copy(weights / "resnet50.keras", wrong / "densenet201.keras")
    config = write_config(
        tmp_path / "wrong.yaml", **{**common, "backbones": ["densenet201"]}, weights=str(wrong), epochs=2
    )
    result = CliRunner().invoke(
        cli, ["train-folds", "--config", config, "--data", str(data), "--out", str(tmp_path / "x")], obj={}
    )
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: weights: {wrong / 'densenet201.keras'} does not fit densenet201: "
    )
    assert not (tmp_path / "x" / "models").exists()
