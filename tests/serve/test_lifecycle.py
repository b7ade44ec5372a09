"""SIGTERM drains in-flight requests and exits 0; after a kill -9 under load and a restart, the audit log
has no torn line and a line for every request that got a 200."""

from __future__ import annotations

import concurrent.futures
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tbensemble.serve.audit import read_audit
from tests.serve.conftest import encoded_images, start_server

pytestmark = pytest.mark.slow


def _queue_depth(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("tbens_queue_depth ")))


def test_sigterm_drains_in_flight_requests_then_exits_0(served_artifacts, tmp_path):
    images = encoded_images(tmp_path / "images")
    # Requests wait up to 3 s for a batch to fill: SIGTERM arrives once all of them wait in the queue.
    server = start_server(served_artifacts, tmp_path / "server", "--max-wait-ms", "3000", "--batch-size", "8")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(httpx.post, f"{server.url}/v1/predict", content=b, timeout=30) for b in images.values()]
        deadline = time.monotonic() + 20
        while _queue_depth(server.url) < len(futures) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _queue_depth(server.url) == len(futures), "the requests never all waited in the queue"
        server.process.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
    assert server.process.wait(timeout=30) == 0, server.log()
    logged = {r["request_id"] for r in read_audit(server.audit_log)}
    assert {r.json()["request_id"] for r in responses} <= logged
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v2/health/live", timeout=2)


def test_kill_9_under_load_then_restart_keeps_every_answered_request(served_artifacts, tmp_path):
    body = encoded_images(tmp_path / "images")["scan.png"]
    server = start_server(served_artifacts, tmp_path / "server")
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                try:
                    response = http.post("/v1/predict", content=body)
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    answered.append(response.json()["request_id"])

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    deadline = time.monotonic() + 20
    while len(answered) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    stop.set()
    for thread in clients:
        thread.join(timeout=15)
    assert len(answered) >= 30
    restarted = start_server(served_artifacts, tmp_path / "server", audit_log=server.audit_log)
    try:
        records = read_audit(server.audit_log)  # raises on a torn or non-JSON line
        assert set(answered) <= {r["request_id"] for r in records}
        response = httpx.post(f"{restarted.url}/v1/predict", content=body)
        assert response.status_code == 200
        assert read_audit(server.audit_log)[-1]["request_id"] == response.json()["request_id"]
    finally:
        assert restarted.stop() == 0


def test_token_file_guards_predict_and_metrics_not_health(served_artifacts, tmp_path):
    token = "s3cret-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    body = encoded_images(tmp_path / "images")["scan.png"]
    server = start_server(served_artifacts, tmp_path / "server", "--token-file", str(tmp_path / "token"))
    try:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": token}):
            response = httpx.post(f"{server.url}/v1/predict", content=body, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"] == "missing or wrong bearer token"
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        good = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{server.url}/v1/predict", content=body, headers=good).status_code == 200
        assert httpx.get(f"{server.url}/metrics", headers=good).status_code == 200
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    finally:
        assert server.stop() == 0


def test_port_in_use_exits_2_with_one_line(served_artifacts, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "tbensemble", "serve", "--artifacts", str(served_artifacts)]
        command += ["--port", str(port), "--audit-log", str(tmp_path / "audit.jsonl")]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: --host 127.0.0.1 --port {port}: the server could not start")
    )
