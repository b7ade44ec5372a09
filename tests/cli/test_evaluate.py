"""``tbens evaluate`` end to end on a synthetic run folder and on a submission + truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from tbensemble.cli import cli
from tests.report.conftest import make_oof


def test_evaluate_run_writes_report_metrics_and_figures(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    make_oof().to_csv(run / "oof.csv", index=False)
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--n-bootstrap", "200", "--seed", "1"], obj={})
    assert result.exit_code == 0, result.output
    report = run / "report"
    for name in ("report.md", "metrics.json", "roc.png", "histogram.png", "reliability.png"):
        assert (report / name).stat().st_size > 0
    assert (report / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((report / "metrics.json").read_text())
    text = (report / "report.md").read_text()
    assert f"Ensemble AUC {metrics['ensemble']['auc']:.3f}" in text
    assert "200 resamples, seed 1" in text and "![ROC curves](roc.png)" in text
    assert "TTA gain: not measured" in text
    assert not list(report.glob(".*.tmp"))


def test_evaluate_submission_against_truth(tmp_path: Path) -> None:
    ids = [f"test{i}.png" for i in range(60)]
    labels = np.arange(60) % 2
    pd.DataFrame({"image_id": ids, "label": labels}).to_csv(tmp_path / "truth.csv", index=False)
    scores = np.clip(0.3 + 0.3 * labels + np.random.default_rng(0).normal(0, 0.2, 60), 0.01, 1)
    pd.DataFrame({"image_id": ids[::-1], "label": scores[::-1]}).to_csv(tmp_path / "sub.csv", index=False)
    out = tmp_path / "rep"
    args = ["evaluate", "--submission", str(tmp_path / "sub.csv"), "--truth", str(tmp_path / "truth.csv")]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "--n-bootstrap", "200"], obj={})
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    from sklearn.metrics import roc_auc_score

    assert metrics["submission"]["auc"] == roc_auc_score(labels, scores)


def test_evaluate_bad_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    pd.DataFrame({"image_id": ["a.png", "b.png"], "label": [1, 1]}).to_csv(tmp_path / "truth.csv", index=False)
    pd.DataFrame({"image_id": ["a.png", "c.png"], "label": [0.2, 0.4]}).to_csv(tmp_path / "sub.csv", index=False)
    args = ["evaluate", "--submission", str(tmp_path / "sub.csv"), "--truth", str(tmp_path / "truth.csv")]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r")], obj={})
    assert result.exit_code == 2
    assert "1 only in the submission (e.g. c.png)" in result.output
    missing = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "nope")], obj={})
    assert missing.exit_code == 2 and "run folder not found" in missing.output
    neither = CliRunner().invoke(cli, ["evaluate"], obj={})
    assert neither.exit_code == 2 and "either RUN or --submission" in neither.output
