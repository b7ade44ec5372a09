"""The accuracy gate a faster variant of a fold model must pass before it may replace the fp32 model, and
the rule that picks one variant per model.

A variant is judged on held-out images (the fold model's own OOF images) against the fp32 model:
rank agreement (Spearman), AUC, and how many decisions flip at the ensemble's default operating point.
Decisions are taken per model on the historical-rank scale, each side against its own OOF reference (the
variant's reference is recomputed from the variant's own scores), which is how the engine scores an image
alone when the variant is shipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tbensemble.core.metrics import auc, check_scores, historical_rank

FP32 = "fp32"
"""The name of the exported model itself, the baseline every variant is measured against."""


@dataclass(frozen=True)
class GateLimits:
    """What a variant must keep, against fp32 on the same held-out images."""

    min_spearman: float = 0.99
    max_abs_delta_auc: float = 0.005
    max_flipped_fraction: float = 0.01
    min_speedup: float = 1.05
    """A variant must also be this much faster than fp32 to be worth shipping (timings are noisy)."""


DEFAULT_LIMITS = GateLimits()


@dataclass
class GateResult:
    """The gate's figures for one variant of one model, and why it failed (empty when it passed)."""

    n_images: int
    spearman: float
    auc_fp32: float
    auc_variant: float
    delta_auc: float
    flipped_fraction: float
    max_abs_diff: float
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation; NaN when either side is constant (no order to agree on)."""
    a, b = check_scores(a), check_scores(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(pd.Series(a).corr(pd.Series(b), method="spearman"))


def evaluate_gate(
    labels: np.ndarray,
    fp32_scores: np.ndarray,
    variant_scores: np.ndarray,
    fp32_reference: np.ndarray,
    variant_reference: np.ndarray,
    threshold: float,
    limits: GateLimits = DEFAULT_LIMITS,
) -> GateResult:
    """Compare a variant's held-out scores with fp32's; ``threshold`` is on the historical-rank scale.

    A variant that scores NaN or infinity on any image (an FP16 overflow, say) fails without figures.
    """
    fp32_scores = check_scores(fp32_scores, "fp32 scores")
    variant_scores = np.asarray(variant_scores, dtype=np.float64)
    if fp32_scores.shape != variant_scores.shape or fp32_scores.shape != np.shape(labels):
        raise ValueError(
            f"gate inputs differ in length: labels {np.shape(labels)}, fp32 {fp32_scores.shape}, variant {variant_scores.shape}"
        )
    non_finite = int(np.count_nonzero(~np.isfinite(variant_scores)))
    if non_finite:
        nan = float("nan")
        return GateResult(
            n_images=int(fp32_scores.size),
            spearman=nan,
            auc_fp32=auc(labels, fp32_scores, "fp32 scores"),
            auc_variant=nan,
            delta_auc=nan,
            flipped_fraction=nan,
            max_abs_diff=nan,
            failures=[f"{non_finite} of {fp32_scores.size} scores are NaN or infinite"],
        )
    rho = spearman(fp32_scores, variant_scores)
    auc_fp32, auc_variant = auc(labels, fp32_scores, "fp32 scores"), auc(labels, variant_scores, "variant scores")
    fp32_decisions = historical_rank(fp32_scores, fp32_reference) >= threshold
    variant_decisions = historical_rank(variant_scores, variant_reference) >= threshold
    result = GateResult(
        n_images=int(fp32_scores.size),
        spearman=rho,
        auc_fp32=auc_fp32,
        auc_variant=auc_variant,
        delta_auc=auc_variant - auc_fp32,
        flipped_fraction=float(np.mean(fp32_decisions != variant_decisions)),
        max_abs_diff=float(np.max(np.abs(variant_scores - fp32_scores))),
    )
    if not rho >= limits.min_spearman:  # also catches NaN
        result.failures.append(f"Spearman {rho:.4f} < {limits.min_spearman}")
    if not abs(result.delta_auc) <= limits.max_abs_delta_auc:
        result.failures.append(f"|ΔAUC| {abs(result.delta_auc):.4f} > {limits.max_abs_delta_auc}")
    if not result.flipped_fraction <= limits.max_flipped_fraction:
        result.failures.append(f"{100 * result.flipped_fraction:.1f}% flipped > {100 * limits.max_flipped_fraction:g}%")
    return result


@dataclass
class Candidate:
    """A variant that was built and timed: its speed on this machine and its gate (None: could not be gated)."""

    name: str
    images_per_s: float
    gate: GateResult | None
    unavailable: str | None = None
    """Why it could not run here (a missing instruction set or runtime); such a variant is never chosen."""


def choose_variant(
    candidates: list[Candidate], fp32_images_per_s: float, limits: GateLimits = DEFAULT_LIMITS
) -> tuple[str, dict[str, str]]:
    """The fastest candidate that passed its gate and beats fp32 by ``min_speedup``, else fp32; and per
    candidate (fp32 included) the reason it was or was not chosen."""
    reasons: dict[str, str] = {}
    eligible = []
    for c in candidates:
        ratio = c.images_per_s / fp32_images_per_s if fp32_images_per_s > 0 else float("nan")
        if c.unavailable:
            reasons[c.name] = f"not available here: {c.unavailable}"
        elif c.gate is None or not c.gate.passed:
            reasons[c.name] = "gate failed: " + ("; ".join(c.gate.failures) if c.gate else "no figures")
        elif not ratio >= limits.min_speedup:
            reasons[c.name] = f"passes the gate but only {ratio:.2f}× fp32 (needs ≥ {limits.min_speedup}×)"
        else:
            eligible.append(c)
    if not eligible:
        reasons[FP32] = "kept: no variant passed the gate and beat fp32"
        return FP32, reasons
    best = max(eligible, key=lambda c: c.images_per_s)
    for c in eligible:
        reasons[c.name] = (
            f"chosen: passes the gate, fastest ({best.images_per_s / fp32_images_per_s:.2f}× fp32)"
            if c is best
            else f"passes the gate, slower than {best.name}"
        )
    reasons[FP32] = f"replaced by {best.name}"
    return best.name, reasons
