"""Longest-first order of fold jobs, and the makespan it gives on N workers.

Fold jobs are independent and each holds one worker, so the run's wall time is that of a list schedule:
every job goes to the first worker that frees up, in submission order. Submitting the dearest jobs first
(LPT, longest processing time) keeps a long job from starting last while the other workers sit idle; its
makespan is within 4/3 of the best possible (Graham, 1969). Ray starts queued tasks of the same shape in
the order they were submitted, so the order of submission is the order of the schedule.

Pure functions of the config and the folds table, importable without Ray or TensorFlow (the estimate script\nuses them on a machine without either).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd

from tbensemble.core.config import TrainConfig
from tbensemble.core.registry import BACKBONES

if TYPE_CHECKING:  # the trainer module imports TensorFlow; these functions only read a job's fields
    from tbensemble.train.trainer import Job


def expected_cost(config: TrainConfig, job: Job, table: pd.DataFrame) -> float:
    """Relative cost of a job: its backbone's step cost per image × the images it trains on × epochs.

    Units are arbitrary (the cost of ResNet50 training on one image for one epoch is 1); only ratios between
    the jobs of one run matter, and they share image size and batch size."""
    train_images = int((table["fold"] != job.fold).sum())
    return BACKBONES[job.backbone].relative_step_cost * train_images * config.epochs


def longest_first(jobs: Sequence[Job], costs: Mapping[Job, float]) -> list[Job]:
    """The jobs, dearest first; jobs of equal cost keep their given (config) order."""
    return sorted(jobs, key=lambda job: -costs[job])


def makespan(durations: Sequence[float], workers: int) -> float:
    """Wall time of running ``durations`` in this order on ``workers`` identical workers, each job on the first
    worker free (how Ray hands queued tasks to freed workers)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    free_at = [0.0] * min(workers, max(len(durations), 1))
    for duration in durations:
        heapq.heappush(free_at, heapq.heappop(free_at) + duration)
    return max(free_at)
