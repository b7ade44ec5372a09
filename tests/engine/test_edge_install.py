"""The edge install, for real: a fresh virtual environment with `pip install .` (no train extra) runs
`tbens predict` on exported artifacts, and TensorFlow is not importable there."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fresh_venv_without_train_extra_runs_predict(tiny_export: Path) -> None:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "edge_smoke.sh"), str(tiny_export)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "edge_smoke: OK: 3 rows scored without TensorFlow" in result.stdout
