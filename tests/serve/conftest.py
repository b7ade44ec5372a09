"""A real ``tbens serve`` process on a free loopback port, over the tiny exported run."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tbensemble.core.decisions import drift_reference
from tbensemble.data.decode import load_image
from tbensemble.engine.decisions import feature_distances, gather_evidence
from tbensemble.engine.ensemble import Ensemble
from tests.data.test_decode import write_dicom
from tests.export.tinyrun import exported_run

READY_TIMEOUT_S = 90.0


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    return exported_run(tmp_path_factory)


@pytest.fixture(scope="session")
def served_artifacts(tiny_export, tmp_path_factory) -> Path:
    """A copy of the tiny run's shippable part, tuned so that all three decisions occur on its images.

    Random-weight models put most images above the lenient operating points and call every image out of
    distribution: here the default point is the strictest, and the feature-distance threshold is the
    median distance of the run's own images (half refer). A drift reference is set from the OOF scores.
    """
    dest = tmp_path_factory.mktemp("served")
    shutil.copytree(tiny_export / "onnx", dest / "onnx")
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    oof = np.concatenate([np.asarray(m["oof_scores_sorted"]) for m in manifest["models"]])
    manifest["ensemble"]["drift"] = drift_reference(np.clip(oof, 0.0, 1.0))
    points = manifest["ensemble"]["operating_points"]
    manifest["ensemble"]["default_operating_point"] = max(points, key=lambda name: points[name]["threshold"])
    features = (manifest["ensemble"].get("refer") or {}).get("features")
    if features:
        ensemble = Ensemble.load(tiny_export, device="cpu")
        paths = sorted((tiny_export.parent / "data").glob("*/*.png"))
        images = np.stack([load_image(path, ensemble.image_size) for path in paths])
        features["threshold"] = float(np.median(feature_distances(ensemble, gather_evidence(ensemble, images))))
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    audit_log: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_server(artifacts: Path, folder: Path, *options: str, audit_log: Path | None = None) -> Server:
    """``python -m tbensemble serve`` on a free loopback port; returned once ready (or fails with its log)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    audit_log = audit_log or folder / "audit.jsonl"
    log_path = folder / f"serve-{port}.log"
    command = [sys.executable, "-m", "tbensemble", "serve", "--artifacts", str(artifacts), "--port", str(port)]
    command += ["--device", "cpu", "--audit-log", str(audit_log), *options]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(process, f"http://127.0.0.1:{port}", audit_log, log_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"server not ready after {READY_TIMEOUT_S} s:\n{server.log()}")


@pytest.fixture(scope="module")
def server(served_artifacts, tmp_path_factory):
    """One server for the module's requests (small body limit so a 413 is cheap to provoke)."""
    running = start_server(served_artifacts, tmp_path_factory.mktemp("server"), "--max-body-mb", "0.25")
    yield running
    running.stop(signal.SIGKILL)


def encoded_images(folder: Path) -> dict[str, bytes]:
    """One chest-sized image in PNG, JPEG and DICOM (also written to ``folder``), by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    pixels = rng.integers(40, 200, (64, 80)).astype(np.uint8)
    pixels[20:40, 30:50] = 230
    out = {}
    for name, fmt in (("scan.png", "PNG"), ("scan.jpg", "JPEG")):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        out[name] = buffer.getvalue()
    write_dicom(folder / "scan.dcm", pixels.astype(np.uint16) * 16, WindowCenter=2048, WindowWidth=4096)
    out["scan.dcm"] = (folder / "scan.dcm").read_bytes()
    for name, data in out.items():
        (folder / name).write_bytes(data)
    return out
