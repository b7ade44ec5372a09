"""SIGTERM drains in-flight requests and exits 0; after a kill -9 under load and a restart, the audit log
has no torn line and a line for every request that got a 200."""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time

import httpx
import pytest

from tbensemble.serve.audit import read_audit
from tests.serve.conftest import encoded_images, start_server

pytestmark = pytest.mark.slow


def test_sigterm_drains_in_flight_requests_then_exits_0(served_artifacts, tmp_path):
    images = encoded_images(tmp_path / "images")
    # Requests wait up to 1.5 s for a batch to fill: SIGTERM arrives while all of them are in flight.
    server = start_server(served_artifacts, tmp_path / "server", "--max-wait-ms", "1500", "--batch-size", "8")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(httpx.post, f"{server.url}/v1/predict", content=b, timeout=30) for b in images.values()]
        time.sleep(0.5)
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
