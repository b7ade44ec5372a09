"""The numbers behind a report: AUCs with bootstrap CIs, operating points, ensemble and TTA gains, Brier scores.

Confidence intervals are percentile intervals from a seeded, stratified bootstrap (positives and negatives
resampled separately, so every resample has both classes and the class balance of the data). Scores
compared with each other (ensemble vs best backbone, TTA vs identity view) share the same resamples, so
the gain's interval is a paired one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss

from tbensemble.core.bootstrap import LEVEL, auc_samples, bootstrap_indices, percentile_interval
from tbensemble.core.calibration import METHODS, apply_calibration, fit_calibration
from tbensemble.core.errors import DataError
from tbensemble.core.metrics import auc, check_scores, confusion_at, operating_points, within_fold_ranks
from tbensemble.core.registry import BACKBONES

IDENTITY_SUFFIX = "@identity"
"""An OOF column ``<backbone>@identity`` holds that backbone's identity-view scores (no TTA), if the trainer stored them."""


def _interval(samples: np.ndarray) -> tuple[float, float]:
    return percentile_interval(samples, LEVEL)


def auc_with_ci(
    labels: np.ndarray, scores: np.ndarray, n_bootstrap: int = 2000, seed: int = 0, what: str = "scores"
) -> dict[str, float]:
    """AUC and its stratified-bootstrap percentile 95% interval."""
    value = auc(labels, scores, what)
    low, high = _interval(auc_samples(labels, scores, bootstrap_indices(labels, n_bootstrap, seed)))
    return {"auc": value, "ci_low": low, "ci_high": high}


