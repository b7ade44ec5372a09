"""train-folds --ray on a local 2-CPU Ray instance: the run folder of a serial run, retries, resume."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import threading
import time

import pandas as pd
import pytest

from tbensemble.core.config import build_config
from tbensemble.data.phantoms import write_demo_dataset
from tbensemble.distributed.cluster import NAMESPACE
from tbensemble.distributed.folds import board_name, ray_runner
from tbensemble.train.trainer import fold_dir, train_folds

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root, n_train=48, n_test=0, seed=3, size=64)
    return root


def tiny_config(data, out, **extra):
    raw = {
        "data": str(data),
        "out": str(out),
        "backbones": ["tinycnn"],
        "weights": None,
        "image_size": 32,
        "folds": 2,
        "epochs": 3,
        "batch_size": 16,
        **extra,
    }
    return build_config(raw, "test")


def files_of(run):
    return sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file() and p.name != "config.yaml")


def test_ray_run_folder_matches_the_serial_one_and_a_rerun_skips_every_fold(demo, tmp_path, local_ray):
    serial = train_folds(tiny_config(demo, tmp_path / "serial"))
    on_ray = train_folds(tiny_config(demo, tmp_path / "ray"), runner=ray_runner(None))

    assert sorted(on_ray["trained"]) == sorted(serial["trained"]) == [("tinycnn", 0), ("tinycnn", 1)]
    assert (tmp_path / "ray" / "folds.csv").read_bytes() == (tmp_path / "serial" / "folds.csv").read_bytes()
    assert files_of(tmp_path / "ray") == files_of(tmp_path / "serial")  # no temp files left behind either
    oof_serial = pd.read_csv(tmp_path / "serial" / "oof.csv", dtype={"image_id": str})
    oof_ray = pd.read_csv(tmp_path / "ray" / "oof.csv", dtype={"image_id": str})
    assert oof_ray[["image_id", "label", "fold"]].equals(oof_serial[["image_id", "label", "fold"]])
    # Same seeds per job; only TensorFlow's thread count differs (1 per Ray worker, 2 serial), which changes
    # float summation order. 0.1 is well inside the AUC's own sampling noise on 48 images (SE ~0.07).
    auc_serial = serial["metrics"]["ensemble"]["oof_auc"]
    auc_ray = on_ray["metrics"]["ensemble"]["oof_auc"]
    assert abs(auc_ray - auc_serial) <= 0.1, (auc_serial, auc_ray)

    again = train_folds(tiny_config(demo, tmp_path / "ray"), runner=ray_runner(None))
    assert again["trained"] == [] and len(again["skipped"]) == 2


def kill_first_worker_after_an_epoch(ray, run, killed: dict, deadline: float) -> None:
    """Find the board of the run, then SIGKILL the worker of the first job that finished an epoch."""
    board = None
    while time.monotonic() < deadline and not killed:
        try:
            board = board or ray.get_actor(board_name(run), namespace=NAMESPACE)
            for key, worker in ray.get(board.running.remote()).items():
                if worker["fraction"] > 0 and worker["attempt"] == 1:
                    os.kill(worker["pid"], signal.SIGKILL)
                    killed[key] = worker["pid"]
                    return
        except ValueError:  # the board does not exist yet
            pass
        time.sleep(0.2)


def test_worker_killed_mid_fold_is_retried_and_the_run_completes(demo, tmp_path, local_ray, caplog):
    run = tmp_path / "run"
    config = tiny_config(demo, run, epochs=8)
    killed: dict[str, int] = {}
    watcher = threading.Thread(
        target=kill_first_worker_after_an_epoch, args=(local_ray, run, killed, time.monotonic() + 300)
    )
    watcher.start()
    with caplog.at_level(logging.INFO, logger="tbensemble.distributed"):
        summary = train_folds(config, runner=ray_runner(None))
    watcher.join()

    assert len(killed) == 1, "the watcher found no running job to kill"
    (key,) = killed
    assert any(f"{key}: committed from" in r.message and "attempt 2" in r.message for r in caplog.records), [
        r.message for r in caplog.records
    ]
    assert sorted(summary["trained"]) == [("tinycnn", 0), ("tinycnn", 1)]
    assert summary["metrics"]["missing"] == []
    for fold in (0, 1):
        done = json.loads((fold_dir(run, "tinycnn", fold) / "done.json").read_text())
        assert done["fold"] == fold and (fold_dir(run, "tinycnn", fold) / "model.keras").is_file()
    assert not [p for p in run.rglob("*.tmp")], "a partial file reached the run folder"


def test_a_second_driver_on_the_same_run_folder_is_refused(demo, tmp_path, local_ray):
    from tbensemble.core.errors import TbensError
    from tbensemble.distributed.board import RunBoard

    run = tmp_path / "run"
    other = local_ray.remote(RunBoard).options(name=board_name(run), namespace=NAMESPACE, num_cpus=0).remote(1)
    local_ray.get(other.elapsed.remote())
    try:
        with pytest.raises(TbensError, match="another train-folds --ray driver is training this run folder"):
            train_folds(tiny_config(demo, run), runner=ray_runner(None))
    finally:
        local_ray.kill(other)
    assert not list(run.rglob("done.json"))


def test_ray_starts_queued_one_cpu_tasks_in_the_order_submitted(local_ray):
    """Longest-first submission relies on it: Ray hands freed workers the oldest queued task of one shape."""

    @local_ray.remote(num_cpus=1)
    def started_at(seconds: float) -> float:
        began = time.time()
        time.sleep(seconds)
        return began

    cpus = int(local_ray.cluster_resources()["CPU"])
    starts = local_ray.get([started_at.remote(0.5) for _ in range(3 * cpus)])
    rounds = [starts[i : i + cpus] for i in range(0, len(starts), cpus)]
    for earlier, later in itertools.pairwise(rounds):
        assert max(earlier) < min(later), starts
