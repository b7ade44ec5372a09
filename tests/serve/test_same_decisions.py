"""The same images get the same decision rows from the Python API, ``tbens predict`` and the service."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx
import numpy as np
import pytest

import tbensemble
from tbensemble.engine.decisions import DECISION_COLUMNS
from tests.data.test_decode import write_dicom
from tests.serve.conftest import encoded_images

pytestmark = pytest.mark.slow


def test_api_cli_and_service_agree(tiny_export, served_artifacts, server, tmp_path):
    """Some of the tiny run's training images (the operating point splits them), one image of each kind,
    and a DICOM whose header says it is no chest film (refer)."""
    folder = tmp_path / "images"
    encoded_images(folder)
    for label in ("Normal", "Tuberculosis"):
        for path in sorted((tiny_export.parent / "data" / label).glob("*.png"))[:8]:
            shutil.copy(path, folder / path.name)
    pixels = np.random.default_rng(4).integers(600, 3200, (48, 48)).astype(np.uint16)
    write_dicom(folder / "knee.dcm", pixels, WindowCenter=2048, WindowWidth=4096, BodyPartExamined="KNEE")
    files = sorted(folder.iterdir())
    api = tbensemble.load(served_artifacts, device="cpu").predict(files).set_index("image_id")

    command = [sys.executable, "-m", "tbensemble", "predict", "--artifacts", str(served_artifacts), "--device", "cpu"]
    for path in files:
        command += ["--images", str(path)]
    result = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, timeout=300, check=True)
    cli = {row["image_id"]: row for row in json.loads(result.stdout)}
    assert sorted(cli) == sorted(api.index)

    for path in files:
        served = httpx.post(f"{server.url}/v1/predict", content=path.read_bytes()).json()
        row = api.loc[path.name]
        for key in DECISION_COLUMNS[2:]:
            if key in ("score", "probability", "threshold"):  # the CLI's JSON keeps 10 decimals
                assert served[key] == pytest.approx(row[key], abs=1e-12), (path.name, key)
                assert cli[path.name][key] == pytest.approx(row[key], abs=1e-9), (path.name, key)
            else:
                assert served[key] == row[key] == cli[path.name][key], (path.name, key)
    assert set(api["decision"]) == {"tb", "normal", "refer"}, "a weak comparison: not every decision occurs"
