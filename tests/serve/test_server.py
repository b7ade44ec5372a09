"""A real server process over HTTP: health, predict per image kind, every error code, metrics, audit log."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

import tbensemble
from tbensemble.serve.audit import AUDIT_FIELDS, read_audit
from tests.data.test_decode import write_dicom
from tests.serve.conftest import encoded_images, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, bytes]:
    return encoded_images(tmp_path_factory.mktemp("images"))


def test_live_and_ready(server):
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}


@pytest.mark.parametrize("name", ["scan.png", "scan.jpg", "scan.dcm"])
def test_predict_each_kind_matches_the_python_api(server, served_artifacts, images, name):
    """The body's type is sniffed (the request says nothing about it) and the row is the API's row."""
    response = httpx.post(f"{server.url}/v1/predict", content=images[name])
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = tbensemble.load(served_artifacts, device="cpu").predict(images[name], ids=[answer["request_id"]])
    row = expected.iloc[0].to_dict()
    for key in ("image_id", "decision", "reasons", "operating_point", "manifest_sha256"):
        assert answer[key] == row[key], key
    for key in ("score", "probability", "threshold"):
        assert answer[key] == pytest.approx(row[key], abs=1e-12), key
    assert response.headers["x-request-id"] == answer["request_id"]
    assert answer["latency_ms"] > 0


def test_dicom_header_reaches_the_refer_rule(server, tmp_path):
    pixels = (np.random.default_rng(3).integers(40, 200, (64, 64)) * 16).astype(np.uint16)
    write_dicom(tmp_path / "knee.dcm", pixels, WindowCenter=2048, WindowWidth=4096, BodyPartExamined="KNEE")
    answer = httpx.post(f"{server.url}/v1/predict", content=(tmp_path / "knee.dcm").read_bytes()).json()
    assert answer["decision"] == "refer"
    assert "dicom_body_part=KNEE" in answer["reasons"]


def test_heatmap_adds_the_overlay_png(server, images):
    answer = httpx.post(f"{server.url}/v1/predict", params={"heatmap": 1}, content=images["scan.png"]).json()
    assert base64.b64decode(answer["heatmap_png_base64"]).startswith(b"\x89PNG\r\n\x1a\n")
    plain = httpx.post(f"{server.url}/v1/predict", content=images["scan.png"]).json()
    assert "heatmap_png_base64" not in plain
    assert plain["score"] == answer["score"]


def _assert_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) <= {"error", "request_id"}
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    return body


def test_413_body_over_the_limit(server, images):
    big = images["scan.png"] + b"\0" * (300 << 10)
    assert "over the limit" in _assert_error(httpx.post(f"{server.url}/v1/predict", content=big), 413)["error"]

    def chunks():
        yield images["scan.png"]
        for _ in range(40):
            yield b"\0" * 8192

    _assert_error(httpx.post(f"{server.url}/v1/predict", content=chunks()), 413)


@pytest.mark.parametrize("body", [b"", b"hello, not an image", b"GIF89a" + b"\0" * 200])
def test_415_not_an_image(server, body):
    response = httpx.post(f"{server.url}/v1/predict", content=body, headers={"content-type": "image/png"})
    _assert_error(response, 415)


def test_422_undecodable(server, images):
    truncated = images["scan.png"][:60]
    body = _assert_error(httpx.post(f"{server.url}/v1/predict", content=truncated), 422)
    assert body["request_id"] in body["error"]
    broken_dicom = images["scan.dcm"][:200]
    _assert_error(httpx.post(f"{server.url}/v1/predict", content=broken_dicom), 422)


def test_422_refused_by_the_decode_limits(server):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 400), np.uint8)).save(buffer, format="PNG")  # aspect ratio 100:1
    body = _assert_error(httpx.post(f"{server.url}/v1/predict", content=buffer.getvalue()), 422)
    assert "refused" in body["error"] and "aspect ratio" in body["error"]


def test_422_over_max_pixels(served_artifacts, tmp_path, images):
    server = start_server(served_artifacts, tmp_path, "--max-pixels", "1000")
    try:
        body = _assert_error(httpx.post(f"{server.url}/v1/predict", content=images["scan.dcm"]), 422)
        assert "megapixel limit" in body["error"]
    finally:
        assert server.stop() == 0


def test_unknown_route_and_bad_query_are_json(server, images):
    _assert_error(httpx.get(f"{server.url}/v1/nothing"), 404)
    _assert_error(httpx.post(f"{server.url}/v1/predict", params={"heatmap": "maybe"}, content=images["scan.png"]), 422)


def test_metrics_prometheus_text(server, images):
    httpx.post(f"{server.url}/v1/predict", content=images["scan.png"])
    httpx.post(f"{server.url}/v1/predict", content=b"nope")
    response = httpx.get(f"{server.url}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for needle in (
        'tbens_requests_total{status="200"}',
        'tbens_requests_total{status="415"}',
        "tbens_request_latency_seconds_bucket",
        "tbens_decisions_total{decision=",
        "tbens_batch_size_bucket",
        "tbens_drift ",
        "tbens_ready 1.0",
    ):
        assert needle in text, needle


def test_audit_log_has_each_answer_and_nothing_else(server, images):
    answers = {}
    for body in images.values():
        answer = httpx.post(f"{server.url}/v1/predict", content=body).json()
        answers[answer["request_id"]] = (hashlib.sha256(body).hexdigest(), answer)
    records = {r["request_id"]: r for r in read_audit(server.audit_log)}
    for request_id, (sha, answer) in answers.items():
        record = records[request_id]
        assert tuple(record) == AUDIT_FIELDS
        assert record["input_sha256"] == sha
        assert record["decision"] == answer["decision"]
        assert record["score"] == answer["score"]
        assert record["manifest_sha256"] == answer["manifest_sha256"]


def test_503_with_retry_after_when_the_queue_is_full(served_artifacts, tmp_path, images):
    """Two requests wait (up to 3 s) for a batch of 8; the queue holds 2, so the rest are turned away at once
    (by the batcher, or before their body is read once queue + batch = 10 requests are in progress)."""
    server = start_server(served_artifacts, tmp_path, "--max-queue", "2", "--batch-size", "8", "--max-wait-ms", "3000")
    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            responses = list(
                pool.map(
                    lambda _: httpx.post(f"{server.url}/v1/predict", content=images["scan.png"], timeout=30), range(12)
                )
            )
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(200) == 2 and statuses.count(503) == 10, statuses
        refused = next(r for r in responses if r.status_code == 503)
        _assert_error(refused, 503)
        assert refused.headers["retry-after"] == "1"
    finally:
        assert server.stop() == 0


def test_audit_lines_are_json_without_pixels(server):
    for line in server.audit_log.read_text().splitlines():
        record = json.loads(line)
        assert set(record) == set(AUDIT_FIELDS)
        assert len(line) < 400


def test_load_test_script_against_the_server(server, tmp_path, images, capsys):
    """scripts/load_test.py: 2 clients for a second, every 200 found in the audit log, exit 0."""
    from tests.script_module import load_script

    load_test = load_script("load_test")
    folder = tmp_path / "posted"
    folder.mkdir()
    for name, body in images.items():
        (folder / name).write_bytes(body)
    argv = ["--url", server.url, "--images", str(folder), "--concurrency", "2", "--duration", "1"]
    assert load_test.main([*argv, "--max-requests", "40", "--audit-log", str(server.audit_log)]) == 0
    output = capsys.readouterr().out
    assert "errors 0" in output and "audit log: " in output
    (folder / "junk.png").write_bytes(b"not an image")
    assert load_test.main([*argv, "--max-requests", "20"]) == 1
    assert "415" in capsys.readouterr().out
