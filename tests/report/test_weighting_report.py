"""The run report shows every weighting method's nested AUC against the best backbone, and what shipped."""

from __future__ import annotations

import json
from pathlib import Path

from tbensemble.core.weighting import METHODS
from tbensemble.report.build import write_run_report
from tests.report.conftest import make_oof


def test_run_report_has_a_nested_weighting_table_and_the_shipped_method(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    make_oof().to_csv(run / "oof.csv", index=False)
    weights = {"tinycnn": 0.5, "tinyresnet": 0.5}
    (run / "metrics.json").write_text(json.dumps({"ensemble": {"weighting": "equal", "weights": weights}}))
    report = write_run_report(run, n_bootstrap=200).read_text()
    assert "## Ensemble weighting (nested cross-validation)" in report
    assert "Shipped: **equal**, weights tinycnn 0.500, tinyresnet 0.500." in report
    for method in METHODS:
        assert f"| {method} |" in report or f"| **{method}** |" in report
    figures = json.loads((run / "report" / "metrics.json").read_text())["weighting"]
    assert figures["chosen"] == "equal" and figures["best_backbone"] == "tinyresnet"
    assert set(figures["methods"]) == set(METHODS)
