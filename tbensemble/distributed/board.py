"""The progress board of a ``train-folds --ray`` run: a small Ray actor, kept free of TensorFlow so that
its worker process stays light.

Workers never block on it: Ray hands the CPU of a task blocked in ``ray.get`` (or in ``ray.wait`` on an
object not yet there, even with no timeout) to the next queued task, so a call per epoch would run more
jobs at once than the cluster has CPUs (measured here: three jobs on two CPUs). They send their reports
without waiting, and read a reply through its future once it is there."""

from __future__ import annotations

import math
import time
from typing import Any


class RunBoard:
    """A Ray actor the workers report to: attempts per job and progress, for one ETA over the whole run.

    The ETA assumes the rest of the run goes at the pace seen so far over all workers together, and
    that every job runs all its epochs (early stopping makes it an upper bound)."""

    def __init__(self, n_jobs: int):
        self.n_jobs = max(n_jobs, 1)
        self.start = time.monotonic()
        self.fraction: dict[str, float] = {}
        self.workers: dict[str, dict[str, Any]] = {}

    def started(self, key: str, pid: int, node: str) -> None:
        """Record a job's (re)start on a worker."""
        attempt = self.workers.get(key, {}).get("attempt", 0) + 1
        self.workers[key] = {"pid": pid, "node": node, "attempt": attempt}
        self.fraction[key] = 0.0

    def attempts(self, key: str) -> int:
        """How many times the job was started, 1 when no worker of it died."""
        return self.workers.get(key, {}).get("attempt", 1)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def progress(self, key: str, fraction: float) -> tuple[float, float]:
        """Record a job's share done; returns the run's elapsed seconds and its ETA."""
        self.fraction[key] = min(max(fraction, 0.0), 1.0)
        done = sum(self.fraction.values()) / self.n_jobs
        elapsed = self.elapsed()
        return elapsed, (elapsed * (1 - done) / done if done > 0 else math.nan)

    def finished(self, key: str) -> None:
        self.fraction[key] = 1.0

    def running(self) -> dict[str, dict[str, Any]]:
        """Job key -> pid, node, attempt and share done of the worker that has it (last start)."""
        return {key: {**worker, "fraction": self.fraction[key]} for key, worker in self.workers.items()}
