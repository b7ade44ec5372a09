"""Decisions as a clinic sees them: the shipped operating points with their guarantee, refer rates, the
AUC on the images that were decided (coverage), and sensitivity counting a referral as flagged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tbensemble.core import decisions as rules
from tbensemble.core.errors import DataError
from tbensemble.core.manifest import Manifest
from tbensemble.core.metrics import auc, within_fold_ranks

COVERAGE_QUANTILES = (1.0, 0.99, 0.95, 0.90, 0.80)


def decision_summary(manifest: Manifest) -> list[str]:
    """Lines for ``tbens export``/``recalibrate``: the default point beside the plain one, refer rules, WHO."""
    ensemble = manifest.ensemble
    default = {"name": ensemble.default_operating_point, **ensemble.operating_points[ensemble.default_operating_point]}
    lines = []
    guarantee = default.get("guarantee")
    if guarantee:
        plain_name = f"sensitivity>={guarantee['target_sensitivity']:.2f}"
        plain = ensemble.operating_points.get(plain_name)
        lines.append(
            f"default {default['name']}: threshold {default['threshold']:.4f}, OOF sensitivity "
            f"{default['sensitivity']:.3f} (95% lower bound {guarantee['sensitivity_lower_bound']:.3f}, "
            f"{guarantee['n_positives']} TB), specificity {default['specificity']:.3f}"
            + (
                f"; plain {plain_name}: threshold {plain['threshold']:.4f}, specificity {plain['specificity']:.3f}"
                if plain
                else ""
            )
        )
    refer = ensemble.refer or {}
    rules_on = [name for name in ("disagreement", "features") if refer.get(name)]
    lines.append(
        "refer rules: DICOM tags, blank/saturated frames"
        + "".join(f", {name} (> {refer[name]['threshold']:.3f})" for name in rules_on)
        + ("" if "features" in rules_on else "; no feature reference (run data not found at export)")
    )
    warning = rules.who_warning(default)
    if warning:
        lines.append(warning)
    return lines


def _auc_or_nan(labels: np.ndarray, scores: np.ndarray) -> float:
    return auc(labels, scores) if np.unique(labels).size == 2 else float("nan")


def coverage_curve(
    labels: np.ndarray, scores: np.ndarray, uncertainty: np.ndarray, quantiles: Sequence[float] = COVERAGE_QUANTILES
) -> list[dict[str, float]]:
    """AUC on the images kept when those above each quantile of ``uncertainty`` are referred."""
    labels = np.asarray(labels).astype(int)
    rows = []
    for q in quantiles:
        kept = uncertainty <= np.quantile(uncertainty, q) if q < 1.0 else np.ones(labels.size, dtype=bool)
        rows.append(
            {
                "quantile": float(q),
                "coverage": float(kept.mean()),
                "auc_decided": _auc_or_nan(labels[kept], scores[kept]),
            }
        )
    return rows


def oof_disagreement_coverage(oof: pd.DataFrame, backbones: Sequence[str]) -> list[dict[str, float]] | None:
    """The coverage curve of the disagreement rule on OOF (None with one backbone)."""
    if len(backbones) < 2:
        return None
    folds = oof["fold"].to_numpy()
    ranks = {b: within_fold_ranks(oof[b].to_numpy(), folds) for b in backbones}
    spread = rules.backbone_disagreement(ranks, {b: b for b in backbones})
    return coverage_curve(oof["label"].to_numpy(), oof["ensemble"].to_numpy(dtype=np.float64), spread)


def evaluate_decisions(decisions: pd.DataFrame, truth: pd.DataFrame, source: str = "decisions") -> dict[str, Any]:
    """Decisions against truth: a referral counts as flagged for sensitivity and as not-normal for
    specificity (a person reads it); refer rate per reason; AUC on all images and on decided ones."""
    missing = [c for c in ("image_id", "score", "decision", "reasons") if c not in decisions.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)} (written by 'tbens predict --decisions')")
    merged = truth.assign(image_id=truth["image_id"].astype(str)).merge(
        decisions.assign(image_id=decisions["image_id"].astype(str)), on="image_id", how="inner"
    )
    if len(merged) != len(decisions):
        raise DataError(f"{source}: {len(decisions) - len(merged)} of {len(decisions)} image ids are not in the truth")
    labels = merged["label"].to_numpy().astype(int)
    scores = merged["score"].to_numpy(dtype=np.float64)
    decision = merged["decision"].astype(str).to_numpy()
    flagged = decision != rules.NORMAL
    decided = decision != rules.REFER
    positives, negatives = labels == 1, labels == 0
    reasons = Counter(
        reason for text in merged["reasons"].fillna("").astype(str) for reason in text.split(";") if reason
    )

    def share(mask: np.ndarray, within: np.ndarray) -> float:
        return float(mask[within].mean()) if within.any() else float("nan")

    return {
        "source": source,
        "n": int(labels.size),
        "n_positive": int(positives.sum()),
        "sensitivity_refer_as_flagged": share(flagged, positives),
        "specificity": share(~flagged, negatives),
        "sensitivity_decided": share(decision == rules.TB, positives & decided),
        "specificity_decided": share(decision == rules.NORMAL, negatives & decided),
        "refer_rate": float((~decided).mean()),
        "refer_rate_by_reason": {k: v / labels.size for k, v in sorted(reasons.items())},
        "auc_all": _auc_or_nan(labels, scores),
        "coverage": float(decided.mean()),
        "auc_decided": _auc_or_nan(labels[decided], scores[decided]),
        "operating_point": str(merged["operating_point"].iloc[0]) if "operating_point" in merged else None,
    }


def decisions_markdown(results: Mapping[str, Any]) -> list[str]:
    """Markdown lines for ``evaluate_decisions`` results."""
    by_reason = ", ".join(f"{k} {v:.1%}" for k, v in results["refer_rate_by_reason"].items()) or "none"
    return [
        "## Decisions (refer counted as flagged)",
        "",
        f"{results['n']} images ({results['n_positive']} TB) at {results['operating_point']}.",
        "",
        f"- Sensitivity {results['sensitivity_refer_as_flagged']:.1%} (TB or refer), "
        f"specificity {results['specificity']:.1%} (normal among non-TB).",
        f"- Refer rate {results['refer_rate']:.1%} ({by_reason}).",
        f"- AUC {results['auc_all']:.3f} on all images, {results['auc_decided']:.3f} on the "
        f"{results['coverage']:.1%} decided (coverage).",
        "",
    ]


def shipped_points(manifest: Manifest, labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """The manifest's points on the OOF scores, with exact 95% intervals and what to expect on test data.

    For the guaranteed point the expectation is its one-sided bound (sensitivity at least that, with 95%
    confidence, for images like the OOF ones); for plain points it is the OOF figure with its interval.
    """
    labels = np.asarray(labels).astype(int)
    rows = []
    ensemble = manifest.ensemble
    for name, point in ensemble.operating_points.items():
        called = np.asarray(scores) >= float(point["threshold"])
        tp, n_pos = int(np.sum(called & (labels == 1))), int(np.sum(labels == 1))
        tn, n_neg = int(np.sum(~called & (labels == 0))), int(np.sum(labels == 0))
        guarantee = point.get("guarantee")
        rows.append(
            {
                "name": name,
                "default": name == ensemble.default_operating_point,
                "threshold": float(point["threshold"]),
                "sensitivity": tp / n_pos if n_pos else float("nan"),
                "sensitivity_ci": list(rules.clopper_pearson_interval(tp, n_pos)),
                "specificity": tn / n_neg if n_neg else float("nan"),
                "specificity_ci": list(rules.clopper_pearson_interval(tn, n_neg)),
                "expected_test_sensitivity": (
                    f">= {guarantee['sensitivity_lower_bound']:.3f} (95% one-sided, Clopper-Pearson)"
                    if guarantee
                    else f"{tp / n_pos:.3f}, 95% CI {rules.clopper_pearson_interval(tp, n_pos)[0]:.3f}-"
                    f"{rules.clopper_pearson_interval(tp, n_pos)[1]:.3f} (chosen on these scores: optimistic)"
                ),
                "who_minimum_met": rules.who_minimum_met(point),
            }
        )
    default = {"name": ensemble.default_operating_point, **ensemble.operating_points[ensemble.default_operating_point]}
    return {"points": rows, "warning": rules.who_warning(default), "site": ensemble.site}


def shipped_points_markdown(section: Mapping[str, Any], coverage: Sequence[Mapping[str, float]] | None) -> list[str]:
    """Markdown for ``shipped_points`` and the OOF coverage curve of the disagreement rule."""
    lines = ["## Shipped operating points (manifest)", ""]
    if section["warning"]:
        lines += [f"**{section['warning']}**", ""]
    lines += [
        "The default is the guaranteed point: the highest threshold whose one-sided 95% Clopper–Pearson lower "
        "bound on OOF sensitivity reaches the target. Intervals are exact (Clopper–Pearson) 95%.",
        "",
        "| operating point | threshold | OOF sensitivity [95% CI] | OOF specificity [95% CI] | expected test sensitivity | WHO minimum |",
        "|---|---|---|---|---|---|",
    ]
    for p in section["points"]:
        name = f"**{p['name']}** (default)" if p["default"] else p["name"]
        lines.append(
            f"| {name} | {p['threshold']:.4f} | {p['sensitivity']:.3f} [{p['sensitivity_ci'][0]:.3f}, "
            f"{p['sensitivity_ci'][1]:.3f}] | {p['specificity']:.3f} [{p['specificity_ci'][0]:.3f}, "
            f"{p['specificity_ci'][1]:.3f}] | {p['expected_test_sensitivity']} | {'met' if p['who_minimum_met'] else 'not met'} |"
        )
    lines.append("")
    if coverage:
        lines += [
            "## Refer: coverage on OOF (backbone disagreement)",
            "",
            "Referring the images whose backbones disagree most; the shipped rule refers above the 99th percentile.",
            "",
            "| referred above quantile | coverage (decided) | AUC on decided |",
            "|---|---|---|",
        ]
        lines += [f"| {r['quantile']:.2f} | {r['coverage']:.1%} | {r['auc_decided']:.3f} |" for r in coverage]
        lines.append("")
    return lines
