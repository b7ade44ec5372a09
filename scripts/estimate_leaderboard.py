"""Expected wall time of a `train-folds --ray` run on 1, 4 and 8 GPUs (or CPU nodes), on paper.

    python scripts/estimate_leaderboard.py --step-costs step_costs.json --config configs/leaderboard.yaml \
        --images 4200 --anchor-images-per-s 1770 --anchor-size 224

Inputs, and what each figure is:
- MEASURED (`--step-costs`, written by `scripts/bench_train_step.py --out`): seconds per training step of each
  backbone at one image and batch size on one machine, TensorFlow's import, model build and first-step times,
  and the trainer's decoding rate. Their ratios are the backbones' relative costs.
- CITED (`--anchor-images-per-s`, `--anchor-size`): a published training throughput of the anchor backbone
  (ResNet50) on one GPU. Without it, only the measured machine is estimated (one such machine per worker).
  For example 1770 images/s at 224 px: NVIDIA DeepLearningExamples, TensorFlow/Classification/ConvNets/
  resnet50v1.5/README.md, "Training performance: NVIDIA DGX A100 (8x A100 40GB)", 1 GPU, batch 256, mixed
  precision + XLA. A batch of 256 with XLA keeps a GPU busier than the trainer's batch of 16 without XLA,
  so the times derived from it are a floor, not a forecast.
- DERIVED (everything printed): per-image cost on the GPU = anchor cost × (image size / anchor size)² × the
  measured relative cost of the backbone. Validation and TTA scoring count a forward pass as 1/3 of a training
  step, warm-up epochs (frozen backbone) as full ones. Each job also pays the measured fixed cost (import, build,
  first-step tracing, decoding its images once). The makespan is that of a list schedule: each job starts on
  the first worker free, in the order submitted (config order, or longest first as `--ray` submits).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from tbensemble.core.config import TrainConfig, load_config
from tbensemble.distributed.schedule import expected_cost, longest_first, makespan

FORWARD_SHARE = 1 / 3
"""A forward pass as a share of a training step (forward + backward ≈ 1 + 2): scoring's cost per image."""


class Job(NamedTuple):
    backbone: str
    fold: int


def relative_steps(costs: dict) -> dict[str, float]:
    """Each backbone's step relative to ResNet50's: the interleaved ratio when measured so, else the steps'."""
    figures = costs["backbones"]
    if all("relative_step" in f for f in figures.values()):
        return {name: f["relative_step"] / figures["resnet50"]["relative_step"] for name, f in figures.items()}
    return {name: f["step_s"] / figures["resnet50"]["step_s"] for name, f in figures.items()}


def per_image_seconds(
    costs: dict, config: TrainConfig, anchor_ips: float | None, anchor_size: int, efficiency: float
) -> dict:
    """Training seconds per image per backbone at the config's image size, on the measured machine or the GPU
    (running at ``efficiency`` of the cited throughput)."""
    reference = (
        costs["backbones"]["resnet50"]["step_s"] / costs["batch_size"] * (config.image_size / costs["image_size"]) ** 2
    )
    if anchor_ips is not None:
        reference = 1 / (anchor_ips * efficiency) * (config.image_size / anchor_size) ** 2
    return {name: reference * relative for name, relative in relative_steps(costs).items()}


def fixed_seconds(costs: dict, backbone: str, images: int) -> float:
    """Start-up of one job as measured: import, build, tracing (first step less a step), decoding its images."""
    figures = costs["backbones"][backbone]
    start = costs["tensorflow_import_s"] + figures["build_s"] + max(figures["first_step_s"] - figures["step_s"], 0)
    decode = costs.get("decode") or {}
    return start + (images / decode["images_per_s"] if decode else 0.0)


def job_seconds(config: TrainConfig, job: Job, table: pd.DataFrame, per_image: dict, costs: dict) -> float:
    train = int((table["fold"] != job.fold).sum())
    val = len(table) - train
    seconds = per_image[job.backbone]
    work = config.epochs * (train + val * FORWARD_SHARE) + val * len(config.tta) * FORWARD_SHARE
    return work * seconds + fixed_seconds(costs, job.backbone, train + 2 * val)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:5.2f} h" if seconds >= 5400 else f"{seconds / 60:5.1f} min"


