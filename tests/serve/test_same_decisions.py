"""The same images get the same decisions from the Python API, ``tbens predict`` and the service."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import httpx
import pytest

import tbensemble
from tests.serve.conftest import encoded_images

pytestmark = pytest.mark.slow

CLI_LINE = re.compile(r"^(?P<id>\S+): score (?P<score>[0-9.]+)\s.*?\s(?P<decision>TB|normal|refer)\b")
CLI_DECISION = {"TB": "tb", "normal": "normal", "refer": "refer"}


def test_api_cli_and_service_agree(tiny_export, served_artifacts, server, tmp_path):
    """Some of the tiny run's training images (the operating point splits them) and one image of each kind;
    at most 20 in all, the most ``tbens predict`` prints decisions for."""
    folder = tmp_path / "images"
    encoded_images(folder)
    for label in ("Normal", "Tuberculosis"):
        for path in sorted((tiny_export.parent / "data" / label).glob("*.png"))[:8]:
            shutil.copy(path, folder / path.name)
    files = sorted(folder.iterdir())
    api = tbensemble.load(served_artifacts, device="cpu").predict(files).set_index("image_id")

    command = [sys.executable, "-m", "tbensemble", "predict", "--artifacts", str(served_artifacts), "--device", "cpu"]
    for path in files:
        command += ["--images", str(path)]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "out.csv")], capture_output=True, text=True, timeout=300, check=True
    )
    cli = {m["id"]: m for m in map(CLI_LINE.match, result.stdout.splitlines()) if m}
    assert sorted(cli) == sorted(api.index), result.stdout

    for path in files:
        served = httpx.post(f"{server.url}/v1/predict", content=path.read_bytes()).json()
        row = api.loc[path.name]
        assert served["decision"] == row["decision"] == CLI_DECISION[cli[path.name]["decision"]], path.name
        assert served["score"] == pytest.approx(row["score"], abs=1e-12)
        assert float(cli[path.name]["score"]) == pytest.approx(row["score"], abs=5e-5)
        assert served["reasons"] == row["reasons"]
        assert served["manifest_sha256"] == row["manifest_sha256"]
    assert api["decision"].nunique() > 1, "every image got the same decision: the comparison would be weak"
