"""Report arithmetic against scikit-learn, bootstrap reproducibility, and the bad inputs a user can give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from tbensemble.core.errors import DataError
from tbensemble.report.evaluate import (
    auc_samples,
    auc_with_ci,
    bootstrap_indices,
    evaluate_oof,
    evaluate_submission,
    match_submission,
    wilson_interval,
)
from tests.report.conftest import make_oof


def test_bootstrap_auc_samples_equal_sklearn_on_each_resample(oof: pd.DataFrame) -> None:
    labels, scores = oof["label"].to_numpy(), oof["ensemble"].to_numpy()
    indices = bootstrap_indices(labels, 5, seed=3)
    expected = [roc_auc_score(labels[row], scores[row]) for row in indices]
    np.testing.assert_allclose(auc_samples(labels, scores, indices), expected, atol=1e-12)
    assert (labels[indices].sum(axis=1) == labels.sum()).all()


def test_ci_reproducible_with_seed_and_different_with_another(oof: pd.DataFrame) -> None:
    labels, scores = oof["label"].to_numpy(), oof["tinycnn"].to_numpy()
    first = auc_with_ci(labels, scores, n_bootstrap=500, seed=0)
    assert first == auc_with_ci(labels, scores, n_bootstrap=500, seed=0)
    other = auc_with_ci(labels, scores, n_bootstrap=500, seed=1)
    assert other["auc"] == first["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert (other["ci_low"], other["ci_high"]) != (first["ci_low"], first["ci_high"])
    assert first["ci_low"] < first["auc"] < first["ci_high"]


def test_oof_aucs_and_operating_points_match_sklearn(oof: pd.DataFrame) -> None:
    results = evaluate_oof(oof, n_bootstrap=200, seed=0)
    labels = oof["label"].to_numpy()
    assert results["ensemble"]["auc"] == pytest.approx(roc_auc_score(labels, oof["ensemble"]))
    pooled = {r["backbone"]: r["pooled"]["auc"] for r in results["per_backbone"]}
    assert pooled["tinycnn"] == pytest.approx(roc_auc_score(labels, oof["tinycnn"]))
    fold1 = next(r for r in results["per_fold"] if r["model"] == "tinyresnet" and r["fold"] == 1)
    rows = oof["fold"] == 1
    assert fold1["auc"] == pytest.approx(roc_auc_score(labels[rows], oof.loc[rows, "tinyresnet"]))

    points = {p["name"]: p for p in results["operating_points"]}
    fpr, tpr, thresholds = roc_curve(labels, oof["ensemble"], drop_intermediate=False)
    first_reaching = thresholds[np.argmax(tpr >= 0.90)]
    assert points["sensitivity>=0.90"]["threshold"] == pytest.approx(first_reaching)
    assert points["youden"]["threshold"] == pytest.approx(thresholds[np.argmax(tpr - fpr)])
    for point in points.values():
        called = (oof["ensemble"] >= point["threshold"]).astype(int)
        tn, fp, fn, tp = confusion_matrix(labels, called).ravel()
        assert (point["tp"], point["fp"], point["tn"], point["fn"]) == (tp, fp, tn, fn)
        assert point["sensitivity"] == pytest.approx(tp / (tp + fn))
        assert point["ppv"] == pytest.approx(tp / (tp + fp))
        assert point["npv"] == pytest.approx(tn / (tn + fn))
    assert points["sensitivity>=0.90"]["sensitivity"] >= 0.90
    assert points["specificity>=0.70"]["specificity"] >= 0.70


def test_gains_and_honest_tta_note() -> None:
    plain = evaluate_oof(make_oof(), n_bootstrap=200)
    assert plain["ensemble_gain"]["best_backbone"] == "tinyresnet"
    assert plain["tta"]["available"] is False and "cannot be measured" in plain["tta"]["note"]
    with_identity = evaluate_oof(make_oof(identity=True), n_bootstrap=200)
    gains = {r["backbone"]: r["gain"] for r in with_identity["tta"]["per_backbone"]}
    assert set(gains) == {"tinycnn", "tinyresnet"}
    assert all(g["ci_low"] <= g["delta"] <= g["ci_high"] for g in gains.values())
    assert "tinycnn@identity" not in with_identity["backbones"]
    single = make_oof().drop(columns=["tinyresnet"]).assign(ensemble=lambda f: f["tinycnn"])
    assert evaluate_oof(single, n_bootstrap=100)["ensemble_gain"] is None


def test_calibration_rows_are_cross_validated_and_better_than_the_raw_rank(oof: pd.DataFrame) -> None:
    rows = {r["name"]: r for r in evaluate_oof(oof, n_bootstrap=100)["calibration"]["rows"]}
    assert rows["ensemble platt, CV"]["fit"] == "cross-validated by fold"
    assert rows["ensemble platt, CV"]["brier"] < rows["ensemble rank score"]["brier"]
    stored = {"method": "platt", "a": 2.0, "b": -1.0, "eps": 1e-4}
    rows = {r["name"]: r for r in evaluate_oof(oof, n_bootstrap=100, calibration=stored)["calibration"]["rows"]}
    assert rows["ensemble manifest platt, in-sample"]["fit"].startswith("in-sample")


def test_wilson_interval_known_value() -> None:
    low, high = wilson_interval(9, 10)
    assert low == pytest.approx(0.5958, abs=1e-4) and high == pytest.approx(0.9821, abs=1e-4)


def _truth(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"test{i}.png" for i in range(n)], "label": np.arange(n) % 2})


def test_mismatched_ids_list_counts_and_examples() -> None:
    truth = _truth()
    submission = pd.DataFrame({"image_id": [f"test{i}.png" for i in range(2, 42)], "label": np.linspace(0, 1, 40)})
    with pytest.raises(
        DataError, match=r"40 vs 40 ids, 2 only in the submission \(e.g. test40.png, test41.png\), 2 only in the truth"
    ):
        match_submission(submission, truth, "sub.csv", "truth.csv")


def test_single_class_truth_and_nan_scores_are_clear_errors() -> None:
    truth = _truth().assign(label=1)
    submission = _truth().assign(label=0.5)
    with pytest.raises(DataError, match=r"truth\.csv: all 40 labels are 1; AUC needs both classes"):
        match_submission(submission, truth, "sub.csv", "truth.csv")
    nan_sub = _truth().assign(label=np.where(np.arange(40) == 3, np.nan, 0.5))
    with pytest.raises(DataError, match=r"sub\.csv column 'label': 1 of 40 scores are NaN"):
        match_submission(nan_sub, _truth(), "sub.csv", "truth.csv")


def test_submission_with_manifest_points_refuses_scores_off_the_rank_scale() -> None:
    truth = _truth()
    merged = match_submission(truth.assign(label=np.linspace(-2, 3, 40)), truth, "sub.csv", "truth.csv")
    with pytest.raises(DataError, match="not the historical-rank scale"):
        evaluate_submission(merged, n_bootstrap=100, manifest_points={"youden": {"threshold": 0.5}})
    merged = match_submission(truth.assign(label=np.linspace(0.01, 1, 40)), truth, "sub.csv", "truth.csv")
    results = evaluate_submission(merged, n_bootstrap=100, manifest_points={"youden": {"threshold": 0.5}})
    sources = [p["source"] for p in results["operating_points"]]
    assert sources[0] == "manifest (chosen on OOF)" and "chosen on this truth (optimistic)" in sources