def limit(run: float, total: float, longest: float, workers: int, jobs: int) -> str:
    """What bounds a makespan: the longest job, whole jobs that leave workers idle, or the total work."""
    idle = 1 - total / (workers * run)
    if run <= longest * 1.02:
        return "the longest job: one fold of the dearest backbone, which one GPU cannot split"
    if idle > 0.05:
        return f"whole jobs: {jobs} jobs on {workers} workers leave them {idle:.0%} idle at the end"
    return "the total work over the workers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-costs", type=Path, required=True, help="JSON from bench_train_step.py --out")
    parser.add_argument("--config", type=Path, default=Path("configs/leaderboard.yaml"))
    parser.add_argument("--images", type=int, default=4200, help="training set size (TB CXR Database: 4,200)")
    parser.add_argument("--anchor-images-per-s", type=float, help="published ResNet50 training images/s, 1 GPU")
    parser.add_argument("--anchor-size", type=int, default=224, help="image size of that figure")
    parser.add_argument(
        "--efficiency",
        type=float,
        default=1.0,
        help="share of the cited throughput the trainer's batch reaches (an assumption; 1: as cited)",
    )
    parser.add_argument("--workers", default="1,4,8", help="comma-separated worker (GPU) counts")
    args = parser.parse_args()
    if not args.efficiency > 0 or (args.anchor_images_per_s is not None and not args.anchor_images_per_s > 0):
        parser.error("--efficiency and --anchor-images-per-s must be > 0")
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip().isdigit() and int(w) > 0]
    if len(worker_counts) != len(args.workers.split(",")):
        parser.error(f"--workers: whole numbers > 0, comma-separated, got {args.workers!r}")
    costs = json.loads(args.step_costs.read_text())
    config = load_config(args.config)
    missing = [name for name in {"resnet50", *config.backbones} if name not in costs["backbones"]]
    if missing:
        raise SystemExit(f"{args.step_costs}: no measured step cost for {', '.join(missing)}")
    per_image = per_image_seconds(costs, config, args.anchor_images_per_s, args.anchor_size, args.efficiency)
    table = pd.DataFrame({"fold": [i % config.folds for i in range(args.images)]})
    jobs = [Job(backbone, fold) for backbone in config.backbones for fold in range(config.folds)]
    seconds = {job: job_seconds(config, job, table, per_image, costs) for job in jobs}
    submitted = longest_first(jobs, {job: expected_cost(config, job, table) for job in jobs})

    where = (
        f"1 GPU at {args.anchor_images_per_s:g} ResNet50 images/s at {args.anchor_size} px (cited)"
        f"{f' x {args.efficiency:g} (assumed)' if args.efficiency != 1 else ''}, scaled"
        if args.anchor_images_per_s
        else f"one worker = the measured machine ({costs['device']})"
    )
    print(
        f"{len(jobs)} jobs: {', '.join(config.backbones)} x {config.folds} folds; {args.images} images at "
        f"{config.image_size} px, batch {config.batch_size}, {config.epochs} epochs\nper worker: {where}"
    )
    print(f"{'backbone':16s} {'rel. step':>9s} {'img/s':>8s} {'fixed':>8s} {'job':>10s}")
    for name in config.backbones:
        relative = relative_steps(costs)[name]
        fixed = fixed_seconds(costs, name, len(table) + len(table) // config.folds)
        print(
            f"{name:16s} {relative:9.2f} {1 / per_image[name]:8.1f} {fixed:7.0f}s {hours(seconds[Job(name, 0)]):>10s}"
        )
    print(f"submitted (--ray, longest first): {', '.join(f'{j.backbone}/{j.fold}' for j in submitted)}")
    total, longest = sum(seconds.values()), max(seconds.values())
    fixed_share = sum(fixed_seconds(costs, j.backbone, len(table) + len(table) // config.folds) for j in jobs) / total
    print(f"total work {hours(total)}, longest job {hours(longest)}, fixed costs {fixed_share:.1%} of the work")
    print(f"{'workers':>7s} {'config order':>13s} {'longest first':>14s} {'lower bound':>12s}  limited by")
    for workers in worker_counts:
        in_config = makespan([seconds[job] for job in jobs], workers)
        lpt = makespan([seconds[job] for job in submitted], workers)
        bound = max(total / workers, longest)
        print(
            f"{workers:7d} {hours(in_config):>13s} {hours(lpt):>14s} {hours(bound):>12s}  {limit(lpt, total, longest, workers, len(jobs))}"
        )


if __name__ == "__main__":
    main()
