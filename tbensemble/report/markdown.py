"""Render evaluation results as one Markdown page: the verdict first, then tables, then the figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tbensemble.report.decisions import shipped_points_markdown


def _ci(result: Mapping[str, float]) -> str:
    return f"{result['auc']:.3f} [{result['ci_low']:.3f}, {result['ci_high']:.3f}]"


def _delta(result: Mapping[str, float]) -> str:
    return f"{result['delta']:+.3f} [{result['ci_low']:+.3f}, {result['ci_high']:+.3f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{value:.1%}"


def _points_table(points: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [
        [
            p["name"],
            p["source"],
            f"{p['threshold']:.4f}",
            f"{_pct(p['sensitivity'])} [{_pct(p['sensitivity_ci'][0])}, {_pct(p['sensitivity_ci'][1])}]",
            f"{_pct(p['specificity'])} [{_pct(p['specificity_ci'][0])}, {_pct(p['specificity_ci'][1])}]",
            _pct(p["ppv"]),
            _pct(p["npv"]),
            f"{p['tp']}/{p['fp']}/{p['tn']}/{p['fn']}",
        ]
        for p in points
    ]
    header = ["operating point", "threshold from", "threshold", "sensitivity [95% CI]", "specificity [95% CI]"]
    return _table([*header, "PPV", "NPV", "TP/FP/TN/FN"], rows)


def _who_verdict(points: Sequence[Mapping[str, Any]]) -> str:
    """Does the sensitivity >= 0.90 point also reach specificity >= 0.70 (WHO's triage minimum)?"""
    sens = next((p for p in points if p["name"].startswith("sensitivity>=")), None)
    if sens is None:
        return ""
    met = sens["sensitivity"] >= 0.90 and sens["specificity"] >= 0.70
    return (
        f"At sensitivity {sens['sensitivity']:.1%} the specificity is {sens['specificity']:.1%}: the WHO triage "
        f"minimum (sensitivity ≥ 90%, specificity ≥ 70%) is {'met' if met else 'not met'} on these scores."
    )


def _weighting_section(weighting: Mapping[str, Any] | None) -> list[str]:
    """Each weighting method's nested cross-validated AUC against the best backbone and equal weights."""
    if not weighting:
        return []
    shipped = weighting.get("chosen")
    weights = weighting.get("weights") or {}
    lines = [
        "## Ensemble weighting (nested cross-validation)",
        "",
        "Each fold's ensemble scores use weights fitted on the other folds' OOF only. Equal weights ship unless "
        "a method beats them beyond noise (paired interval above 0). Gains are paired bootstrap intervals; the "
        f"best backbone ({weighting['best_backbone']}) is picked on all OOF rows, which favours it.",
        "",
    ]
    if shipped:
        lines += [f"Shipped: **{shipped}**, weights " + ", ".join(f"{b} {w:.3f}" for b, w in weights.items()) + ".", ""]
    rows = [
        [
            f"**{method}**" if method == shipped else method,
            _ci({"auc": r["nested_auc"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}),
            _delta(r["vs_best_backbone"]),
            _delta(r["vs_equal"]),
        ]
        for method, r in weighting["methods"].items()
    ]
    return lines + _table(["method", "nested AUC [95% CI]", "vs best backbone", "vs equal weights"], rows)


def run_report(results: Mapping[str, Any], figures: Mapping[str, str], run_name: str) -> str:
    """The report of a run's out-of-fold scores."""
    gain = results["ensemble_gain"]
    lines = [
        f"# Evaluation of run `{run_name}`",
        "",
        f"Out-of-fold scores of {results['n']} images ({results['n_positive']} TB), "
        f"{len(results['backbones'])} backbone(s) × {len(results['folds'])} folds.",
        "",
        f"- **Ensemble AUC {_ci(results['ensemble'])}** (95% CI: {results['ci_method']}).",
        f"- Gain over the best single backbone ({gain['best_backbone']}, same within-fold-rank scale): "
        f"{_delta(gain)} (paired bootstrap)."
        if gain
        else f"- One backbone ({results['backbones'][0]}): the ensemble is its fold models, no ensemble gain to show.",
    ]
    tta = results["tta"]
    if tta["available"]:
        lines += [f"- TTA gain, {r['backbone']}: {_delta(r['gain'])}." for r in tta["per_backbone"]]
    else:
        lines.append(f"- TTA gain: not measured — {tta['note']}.")
    verdict = _who_verdict(results["operating_points"])
    if verdict:
        lines.append(f"- {verdict}")
    lines += [
        "",
        "## AUC per backbone",
        "",
        "*pooled*: the fold models' probabilities pooled across folds; *within-fold rank*: each score ranked "
        "within its fold, the scale the ensemble averages (and the one the edge engine puts a single image on).",
        "",
    ]
    lines += _table(
        ["backbone", "AUC pooled [95% CI]", "AUC within-fold rank [95% CI]"],
        [[r["backbone"], _ci(r["pooled"]), _ci(r["within_fold_rank"])] for r in results["per_backbone"]]
        + [["**ensemble**", "", f"**{_ci(results['ensemble'])}**"]],
    )
    if tta["available"]:
        lines += ["## TTA", "", tta["note"] + ".", ""]
        lines += _table(
            ["backbone", "AUC TTA", "AUC identity view", "gain [95% CI]"],
            [[r["backbone"], _ci(r["tta"]), _ci(r["identity"]), _delta(r["gain"])] for r in tta["per_backbone"]],
        )
    lines += _weighting_section(results.get("weighting"))
    lines += ["## AUC per fold", ""]
    lines += _table(
        ["model", "fold", "n", "AUC [95% CI]"],
        [[r["model"], r["fold"], r["n"], _ci(r)] for r in results["per_fold"]],
    )
    lines += [
        "## Operating points (ensemble)",
        "",
        "Chosen on these same out-of-fold scores, so the figures are slightly optimistic; a new site should "
        "re-check them locally (WHO advice). Sensitivity and specificity CIs are Wilson intervals.",
        "",
    ]
    lines += _points_table(results["operating_points"])
    if results.get("shipped"):
        lines += shipped_points_markdown(results["shipped"], results.get("refer_coverage"))
    calibration = results["calibration"]
    lines += [
        "## Calibration (Brier score, lower is better)",
        "",
        f"Prevalence {calibration['prevalence']:.1%}: always predicting it gives Brier "
        f"{calibration['prevalence'] * (1 - calibration['prevalence']):.3f}. Cross-validated rows fit the map on the "
        "other folds and score the held-out fold, so they are not flattered; an in-sample row is.",
        "",
    ]
    lines += _table(
        ["scores", "Brier", "fit"], [[r["name"], f"{r['brier']:.4f}", r["fit"]] for r in calibration["rows"]]
    )
    lines += _figures(figures)
    return "\n".join(lines)


def submission_report(results: Mapping[str, Any], figures: Mapping[str, str], title: str, notes: Sequence[str]) -> str:
    """The report of a submission scored against a truth file."""
    lines = [
        f"# Evaluation of `{title}`",
        "",
        f"{results['n']} images ({results['n_positive']} TB).",
        "",
        f"- **AUC {_ci(results['submission'])}** (95% CI: {results['ci_method']}).",
        *[f"- {note}" for note in notes],
        "",
        "## Operating points",
        "",
    ]
    lines += _points_table(results["operating_points"])
    lines += _figures(figures)
    return "\n".join(lines)


def _figures(figures: Mapping[str, str]) -> list[str]:
    lines = ["## Figures", ""]
    for caption, file in figures.items():
        lines += [f"### {caption}", "", f"![{caption}]({file})", ""]
    return lines
