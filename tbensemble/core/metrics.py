"""Scores to ranks, ranks to an ensemble, scores to operating points: the arithmetic every layer shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from tbensemble.core.errors import DataError


def check_scores(scores: np.ndarray, what: str = "scores") -> np.ndarray:
    """Return ``scores`` as float64, refusing NaN or infinity (they would silently poison ranks and AUC)."""
    try:
        array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what}: scores are not all numbers") from None
    bad = ~np.isfinite(array)
    if bad.any():
        raise DataError(f"{what}: {int(bad.sum())} of {array.size} scores are NaN or infinite")
    return array


def auc(labels: np.ndarray, scores: np.ndarray, what: str = "scores") -> float:
    """ROC AUC, with a clear error when only one class is present (AUC is undefined then)."""
    labels = np.asarray(labels)
    if np.unique(labels).size < 2:
        raise DataError(
            f"{what}: AUC needs both classes; all {labels.size} labels are {labels.flat[0] if labels.size else 'absent'}"
        )
    from sklearn.metrics import roc_auc_score  # not at import: the edge engine needs only the rank arithmetic

    return float(roc_auc_score(labels, check_scores(scores, what)))


def rank_normalise(scores: np.ndarray) -> np.ndarray:
    """Ranks scaled to (0, 1]: rank/N with average ranks for ties (the batch ensemble scale)."""
    scores = check_scores(scores)
    return pd.Series(scores).rank(method="average").to_numpy() / scores.size


def historical_rank(scores: np.ndarray, reference_sorted: np.ndarray) -> np.ndarray:
    """Map scores to (0, 1] by their average rank among a stored reference (a model's OOF scores).

    A score equal to reference values takes the average rank of those ties, as ``rank_normalise`` would;
    a score between two reference values lands half-way between their ranks. One image and a whole
    batch therefore land on the same scale.
    """
    reference = np.asarray(reference_sorted, dtype=np.float64)
    scores = check_scores(scores)
    below = np.searchsorted(reference, scores, side="left")
    at_or_below = np.searchsorted(reference, scores, side="right")
    ties = at_or_below - below
    average_rank = below + np.where(ties > 0, (ties + 1) / 2.0, 0.5)
    return np.clip(average_rank / reference.size, 0.5 / reference.size, 1.0)


def weighted_rank_average(rank_columns: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted mean of rank columns; a model missing from ``weights`` counts 1."""
    names = list(rank_columns)
    w = np.array([float(weights.get(n, 1.0)) for n in names])
    if w.sum() <= 0:
        raise DataError("ensemble weights: every model has weight 0")
    stacked = np.stack([np.asarray(rank_columns[n], dtype=np.float64) for n in names])
    return (w[:, None] * stacked).sum(axis=0) / w.sum()


def rank_average(score_columns: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """The batch ensemble: each model's scores to normalised ranks, then their weighted mean."""
    return weighted_rank_average({n: rank_normalise(s) for n, s in score_columns.items()}, weights or {})


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold chosen on out-of-fold scores, with what it achieved there; positive when score >= threshold."""

    name: str
    threshold: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def confusion_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV when ``score >= threshold`` calls TB."""
    labels = np.asarray(labels).astype(int)
    called = check_scores(scores) >= threshold
    tp = int(np.sum(called & (labels == 1)))
    fn = int(np.sum(~called & (labels == 1)))
    tn = int(np.sum(~called & (labels == 0)))
    fp = int(np.sum(called & (labels == 0)))

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
    }


def _point(name: str, labels: np.ndarray, scores: np.ndarray, threshold: float) -> OperatingPoint:
    return OperatingPoint(name=name, threshold=float(threshold), **confusion_at(labels, scores, threshold))


def operating_points(
    labels: np.ndarray, scores: np.ndarray, target_sensitivity: float = 0.90, target_specificity: float = 0.70
) -> dict[str, OperatingPoint]:
    """Thresholds chosen on out-of-fold scores (never on test data).

    - ``sensitivity>=T``: the highest threshold whose sensitivity reaches T (best specificity there);
    - ``specificity>=T``: the lowest threshold whose specificity reaches T (best sensitivity there);
    - ``youden``: the threshold maximising sensitivity + specificity - 1.
    """
    labels = np.asarray(labels).astype(int)
    scores = check_scores(scores)
    auc(labels, scores, "operating points")
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    sens_index = int(np.argmax(tpr >= target_sensitivity))
    spec_ok = np.nonzero(1.0 - fpr >= target_specificity)[0]
    spec_index = int(spec_ok[-1]) if spec_ok.size else 0
    youden_index = int(np.argmax(tpr - fpr))
    return {
        f"sensitivity>={target_sensitivity:.2f}": _point(
            f"sensitivity>={target_sensitivity:.2f}", labels, scores, thresholds[sens_index]
        ),
        f"specificity>={target_specificity:.2f}": _point(
            f"specificity>={target_specificity:.2f}", labels, scores, thresholds[spec_index]
        ),
        "youden": _point("youden", labels, scores, thresholds[youden_index]),
    }


def quantile_reference(scores: Sequence[float] | np.ndarray, max_points: int = 2001) -> list[float]:
    """A sorted reference distribution for historical ranks: all scores, or ``max_points`` fine quantiles."""
    scores = np.sort(check_scores(np.asarray(scores)))
    if scores.size > max_points:
        scores = np.quantile(scores, np.linspace(0.0, 1.0, max_points))
    return [float(s) for s in scores]


def within_fold_ranks(scores: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each score's normalised rank among the scores of its own fold, i.e. its historical rank against
    the fold model that produced it: the OOF image then sits on the scale the edge engine uses."""
    scores = check_scores(scores)
    folds = np.asarray(folds)
    ranks = np.empty_like(scores)
    for fold in np.unique(folds):
        mask = folds == fold
        ranks[mask] = rank_normalise(scores[mask])
    return ranks


def oof_ensemble(oof: pd.DataFrame, backbones: Sequence[str], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """The ensemble score of out-of-fold rows: per backbone, within-fold ranks; then their weighted mean."""
    folds = oof["fold"].to_numpy()
    return weighted_rank_average({b: within_fold_ranks(oof[b].to_numpy(), folds) for b in backbones}, weights or {})