def paired_aucs(
    labels: np.ndarray, columns: Mapping[str, np.ndarray], n_bootstrap: int, seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """AUC + CI for several score columns of the same rows, and their bootstrap samples on shared resamples."""
    point = {name: auc(labels, scores, name) for name, scores in columns.items()}
    indices = bootstrap_indices(labels, n_bootstrap, seed)
    results: dict[str, dict[str, float]] = {}
    samples: dict[str, np.ndarray] = {}
    for name, scores in columns.items():
        samples[name] = auc_samples(labels, scores, indices)
        low, high = _interval(samples[name])
        results[name] = {"auc": point[name], "ci_low": low, "ci_high": high}
    return results, samples


def _gain(results: Mapping[str, dict[str, float]], samples: Mapping[str, np.ndarray], new: str, old: str) -> dict:
    low, high = _interval(samples[new] - samples[old])
    return {"delta": results[new]["auc"] - results[old]["auc"], "ci_low": low, "ci_high": high}


def wilson_interval(successes: int, total: int) -> tuple[float, float]:
    """Wilson score 95% interval for a proportion (better than the normal one near 0 or 1)."""
    if total == 0:
        return float("nan"), float("nan")
    z = 1.959963984540054
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(centre - half), float(centre + half)


def point_summary(name: str, labels: np.ndarray, scores: np.ndarray, threshold: float, source: str) -> dict[str, Any]:
    """Sensitivity, specificity, PPV, NPV at ``score >= threshold``, with counts and Wilson CIs for sens/spec."""
    labels = np.asarray(labels).astype(int)
    called = check_scores(scores) >= threshold
    tp = int(np.sum(called & (labels == 1)))
    fp = int(np.sum(called & (labels == 0)))
    tn = int(np.sum(~called & (labels == 0)))
    fn = int(np.sum(~called & (labels == 1)))
    sens_ci = wilson_interval(tp, tp + fn)
    spec_ci = wilson_interval(tn, tn + fp)
    return {
        "name": name,
        "threshold": float(threshold),
        "source": source,
        **confusion_at(labels, scores, threshold),
        "sensitivity_ci": list(sens_ci),
        "specificity_ci": list(spec_ci),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def cross_validated_calibration(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray, method: str) -> np.ndarray:
    """Each fold's scores calibrated by a map fitted on the other folds: a Brier score that is not flattered."""
    out = np.empty_like(np.asarray(scores, dtype=np.float64))
    for fold in np.unique(folds):
        held = folds == fold
        out[held] = apply_calibration(fit_calibration(scores[~held], labels[~held], method), scores[held])
    return out


def brier(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(brier_score_loss(np.asarray(labels).astype(int), np.clip(probabilities, 0.0, 1.0)))


def score_columns(oof: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Backbone columns (named after a registered backbone) and their ``<backbone>@identity`` columns."""
    backbones = [c for c in oof.columns if c in BACKBONES]
    identity = [f"{b}{IDENTITY_SUFFIX}" for b in backbones if f"{b}{IDENTITY_SUFFIX}" in oof.columns]
    return backbones, identity


def check_oof(oof: pd.DataFrame, source: str) -> None:
    """Refuse an OOF table without the columns, classes or finite scores a report needs."""
    missing = [c for c in ("image_id", "label", "fold") if c not in oof.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, oof.columns))}")
    backbones, identity = score_columns(oof)
    if not backbones:
        raise DataError(f"{source}: no score column named after a backbone ({', '.join(BACKBONES)})")
    if "ensemble" not in oof.columns:
        raise DataError(
            f"{source}: column 'ensemble' is missing (the trainer writes it with core.metrics.oof_ensemble)"
        )
    bad_labels = sorted(set(oof["label"].unique()) - {0, 1})
    if bad_labels:
        raise DataError(f"{source}: label values {bad_labels[:5]} are not 0 or 1")
    for column in [*backbones, *identity, "ensemble"]:
        check_scores(oof[column].to_numpy(), f"{source} column '{column}'")


def evaluate_oof(
    oof: pd.DataFrame,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    target_sensitivity: float = 0.90,
    target_specificity: float = 0.70,
    calibration: dict[str, Any] | None = None,
    source: str = "oof.csv",
) -> dict[str, Any]:
    """Every figure of a run's report, from its out-of-fold table (JSON-ready)."""
    check_oof(oof, source)
    backbones, identity_columns = score_columns(oof)
    labels = oof["label"].to_numpy().astype(int)
    folds = oof["fold"].to_numpy()
    auc(labels, oof[backbones[0]].to_numpy(), source)
    ensemble = oof["ensemble"].to_numpy(dtype=np.float64)

    per_fold = []
    for fold in sorted(np.unique(folds)):
        rows = folds == fold
        fold_columns = {b: oof.loc[rows, b].to_numpy() for b in [*backbones, "ensemble"]}
        results, _ = paired_aucs(labels[rows], fold_columns, n_bootstrap, seed)
        per_fold += [{"model": name, "fold": int(fold), "n": int(rows.sum()), **results[name]} for name in results]

    ranked = {b: within_fold_ranks(oof[b].to_numpy(), folds) for b in backbones}
    ranked.update({c: within_fold_ranks(oof[c].to_numpy(), folds) for c in identity_columns})
    columns = {**{f"{b} (pooled)": oof[b].to_numpy() for b in backbones}, **ranked, "ensemble": ensemble}
    results, samples = paired_aucs(labels, columns, n_bootstrap, seed)
    per_backbone = [
        {"backbone": b, "pooled": results[f"{b} (pooled)"], "within_fold_rank": results[b]} for b in backbones
    ]
    best = max(backbones, key=lambda b: results[b]["auc"])
    ensemble_gain = {"best_backbone": best, **_gain(results, samples, "ensemble", best)} if len(backbones) > 1 else None

    points = operating_points(labels, ensemble, target_sensitivity, target_specificity)
    op_rows = [point_summary(name, labels, ensemble, p.threshold, "chosen on OOF") for name, p in points.items()]

    return {
        "source": source,
        "n": int(labels.size),
        "n_positive": int(labels.sum()),
        "backbones": backbones,
        "folds": [int(f) for f in sorted(np.unique(folds))],
        "ci_method": f"stratified bootstrap, percentile {LEVEL:.0%} interval, {n_bootstrap} resamples, seed {seed}",
        "per_fold": per_fold,
        "per_backbone": per_backbone,
        "ensemble": results["ensemble"],
        "ensemble_gain": ensemble_gain,
        "tta": _tta_gains(identity_columns, results, samples),
        "operating_points": op_rows,
        "calibration": {
            "prevalence": float(labels.mean()),
            "rows": [
                {"name": name, "brier": brier(labels, values), "fit": fit}
                for name, (values, fit) in probability_columns(oof, calibration).items()
            ],
        },
    }


def _tta_gains(
    identity_columns: Sequence[str], results: Mapping[str, dict[str, float]], samples: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """TTA mean against the identity view per backbone, when the OOF table holds both."""
    if not identity_columns:
        return {
            "available": False,
            "note": "oof.csv holds TTA-mean scores only (no '<backbone>@identity' columns), "
            "so the TTA gain cannot be measured from it",
        }
    rows = []
    for column in identity_columns:
        backbone = column.removesuffix(IDENTITY_SUFFIX)
        rows.append(
            {
                "backbone": backbone,
                "tta": results[backbone],
                "identity": results[column],
                "gain": _gain(results, samples, backbone, column),
            }
        )
    return {
        "available": True,
        "note": "AUC on within-fold ranks, TTA mean vs identity view, paired bootstrap",
        "per_backbone": rows,
    }


def probability_columns(
    oof: pd.DataFrame, calibration: dict[str, Any] | None = None
) -> dict[str, tuple[np.ndarray, str]]:
    """Name -> (probabilities, how fitted): backbone OOF probabilities, the rank scale read as one, calibrated maps."""
    backbones, _ = score_columns(oof)
    labels = oof["label"].to_numpy().astype(int)
    folds = oof["fold"].to_numpy()
    ensemble = oof["ensemble"].to_numpy(dtype=np.float64)
    columns = {f"{b} probability": (oof[b].to_numpy(dtype=np.float64), "none") for b in backbones}
    columns["ensemble rank score"] = (ensemble, "none (a rank, not a probability)")
    for method in METHODS:
        columns[f"ensemble {method}, CV"] = (
            cross_validated_calibration(ensemble, labels, folds, method),
            "cross-validated by fold",
        )
    if calibration is not None:
        columns[f"ensemble manifest {calibration['method']}, in-sample"] = (
            apply_calibration(calibration, ensemble),
            "in-sample: fitted on all OOF rows (flatters)",
        )
    return columns


def match_submission(submission: pd.DataFrame, truth: pd.DataFrame, sub_name: str, truth_name: str) -> pd.DataFrame:
    """Join a submission to its truth on image_id; any mismatch is an error listing counts and examples."""
    for frame, name in ((submission, sub_name), (truth, truth_name)):
        missing = [c for c in ("image_id", "label") if c not in frame.columns]
        if missing:
            raise DataError(
                f"{name}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}"
            )
        duplicated = frame["image_id"][frame["image_id"].duplicated()].astype(str).tolist()
        if duplicated:
            raise DataError(f"{name}: {len(duplicated)} duplicated image_id(s), e.g. {', '.join(duplicated[:3])}")
    sub_ids = set(submission["image_id"].astype(str))
    truth_ids = set(truth["image_id"].astype(str))
    only_sub = sorted(sub_ids - truth_ids)
    only_truth = sorted(truth_ids - sub_ids)
    if only_sub or only_truth:
        raise DataError(
            f"{sub_name}: image ids do not match {truth_name}: {len(sub_ids)} vs {len(truth_ids)} ids, "
            f"{len(only_sub)} only in the submission (e.g. {', '.join(only_sub[:3]) or '-'}), "
            f"{len(only_truth)} only in the truth (e.g. {', '.join(only_truth[:3]) or '-'})"
        )
    bad_labels = sorted(set(truth["label"].unique()) - {0, 1})
    if bad_labels:
        raise DataError(f"{truth_name}: label values {bad_labels[:5]} are not 0 or 1")
    merged = truth.assign(image_id=truth["image_id"].astype(str)).merge(
        submission.assign(image_id=submission["image_id"].astype(str)).rename(columns={"label": "score"}),
        on="image_id",
    )
    check_scores(merged["score"].to_numpy(), f"{sub_name} column 'label'")
    if merged["label"].nunique() < 2:
        raise DataError(f"{truth_name}: all {len(merged)} labels are {merged['label'].iloc[0]}; AUC needs both classes")
    return merged


def evaluate_submission(
    merged: pd.DataFrame,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    manifest_points: Mapping[str, dict[str, Any]] | None = None,
    target_sensitivity: float = 0.90,
    target_specificity: float = 0.70,
    source: str = "submission",
) -> dict[str, Any]:
    """AUC + CI of a submission against truth; operating points from the manifest when given.

    Points chosen on this truth itself are reported too, marked as such: they show what the score
    could achieve here, not what a threshold fixed in advance delivers.
    """
    labels = merged["label"].to_numpy().astype(int)
    scores = merged["score"].to_numpy(dtype=np.float64)
    rows = []
    if manifest_points:
        if scores.min() <= 0 or scores.max() > 1:
            raise DataError(
                f"{source}: scores span [{scores.min():.4g}, {scores.max():.4g}], not the historical-rank scale (0, 1] "
                "that the manifest's thresholds are on"
            )
        rows += [
            point_summary(n, labels, scores, p["threshold"], "manifest (chosen on OOF)")
            for n, p in manifest_points.items()
        ]
    oracle = operating_points(labels, scores, target_sensitivity, target_specificity)
    rows += [
        point_summary(n, labels, scores, p.threshold, "chosen on this truth (optimistic)") for n, p in oracle.items()
    ]
    return {
        "source": source,
        "n": int(labels.size),
        "n_positive": int(labels.sum()),
        "ci_method": f"stratified bootstrap, percentile {LEVEL:.0%} interval, {n_bootstrap} resamples, seed {seed}",
        "submission": auc_with_ci(labels, scores, n_bootstrap, seed, source),
        "operating_points": rows,
    }
