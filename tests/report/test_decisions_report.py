"""Report additions of issue 8: shipped points with their guarantee, refer coverage, decisions vs truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core import decisions as rules
from tbensemble.core.manifest import EnsembleEntry, InputSpec, Manifest, ModelEntry, save_manifest
from tbensemble.report.decisions import coverage_curve, evaluate_decisions
from tests.report.conftest import make_oof


def _manifest_for(oof: pd.DataFrame, folder: Path) -> None:
    labels, scores = oof["label"].to_numpy(), oof["ensemble"].to_numpy()
    points, default = rules.decision_points(labels, scores, 0.90)
    entry = ModelEntry(
        name="tinycnn-f0", file="onnx/tinycnn-f0.onnx", sha256="0" * 64, backbone="tinycnn", fold=0,
        input=InputSpec(size=32), outputs={r: r for r in ("probability", "logit", "features")}, oof_auc=0.8, parity={},
        oof_scores_sorted=[0.5], head_weights=[1.0], head_bias=0.0,
    )  # fmt: skip
    ensemble = EnsembleEntry(
        tta=["identity"], operating_points=points, default_operating_point=default, oof_auc=0.8,
        drift=rules.drift_reference(scores),
    )  # fmt: skip
    save_manifest(Manifest(1, "test", "run", "now", [entry], ensemble), folder)


def test_run_report_shows_both_points_the_guarantee_and_the_who_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    oof = make_oof(n=300, seed=3)
    oof.to_csv(run / "oof.csv", index=False)
    _manifest_for(oof, run)
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--n-bootstrap", "100"], obj={})
    assert result.exit_code == 0, result.output
    text = (run / "report" / "report.md").read_text()
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    shipped = {p["name"]: p for p in metrics["shipped"]["points"]}
    guaranteed, plain = shipped["sensitivity>=0.90@lcb95"], shipped["sensitivity>=0.90"]
    assert guaranteed["default"] and not plain["default"]
    assert guaranteed["threshold"] <= plain["threshold"]
    assert "**sensitivity>=0.90@lcb95** (default)" in text and "Clopper–Pearson" in text
    assert ">= 0.9" in guaranteed["expected_test_sensitivity"]
    if not guaranteed["who_minimum_met"]:
        assert metrics["shipped"]["warning"].startswith("WARNING") and metrics["shipped"]["warning"] in text
    coverage = metrics["refer_coverage"]
    assert [r["quantile"] for r in coverage] == [1.0, 0.99, 0.95, 0.9, 0.8]
    assert coverage[0]["coverage"] == 1.0 and coverage[-1]["coverage"] == pytest.approx(0.8, abs=0.01)
    assert "AUC on decided" in text


def test_coverage_curve_refers_the_most_uncertain_first() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(100), np.zeros(100)].astype(int)
    uncertainty = rng.random(200)
    scores = np.where(uncertainty > 0.8, rng.random(200), labels + rng.normal(0, 0.3, 200))
    rows = coverage_curve(labels, scores, uncertainty)
    assert rows[-1]["auc_decided"] > rows[0]["auc_decided"], "dropping noisy images lifts AUC on the rest"


def test_decisions_against_truth_count_refer_as_flagged(tmp_path: Path) -> None:
    decisions = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d", "e", "f"],
            "score": [0.9, 0.2, 0.8, 0.1, 0.95, 0.3],
            "decision": ["tb", "normal", "refer", "normal", "refer", "tb"],
            "reasons": ["", "", "out_of_distribution", "", "blank_image;model_disagreement", ""],
            "operating_point": "p",
        }
    )
    truth = pd.DataFrame({"image_id": list("abcdef"), "label": [1, 0, 1, 0, 0, 1]})
    result = evaluate_decisions(decisions, truth)
    assert result["sensitivity_refer_as_flagged"] == 1.0
    assert result["specificity"] == pytest.approx(2 / 3)
    assert result["refer_rate"] == pytest.approx(2 / 6)
    assert result["refer_rate_by_reason"] == {
        "blank_image": pytest.approx(1 / 6),
        "model_disagreement": pytest.approx(1 / 6),
        "out_of_distribution": pytest.approx(1 / 6),
    }
    assert result["coverage"] == pytest.approx(4 / 6)
    decisions.to_csv(tmp_path / "d.csv", index=False)
    truth.to_csv(tmp_path / "t.csv", index=False)
    cli_result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--decisions",
            str(tmp_path / "d.csv"),
            "--truth",
            str(tmp_path / "t.csv"),
            "--out",
            str(tmp_path / "r"),
        ],
        obj={},
    )
    assert cli_result.exit_code == 0, cli_result.output
    assert "Refer rate 33.3%" in (tmp_path / "r" / "report.md").read_text()
    truth.iloc[:3].to_csv(tmp_path / "short.csv", index=False)
    bad = CliRunner().invoke(
        cli, ["evaluate", "--decisions", str(tmp_path / "d.csv"), "--truth", str(tmp_path / "short.csv")], obj={}
    )
    assert bad.exit_code == 2 and "3 of 6 image ids are not in the truth" in bad.output
