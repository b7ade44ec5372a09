"""k-fold training of every backbone, into the run folder of docs/architecture.md.

Each backbone × fold is one job whose ``done.json`` is written last: a finished job is skipped on the next
call (resume), an interrupted one is retrained from scratch, so a crash loses at most one fold. Several
machines may share one run folder, each taking some backbones or folds; ``folds.csv`` is reused so they
agree on the split, and the OOF table is assembled from whatever is complete.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
import yaml

from tbensemble.core import atomic
from tbensemble.core.config import TrainConfig, config_to_dict, dump_config
from tbensemble.core.errors import ArtifactError, ConfigError
from tbensemble.core.metrics import auc, oof_ensemble, within_fold_ranks
from tbensemble.core.weighting import ensemble_weighting
from tbensemble.data.folds import assign_folds, class_weights
from tbensemble.data.validate import validate_training_set
from tbensemble.train.backbones import build_model, check_weights
from tbensemble.train.callbacks import EpochProgress, PreciseBatchNorm, RunClock, precise_batch_norm, save_model
from tbensemble.train.pipeline import decode_error, load_images, training_dataset, validation_dataset
from tbensemble.train.scoring import predict_views

log = logging.getLogger("tbensemble.train")

_RUN_INDEPENDENT_KEYS = ("data", "out")
"""Config keys that may differ between machines sharing a run (paths), without changing its models."""


@dataclass(frozen=True)
class Job:
    backbone: str
    fold: int

    def folder(self, run: Path) -> Path:
        return run / "models" / self.backbone / f"fold{self.fold}"


def fold_dir(run: str | Path, backbone: str, fold: int) -> Path:
    """``RUN/models/<backbone>/fold<k>``: where one fold model, its scores and ``done.json`` live."""
    return Job(backbone, fold).folder(Path(run))


def is_done(run: str | Path, backbone: str, fold: int) -> bool:
    folder = fold_dir(run, backbone, fold)
    return (folder / "done.json").is_file() and (folder / "model.keras").is_file()


def _select(config: TrainConfig, backbones: Sequence[str] | None, folds: Sequence[int] | None) -> list[Job]:
    chosen_backbones = list(backbones) if backbones else list(config.backbones)
    for name in chosen_backbones:
        if name not in config.backbones:
            raise ConfigError(f"--backbones: {name!r} is not a backbone of this run ({', '.join(config.backbones)})")
    chosen_folds = list(folds) if folds is not None and len(folds) else list(range(config.folds))
    for fold in chosen_folds:
        if not 0 <= fold < config.folds:
            raise ConfigError(f"--folds: fold {fold} is out of range 0..{config.folds - 1}")
    return [Job(b, k) for b in chosen_backbones for k in sorted(set(chosen_folds))]


def _write_config(run: Path, config: TrainConfig, force: bool) -> None:
    """Write config.yaml, refusing to mix models of another config into an existing run (unless forced)."""
    path = run / "config.yaml"
    if path.is_file() and not force:
        stored = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        current = config_to_dict(config)
        changed = sorted(k for k in current if k not in _RUN_INDEPENDENT_KEYS and stored.get(k) != current[k])
        if changed:
            raise ArtifactError(
                f"{path}: this run was made with other values of {', '.join(changed)}; "
                "use a new --out, or --force to retrain with the new config"
            )
    atomic.write_text(path, dump_config(config))


def fold_table(run: Path, frame: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    """folds.csv (image_id, label, fold(, group)), made once and then reused so that resumed and shared runs
    use one split. Returned with the image paths of ``frame``."""
    path = run / "folds.csv"
    columns = ["image_id", "label", *(["group"] if "group" in frame.columns else [])]
    if not path.is_file():
        table = frame[columns].copy()
        table["fold"] = assign_folds(frame, config.folds, config.seed)
        atomic.write_csv(path, table)
    else:
        table = pd.read_csv(path, dtype={"image_id": str, "group": str})
        missing = {"image_id", "label", "fold"} - set(table.columns)
        if missing:
            raise ArtifactError(f"{path}: lacks column(s) {', '.join(sorted(missing))}")
        stored = table.set_index("image_id")["label"]
        current = frame.set_index("image_id")["label"]
        if set(stored.index) != set(current.index):
            extra, absent = set(current.index) - set(stored.index), set(stored.index) - set(current.index)
            raise ArtifactError(
                f"{path}: does not match the data in {config.data} ({len(extra)} images not in it, "
                f"{len(absent)} of its images missing); use a new --out for new data"
            )
        relabelled = (stored.loc[current.index] != current).sum()
        if relabelled:
            raise ArtifactError(f"{path}: {relabelled} labels differ from {config.data}; use a new --out")
        if sorted(table["fold"].unique()) != list(range(config.folds)):
            raise ArtifactError(f"{path}: holds folds {sorted(table['fold'].unique())}, not 0..{config.folds - 1}")
    return table.merge(frame[["image_id", "path"]], on="image_id", how="left")


def _job_seed(seed: int, job: Job) -> int:
    """A seed per job that does not depend on which other jobs run, so a split run equals a single one."""
    return (seed + zlib.crc32(f"{job.backbone}:{job.fold}".encode())) % (2**31)


BATCH_NORM_SAMPLE = 128
"""Unaugmented training images whose statistics become the batch-norms' moving ones (PreciseBN), in two
passes of 64; they add a few tenths of a second to a small net's epoch on 2 CPU cores. A training split
smaller than this keeps the running averages of training: statistics of fewer images describe those images
rather than the data. A from-scratch EfficientNetB5 at 64 px after one epoch, its statistics set from 32
phantoms, gave logits of 146 on other phantoms, changing by 2.6 between a batch of one and a batch of 16
(set from 4, logits of 1e4 on which Keras and ONNX Runtime disagreed by more than their size, and export
refused the model); from 64 phantoms, logits of 8; from 128, under 1 and the same to 1e-5 in any batch."""


def _batch_norm_sample(paths: list[str], image_size: int, seed: int) -> np.ndarray | None:
    if len(paths) < BATCH_NORM_SAMPLE:
        log.info(
            "%d training images (< %d): batch-norm statistics stay the running averages of training",
            len(paths),
            BATCH_NORM_SAMPLE,
        )
        return None
    chosen = np.random.default_rng(seed).permutation(len(paths))[:BATCH_NORM_SAMPLE]
    return load_images([paths[i] for i in chosen], image_size).astype(np.float32)[..., None]


def _mixed_precision(mode: str) -> bool:
    gpus = tf.config.list_physical_devices("GPU")
    if mode == "on" and not gpus:
        raise ConfigError("mixed_precision: 'on' needs a GPU and TensorFlow sees none; use auto or off")
    return mode != "off" and bool(gpus)


def _steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Batches per epoch of ``training_dataset`` (it drops the last partial batch when there is a full one)."""
    return max(n_images // batch_size, 1)


def _compile(model: keras.Model, config: TrainConfig, learning_rate: float, steps: int) -> None:
    """Adam at ``learning_rate``, decayed to zero over the phase's ``steps`` when the schedule is cosine, with
    an exponential moving average of the weights when ``ema_momentum`` > 0 (fit ends on the averaged weights)."""
    rate = (
        keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(steps, 1))
        if config.lr_schedule == "cosine"
        else learning_rate
    )
    ema = config.ema_momentum > 0
    model.compile(
        optimizer=keras.optimizers.Adam(rate, use_ema=ema, ema_momentum=config.ema_momentum if ema else 0.99),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
        run_eagerly=config.run_eagerly,
    )


