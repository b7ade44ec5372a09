"""Calibration maps: fitted with sklearn, replayed with numpy, and they must improve a miscalibrated score."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from tbensemble.core.calibration import apply_calibration, fit_calibration
from tbensemble.core.errors import ArtifactError, DataError


def _miscalibrated(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A rank-like score in (0, 1] whose true TB probability is score**3: far from the diagonal."""
    rng = np.random.default_rng(seed)
    scores = (np.arange(1, n + 1) / n)[rng.permutation(n)]
    labels = (rng.random(n) < scores**3).astype(int)
    return scores, labels


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_brier_on_held_out_data(method: str) -> None:
    scores, labels = _miscalibrated(seed=0)
    params = fit_calibration(scores, labels, method)
    test_scores, test_labels = _miscalibrated(seed=1)
    before = brier_score_loss(test_labels, test_scores)
    after = brier_score_loss(test_labels, apply_calibration(params, test_scores))
    assert after < before - 0.02


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_params_survive_json_and_stay_monotone_in_range(method: str) -> None:
    scores, labels = _miscalibrated()
    params = json.loads(json.dumps(fit_calibration(scores, labels, method)))
    grid = np.linspace(0.0, 1.0, 101)
    out = apply_calibration(params, grid)
    assert np.all((out >= 0) & (out <= 1))
    assert np.all(np.diff(out) >= -1e-12)


def test_platt_matches_sklearn_predict_proba() -> None:
    from sklearn.linear_model import LogisticRegression

    scores, labels = _miscalibrated()
    params = fit_calibration(scores, labels, "platt")
    logit = np.log(np.clip(scores, 1e-4, 1 - 1e-4) / (1 - np.clip(scores, 1e-4, 1 - 1e-4)))
    reference = LogisticRegression(C=1e6, max_iter=1000).fit(logit[:, None], labels).predict_proba(logit[:, None])[:, 1]
    np.testing.assert_allclose(apply_calibration(params, scores), reference, atol=1e-9)


def test_isotonic_clips_outside_the_fitted_range() -> None:
    params = {"method": "isotonic", "x": [0.2, 0.8], "y": [0.1, 0.7]}
    np.testing.assert_allclose(apply_calibration(params, np.array([0.0, 0.5, 1.0])), [0.1, 0.4, 0.7])


def test_bad_inputs_raise_clear_errors() -> None:
    scores, labels = _miscalibrated(50)
    with pytest.raises(DataError, match="not known"):
        fit_calibration(scores, labels, "beta")
    with pytest.raises(DataError, match="both classes"):
        fit_calibration(scores, np.zeros_like(labels), "platt")
    with pytest.raises(DataError, match="NaN"):
        fit_calibration(np.array([0.1, np.nan]), np.array([0, 1]), "platt")
    with pytest.raises(ArtifactError, match="lack key 'b'"):
        apply_calibration({"method": "platt", "a": 1.0, "eps": 1e-4}, scores)
    with pytest.raises(ArtifactError, match="not known"):
        apply_calibration({"method": "spline"}, scores)
