"""The report's figures as PNGs (matplotlib, Agg backend, written atomically): ROC, histograms, reliability."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from tbensemble.core.atomic import atomic_path

MARKERS = ("o", "s", "^", "D", "v")


def _save(figure: Figure, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def roc_plot(
    labels: np.ndarray,
    curves: Mapping[str, np.ndarray],
    aucs: Mapping[str, float],
    points: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    title: str = "ROC, out-of-fold",
) -> None:
    """One ROC curve per score column; ``points`` (sensitivity, specificity) are marked on the last curve."""
    figure, ax = plt.subplots(figsize=(5.5, 5.0))
    for name, scores in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, lw=2.2 if name == "ensemble" else 1.2, label=f"{name} (AUC {aucs[name]:.3f})")
    for marker, point in zip(MARKERS, points, strict=False):
        ax.plot(
            1 - point["specificity"],
            point["sensitivity"],
            marker,
            ms=8,
            mfc="none",
            mew=2,
            color="black",
            label=f"{point['name']}: sens {point['sensitivity']:.2f}, spec {point['specificity']:.2f}",
        )
    ax.plot([0, 1], [0, 1], ls=":", color="gray", lw=1)
    ax.axhline(0.90, ls="--", color="tab:red", lw=0.8)
    ax.axvline(0.30, ls="--", color="tab:red", lw=0.8)
    ax.text(
        0.31, 0.55, "WHO triage minimum:\nsens ≥ 0.90, spec ≥ 0.70\n(upper-left corner)", color="tab:red", fontsize=7
    )
    ax.set(xlabel="1 − specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    _save(figure, path)


def histogram_plot(
    labels: np.ndarray,
    scores: np.ndarray,
    points: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    xlabel: str = "ensemble score (historical-rank scale)",
) -> None:
    """Score histograms per class with the operating thresholds as vertical lines."""
    labels = np.asarray(labels).astype(int)
    figure, ax = plt.subplots(figsize=(6.0, 3.6))
    bins = np.linspace(float(np.min(scores)), float(np.max(scores)), 31)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label=f"normal (n={int((labels == 0).sum())})", color="tab:blue")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label=f"TB (n={int((labels == 1).sum())})", color="tab:orange")
    for style, point in zip(("--", "-.", ":"), points, strict=False):
        ax.axvline(
            point["threshold"], ls=style, color="black", lw=1.2, label=f"{point['name']} ({point['threshold']:.3f})"
        )
    ax.set(xlabel=xlabel, ylabel="images", title="Scores per class")
    ax.legend(fontsize=7)
    _save(figure, path)


def reliability_plot(
    labels: np.ndarray,
    probabilities: Mapping[str, np.ndarray],
    briers: Mapping[str, float],
    path: str | os.PathLike[str],
    n_bins: int = 10,
) -> None:
    """Observed TB fraction against mean predicted probability per bin, with each curve's Brier score."""
    figure, ax = plt.subplots(figsize=(5.5, 5.0))
    ax.plot([0, 1], [0, 1], ls=":", color="gray", lw=1, label="perfectly calibrated")
    for name, values in probabilities.items():
        observed, predicted = calibration_curve(labels, np.clip(values, 0, 1), n_bins=n_bins, strategy="uniform")
        ax.plot(predicted, observed, marker="o", ms=3, label=f"{name} (Brier {briers[name]:.3f})")
    ax.set(xlabel="mean predicted probability", ylabel="fraction TB", title="Reliability", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    _save(figure, path)
