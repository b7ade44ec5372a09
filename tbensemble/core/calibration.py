"""Calibration: a map from the ensemble's historical-rank scale to a probability, fitted on OOF scores.

A rank score orders images well but is not a probability (0.9 means "above 90% of the reference
images", not "90% chance of TB"). ``fit_calibration`` learns the map with scikit-learn and returns
plain JSON numbers, so the manifest can store it and ``apply_calibration`` can replay it with numpy
alone on an edge server.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tbensemble.core.errors import ArtifactError, DataError
from tbensemble.core.metrics import check_scores

METHODS = ("platt", "isotonic")
LOGIT_EPS = 1e-4
"""Platt works on logit(score); scores are clipped to [eps, 1 - eps] so a rank of exactly 1.0 stays finite."""


def _logit(scores: np.ndarray, eps: float) -> np.ndarray:
    clipped = np.clip(scores, eps, 1.0 - eps)
    return np.log(clipped / (1.0 - clipped))


def fit_calibration(scores: np.ndarray, labels: np.ndarray, method: str) -> dict[str, Any]:
    """Fit a Platt (logistic on the score's logit) or isotonic map; returns JSON-serialisable parameters."""
    if method not in METHODS:
        raise DataError(f"calibration method {method!r} is not known; allowed: {', '.join(METHODS)}")
    scores = check_scores(scores, "calibration scores")
    labels = np.asarray(labels).astype(int)
    if scores.shape != labels.shape:
        raise DataError(f"calibration: {scores.size} scores but {labels.size} labels")
    if np.unique(labels).size < 2:
        raise DataError(f"calibration: needs both classes; all {labels.size} labels are {labels.flat[0]}")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression  # fitting only: the engine replays with numpy

        model = LogisticRegression(C=1e6, max_iter=1000)
        model.fit(_logit(scores, LOGIT_EPS)[:, None], labels)
        return {
            "method": "platt",
            "input": "logit",
            "eps": LOGIT_EPS,
            "a": float(model.coef_[0, 0]),
            "b": float(model.intercept_[0]),
            "n": int(scores.size),
        }
    from sklearn.isotonic import IsotonicRegression  # fitting only: the engine replays with numpy

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(scores, labels)
    return {
        "method": "isotonic",
        "x": [float(v) for v in iso.X_thresholds_],
        "y": [float(v) for v in iso.y_thresholds_],
        "out_of_bounds": "clip",
        "n": int(scores.size),
    }


def apply_calibration(params: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """Replay stored parameters with numpy only: sigmoid(a·logit(s) + b), or linear interpolation clipped at the ends."""
    scores = check_scores(scores, "scores to calibrate")
    method = params.get("method")
    try:
        if method == "platt":
            z = float(params["a"]) * _logit(scores, float(params["eps"])) + float(params["b"])
            return 1.0 / (1.0 + np.exp(-z))
        if method == "isotonic":
            x = np.asarray(params["x"], dtype=np.float64)
            y = np.asarray(params["y"], dtype=np.float64)
            if x.size == 0 or x.shape != y.shape:
                raise ArtifactError(f"calibration: isotonic x ({x.size}) and y ({y.size}) must be non-empty and equal")
            return np.interp(scores, x, y)
    except KeyError as exc:
        raise ArtifactError(f"calibration: {method} parameters lack key {exc.args[0]!r}") from None
    raise ArtifactError(f"calibration: method {method!r} is not known; allowed: {', '.join(METHODS)}")
