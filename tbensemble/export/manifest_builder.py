"""The manifest from a run folder: per model its hash, parity and OOF reference; for the ensemble its
TTA views, operating points and optional calibration, all chosen on out-of-fold scores."""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections import Counter
from pathlib import Path

import pandas as pd

from tbensemble import __version__
from tbensemble.core import decisions as rules
from tbensemble.core.calibration import fit_calibration
from tbensemble.core.config import TrainConfig
from tbensemble.core.errors import ArtifactError
from tbensemble.core.manifest import SCHEMA_VERSION, EnsembleEntry, InputSpec, Manifest, ModelEntry, sha256_of
from tbensemble.core.metrics import auc, check_scores, quantile_reference
from tbensemble.export import decision_reference
from tbensemble.export.onnx_export import ExportedModel


def model_name(backbone: str, fold: int) -> str:
    return f"{backbone}-f{fold}"


def read_oof(run_dir: Path, backbones: list[str]) -> pd.DataFrame:
    """``oof.csv`` with the columns the manifest needs, or one error naming what is missing."""
    path = run_dir / "oof.csv"
    if not path.is_file():
        raise ArtifactError(f"{path}: not found; run 'tbens train-folds' to completion before export")
    oof = pd.read_csv(path)
    missing = [c for c in ("image_id", "label", "fold", *backbones, "ensemble") if c not in oof.columns]
    if missing:
        raise ArtifactError(f"{path}: columns {missing} are missing")
    return oof


def model_entry(exported: ExportedModel, file: Path, oof: pd.DataFrame, weight: float, oof_path: Path) -> ModelEntry:
    """One fold model: its held-out scores give its OOF AUC and its historical-rank reference."""
    rows = oof[oof["fold"] == exported.fold]
    if rows.empty:
        raise ArtifactError(f"{oof_path}: no rows for fold {exported.fold}")
    scores = check_scores(
        rows[exported.backbone].to_numpy(), f"{oof_path} column {exported.backbone} fold {exported.fold}"
    )
    name = model_name(exported.backbone, exported.fold)
    return ModelEntry(
        name=name,
        file=f"onnx/{name}.onnx",
        sha256=sha256_of(file),
        backbone=exported.backbone,
        fold=exported.fold,
        input=InputSpec(size=exported.image_size),
        outputs=exported.outputs,
        oof_auc=auc(rows["label"].to_numpy(), scores, f"{oof_path} {name}"),
        parity=exported.parity,
        oof_scores_sorted=quantile_reference(scores),
        head_weights=exported.head_weights,
        head_bias=exported.head_bias,
        weight=weight,
    )


def ensemble_entry(
    config: TrainConfig, oof: pd.DataFrame, calibration: str | None, refer: dict | None = None
) -> EnsembleEntry:
    """Operating points (the guaranteed one the default), calibration and the drift reference on the OOF
    ensemble, the historical-rank scale the engine uses."""
    labels = oof["label"].to_numpy().astype(int)
    scores = check_scores(oof["ensemble"].to_numpy(), "oof.csv column ensemble")
    points, default = rules.decision_points(labels, scores, config.target_sensitivity)
    return EnsembleEntry(
        tta=list(config.tta),
        operating_points=points,
        default_operating_point=default,
        oof_auc=auc(labels, scores, "oof.csv column ensemble"),
        calibration=fit_calibration(scores, labels, calibration) if calibration else None,
        refer=refer,
        drift=rules.drift_reference(scores),
    )


def refer_entry(
    run_dir: Path, config: TrainConfig, oof: pd.DataFrame, models: list[ModelEntry], files: dict[str, Path]
) -> dict:
    """The refer rules' thresholds: backbone disagreement from oof.csv, feature distance from the run's images."""
    backbones = list(dict.fromkeys(m.backbone for m in models))
    feature_models = {
        m.name: {"path": files[m.name], "fold": m.fold, "input": m.input.name, "features": m.outputs["features"]}
        for m in models
        if "features" in m.outputs
    }
    features = None
    if len(feature_models) == len(models):
        weights = {m.name: m.weight for m in models}
        features = decision_reference.feature_rule(
            run_dir, config.data, config.image_size, list(config.tta), feature_models, weights
        )
    return {
        "quantile": rules.REFER_QUANTILE,
        "disagreement": decision_reference.disagreement_rule(oof, backbones),
        "features": features,
    }


def run_weighting(run_dir: Path, config: TrainConfig, backbones: list[str]) -> dict:
    """The ensemble weights train-folds chose (metrics.json), or the config's for runs made before weighting
    was chosen there; a backbone's weight is then shared among its folds."""
    path = run_dir / "metrics.json"
    ensemble = json.loads(path.read_text(encoding="utf-8")).get("ensemble") if path.is_file() else None
    if ensemble and "weighting" in ensemble and set(backbones) <= set(ensemble["weights"]):
        comparison = ensemble.get("weighting_comparison") or {}
        return {
            "method": ensemble["weighting"],
            "weights": {b: float(ensemble["weights"][b]) for b in backbones},
            "nested_auc": {m: r["nested_auc"] for m, r in comparison.get("methods", {}).items()},
        }
    return {"method": "manual", "weights": {b: float(config.ensemble_weights.get(b, 1.0)) for b in backbones}}


def build_manifest(
    run_dir: Path,
    config: TrainConfig,
    exported: list[ExportedModel],
    files: dict[str, Path],
    calibration: str | None = None,
) -> Manifest:
    """The manifest for ``exported`` models whose ONNX files are at ``files[name]`` (hashed there)."""
    backbones = sorted({e.backbone for e in exported}, key=config.backbones.index)
    oof = read_oof(run_dir, backbones)
    folds_per_backbone = Counter(e.backbone for e in exported)
    weighting = run_weighting(run_dir, config, backbones)
    models = [
        model_entry(
            e,
            files[model_name(e.backbone, e.fold)],
            oof,
            weighting["weights"][e.backbone] / folds_per_backbone[e.backbone],
            run_dir / "oof.csv",
        )
        for e in exported
    ]
    return Manifest(
        schema_version=SCHEMA_VERSION,
        tbensemble_version=__version__,
        run=run_dir.name,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        models=models,
        ensemble=dataclasses.replace(
            ensemble_entry(config, oof, calibration, refer_entry(run_dir, config, oof, models, files)),
            weighting=weighting,
        ),
    )
