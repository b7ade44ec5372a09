"""scripts/bench_ensemble.py's summary: gains keep one name whichever member is best, and the interval over seeds
is the t-interval of the mean gain."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tests.script_module import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_ensemble")


def _seed_result(bench, member_a_better: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], 50)
    strong, weak = labels + rng.normal(0, 0.6, 100), labels + rng.normal(0, 1.2, 100)
    columns = {"a": strong if member_a_better else weak, "b": weak if member_a_better else strong}
    columns["ensemble"] = columns["a"] + columns["b"]
    best = "a" if member_a_better else "b"
    pairs = {"ensemble - best member": ("ensemble", best)}
    return {"test": bench.compare(labels, columns, pairs, n_boot=200), "best_member": best}


def test_the_gain_over_the_best_member_has_one_name_when_the_best_member_differs_between_seeds(bench):
    results = [_seed_result(bench, True, 1), _seed_result(bench, False, 2), _seed_result(bench, True, 3)]
    summary = bench.over_seeds(results)
    gains = np.array([r["test"]["ensemble - best member"]["delta"] for r in results])
    entry = summary["ensemble - best member"]
    half = stats.t.ppf(0.975, 2) * gains.std(ddof=1) / np.sqrt(3)
    assert entry["mean"] == pytest.approx(gains.mean())
    assert entry["ci"] == pytest.approx([gains.mean() - half, gains.mean() + half])
    assert entry["at_least_as_good"] == int((gains >= 0).sum()) and entry["n"] == 3
    assert "ci" not in summary["ensemble"]  # an AUC gets its mean and sd, not a gain's interval


def test_a_pair_is_the_paired_difference_of_its_two_columns(bench):
    result = _seed_result(bench, True, 4)["test"]
    assert result["ensemble - best member"]["delta"] == pytest.approx(result["ensemble"]["auc"] - result["a"]["auc"])
    low, high = result["ensemble - best member"]["ci"]
    assert low <= result["ensemble - best member"]["delta"] <= high
