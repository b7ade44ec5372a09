"""The maths of a decision: thresholds with a guarantee, the rules that refer an image, and drift.

Everything here is numpy (scipy for the binomial bound): fitted at export or recalibration, replayed
on an edge server from the manifest's plain JSON numbers.

- **Guaranteed threshold.** For a sensitivity target T, the highest threshold whose one-sided 95%
  Clopper–Pearson lower bound on out-of-fold sensitivity reaches T. The chosen threshold sits at an
  order statistic of the positive scores, and for that order statistic the Clopper–Pearson bound is
  exact (the fraction of positives above the k-th highest of n is Beta(k, n-k+1)), so for a new
  positive drawn like the OOF ones ``P(true sensitivity < T) <= 5%``.
- **Refer.** An image is not decided when it is not a chest radiograph (DICOM tags; blank or saturated
  frames; pooled model features far from the training images) or when the backbones disagree more
  than they did on any but 1% of OOF images.
- **Drift.** The population stability index of a batch's scores against the OOF score deciles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tbensemble.core.errors import ArtifactError, DataError
from tbensemble.core.metrics import check_scores, confusion_at, operating_points

TB, NORMAL, REFER = "tb", "normal", "refer"
DECISIONS = (TB, NORMAL, REFER)

CONFIDENCE = 0.95
"""One-sided confidence of the guaranteed sensitivity bound."""
BOUND_METHOD = "clopper-pearson"

WHO_MIN_SENSITIVITY = 0.90
WHO_MIN_SPECIFICITY = 0.70
"""WHO target product profile for TB triage, minimum: sensitivity >= 0.90 with specificity >= 0.70."""

REFER_QUANTILE = 0.99
"""Refer thresholds sit at this quantile of the OOF statistic: about 1% of in-distribution images each."""

CHEST_MODALITIES = ("CR", "DX", "DR", "RG")
"""DICOM Modality of a projection radiograph (CR computed, DX digital, RG film; DR is a vendor variant)."""
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG")
"""BodyPartExamined: CHEST is the DICOM term; THORAX and LUNG are written by some devices."""
FRONTAL_VIEWS = ("PA", "AP")
"""ViewPosition the models were trained on (frontal); laterals and obliques are referred."""

BLANK_STD = 3.0
"""An image whose grey levels vary less than this (0-255 scale) carries no anatomy."""
SATURATED_FRACTION = 0.60
"""An image with more than this share of pixels at 0 or at 255 is burned out or empty."""

PSI_ALERT = 0.2
"""PSI above 0.2 is the usual 'significant shift' convention (0.1-0.2 moderate, below 0.1 stable)."""
PSI_BINS = 10
PSI_MIN_IMAGES = 100
"""Below this many scores a 10-bin PSI is mostly sampling noise; monitor says so."""
REFER_ALERT = 0.10
"""A refer rate above 10% also alerts: in-distribution images are referred about 1-3% of the time."""
PSI_FLOOR = 1e-4
"""Empty bins are floored at this share so the logarithm stays finite."""


# --- guaranteed operating points -------------------------------------------------------------


def clopper_pearson_lower(successes: np.ndarray | int, n: int, confidence: float = CONFIDENCE) -> np.ndarray:
    """One-sided lower confidence bound on a binomial proportion (exact, Clopper–Pearson)."""
    from scipy.stats import beta

    k = np.asarray(successes, dtype=np.float64)
    if n <= 0:
        return np.zeros_like(k)
    bound = beta.ppf(1.0 - confidence, k, n - k + 1.0)
    return np.where(k > 0, bound, 0.0)


def clopper_pearson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided exact interval, for reporting an OOF proportion with its uncertainty."""
    from scipy.stats import beta

    if n <= 0:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    low = beta.ppf(alpha / 2, successes, n - successes + 1) if successes > 0 else 0.0
    high = beta.ppf(1 - alpha / 2, successes + 1, n - successes) if successes < n else 1.0
    return float(low), float(high)


@dataclass(frozen=True)
class GuaranteedThreshold:
    threshold: float
    lower_bound: float
    """Clopper–Pearson lower bound on sensitivity at ``threshold`` (OOF positives)."""
    achieved: bool
    """False when even flagging every OOF positive cannot push the bound to the target (too few positives)."""


