"""``train-folds --ray``: every (backbone, fold) job as a Ray task, committed to the run folder by the driver.

Workers share no file system with the driver. Each task trains its fold with the trainer's own per-fold
entry point into a scratch folder on its node and returns that fold folder's files as bytes; the driver
writes them into ``RUN/models/<backbone>/fold<k>/``, each file atomically and ``done.json`` last. So:

- a worker that dies mid-job leaves nothing in the run folder; Ray runs the task again (``max_retries``);
- only the driver writes the run folder, once per job, so no fold is trained twice into it;
- a driver that dies mid-commit leaves no ``done.json``, and the rerun trains that fold again, as in a
  serial run; finished folds are skipped on a rerun by the trainer's own check.

Jobs are submitted dearest first (``schedule.longest_first``: the backbone's measured step cost × images ×
epochs), so the longest folds do not start last while other workers idle.

Training data must be readable at the same path on every node (a read-only mount or a copy); the run
folder lives only where the driver runs.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from tbensemble.core import atomic
from tbensemble.core.config import TrainConfig
from tbensemble.core.errors import ArtifactError, TbensError
from tbensemble.distributed.board import RunBoard
from tbensemble.distributed.cluster import connected, per_worker_resources, tbens_cause
from tbensemble.distributed.fold_task import train_fold, worker_environment
from tbensemble.distributed.schedule import expected_cost, longest_first
from tbensemble.train.callbacks import RunClock
from tbensemble.train.trainer import Job, JobRunner

log = logging.getLogger("tbensemble.distributed")

MAX_RETRIES = 3
"""Times Ray reruns a fold whose worker process or node died (not one that raised an error)."""


def job_key(job: Job) -> str:
    return f"{job.backbone}/fold{job.fold}"


class BoardClock(RunClock):
    """The trainer's run clock, fed by the board, so a worker's epoch lines carry the whole run's ETA.

    Each epoch's report is sent without blocking (see ``board``); its reply, the run's ETA, is read if
    it arrives within ``REPLY_WAIT_S``, else the previous one is shown."""

    REPLY_WAIT_S = 1.0

    def __init__(self, ray: ModuleType, board: Any, key: str, run_started: float):
        super().__init__(1)
        self.ray, self.board, self.key, self.run_started = ray, board, key, run_started
        self.last_eta = math.nan

    def elapsed(self) -> float:
        return time.time() - self.run_started

    def eta(self, epoch: int, epochs: int) -> float:
        # Polled through the reply's future: even ray.wait(timeout=0) on a reply not yet there counts as
        # blocked, and lends this job's CPU to the next one (measured).
        reply = self.board.progress.remote(self.key, epoch / max(epochs, 1)).future()
        deadline = time.monotonic() + self.REPLY_WAIT_S
        while not reply.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if reply.done():
            self.last_eta = reply.result()[1]
        return self.last_eta


def commit_fold(folder: Path, files: dict[str, bytes]) -> None:
    """Write a fold's files into the run folder, each atomically, ``done.json`` last (the fold's commit)."""
    unsafe = [name for name in files if Path(name).is_absolute() or ".." in Path(name).parts]
    if unsafe:
        raise ArtifactError(f"{folder}: a worker returned files outside the fold folder ({', '.join(unsafe)})")
    if "done.json" not in files:
        raise TbensError(f"{folder}: the worker returned no done.json ({', '.join(sorted(files)) or 'no files'})")
    (folder / "done.json").unlink(missing_ok=True)
    for name, data in files.items():
        if name != "done.json":
            atomic.write_bytes(folder / name, data)
    atomic.write_bytes(folder / "done.json", files["done.json"])


def _result(ray: ModuleType, ref: Any, job: Job) -> dict:
    """A task's result; a TbensError raised on the worker comes back as itself (one line, its exit code)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = tbens_cause(exc)
        if cause is None:
            raise
        raise cause from None
    except ray.exceptions.RayError as exc:
        raise TbensError(
            f"{job_key(job)}: its Ray worker failed {MAX_RETRIES + 1} times ({str(exc).splitlines()[0]})"
        ) from None


def board_name(run: Path) -> str:
    """One board per run folder and cluster: a second driver on the same run is refused."""
    return f"tbens-train:{run.resolve()}"


def ray_runner(address: str | None) -> JobRunner:
    """A trainer ``runner`` that trains the jobs as Ray tasks on the cluster at ``address`` (None: local)."""

    def run_jobs(
        config: TrainConfig, todo: list[Job], table: pd.DataFrame, run: Path, clock: RunClock
    ) -> Iterator[dict]:
        with connected(address) as ray:
            yield from _run_on(ray, config, todo, table, run)

    return run_jobs


def _run_on(ray: ModuleType, config: TrainConfig, todo: list[Job], table: pd.DataFrame, run: Path) -> Iterator[dict]:
    try:
        board = ray.remote(RunBoard).options(name=board_name(run), num_cpus=0, max_restarts=0).remote(len(todo))
        ray.get(board.elapsed.remote())
    except ValueError:
        raise TbensError(
            f"{run}: another train-folds --ray driver is training this run folder on this cluster"
        ) from None
    resources = per_worker_resources(ray)
    cluster = ray.cluster_resources()
    log.info(
        "Ray: %d jobs as tasks of one %s each, on a cluster of %d CPUs and %d GPUs",
        len(todo),
        "GPU" if "num_gpus" in resources else "CPU",
        cluster.get("CPU", 0),
        cluster.get("GPU", 0),
    )
    # A fresh worker process per job (max_calls=1): TensorFlow's memory and threads start clean each time.
    task = ray.remote(max_calls=1, max_retries=MAX_RETRIES, retry_exceptions=False)(train_fold).options(
        **resources, **worker_environment()
    )
    costs = {job: expected_cost(config, job, table) for job in todo}
    todo = longest_first(todo, costs)
    log.info("Ray: submitted longest first: %s", ", ".join(job_key(job) for job in todo))
    table_ref = ray.put(table)
    run_started = time.time()
    token = hashlib.sha256(str(run.resolve()).encode()).hexdigest()[:12]
    pending = {}
    for job in todo:
        (job.folder(run) / "done.json").unlink(missing_ok=True)  # in progress, as a serial run marks it
        scratch = f"tbens-{token}-{job.backbone}-fold{job.fold}"
        pending[task.remote(config, job.backbone, job.fold, table_ref, board, scratch, run_started)] = job
    try:
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready)
            result = _result(ray, ready, job)
            commit_fold(job.folder(run), result["files"])
            board.finished.remote(job_key(job))
            attempt = ray.get(board.attempts.remote(job_key(job)))
            retried = f", attempt {attempt} (its earlier worker died)" if attempt > 1 else ""
            log.info("%s: committed from %s%s", job_key(job), result["node"], retried)
            yield result["done"]
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.kill(board)
