"""Ensemble weighting: each method's weights, nested cross-validation that never sees the held-out fold's
labels, and the rule that keeps equal weights unless a method wins beyond noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tbensemble.core.errors import ConfigError
from tbensemble.core.weighting import (
    METHODS,
    choose_method,
    compare_methods,
    ensemble_weighting,
    fit_weights,
    nested_scores,
    rank_matrix,
)


def oof_table(n: int = 600, strengths=(2.0, 2.0), seed: int = 0, folds: int = 3) -> pd.DataFrame:
    """Scores = label * strength + noise, one column per strength (strength 0: a useless member)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    table = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "label": labels, "fold": np.arange(n) % folds})
    for j, strength in enumerate(strengths):
        table[f"m{j}"] = labels * strength + rng.normal(size=n)
    return table


def test_every_method_gives_non_negative_weights_summing_to_one():
    table = oof_table(strengths=(2.0, 1.0, 0.0))
    ranks = rank_matrix(table, ["m0", "m1", "m2"])
    for method in METHODS:
        weights = fit_weights(method, ranks, table["label"].to_numpy())
        assert weights.shape == (3,) and (weights >= 0).all() and weights.sum() == pytest.approx(1.0), method
    assert fit_weights("equal", ranks, table["label"]) == pytest.approx([1 / 3] * 3)
    auc_weights = fit_weights("auc", ranks, table["label"])
    assert auc_weights[0] > auc_weights[1] > auc_weights[2]
    assert fit_weights("greedy", ranks, table["label"])[0] >= 0.5
    assert fit_weights("stacked", ranks, table["label"])[0] > fit_weights("stacked", ranks, table["label"])[2]


def test_unknown_method_is_a_config_error():
    table = oof_table()
    with pytest.raises(ConfigError, match="ensemble_weighting: unknown method 'best'; allowed: auto, equal"):
        fit_weights("best", rank_matrix(table, ["m0", "m1"]), table["label"])


@pytest.mark.parametrize("method", METHODS)
def test_nested_scores_of_a_fold_never_see_its_labels(method):
    table = oof_table(strengths=(2.0, 0.5))
    ranks = rank_matrix(table, ["m0", "m1"])
    labels, folds = table["label"].to_numpy(), table["fold"].to_numpy()
    scores, used = nested_scores(method, ranks, labels, folds)
    flipped = labels.copy()
    flipped[folds == 0] = 1 - flipped[folds == 0]
    again, _ = nested_scores(method, ranks, flipped, folds)
    np.testing.assert_array_equal(scores[folds == 0], again[folds == 0])
    assert sorted(used) == [0, 1, 2]


def test_a_useless_member_is_weighted_down_beyond_noise_and_auto_picks_a_fitted_method():
    table = oof_table(strengths=(2.5, 0.0))
    comparison = compare_methods(table, ["m0", "m1"], n_bootstrap=500)
    assert comparison["best_backbone"] == "m0"
    for method in ("auc", "greedy", "stacked"):
        assert comparison["methods"][method]["vs_equal"]["ci_low"] > 0, method
    chosen = choose_method(comparison)
    assert chosen in ("auc", "greedy", "stacked")
    result = ensemble_weighting(table, ["m0", "m1"], "auto", n_bootstrap=500)
    assert result["method"] == chosen and result["weights"]["m0"] > result["weights"]["m1"]


def test_members_of_equal_strength_keep_equal_weights():
    table = oof_table(strengths=(1.5, 1.5), seed=2)
    result = ensemble_weighting(table, ["m0", "m1"], "auto", n_bootstrap=500)
    assert result["method"] == "equal"
    assert result["weights"] == {"m0": 0.5, "m1": 0.5}
    equal = result["comparison"]["methods"]["equal"]
    assert equal["ci_low"] <= equal["nested_auc"] <= equal["ci_high"]
    # Two independent members of equal strength: the average beats either one.
    assert equal["vs_best_backbone"]["delta"] > 0


def test_manual_weights_and_forced_methods_win_over_the_rule():
    table = oof_table(strengths=(1.5, 1.5), seed=2)
    manual = ensemble_weighting(table, ["m0", "m1"], "auto", manual={"m0": 3.0}, n_bootstrap=100)
    assert manual["method"] == "manual" and manual["weights"] == {"m0": 0.75, "m1": 0.25}
    forced = ensemble_weighting(table, ["m0", "m1"], "greedy", n_bootstrap=100)
    assert forced["method"] == "greedy"
    single = ensemble_weighting(table, ["m0"], "auto")
    assert single == {"method": "equal", "requested": "auto", "weights": {"m0": 1.0}, "comparison": None}