def guaranteed_sensitivity_threshold(
    labels: np.ndarray, scores: np.ndarray, target: float, confidence: float = CONFIDENCE
) -> GuaranteedThreshold:
    """The highest threshold whose lower confidence bound on sensitivity reaches ``target``.

    Candidates are the positive scores themselves (sensitivity only changes there). When no candidate
    reaches the target, the lowest positive score is returned with ``achieved=False``.
    """
    labels = np.asarray(labels).astype(int)
    scores = check_scores(scores, "guaranteed threshold scores")
    positives = np.sort(scores[labels == 1])[::-1]
    if positives.size == 0:
        raise DataError("guaranteed threshold: no positive (TB) labels")
    # Flagged positives at each candidate threshold t = positives[k]: how many scores are >= t (ties included).
    ascending = positives[::-1]
    flagged = positives.size - np.searchsorted(ascending, positives, side="left")
    bounds = clopper_pearson_lower(flagged, positives.size, confidence)
    ok = np.nonzero(bounds >= target)[0]
    index = int(ok[0]) if ok.size else positives.size - 1
    return GuaranteedThreshold(float(positives[index]), float(bounds[index]), bool(ok.size))


def guaranteed_point(
    labels: np.ndarray, scores: np.ndarray, target: float, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """An operating point dict (the manifest's fields) at the guaranteed threshold, with its guarantee."""
    found = guaranteed_sensitivity_threshold(labels, scores, target, confidence)
    name = guaranteed_name(target, confidence)
    return {
        "name": name,
        "threshold": found.threshold,
        **confusion_at(labels, scores, found.threshold),
        "guarantee": {
            "method": BOUND_METHOD,
            "confidence": confidence,
            "target_sensitivity": target,
            "sensitivity_lower_bound": found.lower_bound,
            "achieved": found.achieved,
            "n_positives": int(np.sum(np.asarray(labels).astype(int) == 1)),
        },
    }


def decision_points(
    labels: np.ndarray, scores: np.ndarray, target_sensitivity: float
) -> tuple[dict[str, dict[str, Any]], str]:
    """The plain points of ``core.metrics.operating_points`` plus the guaranteed sensitivity point, and
    the name of the latter, which is the default decision."""
    points = {name: p.to_dict() for name, p in operating_points(labels, scores, target_sensitivity).items()}
    guaranteed = guaranteed_point(labels, scores, target_sensitivity)
    points[guaranteed["name"]] = guaranteed
    return points, guaranteed["name"]


def guaranteed_name(target: float, confidence: float = CONFIDENCE) -> str:
    return f"sensitivity>={target:.2f}@lcb{round(confidence * 100)}"


def who_minimum_met(point: Mapping[str, Any]) -> bool:
    """WHO's triage minimum at this point's OOF figures: sensitivity >= 0.90 and specificity >= 0.70."""
    return (
        float(point.get("sensitivity", 0.0)) >= WHO_MIN_SENSITIVITY
        and float(point.get("specificity", 0.0)) >= WHO_MIN_SPECIFICITY
    )


def who_warning(point: Mapping[str, Any]) -> str | None:
    """The one line every door prints when the default point misses WHO's minimum or its guarantee, else None."""
    guarantee = point.get("guarantee") or {}
    unmet = guarantee and not guarantee.get("achieved", True)
    if who_minimum_met(point) and not unmet:
        return None
    why = (
        f"even flagging all {guarantee.get('n_positives')} OOF TB images leaves the 95% lower bound on "
        f"sensitivity at {float(guarantee.get('sensitivity_lower_bound', 0.0)):.3f}; "
        if unmet
        else ""
    )
    return (
        f"WARNING: operating point {point.get('name')} misses WHO's triage minimum (sensitivity >= 0.90 with "
        f"specificity >= 0.70): {why}OOF sensitivity {float(point.get('sensitivity', float('nan'))):.3f}, "
        f"specificity {float(point.get('specificity', float('nan'))):.3f}; not fit for TB triage as it stands"
    )


# --- refer: DICOM header, pixels, features, disagreement --------------------------------------


def dicom_reasons(facts: Mapping[str, Any] | None) -> list[str]:
    """Reasons from DICOM tags (keywords Modality, BodyPartExamined, ViewPosition); absent tags say nothing."""
    if not facts:
        return []
    reasons = []
    checks = (
        ("Modality", CHEST_MODALITIES, "modality"),
        ("BodyPartExamined", CHEST_BODY_PARTS, "body_part"),
        ("ViewPosition", FRONTAL_VIEWS, "view"),
    )
    for keyword, allowed, label in checks:
        value = str(facts.get(keyword) or "").strip().upper()
        if value and value not in allowed:
            reasons.append(f"dicom_{label}={value.replace(';', ',').replace(' ', '_')}")
    return reasons


def pixel_reasons(images: np.ndarray) -> list[list[str]]:
    """Per uint8 image (N, S, S): ``blank_image`` (no contrast) or ``saturated_image`` (mostly 0 or 255)."""
    flat = np.asarray(images).reshape(len(images), -1)
    spread = flat.std(axis=1)
    extreme = np.maximum((flat == 0).mean(axis=1), (flat == 255).mean(axis=1))
    reasons: list[list[str]] = []
    for s, e in zip(spread, extreme, strict=True):
        if s < BLANK_STD:
            reasons.append(["blank_image"])
        elif e > SATURATED_FRACTION:
            reasons.append(["saturated_image"])
        else:
            reasons.append([])
    return reasons


def pool_features(features: np.ndarray) -> np.ndarray:
    """(N, h, w, C) feature maps -> (N, C) global average (what the head sees)."""
    return np.asarray(features, dtype=np.float64).mean(axis=(1, 2))


@dataclass
class FeatureReference:
    """A compact model of one model's pooled OOF features: PCA mean, axes, their spread, residual scale.

    The distance of an image is ``sqrt(mean(z_i^2) + (residual / residual_scale)^2) / sqrt(2)``: the
    whitened position in the main axes plus what lies off them (a blank frame or a photograph can sit near the
    mean along the axes and far off them), each about 1 for a typical training image.
    """

    mean: np.ndarray
    components: np.ndarray
    scales: np.ndarray
    residual_scale: float

    @classmethod
    def fit(cls, pooled: np.ndarray, n_components: int = 8) -> FeatureReference:
        pooled = np.asarray(pooled, dtype=np.float64)
        if pooled.ndim != 2 or pooled.shape[0] < 4:
            raise DataError(f"feature reference: needs at least 4 images of pooled features, got {pooled.shape}")
        mean = pooled.mean(axis=0)
        centred = pooled - mean
        _, singular, axes = np.linalg.svd(centred, full_matrices=False)
        # At most half the images' degrees of freedom go to the axes, so some spread is left off them:
        # with k near n the residual of the fitted images is ~0 and every new image would look far.
        k = int(min(n_components, axes.shape[0], (pooled.shape[0] - 1) // 2))
        total = float(np.sqrt(np.sum(singular**2) / (pooled.shape[0] - 1))) or 1.0
        scales = np.maximum(singular[:k] / np.sqrt(pooled.shape[0] - 1), 1e-3 * total)
        residual = centred - (centred @ axes[:k].T) @ axes[:k]
        residual_scale = float(np.sqrt(np.mean(np.sum(residual**2, axis=1))))
        return cls(mean, axes[:k], scales, max(residual_scale, 1e-3 * total))

    def distance(self, pooled: np.ndarray) -> np.ndarray:
        centred = np.asarray(pooled, dtype=np.float64) - self.mean
        projected = centred @ self.components.T
        residual = centred - projected @ self.components
        whitened = np.mean((projected / self.scales) ** 2, axis=1)
        off_axes = np.sum(residual**2, axis=1) / self.residual_scale**2
        return np.sqrt((whitened + off_axes) / 2.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": [float(v) for v in self.mean],
            "components": [[float(v) for v in row] for row in self.components],
            "scales": [float(v) for v in self.scales],
            "residual_scale": float(self.residual_scale),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "manifest") -> FeatureReference:
        try:
            reference = cls(
                np.asarray(data["mean"], dtype=np.float64),
                np.asarray(data["components"], dtype=np.float64),
                np.asarray(data["scales"], dtype=np.float64),
                float(data["residual_scale"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: feature reference is malformed ({exc})") from None
        k, c = reference.components.shape if reference.components.ndim == 2 else (-1, -1)
        if reference.mean.shape != (c,) or reference.scales.shape != (k,):
            raise ArtifactError(f"{where}: feature reference shapes disagree (mean, components, scales)")
        numbers = np.concatenate([reference.mean, reference.components.ravel(), reference.scales])
        if not np.isfinite(numbers).all() or not (reference.scales > 0).all() or not reference.residual_scale > 0:
            raise ArtifactError(f"{where}: feature reference holds non-finite or non-positive values")
        return reference


def reference_components(n_images: int, wanted: int, parts: int = 5) -> int:
    """PCA axes a reference of ``n_images`` can afford when its threshold comes from ``parts``-fold
    cross-fitting: the same number in the cross-fitted and the shipped reference keeps their
    distances on one scale (at most half of the smaller fit's degrees of freedom)."""
    smaller_fit = n_images - math.ceil(n_images / parts)
    return max(1, min(wanted, (smaller_fit - 1) // 2))


def cross_fitted_distances(pooled: np.ndarray, n_components: int = 8, parts: int = 5, seed: int = 0) -> np.ndarray:
    """Each image's distance from a reference fitted without it (``parts``-fold): honest in-distribution
    distances, from which the refer threshold is read (in-sample distances would be too small)."""
    pooled = np.asarray(pooled, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(pooled))
    distances = np.empty(len(pooled))
    for held in np.array_split(order, parts):
        kept = np.setdiff1d(order, held)
        distances[held] = FeatureReference.fit(pooled[kept], n_components).distance(pooled[held])
    return distances


def combine_distances(per_model: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """One distance per image: the weighted mean over models of their distances."""
    names = list(per_model)
    w = np.array([float(weights.get(n, 1.0)) for n in names])
    stacked = np.stack([np.asarray(per_model[n], dtype=np.float64) for n in names])
    return (w[:, None] * stacked).sum(axis=0) / w.sum()


def backbone_disagreement(ranks: Mapping[str, np.ndarray], backbone_of: Mapping[str, str]) -> np.ndarray:
    """Range (max - min) over backbones of each backbone's mean historical rank; 0 with one backbone.

    Backbone means rather than single fold models: an OOF image has exactly one held-out model per
    backbone, so this is the statistic OOF can measure and the threshold can be read from.
    """
    by_backbone: dict[str, list[np.ndarray]] = {}
    for name, values in ranks.items():
        by_backbone.setdefault(backbone_of[name], []).append(np.asarray(values, dtype=np.float64))
    means = np.stack([np.mean(parts, axis=0) for parts in by_backbone.values()])
    return means.max(axis=0) - means.min(axis=0)


def upper_quantile(values: np.ndarray, quantile: float = REFER_QUANTILE) -> float:
    return float(np.quantile(check_scores(values, "refer statistic"), quantile))


def decide(scores: np.ndarray, threshold: float, reasons: Sequence[Sequence[str]]) -> tuple[list[str], list[str]]:
    """``refer`` where any reason applies, else ``tb`` at ``score >= threshold``, else ``normal``."""
    decisions, joined = [], []
    for score, why in zip(check_scores(scores), reasons, strict=True):
        decisions.append(REFER if why else (TB if score >= threshold else NORMAL))
        joined.append(";".join(why))
    return decisions, joined


# --- drift --------------------------------------------------------------------------------------


def drift_reference(scores: np.ndarray, bins: int = PSI_BINS) -> dict[str, Any]:
    """Inner bin edges at the OOF score quantiles, and the OOF share per bin (about 1/bins each)."""
    scores = check_scores(scores, "drift reference")
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=edges.size + 1)
    return {
        "statistic": "psi",
        "edges": [float(e) for e in edges],
        "expected": [float(c) for c in counts / counts.sum()],
        "alert_above": PSI_ALERT,
        "n": int(scores.size),
    }


def psi(reference: Mapping[str, Any], scores: np.ndarray) -> float:
    """Population stability index sum((a - e) ln(a / e)) of ``scores`` against the stored reference."""
    scores = check_scores(scores, "drift scores")
    if scores.size == 0:
        raise DataError("drift: no scores to compare")
    edges = np.asarray(reference["edges"], dtype=np.float64)
    expected = np.asarray(reference["expected"], dtype=np.float64)
    if expected.size != edges.size + 1:
        raise ArtifactError(f"drift reference: {edges.size} edges need {edges.size + 1} shares, got {expected.size}")
    counts = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=expected.size)
    actual = np.maximum(counts / counts.sum(), PSI_FLOOR)
    expected = np.maximum(expected, PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def drift_summary(reference: Mapping[str, Any], scores: np.ndarray, decisions: Sequence[str]) -> dict[str, Any]:
    """``ok`` or ``alert`` for a batch: PSI of its scores against the reference, and its refer rate."""
    value = psi(reference, scores)
    referred = float(np.mean([d == REFER for d in decisions])) if len(decisions) else 0.0
    alerts = []
    if value > float(reference.get("alert_above", PSI_ALERT)):
        alerts.append(
            f"score distribution shifted (PSI {value:.3f} > {float(reference.get('alert_above', PSI_ALERT)):.2f})"
        )
    if referred > REFER_ALERT:
        alerts.append(f"refer rate {referred:.1%} > {REFER_ALERT:.0%}")
    notes = [f"only {len(scores)} images: PSI is noisy below {PSI_MIN_IMAGES}"] if len(scores) < PSI_MIN_IMAGES else []
    return {
        "status": "alert" if alerts else "ok",
        "psi": value,
        "psi_alert_above": float(reference.get("alert_above", PSI_ALERT)),
        "refer_rate": referred,
        "refer_alert_above": REFER_ALERT,
        "n": len(scores),
        "alerts": alerts,
        "notes": notes,
    }
