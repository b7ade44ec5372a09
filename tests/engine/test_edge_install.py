"""The edge install, for real: a fresh virtual environment with `pip install .` (no train extra) runs
`tbens predict` on exported artifacts, decodes every DICOM transfer syntax a PACS sends, and has neither
TensorFlow nor the GPL codec pylibjpeg-libjpeg."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.data.dicom_files import SYNTAXES, transcode, write_dicom

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fresh_venv_without_train_extra_runs_predict_and_decodes_every_syntax(tiny_export: Path, tmp_path) -> None:
    dicoms = tmp_path / "dicom"
    dicoms.mkdir()
    y, x = np.mgrid[0:64, 0:80]
    write_dicom(dicoms / "plain.dcm", ((np.sin(x / 9) + np.cos(y / 13) + 2) * 1000).astype(np.uint16))
    for name in SYNTAXES:
        if name != "explicit-le":
            transcode(dicoms / "plain.dcm", dicoms / f"{name}.dcm", name)
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "edge_smoke.sh"), str(tiny_export), "", str(dicoms)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert f"edge_smoke: OK: {len(SYNTAXES) - 1} transfer syntaxes decoded" in result.stdout
    assert "edge_smoke: OK: 3 rows scored without TensorFlow" in result.stdout