def _fit(model: keras.Model, train: tf.data.Dataset, val: tf.data.Dataset, **kwargs: Any) -> keras.callbacks.History:
    try:
        return model.fit(train, validation_data=val, shuffle=False, verbose=1 if sys.stdout.isatty() else 0, **kwargs)
    except tf.errors.OpError as exc:
        if "DataError" in exc.message:
            raise decode_error(exc) from None
        raise


def _train_job(config: TrainConfig, job: Job, table: pd.DataFrame, run: Path, clock: RunClock, mixed: bool) -> dict:
    """Train one fold model, score its validation images with TTA, write its folder; done.json last."""
    folder = job.folder(run)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "done.json").unlink(missing_ok=True)
    (folder / "model.keras").unlink(missing_ok=True)
    started = time.monotonic()
    train_rows, val_rows = table[table["fold"] != job.fold], table[table["fold"] == job.fold]
    weights = class_weights(train_rows["label"].to_numpy())
    seed = _job_seed(config.seed, job)

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        model = build_model(job.backbone, config.image_size, config.weights)
        train_ds = training_dataset(
            train_rows["path"].tolist(),
            train_rows["label"].tolist(),
            config.image_size,
            config.batch_size,
            config.augment,
            weights,
            seed,
        )
        val_ds = validation_dataset(
            val_rows["path"].tolist(), val_rows["label"].tolist(), config.image_size, config.batch_size
        )
        label = f"{job.backbone} fold{job.fold} ({job.fold + 1}/{config.folds})"
        progress = EpochProgress(label, config.epochs, clock)
        # Validation each epoch sees the averaged weights (the ones saved and scored); it is a record only:
        # nothing is chosen on it, since this fold then provides the OOF scores.
        pretrained = config.weights is not None
        # A pretrained backbone's batch-norms are frozen (inference mode): only nets trained from scratch need
        # their statistics recomputed for the weights that are validated and saved.
        bn_images = None if pretrained else _batch_norm_sample(train_rows["path"].tolist(), config.image_size, seed)
        callbacks: list[keras.callbacks.Callback] = []
        if config.ema_momentum > 0:
            callbacks.append(keras.callbacks.SwapEMAWeights())
        if bn_images is not None:
            callbacks.append(PreciseBatchNorm(bn_images))
        callbacks.append(progress)
        steps = _steps_per_epoch(len(train_rows), config.batch_size)
        warmup = min(config.warmup_epochs, config.epochs) if pretrained else 0
        histories: list[tuple[str, dict]] = []
        if warmup:
            model.get_layer("backbone").trainable = False
            _compile(model, config, config.learning_rate, steps * warmup)
            history = _fit(model, train_ds, val_ds, epochs=warmup, callbacks=callbacks)
            histories.append(("warmup", history.history))
            model.get_layer("backbone").trainable = True
        if config.epochs > warmup:
            learning_rate = config.fine_tune_learning_rate if pretrained else config.learning_rate
            _compile(model, config, learning_rate, steps * (config.epochs - warmup))
            history = _fit(model, train_ds, val_ds, epochs=config.epochs, initial_epoch=warmup, callbacks=callbacks)
            histories.append(("fine_tune" if pretrained else "train", history.history))
        if bn_images is not None:
            precise_batch_norm(model, bn_images)
        save_model(model, folder / "model.keras")
        last_val_auc = float(histories[-1][1]["val_auc"][-1])

        images = load_images(val_rows["path"].tolist(), config.image_size)
        views = list(dict.fromkeys(["identity", *config.tta]))
        per_view = predict_views(model, images, views, config.batch_size)
        scores = per_view[[views.index(v) for v in config.tta]].mean(axis=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")

    val_auc = auc(val_rows["label"].to_numpy(), scores, f"{job.backbone} fold {job.fold} validation")
    atomic.write_csv(
        folder / "val_scores.csv",
        pd.DataFrame(
            {
                "image_id": val_rows["image_id"].to_numpy(),
                "label": val_rows["label"].to_numpy(),
                "score": scores,
                "score_identity": per_view[0],
            }
        ),
    )
    atomic.write_csv(folder / "history.csv", _history_frame(histories, progress.seconds))
    done = {
        "backbone": job.backbone,
        "fold": job.fold,
        "val_auc": val_auc,
        "val_auc_no_tta_last_epoch": last_val_auc,
        "epochs": sum(len(h.get("loss", [])) for _, h in histories),
        "seconds": round(time.monotonic() - started, 1),
        "class_weights": {str(k): v for k, v in weights.items()},
        "n_train": len(train_rows),
        "n_val": len(val_rows),
        "tta": list(config.tta),
        "image_size": config.image_size,
        "weights": config.weights,
        "mixed_precision": mixed,
        "seed": seed,
        "lr_schedule": config.lr_schedule,
        "ema_momentum": config.ema_momentum,
    }
    atomic.write_json(folder / "done.json", done)
    return done


def train_job(config: TrainConfig, job: Job, table: pd.DataFrame, run: Path, clock: RunClock) -> dict:
    """Train one backbone × fold into ``run`` (done.json last), with mixed precision as this machine's GPUs
    allow: the per-fold entry point for workers that train away from the driver (tbensemble.distributed)."""
    return _train_job(config, job, table, run, clock, _mixed_precision(config.mixed_precision))


JobRunner = Callable[[TrainConfig, list[Job], pd.DataFrame, Path, RunClock], Iterator[dict]]
"""Trains the given jobs into the run folder and yields each one's done.json record as it finishes."""


def _serial_jobs(
    config: TrainConfig, todo: list[Job], table: pd.DataFrame, run: Path, clock: RunClock, mixed: bool
) -> Iterator[dict]:
    for job in todo:
        done = _train_job(config, job, table, run, clock, mixed)
        clock.jobs_done += 1
        yield done


def _history_frame(histories: list[tuple[str, dict]], seconds: dict[int, float]) -> pd.DataFrame:
    rows, epoch = [], 0
    for phase, history in histories:
        for i in range(len(history.get("loss", []))):
            epoch += 1
            row = {"epoch": epoch, "phase": phase}
            row.update({key: float(values[i]) for key, values in history.items()})
            row["seconds"] = round(seconds.get(epoch, math.nan), 2)
            rows.append(row)
    return pd.DataFrame(rows)


def assemble(run: str | Path, config: TrainConfig, table: pd.DataFrame | None = None) -> dict:
    """Write oof.csv and metrics.json from every finished fold of the run, and return the metrics.

    A backbone enters oof.csv (and the ensemble) only when all its folds are done; the rest are listed
    under ``missing`` so a shared run says what is still to train. A backbone's ``oof_auc`` ranks each
    score among its own fold's (the scale the ensemble averages, so the two compare fairly);
    ``pooled_auc`` pools raw probabilities over folds, which suffers when fold models are calibrated
    differently. ``<backbone>@identity`` columns hold the identity view alone, so reports can show what
    TTA adds. The ensemble's weights come from ``core.weighting`` (method, weights and the nested
    cross-validation behind the choice go into metrics.json; ``nested_auc`` is the honest ensemble figure
    when weights were fitted).
    """
    run = Path(run)
    if table is None:
        table = pd.read_csv(run / "folds.csv", dtype={"image_id": str})
    oof = table[["image_id", "label", "fold"]].copy()
    metrics: dict[str, Any] = {"folds": config.folds, "tta": list(config.tta), "backbones": {}, "missing": []}
    complete = []
    for backbone in config.backbones:
        fold_auc: dict[str, float] = {}
        scores = []
        for fold in range(config.folds):
            folder = fold_dir(run, backbone, fold)
            if not is_done(run, backbone, fold):
                metrics["missing"].append(f"{backbone}/fold{fold}")
                continue
            fold_auc[str(fold)] = json.loads((folder / "done.json").read_text(encoding="utf-8"))["val_auc"]
            scores.append(pd.read_csv(folder / "val_scores.csv", dtype={"image_id": str}))
        entry: dict[str, Any] = {"fold_auc": fold_auc, "oof_auc": None, "pooled_auc": None}
        if len(fold_auc) == config.folds:
            columns = pd.concat(scores).set_index("image_id")
            if set(columns.index) != set(oof["image_id"]):
                raise ArtifactError(f"{run / 'models' / backbone}: validation scores do not cover folds.csv")
            oof[backbone] = columns.loc[oof["image_id"], "score"].to_numpy()
            if "score_identity" in columns:
                oof[f"{backbone}@identity"] = columns.loc[oof["image_id"], "score_identity"].to_numpy()
            labels, folds = oof["label"].to_numpy(), oof["fold"].to_numpy()
            ranks = within_fold_ranks(oof[backbone].to_numpy(), folds)
            entry["oof_auc"] = auc(labels, ranks, f"{backbone} OOF")
            entry["pooled_auc"] = auc(labels, oof[backbone].to_numpy(), f"{backbone} OOF")
            complete.append(backbone)
        metrics["backbones"][backbone] = entry
    metrics["ensemble"] = None
    if complete:
        weighting = ensemble_weighting(oof, complete, config.ensemble_weighting, config.ensemble_weights)
        oof["ensemble"] = oof_ensemble(oof, complete, weighting["weights"])
        comparison = weighting["comparison"]
        metrics["ensemble"] = {
            "backbones": complete,
            "weights": weighting["weights"],
            "weighting": weighting["method"],
            "oof_auc": auc(oof["label"].to_numpy(), oof["ensemble"].to_numpy(), "ensemble OOF"),
            "nested_auc": comparison["methods"][weighting["method"]]["nested_auc"]
            if comparison and weighting["method"] in comparison["methods"]
            else None,
            "weighting_comparison": comparison,
        }
        atomic.write_csv(run / "oof.csv", oof)
    else:
        (run / "oof.csv").unlink(missing_ok=True)
    atomic.write_json(run / "metrics.json", metrics)
    return metrics


def train_folds(
    config: TrainConfig,
    backbones: Sequence[str] | None = None,
    folds: Sequence[int] | None = None,
    force: bool = False,
    runner: JobRunner | None = None,
) -> dict:
    """Train the chosen backbones × folds of ``config`` (all by default) into ``config.out``, skipping
    finished ones unless ``force``; then assemble oof.csv + metrics.json. Returns a summary with
    ``trained``, ``skipped`` and ``metrics``. ``runner`` trains the jobs elsewhere (e.g. on Ray workers,
    each deciding mixed precision itself); by default they run here, one after the other."""
    jobs = _select(config, backbones, folds)
    check_weights(sorted({job.backbone for job in jobs}), config.weights)
    mixed = runner is None and _mixed_precision(config.mixed_precision)
    frame = validate_training_set(config.data)
    run = Path(config.out)
    run.mkdir(parents=True, exist_ok=True)
    _write_config(run, config, force)
    table = fold_table(run, frame, config)

    todo = [job for job in jobs if force or not is_done(run, job.backbone, job.fold)]
    skipped = [job for job in jobs if job not in todo]
    for job in skipped:
        log.info("%s fold%d: done already, skipped (use --force to retrain)", job.backbone, job.fold)
    log.info(
        "%d images, %d folds; training %d of %d backbone×fold jobs%s",
        len(table),
        config.folds,
        len(todo),
        len(jobs),
        "; mixed precision" if mixed else "",
    )
    clock = RunClock(len(todo))
    trained = []
    jobs_run = (
        runner(config, todo, table, run, clock) if runner else _serial_jobs(config, todo, table, run, clock, mixed)
    )
    for done in jobs_run:
        log.info(
            "%s fold%d: val AUC %.4f (TTA %s), %d epochs, %.0fs",
            done["backbone"],
            done["fold"],
            done["val_auc"],
            "+".join(config.tta),
            done["epochs"],
            done["seconds"],
        )
        trained.append(done)
    metrics = assemble(run, config, table)
    if metrics["missing"]:
        log.info("not yet trained: %s", ", ".join(metrics["missing"]))
    return {
        "run": str(run),
        "trained": [(d["backbone"], d["fold"]) for d in trained],
        "skipped": [(j.backbone, j.fold) for j in skipped],
        "metrics": metrics,
        "seconds": round(clock.elapsed(), 1),
    }
