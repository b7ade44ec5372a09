"""Longest-first submission of fold jobs and the makespan of a list schedule: pure functions, no Ray."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pandas as pd
import pytest

from tbensemble.core.config import build_config
from tbensemble.core.registry import BACKBONES, BackboneInfo
from tbensemble.distributed.schedule import expected_cost, longest_first, makespan


@dataclass(frozen=True)
class Job:
    """The fields of the trainer's Job that scheduling reads (the trainer module imports TensorFlow)."""

    backbone: str
    fold: int


def config(backbones, epochs=20):
    return build_config({"backbones": backbones, "weights": None, "folds": 3, "epochs": epochs}, "test")


def folds_table(sizes):
    return pd.DataFrame({"fold": [fold for fold, size in enumerate(sizes) for _ in range(size)]})


def test_cost_is_step_cost_times_training_images_times_epochs():
    table = folds_table([10, 20, 30])  # fold 0 trains on 50 images, fold 2 on 30
    run = config(["resnet50", "efficientnetb5"], epochs=4)
    assert expected_cost(run, Job("resnet50", 0), table) == BACKBONES["resnet50"].relative_step_cost * 50 * 4
    assert expected_cost(run, Job("efficientnetb5", 2), table) == (
        BACKBONES["efficientnetb5"].relative_step_cost * 30 * 4
    )


def test_leaderboard_jobs_go_dearest_backbone_first_and_ties_keep_config_order():
    run = config(["resnet50", "densenet201", "efficientnetb5"])
    table = folds_table([100, 100, 100])
    jobs = [Job(backbone, fold) for backbone in run.backbones for fold in range(3)]
    order = longest_first(jobs, {job: expected_cost(run, job, table) for job in jobs})
    by_cost = sorted(run.backbones, key=lambda name: -BACKBONES[name].relative_step_cost)
    assert order == [Job(backbone, fold) for backbone in by_cost for fold in range(3)]


def test_a_larger_training_fold_goes_first_within_a_backbone():
    run = config(["tinycnn"])
    table = folds_table([40, 10, 25])  # training images: fold0 35, fold1 65, fold2 50
    jobs = [Job("tinycnn", fold) for fold in range(3)]
    order = longest_first(jobs, {job: expected_cost(run, job, table) for job in jobs})
    assert [job.fold for job in order] == [1, 2, 0]


def test_equal_costs_keep_the_given_order():
    jobs = [Job("b", 2), Job("a", 0), Job("c", 1)]
    assert longest_first(jobs, dict.fromkeys(jobs, 1.0)) == jobs


def test_makespan_of_a_list_schedule():
    assert makespan([], 4) == 0
    assert makespan([5, 3, 3], 1) == 11
    assert makespan([5, 3, 3], 8) == 5  # more workers than jobs: the longest job
    assert makespan([3, 3, 2, 2, 2], 2) == 7  # in this order, each job on the first worker free
    assert makespan([1, 1, 1, 1, 4], 2) == 6  # the long job last leaves a worker idle...
    assert makespan(sorted([1, 1, 1, 1, 4], reverse=True), 2) == 4  # ...longest first does not
    with pytest.raises(ValueError, match="workers must be >= 1"):
        makespan([1], 0)


def best_makespan(durations, workers):
    """The optimum by trying every assignment of jobs to workers (small cases only)."""
    return min(
        max(sum(d for d, w in zip(durations, assignment, strict=True) if w == worker) for worker in range(workers))
        for assignment in itertools.product(range(workers), repeat=len(durations))
    )


def test_longest_first_stays_within_grahams_bound_of_the_optimum():
    rng = random.Random(0)
    for _ in range(60):
        durations = [rng.uniform(1, 10) for _ in range(rng.randint(1, 7))]
        workers = rng.randint(1, 3)
        best = best_makespan(durations, workers)
        lpt = makespan(sorted(durations, reverse=True), workers)
        assert best - 1e-9 <= lpt <= (4 / 3 - 1 / (3 * workers)) * best + 1e-9


def test_a_backbone_without_a_positive_step_cost_is_refused():
    with pytest.raises(ValueError, match="relative_step_cost must be > 0"):
        BackboneInfo("x", "a.b", "unit", 64, leaderboard=False, relative_step_cost=0)
