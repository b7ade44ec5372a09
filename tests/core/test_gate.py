import numpy as np
import pytest

from tbensemble.core.gate import DEFAULT_LIMITS, FP32, Candidate, GateLimits, choose_variant, evaluate_gate
from tbensemble.core.metrics import quantile_reference


@pytest.fixture
def heldout():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(400, int), np.ones(100, int)]
    scores = np.clip(rng.normal(0.3, 0.15, 500) + 0.25 * labels, 0.001, 0.999)
    return labels, scores


def gate(labels, fp32, variant, threshold=0.8, limits=DEFAULT_LIMITS):
    return evaluate_gate(
        labels, fp32, variant, quantile_reference(fp32), quantile_reference(variant), threshold, limits
    )


def test_identical_scores_pass_with_exact_figures(heldout):
    labels, scores = heldout
    result = gate(labels, scores, scores.copy())
    assert result.passed and result.failures == []
    assert result.spearman == pytest.approx(1.0)
    assert result.delta_auc == 0.0 and result.flipped_fraction == 0.0 and result.max_abs_diff == 0.0
    assert result.n_images == 500 and result.to_dict()["passed"] is True


def test_a_monotone_distortion_keeps_ranks_and_decisions_on_its_own_reference(heldout):
    """bf16-like shift of every score: raw scores move, but ranked against the variant's own OOF
    reference (the historical scale) no decision flips."""
    labels, scores = heldout
    result = gate(labels, scores, scores**1.3)
    assert result.passed
    assert result.max_abs_diff > 0.05 and result.flipped_fraction == 0.0


def test_reordered_scores_fail_spearman_auc_and_flips(heldout):
    labels, scores = heldout
    noisy = scores + np.random.default_rng(1).normal(0, 0.2, scores.size)
    result = gate(labels, scores, noisy)
    assert not result.passed
    assert result.spearman < 0.99 and abs(result.delta_auc) > 0.005 and result.flipped_fraction > 0.01
    assert len(result.failures) == 3 and result.failures[0].startswith("Spearman")


def test_flips_counted_at_the_threshold(heldout):
    """Swap the two images either side of the operating point: exactly two decisions flip."""
    labels, scores = heldout
    order = np.argsort(scores)
    cut = int(0.8 * scores.size)
    variant = scores.copy()
    i, j = order[cut - 1], order[cut]
    variant[i], variant[j] = scores[j], scores[i]
    result = gate(labels, scores, variant, threshold=(cut + 0.5) / scores.size)
    assert result.flipped_fraction == pytest.approx(2 / 500)
    strict = gate(
        labels, scores, variant, threshold=(cut + 0.5) / scores.size, limits=GateLimits(max_flipped_fraction=0.001)
    )
    assert not strict.passed and "flipped" in strict.failures[-1]


def test_constant_variant_fails_rather_than_passing_on_nan(heldout):
    labels, scores = heldout
    result = gate(labels, scores, np.full_like(scores, 0.5))
    assert np.isnan(result.spearman)
    assert not result.passed and "Spearman nan" in result.failures[0]


def test_nan_scores_fail_the_variant_instead_of_stopping_optimize(heldout):
    """An FP16 copy that overflows scores NaN: that variant fails, the other variants still get gated."""
    labels, scores = heldout
    variant = scores.copy()
    variant[[3, 7]] = [np.nan, np.inf]
    result = evaluate_gate(labels, scores, variant, quantile_reference(scores), np.array([]), 0.8)
    assert not result.passed and result.failures == ["2 of 500 scores are NaN or infinite"]
    assert np.isnan(result.spearman) and result.auc_fp32 > 0.5


def test_mismatched_lengths_are_refused(heldout):
    labels, scores = heldout
    with pytest.raises(ValueError, match="differ in length"):
        gate(labels, scores, scores[:-1])


def passing(name, ips):
    return Candidate(name, ips, gate_result(True))


def gate_result(passed):
    labels = np.r_[0, 0, 1, 1]
    scores = np.array([0.1, 0.2, 0.7, 0.9])
    variant = scores if passed else scores[::-1]
    return evaluate_gate(labels, scores, variant, scores, np.sort(variant), 0.5)


def test_fastest_passing_variant_is_chosen_and_every_candidate_gets_a_reason():
    candidates = [
        passing("openvino-fp32", 11.0),
        passing("openvino-bf16", 20.0),
        Candidate("ort-int8-qoperator", 40.0, gate_result(False)),
        Candidate("openvino-int8", 0.0, None, unavailable="this CPU lacks INT8"),
    ]
    chosen, reasons = choose_variant(candidates, fp32_images_per_s=10.0)
    assert chosen == "openvino-bf16"
    assert reasons["openvino-bf16"].startswith("chosen") and "2.00×" in reasons["openvino-bf16"]
    assert reasons["openvino-fp32"] == "passes the gate, slower than openvino-bf16"
    assert reasons["ort-int8-qoperator"].startswith("gate failed: Spearman")
    assert reasons["openvino-int8"] == "not available here: this CPU lacks INT8"
    assert reasons[FP32] == "replaced by openvino-bf16"


def test_fp32_stays_when_nothing_passes_or_nothing_is_faster_enough():
    chosen, reasons = choose_variant([Candidate("x", 50.0, gate_result(False))], 10.0)
    assert chosen == FP32 and reasons[FP32].startswith("kept")
    chosen, reasons = choose_variant([passing("y", 10.2)], 10.0)
    assert chosen == FP32 and "only 1.02× fp32" in reasons["y"]
    chosen, _ = choose_variant([passing("y", 10.2)], 10.0, GateLimits(min_speedup=1.0))
    assert chosen == "y"
    assert choose_variant([], 10.0)[0] == FP32
