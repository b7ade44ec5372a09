"""Load test for a running ``tbens serve``: N concurrent clients post images for T seconds.

Prints throughput, p50/p95/p99 latency of the 200 answers and every other status, then checks that each
200 answer's request id is in the server's audit log. Bounded in time (``--duration``) and count
(``--max-requests``); meant for a server on loopback. Exit status 1 on any error or missing audit line.

    python scripts/load_test.py --url http://127.0.0.1:8000 --images data/demo/test --concurrency 8 \\
        --duration 60 --audit-log audit.jsonl
"""

from __future__ import annotations

import argparse
import collections
import http.client
import itertools
import json
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
MAX_IMAGES = 256
MAX_FAILURES_KEPT = 20


@dataclass
class LoadResult:
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    request_ids: list[str] = field(default_factory=list)
    decisions: dict[str, list[str]] = field(default_factory=dict)
    """Image name -> every decision the server gave for it (one image must always get the same one)."""
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def errors(self) -> int:
        return sum(self.statuses.values()) - self.ok

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000.0) if self.latencies_s else float("nan")

    def summary(self) -> str:
        others = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items(), key=str) if s != 200) or "none"
        return (
            f"{self.ok} answers in {self.elapsed_s:.1f} s: {self.throughput:.1f} img/s; latency p50 "
            f"{self.percentile_ms(50):.1f} ms, p95 {self.percentile_ms(95):.1f} ms, p99 {self.percentile_ms(99):.1f} ms; "
            f"errors {self.errors} ({others})"
        )


def read_images(folder: Path, limit: int = MAX_IMAGES) -> list[tuple[str, bytes]]:
    """Up to ``limit`` image files of ``folder`` as (name, bytes), sorted by name."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise SystemExit(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return [(p.name, p.read_bytes()) for p in paths]


def _client(
    url: urllib.parse.SplitResult,
    headers: dict[str, str],
    images: list[tuple[str, bytes]],
    start: int,
    stop_at: float,
    budget: itertools.count,
    max_requests: int | None,
    result: LoadResult,
) -> None:
    """One client on one keep-alive connection (reopened after a connection error), posting until stop_at."""
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    position = start
    while time.perf_counter() < stop_at and (max_requests is None or next(budget) < max_requests):
        name, body = images[position % len(images)]
        position += 1
        began = time.perf_counter()
        try:
            connection.request("POST", "/v1/predict", body=body, headers=headers)
            response = connection.getresponse()
            text = response.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            with result.lock:
                result.statuses["connection error"] += 1
                if len(result.failures) < MAX_FAILURES_KEPT:
                    result.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            time.sleep(0.05)
            continue
        latency = time.perf_counter() - began
        with result.lock:
            result.statuses[response.status] += 1
            if response.status == 200:
                answer = json.loads(text)
                result.latencies_s.append(latency)
                result.request_ids.append(answer["request_id"])
                result.decisions.setdefault(name, []).append(answer["decision"])
            elif len(result.failures) < MAX_FAILURES_KEPT:
                result.failures.append(f"{name}: {response.status} {text[:200]!r}")
    connection.close()


def run_load(
    url: str,
    images: list[tuple[str, bytes]],
    concurrency: int,
    duration_s: float,
    token: str | None = None,
    max_requests: int | None = None,
) -> LoadResult:
    """``concurrency`` client threads, each on its own keep-alive connection, posting images round-robin.

    The standard library's ``http.client``: it costs the client about a tenth of the CPU per request of an
    async httpx client (0.15 against 1.1 ms measured here), CPU that the server shares on a small machine.
    """
    parts = urllib.parse.urlsplit(url)
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    result = LoadResult()
    budget = itertools.count()
    began = time.perf_counter()
    stop_at = began + duration_s
    clients = [
        threading.Thread(
            target=_client,
            args=(parts, headers, images, i * len(images) // concurrency, stop_at, budget, max_requests, result),
        )
        for i in range(concurrency)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    result.elapsed_s = time.perf_counter() - began
    return result


def missing_audit_lines(audit_log: Path, request_ids: list[str]) -> list[str]:
    """Request ids answered 200 with no line in the audit log (a torn or non-JSON line counts as a failure)."""
    logged = set()
    for number, line in enumerate(audit_log.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            logged.add(json.loads(line)["request_id"])
        except (json.JSONDecodeError, KeyError):
            raise SystemExit(f"{audit_log}:{number}: not an audit line: {line[:80]!r}") from None
    return [r for r in request_ids if r not in logged]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--images", type=Path, required=True, help="Folder of images to post (first 256, by name).")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds to keep posting.")
    parser.add_argument("--max-requests", type=int, default=None, help="Stop after this many requests in all.")
    parser.add_argument("--audit-log", type=Path, default=None, help="The server's audit log, to check every 200.")
    parser.add_argument("--token-file", type=Path, default=None)
    args = parser.parse_args(argv)
    token = args.token_file.read_text().strip() if args.token_file else None
    result = run_load(args.url, read_images(args.images), args.concurrency, args.duration, token, args.max_requests)
    print(f"concurrency {args.concurrency}: {result.summary()}")
    for failure in result.failures[:5]:
        print(f"  {failure}")
    inconsistent = [name for name, got in result.decisions.items() if len(set(got)) > 1]
    if inconsistent:
        print(f"different decisions for the same image: {inconsistent[:5]}")
    missing = missing_audit_lines(args.audit_log, result.request_ids) if args.audit_log else []
    if args.audit_log:
        print(f"audit log: {len(result.request_ids) - len(missing)} of {len(result.request_ids)} answers logged")
    return 1 if result.errors or missing or inconsistent else 0


if __name__ == "__main__":
    sys.exit(main())
