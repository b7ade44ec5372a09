"""Prometheus metrics of one server: requests by status, latency, decisions by class, batch sizes, drift.

A registry per app (not the process-global default), so two apps in one process, as in tests, never
share counts.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServiceMetrics:
    def __init__(
        self, drift: Callable[[np.ndarray], float] | None = None, window: int = 500, min_window: int = 50
    ) -> None:
        """``drift(scores)`` is the drift statistic of the last ``window`` scores (NaN until ``min_window``)."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tbens_requests", "Predict requests answered, by HTTP status", ["status"], registry=self.registry
        )
        self.latency = Histogram(
            "tbens_request_latency_seconds",
            "Predict latency from the body read to the answer",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter("tbens_decisions", "Decisions made, by class", ["decision"], registry=self.registry)
        self.batch_size = Histogram(
            "tbens_batch_size", "Images per ONNX batch", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge("tbens_queue_depth", "Requests waiting for a batch", registry=self.registry)
        self.ready = Gauge(
            "tbens_ready", "1 once every model is loaded, verified and warmed up", registry=self.registry
        )
        self._scores: collections.deque[float] = collections.deque(maxlen=window)
        self._lock = threading.Lock()
        self.min_window = min_window
        if drift is not None:
            self.drift = Gauge(
                "tbens_drift",
                f"Drift statistic of the last {window} scores against the out-of-fold reference (NaN below {min_window})",
                registry=self.registry,
            )
            self.drift.set_function(lambda: self._drift_now(drift))

    def _drift_now(self, drift: Callable[[np.ndarray], float]) -> float:
        with self._lock:
            scores = np.fromiter(self._scores, dtype=np.float64)
        return float(drift(scores)) if scores.size >= self.min_window else float("nan")

    def observe_decisions(self, decisions: list[str], scores: list[float]) -> None:
        for decision in decisions:
            self.decisions.labels(decision=decision).inc()
        with self._lock:
            self._scores.extend(scores)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
