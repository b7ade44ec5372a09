"""Assemble a report folder: read the inputs, compute, draw, and write report.md + metrics.json atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tbensemble.core import atomic
from tbensemble.core.errors import DataError
from tbensemble.core.manifest import MANIFEST_NAME, load_manifest, load_verified
from tbensemble.core.metrics import within_fold_ranks
from tbensemble.core.weighting import compare_methods
from tbensemble.report import decisions, markdown, plots
from tbensemble.report.evaluate import (
    evaluate_oof,
    evaluate_submission,
    match_submission,
    probability_columns,
)

FIGURES = {"ROC curves": "roc.png", "Scores per class": "histogram.png", "Reliability": "reliability.png"}


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None


def _target_sensitivity(run_dir: Path) -> float:
    """The run's own target (config.yaml), so the report's points are the ones the manifest holds."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return 0.90
    raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    return float(raw.get("target_sensitivity", 0.90))


def _weighting(run: Path, oof: pd.DataFrame, backbones: list[str], n_bootstrap: int, seed: int) -> dict | None:
    """Every weighting method's nested cross-validated AUC (``core.weighting``) and what the run shipped."""
    if len(backbones) < 2:
        return None
    metrics = run / "metrics.json"
    ensemble = (json.loads(metrics.read_text(encoding="utf-8")).get("ensemble") or {}) if metrics.is_file() else {}
    return {
        **compare_methods(oof, backbones, n_bootstrap, seed),
        "chosen": ensemble.get("weighting"),
        "weights": ensemble.get("weights"),
    }


def write_run_report(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> Path:
    """Evaluate ``RUN/oof.csv`` (and the manifest's calibration, if exported) into ``out_dir`` (default RUN/report)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(f"{run}: run folder not found")
    out = Path(out_dir) if out_dir is not None else run / "report"
    oof = _read_csv(run / "oof.csv")
    manifest = load_manifest(run) if (run / MANIFEST_NAME).is_file() else None
    calibration = manifest.ensemble.calibration if manifest else None
    results = evaluate_oof(
        oof,
        n_bootstrap=n_bootstrap,
        seed=seed,
        target_sensitivity=_target_sensitivity(run),
        calibration=calibration,
        source=str(run / "oof.csv"),
    )
    results["weighting"] = _weighting(run, oof, results["backbones"], n_bootstrap, seed)
    labels = oof["label"].to_numpy().astype(int)
    folds = oof["fold"].to_numpy()
    ensemble = oof["ensemble"].to_numpy(dtype=np.float64)
    curves = {b: within_fold_ranks(oof[b].to_numpy(), folds) for b in results["backbones"]} | {"ensemble": ensemble}
    aucs = {r["backbone"]: r["within_fold_rank"]["auc"] for r in results["per_backbone"]} | {
        "ensemble": results["ensemble"]["auc"]
    }
    plots.roc_plot(labels, curves, aucs, results["operating_points"], out / FIGURES["ROC curves"])
    plots.histogram_plot(labels, ensemble, results["operating_points"], out / FIGURES["Scores per class"])
    probabilities = {
        name: values
        for name, (values, _) in probability_columns(oof, calibration).items()
        if name != "ensemble rank score"
    }
    briers = {row["name"]: row["brier"] for row in results["calibration"]["rows"]}
    plots.reliability_plot(labels, probabilities, briers, out / FIGURES["Reliability"])
    if manifest is not None:
        results["shipped"] = decisions.shipped_points(manifest, labels, ensemble)
    results["refer_coverage"] = decisions.oof_disagreement_coverage(oof, results["backbones"])
    atomic.write_json(out / "metrics.json", results)
    report = out / "report.md"
    atomic.write_text(report, markdown.run_report(results, FIGURES, run.name))
    return report


def write_decisions_report(
    decisions_path: str | os.PathLike[str], truth_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> Path:
    """A decisions CSV against truth: refer rates, coverage, sensitivity with refer counted as flagged."""
    decisions_path, truth_path = Path(decisions_path), Path(truth_path)
    results = decisions.evaluate_decisions(_read_csv(decisions_path), _read_csv(truth_path), str(decisions_path))
    out = Path(out_dir)
    atomic.write_json(out / "metrics.json", results)
    report = out / "report.md"
    lines = [
        f"# Decisions `{decisions_path.name}` against `{truth_path.name}`",
        "",
        *decisions.decisions_markdown(results),
    ]
    atomic.write_text(report, "\n".join(lines))
    return report


def write_submission_report(
    submission_path: str | os.PathLike[str],
    truth_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    artifacts: str | os.PathLike[str] | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> Path:
    """Evaluate a submission against truth; with ``artifacts``, also at the manifest's operating points."""
    sub_path, truth_path = Path(submission_path), Path(truth_path)
    merged = match_submission(_read_csv(sub_path), _read_csv(truth_path), str(sub_path), str(truth_path))
    notes: list[str] = []
    manifest_points: dict[str, dict[str, Any]] | None = None
    if artifacts is not None:
        manifest = load_verified(artifacts)
        manifest_points = manifest.ensemble.operating_points
        notes.append(
            f"Thresholds from {Path(artifacts) / MANIFEST_NAME} are on the historical-rank scale: they mean what the "
            "manifest says only if this submission was scored on that scale ('tbens predict --scale historical', "
            "as on an edge server), not with the default batch rank average."
        )
    else:
        notes.append(
            "No --artifacts given: the only operating points shown are chosen on this truth itself (optimistic)."
        )
    results = evaluate_submission(
        merged, n_bootstrap=n_bootstrap, seed=seed, manifest_points=manifest_points, source=str(sub_path)
    )
    labels = merged["label"].to_numpy().astype(int)
    scores = merged["score"].to_numpy(dtype=np.float64)
    out = Path(out_dir)
    shown = [p for p in results["operating_points"] if p["source"].startswith("manifest")] or results[
        "operating_points"
    ]
    plots.roc_plot(
        labels,
        {"submission": scores},
        {"submission": results["submission"]["auc"]},
        shown,
        out / "roc.png",
        title="ROC",
    )
    plots.histogram_plot(labels, scores, shown, out / "histogram.png", xlabel="submission score")
    figures = {"ROC curve": "roc.png", "Scores per class": "histogram.png"}
    atomic.write_json(out / "metrics.json", results)
    report = out / "report.md"
    atomic.write_text(report, markdown.submission_report(results, figures, sub_path.name, notes))
    return report
