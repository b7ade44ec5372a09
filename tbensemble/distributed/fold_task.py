"""The Ray task of ``train-folds --ray``: one fold, trained on a worker into a scratch folder on its node,
returned as the fold folder's files. TensorFlow is imported inside the task (quietly, as the CLI does),
so that unpickling this function does not print TensorFlow's start-up lines on every worker."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from tbensemble.core.config import TrainConfig
from tbensemble.core.optional import QUIET_LEVEL, quiet_requested, require_training_stack
from tbensemble.distributed.cluster import worker_logging

log = logging.getLogger("tbensemble.distributed")


def worker_environment() -> dict[str, Any]:
    """Ray options that carry the driver's quiet TensorFlow setting to workers on other machines."""
    return {"runtime_env": {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": QUIET_LEVEL}}} if quiet_requested() else {}


def _limit_threads(assigned: dict[str, float]) -> None:
    """On CPU workers, TensorFlow gets the CPUs Ray assigned, not the whole node (jobs share it)."""
    if assigned.get("GPU"):
        return
    import tensorflow as tf

    threads = max(1, int(assigned.get("CPU", 1)))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.warning("TensorFlow was initialised before the job; it uses every core of this node")


def train_fold(
    config: TrainConfig,
    backbone: str,
    fold: int,
    table: pd.DataFrame,
    board: Any,
    scratch_name: str,
    run_started: float,
) -> dict:
    """Train one fold with the trainer's per-fold entry point; return its done record and files' bytes."""
    import ray

    worker_logging()
    require_training_stack("tbens train-folds --ray")
    _limit_threads(ray.get_runtime_context().get_assigned_resources())
    from tbensemble.distributed.folds import BoardClock, job_key
    from tbensemble.train.trainer import Job, train_job

    job = Job(backbone, fold)
    board.started.remote(job_key(job), os.getpid(), socket.gethostname())  # not awaited: see board
    scratch = Path(tempfile.gettempdir()) / scratch_name
    shutil.rmtree(scratch, ignore_errors=True)  # what an earlier attempt on this node left
    try:
        done = train_job(config, job, table, scratch, BoardClock(ray, board, job_key(job), run_started))
        folder = job.folder(scratch)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"done": done, "files": files, "node": socket.gethostname()}
