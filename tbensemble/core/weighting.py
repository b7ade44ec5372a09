"""Ensemble weights chosen honestly: each method is scored by nested cross-validation on the OOF table.

The ensemble is a weighted mean of each backbone's within-fold ranks (``core.metrics.oof_ensemble``; the
engine uses historical ranks, the same scale). A method turns rank columns and labels into non-negative
weights. Its nested score for fold k uses weights fitted on the other folds' OOF rows only, so a method
that overfits the OOF table is not flattered. Equal weights stay unless another method beats them by more
than noise: the paired bootstrap 95% interval of its nested-AUC gain over equal weights lies above zero.

Methods:
- ``equal``: every backbone 1.
- ``auc``: proportional to the backbone's AUC above chance (AUC - 0.5, floored at 0).
- ``greedy``: ensemble selection with replacement (Caruana et al. 2004): start from the best backbone, add
  the backbone whose addition gives the best AUC, 25 times; weights are the counts at the best step.
- ``stacked``: logistic regression on the ranks (scikit-learn, L2, C=1); negative coefficients become 0,
  since the engine's rank average takes weights >= 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tbensemble.core.bootstrap import auc_samples, bootstrap_indices, percentile_interval
from tbensemble.core.errors import ConfigError
from tbensemble.core.metrics import auc, within_fold_ranks

METHODS = ("equal", "auc", "greedy", "stacked")
CHOICES = ("auto", *METHODS)
"""``ensemble_weighting`` values: ``auto`` applies the rule above; a method name forces that method."""
GREEDY_STEPS = 25


def rank_matrix(oof: pd.DataFrame, backbones: Sequence[str]) -> np.ndarray:
    """(N, M) within-fold ranks of each backbone's OOF scores: the scale the ensemble averages."""
    folds = oof["fold"].to_numpy()
    return np.column_stack([within_fold_ranks(oof[b].to_numpy(), folds) for b in backbones])


def _normalised(weights: np.ndarray) -> np.ndarray:
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    total = weights.sum()
    return weights / total if total > 0 else np.full(weights.size, 1.0 / weights.size)


def _column_aucs(ranks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([auc(labels, ranks[:, j], "weighting") for j in range(ranks.shape[1])])


def _greedy(ranks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    counts = np.zeros(ranks.shape[1])
    counts[int(np.argmax(_column_aucs(ranks, labels)))] = 1
    best_counts, best_auc = counts.copy(), auc(labels, ranks @ counts, "weighting")
    for _ in range(GREEDY_STEPS):
        trials = [auc(labels, ranks @ (counts + np.eye(ranks.shape[1])[j]), "weighting") for j in range(ranks.shape[1])]
        counts[int(np.argmax(trials))] += 1
        if max(trials) > best_auc:
            best_counts, best_auc = counts.copy(), max(trials)
    return best_counts


def _stacked(ranks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0).fit(ranks, labels).coef_.ravel()


def fit_weights(method: str, ranks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 for the columns of ``ranks`` (N, M), fitted on these rows only."""
    labels = np.asarray(labels).astype(int)
    if method == "equal" or ranks.shape[1] == 1:
        return np.full(ranks.shape[1], 1.0 / ranks.shape[1])
    if method == "auc":
        return _normalised(_column_aucs(ranks, labels) - 0.5)
    if method == "greedy":
        return _normalised(_greedy(ranks, labels))
    if method == "stacked":
        return _normalised(_stacked(ranks, labels))
    raise ConfigError(f"ensemble_weighting: unknown method {method!r}; allowed: {', '.join(CHOICES)}")


def nested_scores(method: str, ranks: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, dict]:
    """Each fold's ensemble scores under weights fitted on the other folds; returns the scores (N,) and the
    weights used for each held-out fold."""
    labels, folds = np.asarray(labels).astype(int), np.asarray(folds)
    scores = np.empty(len(labels))
    used = {}
    for fold in np.unique(folds):
        held = folds == fold
        weights = fit_weights(method, ranks[~held], labels[~held])
        scores[held] = ranks[held] @ weights
        used[int(fold)] = weights
    return scores, used


def _paired(samples: Mapping[str, np.ndarray], point: Mapping[str, float], new: str, old: str) -> dict[str, float]:
    low, high = percentile_interval(samples[new] - samples[old])
    return {"delta": point[new] - point[old], "ci_low": low, "ci_high": high}


def compare_methods(
    oof: pd.DataFrame, backbones: Sequence[str], n_bootstrap: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Nested AUC of every method with its 95% interval, and its paired gain over the best single backbone
    (chosen post hoc on all OOF rows, which favours the single model) and over equal weights."""
    labels, folds = oof["label"].to_numpy().astype(int), oof["fold"].to_numpy()
    ranks = rank_matrix(oof, backbones)
    singles = dict(zip(backbones, _column_aucs(ranks, labels), strict=True))
    best = max(singles, key=singles.__getitem__)
    columns = {f"single:{best}": ranks[:, list(backbones).index(best)]}
    fold_weights = {}
    for method in METHODS:
        columns[method], used = nested_scores(method, ranks, labels, folds)
        fold_weights[method] = {str(k): dict(zip(backbones, map(float, w), strict=True)) for k, w in used.items()}
    indices = bootstrap_indices(labels, n_bootstrap, seed)
    point = {name: auc(labels, scores, name) for name, scores in columns.items()}
    samples = {name: auc_samples(labels, scores, indices) for name, scores in columns.items()}
    methods = {}
    for method in METHODS:
        low, high = percentile_interval(samples[method])
        methods[method] = {
            "nested_auc": point[method],
            "ci_low": low,
            "ci_high": high,
            "vs_best_backbone": _paired(samples, point, method, f"single:{best}"),
            "vs_equal": _paired(samples, point, method, "equal"),
            "fold_weights": fold_weights[method],
        }
    return {
        "backbone_auc": singles,
        "best_backbone": best,
        "methods": methods,
        "n": len(labels),
        "ci_method": f"stratified bootstrap, paired, percentile 95% interval, {n_bootstrap} resamples, seed {seed}",
    }


def choose_method(comparison: Mapping[str, Any]) -> str:
    """Equal weights, unless a method's nested-AUC gain over them has a paired interval above 0; among
    several such, the highest nested AUC."""
    winners = [m for m, r in comparison["methods"].items() if m != "equal" and r["vs_equal"]["ci_low"] > 0]
    return max(winners, key=lambda m: comparison["methods"][m]["nested_auc"]) if winners else "equal"


def ensemble_weighting(
    oof: pd.DataFrame,
    backbones: Sequence[str],
    requested: str = "auto",
    manual: Mapping[str, float] | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The weights the ensemble ships with (per backbone, summing to 1), the method that gave them and the
    comparison behind the choice. ``manual`` weights (the config's ``ensemble_weights``) win over any method."""
    if requested not in CHOICES:
        raise ConfigError(f"ensemble_weighting: unknown method {requested!r}; allowed: {', '.join(CHOICES)}")
    backbones = list(backbones)
    labels = oof["label"].to_numpy().astype(int)
    comparison = compare_methods(oof, backbones, n_bootstrap, seed) if len(backbones) > 1 else None
    if manual:
        method = "manual"
        weights = _normalised(np.array([float(manual.get(b, 1.0)) for b in backbones]))
    else:
        method = requested if requested != "auto" else (choose_method(comparison) if comparison else "equal")
        weights = fit_weights(method, rank_matrix(oof, backbones), labels)
    return {
        "method": method,
        "requested": "manual" if manual else requested,
        "weights": dict(zip(backbones, map(float, weights), strict=True)),
        "comparison": comparison,
    }
