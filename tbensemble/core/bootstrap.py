"""Stratified bootstrap of ROC AUC: seeded resamples shared by every score column, so differences are paired.

Positives and negatives are resampled separately, so every resample has both classes and the class balance
of the data; intervals are percentile intervals.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

LEVEL = 0.95


def bootstrap_indices(labels: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """(B, N) resample indices, positives first then negatives, each class resampled with replacement."""
    labels = np.asarray(labels).astype(int)
    rng = np.random.default_rng(seed)
    positives = np.flatnonzero(labels == 1)
    negatives = np.flatnonzero(labels == 0)
    return np.concatenate(
        [
            rng.choice(positives, size=(n_bootstrap, positives.size)),
            rng.choice(negatives, size=(n_bootstrap, negatives.size)),
        ],
        axis=1,
    )


def auc_samples(labels: np.ndarray, scores: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """AUC of each resample (Mann-Whitney on average ranks, all resamples at once)."""
    n_pos = int(np.sum(np.asarray(labels) == 1))
    n_neg = indices.shape[1] - n_pos
    ranks = rankdata(np.asarray(scores, dtype=np.float64)[indices], axis=1)
    return (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)
