import numpy as np
import pytest
from scipy.stats import beta, norm

from tbensemble.core import decisions as rules
from tbensemble.core.errors import ArtifactError, DataError


def test_clopper_pearson_lower_bound_is_the_beta_quantile():
    assert rules.clopper_pearson_lower(120, 120) == pytest.approx(0.05 ** (1 / 120))
    assert rules.clopper_pearson_lower(100, 120) == pytest.approx(beta.ppf(0.05, 100, 21))
    assert rules.clopper_pearson_lower(0, 10) == 0.0
    low, high = rules.clopper_pearson_interval(108, 120)
    assert low < 108 / 120 < high


def test_guaranteed_threshold_is_the_highest_whose_bound_reaches_the_target():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(120), np.zeros(480)].astype(int)
    scores = np.r_[rng.normal(2, 1, 120), rng.normal(0, 1, 480)]
    found = rules.guaranteed_sensitivity_threshold(labels, scores, 0.90)
    positives = scores[labels == 1]
    bounds = {t: rules.clopper_pearson_lower(np.sum(positives >= t), 120) for t in positives}
    ok = [t for t, b in bounds.items() if b >= 0.90]
    assert found.achieved and found.threshold == max(ok)
    assert found.lower_bound >= 0.90
    plain = rules.decision_points(labels, scores, 0.90)[0]["sensitivity>=0.90"]
    assert found.threshold < plain["threshold"], "the guarantee costs threshold height"


def test_guarantee_holds_out_of_sample_at_least_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    misses = 0
    trials = 400
    for _ in range(trials):
        positives = rng.normal(2.0, 1.0, 120)
        labels = np.r_[np.ones(120), np.zeros(10)].astype(int)
        scores = np.r_[positives, rng.normal(0, 1, 10)]
        threshold = rules.guaranteed_sensitivity_threshold(labels, scores, 0.90).threshold
        true_sensitivity = 1.0 - norm.cdf(threshold, 2.0, 1.0)
        misses += true_sensitivity < 0.90
    assert misses / trials <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / trials)


def test_too_few_positives_cannot_be_guaranteed_and_the_warning_says_so():
    labels = np.r_[np.ones(10), np.zeros(40)].astype(int)
    scores = np.r_[np.linspace(0.6, 1.0, 10), np.linspace(0.0, 0.5, 40)]
    points, default = rules.decision_points(labels, scores, 0.90)
    point = points[default]
    assert default == "sensitivity>=0.90@lcb95" and not point["guarantee"]["achieved"]
    assert point["threshold"] == pytest.approx(0.6)
    warning = rules.who_warning({"name": default, **point})
    assert warning.startswith("WARNING:") and "all 10 OOF TB images" in warning and "\n" not in warning


def test_who_warning_only_when_the_minimum_is_missed():
    assert rules.who_warning({"name": "p", "sensitivity": 0.92, "specificity": 0.75}) is None
    line = rules.who_warning({"name": "p", "sensitivity": 0.917, "specificity": 0.021})
    assert "misses WHO's triage minimum" in line and "specificity 0.021" in line


def test_dicom_reasons():
    assert rules.dicom_reasons(None) == [] and rules.dicom_reasons({}) == []
    assert rules.dicom_reasons({"Modality": "dx", "BodyPartExamined": "Chest", "ViewPosition": "AP"}) == []
    assert rules.dicom_reasons({"Modality": "CT", "BodyPartExamined": "", "ViewPosition": "LL"}) == [
        "dicom_modality=CT",
        "dicom_view=LL",
    ]
    assert rules.dicom_reasons({"BodyPartExamined": "HAND;X RAY"}) == ["dicom_body_part=HAND,X_RAY"]


def test_pixel_reasons():
    rng = np.random.default_rng(2)
    images = rng.integers(40, 200, (4, 32, 32)).astype(np.uint8)
    images[1] = 90
    images[2, :, :28] = 255
    images[3, :, :8] = 0
    assert rules.pixel_reasons(images) == [[], ["blank_image"], ["saturated_image"], []]


def test_feature_reference_distances_and_round_trip():
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(4, 32))
    train = rng.normal(size=(300, 4)) @ basis + 0.1 * rng.normal(size=(300, 32))
    reference = rules.FeatureReference.fit(train, 8)
    honest = rules.cross_fitted_distances(train, 8)
    assert 0.7 < np.median(honest) < 1.3
    new_in = rng.normal(size=(50, 4)) @ basis + 0.1 * rng.normal(size=(50, 32))
    off_axes = rng.normal(size=(50, 32))
    assert np.median(reference.distance(new_in)) < np.quantile(honest, 0.99) < np.min(reference.distance(off_axes))
    again = rules.FeatureReference.from_dict(reference.to_dict())
    np.testing.assert_allclose(again.distance(off_axes), reference.distance(off_axes))
    with pytest.raises(ArtifactError, match="malformed"):
        rules.FeatureReference.from_dict({"mean": [0.0]})
    with pytest.raises(ArtifactError, match="shapes"):
        rules.FeatureReference.from_dict({**reference.to_dict(), "mean": [0.0, 1.0]})
    with pytest.raises(DataError):
        rules.FeatureReference.fit(train[:2])


def test_backbone_disagreement_uses_backbone_means():
    ranks = {"a-f0": np.array([0.9, 0.1]), "a-f1": np.array([0.7, 0.1]), "b-f0": np.array([0.2, 0.2])}
    spread = rules.backbone_disagreement(ranks, {"a-f0": "a", "a-f1": "a", "b-f0": "b"})
    np.testing.assert_allclose(spread, [0.6, 0.1])
    assert rules.backbone_disagreement({"a-f0": np.ones(3)}, {"a-f0": "a"}).tolist() == [0, 0, 0]


def test_decide_refers_before_thresholding():
    decisions, reasons = rules.decide(np.array([0.9, 0.1, 0.9]), 0.5, [[], [], ["blank_image", "x"]])
    assert decisions == ["tb", "normal", "refer"] and reasons == ["", "", "blank_image;x"]


def test_psi_is_near_zero_for_the_same_distribution_and_alerts_on_a_shift():
    rng = np.random.default_rng(4)
    reference = rules.drift_reference(rng.random(600))
    assert sum(reference["expected"]) == pytest.approx(1.0) and len(reference["edges"]) == 9
    assert rules.psi(reference, rng.random(1000)) < 0.05
    assert rules.psi(reference, rng.random(1000) ** 3) > rules.PSI_ALERT
    ok = rules.drift_summary(reference, rng.random(1000), ["tb"] * 1000)
    assert ok["status"] == "ok" and ok["alerts"] == [] and ok["notes"] == []
    referred = rules.drift_summary(reference, rng.random(1000), ["refer"] * 200 + ["normal"] * 800)
    assert referred["status"] == "alert" and "refer rate 20.0%" in referred["alerts"][0]
    few = rules.drift_summary(reference, rng.random(20), ["normal"] * 20)
    assert "noisy" in few["notes"][0]
    with pytest.raises(DataError):
        rules.psi(reference, np.array([]))
