"""Ranks, historical ranks, rank averaging and operating points against scikit-learn and by hand."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tbensemble.core.errors import DataError
from tbensemble.core.metrics import (
    auc,
    historical_rank,
    oof_ensemble,
    operating_points,
    quantile_reference,
    rank_average,
    rank_normalise,
    within_fold_ranks,
)


def test_rank_normalise_average_ties_in_unit_interval() -> None:
    ranks = rank_normalise(np.array([0.3, 0.1, 0.3, 0.9]))
    np.testing.assert_allclose(ranks, [2.5 / 4, 1 / 4, 2.5 / 4, 1.0])


def test_historical_rank_of_reference_members_equals_batch_rank() -> None:
    reference = np.sort(np.random.default_rng(0).random(50))
    np.testing.assert_allclose(historical_rank(reference, reference), rank_normalise(reference))


def test_historical_rank_between_and_outside_reference() -> None:
    reference = np.array([0.1, 0.2, 0.2, 0.5])
    got = historical_rank(np.array([0.3, 0.0, 0.9]), reference)
    np.testing.assert_allclose(got, [3.5 / 4, 0.5 / 4, 1.0])
    assert np.all(np.diff(historical_rank(np.linspace(0, 1, 101), reference)) >= 0)


def test_rank_average_weights_and_auc_invariance() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    a = labels + rng.normal(0, 1, 200)
    b = np.exp(labels + rng.normal(0, 1, 200))
    only_a = rank_average({"a": a, "b": b}, {"a": 1.0, "b": 0.0})
    assert roc_auc_score(labels, only_a) == pytest.approx(roc_auc_score(labels, a))
    both = rank_average({"a": a, "b": b})
    np.testing.assert_allclose(both, (rank_normalise(a) + rank_normalise(b)) / 2)


def test_auc_matches_sklearn_and_refuses_bad_input() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    with pytest.raises(DataError, match="AUC needs both classes"):
        auc(np.ones(4), scores[:4])
    with pytest.raises(DataError, match="submission: scores are not all numbers"):
        auc(labels, np.array(["0.1", "high", "0.3", "0.4", "0.5", "0.6"], dtype=object), "submission")
    with pytest.raises(DataError, match="1 of 6 scores are NaN"):
        auc(labels, np.array([0, 1, 2, 3, 4, np.nan]))


def test_operating_points_reach_their_targets() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 500)
    scores = labels * 1.2 + rng.normal(0, 1, 500)
    points = operating_points(labels, scores, 0.90, 0.70)
    sens = points["sensitivity>=0.90"]
    assert sens.sensitivity >= 0.90
    called = scores >= sens.threshold
    assert sens.specificity == pytest.approx(np.mean(~called[labels == 0]))
    higher = np.unique(scores[scores > sens.threshold]).min()
    assert np.mean(scores[labels == 1] >= higher) < 0.90
    assert points["specificity>=0.70"].specificity >= 0.70
    youden = points["youden"]
    best = max(np.mean(scores[labels == 1] >= t) + np.mean(scores[labels == 0] < t) - 1 for t in np.unique(scores))
    assert youden.sensitivity + youden.specificity - 1 == pytest.approx(best)


def test_oof_ensemble_uses_within_fold_ranks() -> None:
    oof = pd.DataFrame(
        {"fold": [0, 0, 1, 1], "a": [0.1, 0.2, 0.8, 0.9], "b": [0.4, 0.3, 0.2, 0.1], "label": [0, 1, 0, 1]}
    )
    np.testing.assert_allclose(within_fold_ranks(oof["a"].to_numpy(), oof["fold"].to_numpy()), [0.5, 1, 0.5, 1])
    np.testing.assert_allclose(oof_ensemble(oof, ["a", "b"]), [0.75, 0.75, 0.75, 0.75])
    np.testing.assert_allclose(oof_ensemble(oof, ["a", "b"], {"b": 0}), [0.5, 1, 0.5, 1])


def test_quantile_reference_is_sorted_and_bounded() -> None:
    scores = np.random.default_rng(3).random(10_000)
    reference = quantile_reference(scores, max_points=101)
    assert len(reference) == 101 and reference == sorted(reference)
    assert reference[0] == pytest.approx(scores.min()) and reference[-1] == pytest.approx(scores.max())
    assert quantile_reference([0.3, 0.1]) == [0.1, 0.3]
