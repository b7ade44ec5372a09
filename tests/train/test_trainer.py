"""train_folds: the run folder, split runs over one folder, resume, --force, per-fold class weights."""

from __future__ import annotations

import io
import json
import zipfile

import h5py
import keras
import numpy as np
import pandas as pd
import pytest

from tbensemble.core.config import build_config
from tbensemble.core.errors import ArtifactError, ConfigError
from tbensemble.core.metrics import auc, within_fold_ranks
from tbensemble.data.folds import class_weights
from tbensemble.data.phantoms import write_demo_dataset
from tbensemble.train import trainer
from tbensemble.train.pipeline import load_images
from tbensemble.train.scoring import predict_tta
from tbensemble.train.trainer import fold_dir, train_folds


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root, n_train=40, n_test=0, seed=3, size=64)
    return root


def tiny_config(data, out, **extra):
    raw = {
        "data": str(data),
        "out": str(out),
        "backbones": ["tinycnn"],
        "weights": None,
        "image_size": 32,
        "folds": 2,
        "epochs": 1,
        "batch_size": 16,
        **extra,
    }
    return build_config(raw, "test")


def mtimes(run):
    return {p.relative_to(run): p.stat().st_mtime_ns for p in (run / "models").rglob("*") if p.is_file()}


@pytest.mark.slow
def test_split_run_assembles_oof_then_resume_trains_nothing_and_force_retrains(demo, tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = tiny_config(demo, run)

    first = train_folds(config, folds=[0])
    assert first["trained"] == [("tinycnn", 0)]
    assert first["metrics"]["missing"] == ["tinycnn/fold1"]
    assert not (run / "oof.csv").exists()

    second = train_folds(config, folds=[1])
    assert second["trained"] == [("tinycnn", 1)] and second["metrics"]["missing"] == []
    for name in ("config.yaml", "folds.csv", "oof.csv", "metrics.json"):
        assert (run / name).is_file(), name
    for fold in (0, 1):
        for name in ("model.keras", "history.csv", "done.json", "val_scores.csv"):
            assert (fold_dir(run, "tinycnn", fold) / name).is_file(), (fold, name)

    oof = pd.read_csv(run / "oof.csv", dtype={"image_id": str})
    assert list(oof.columns) == ["image_id", "label", "fold", "tinycnn", "tinycnn@identity", "ensemble"]
    metrics = json.loads((run / "metrics.json").read_text())
    ranked = within_fold_ranks(oof["tinycnn"].to_numpy(), oof["fold"].to_numpy())
    assert metrics["backbones"]["tinycnn"]["oof_auc"] == pytest.approx(auc(oof["label"], ranked))
    assert metrics["backbones"]["tinycnn"]["pooled_auc"] == pytest.approx(auc(oof["label"], oof["tinycnn"]))
    assert metrics["ensemble"]["oof_auc"] == pytest.approx(auc(oof["label"], oof["ensemble"]))
    history = pd.read_csv(fold_dir(run, "tinycnn", 0) / "history.csv")
    assert {"epoch", "phase", "loss", "val_auc", "seconds"} <= set(history.columns)

    # The saved (last, weight-averaged) model and predict_tta reproduce the OOF scores (what export's parity builds on).
    val = oof[oof["fold"] == 0]
    folds = pd.read_csv(run / "folds.csv", dtype={"image_id": str}).set_index("image_id")
    assert (folds.loc[val["image_id"], "fold"] == 0).all()
    model = keras.models.load_model(fold_dir(run, "tinycnn", 0) / "model.keras")
    paths = [str(demo / "train" / image_id) for image_id in val["image_id"]]
    scores = predict_tta(model, load_images(paths, 32), ["identity", "crop90"], batch_size=16)
    np.testing.assert_allclose(scores, val["tinycnn"].to_numpy(), atol=1e-6)
    identity = predict_tta(model, load_images(paths, 32), ["identity"], batch_size=16)
    np.testing.assert_allclose(identity, val["tinycnn@identity"].to_numpy(), atol=1e-6)

    # The model file holds the weights only: no Adam moments, no second copy for the weight average.
    with zipfile.ZipFile(fold_dir(run, "tinycnn", 0) / "model.keras") as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")))
        assert "optimizer" not in weights

    before = mtimes(run)

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished fold was retrained")

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "_train_job", must_not_train)
        resumed = train_folds(config)
    assert resumed["trained"] == [] and resumed["skipped"] == [("tinycnn", 0), ("tinycnn", 1)]
    assert mtimes(run) == before

    retrained = []

    def record(config, job, *args):
        retrained.append((job.backbone, job.fold))
        return json.loads((job.folder(run) / "done.json").read_text())

    monkeypatch.setattr(trainer, "_train_job", record)
    forced = train_folds(config, folds=[0], force=True)
    assert retrained == forced["trained"] == [("tinycnn", 0)]


@pytest.mark.slow
def test_the_scored_fold_chooses_nothing(demo, tmp_path, monkeypatch):
    """No selection optimism in OOF scores: with the validation fold's labels flipped, the saved model and its
    scores are the same (epochs and rates are fixed), while the recorded validation AUC does see the flip."""
    real = trainer.validation_dataset
    runs = {}
    for flipped in (False, True):

        def validation(paths, labels, image_size, batch_size, flipped=flipped):
            return real(paths, [1 - label for label in labels] if flipped else labels, image_size, batch_size)

        monkeypatch.setattr(trainer, "validation_dataset", validation)
        runs[flipped] = tmp_path / f"flipped-{flipped}"
        train_folds(tiny_config(demo, runs[flipped], epochs=3), folds=[0])

    scores = {k: pd.read_csv(fold_dir(run, "tinycnn", 0) / "val_scores.csv") for k, run in runs.items()}
    np.testing.assert_array_equal(scores[True]["score"], scores[False]["score"])
    history = {k: pd.read_csv(fold_dir(run, "tinycnn", 0) / "history.csv") for k, run in runs.items()}
    assert len(history[True]) == len(history[False]) == 3
    np.testing.assert_allclose(history[True]["val_auc"], 1 - history[False]["val_auc"], atol=0.02)
    done = json.loads((fold_dir(runs[False], "tinycnn", 0) / "done.json").read_text())
    assert done["epochs"] == 3 and done["ema_momentum"] == 0.99 and done["lr_schedule"] == "cosine"


def test_class_weights_come_from_the_fold_training_split_only(demo, tmp_path, monkeypatch):
    """An unbalanced split (kept in folds.csv) makes fold weights differ from whole-set weights."""
    run = tmp_path / "run"
    run.mkdir()
    labels = pd.read_csv(demo / "train_labels.csv", dtype={"image_id": str})
    positives = labels.index[labels["label"] == 1]
    fold = np.ones(len(labels), dtype=int)
    fold[labels.index[labels["label"] == 0][:19]] = 0
    fold[positives[:1]] = 0
    pd.DataFrame({"image_id": labels["image_id"], "label": labels["label"], "fold": fold}).to_csv(
        run / "folds.csv", index=False
    )
    seen = {}

    class Stop(Exception):
        pass

    def capture(paths, labels, image_size, batch_size, augment, weights, seed):
        seen.update(paths=paths, labels=labels, weights=weights)
        raise Stop

    monkeypatch.setattr(trainer, "training_dataset", capture)
    with pytest.raises(Stop):
        train_folds(tiny_config(demo, run), folds=[0])
    train_ids = set(labels["image_id"][fold == 1])
    assert {p.split("/")[-1] for p in seen["paths"]} == train_ids
    assert seen["weights"] == pytest.approx(class_weights(labels["label"][fold == 1]))
    assert seen["weights"][1] != pytest.approx(class_weights(labels["label"])[1])
    assert not (fold_dir(run, "tinycnn", 0) / "done.json").exists()


def test_folds_csv_that_disagrees_with_the_data_is_refused(demo, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    labels = pd.read_csv(demo / "train_labels.csv", dtype={"image_id": str}).iloc[1:]
    labels.assign(fold=np.arange(len(labels)) % 2).to_csv(run / "folds.csv", index=False)
    with pytest.raises(
        ArtifactError, match=r"folds.csv: does not match the data in .* \(1 images not in it, 0 of its images missing\)"
    ):
        train_folds(tiny_config(demo, run))


def test_changed_config_is_refused_unless_forced(demo, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    trainer._write_config(run, tiny_config(demo, run), force=False)
    trainer._write_config(run, tiny_config(tmp_path / "elsewhere", run), force=False)
    with pytest.raises(ArtifactError, match=r"config.yaml: this run was made with other values of epochs"):
        trainer._write_config(run, tiny_config(demo, run, epochs=3), force=False)
    trainer._write_config(run, tiny_config(demo, run, epochs=3), force=True)
    assert "epochs: 3" in (run / "config.yaml").read_text()


def test_backbone_or_fold_outside_the_config_is_refused(demo, tmp_path):
    config = tiny_config(demo, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"--backbones: 'resnet50' is not a backbone of this run"):
        train_folds(config, backbones=["resnet50"])
    with pytest.raises(ConfigError, match=r"--folds: fold 2 is out of range 0..1"):
        train_folds(config, folds=[2])
    with pytest.raises(ConfigError, match="weights: tinycnn has no ImageNet weights"):
        train_folds(tiny_config(demo, tmp_path / "run", weights="imagenet"))
    assert not (tmp_path / "run").exists()
