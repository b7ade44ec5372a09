"""Seconds per training step (forward + backward + Adam) per backbone, and the fixed cost of a job: the inputs
of `scripts/estimate_leaderboard.py`, which sizes a `train-folds --ray` run on N GPUs.

    python scripts/bench_train_step.py --backbones resnet50,densenet201,efficientnetb5 --size 384 --batch 16 \
        --out step_costs.json

Mixed precision on a GPU, as the trainer does with `mixed_precision: auto`; float32 on a CPU. Random images
(step cost does not depend on pixel values) and random weights (ImageNet weights change no cost; with them the
trainer freezes batch-norm statistics, which removes a little work, so these steps are if anything dearer).
Prints, per backbone, the build time, the first step (graph tracing), the median of the timed steps and its
ratio to the first backbone's (steps interleaved round by round, all models held at once); the TensorFlow
import time is measured once, in this process. `--decode FOLDER` also times the trainer's own
decoding (`load_images`, parallel over all cores) of up to `--decode-count` images of FOLDER at SIZE: each job
decodes its whole data set once (then caches it), a fixed cost per job. `--out` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

started_import = time.perf_counter()
import keras  # noqa: E402  (timed: the import is part of every job's fixed cost)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tbensemble.core.atomic import write_json  # noqa: E402
from tbensemble.train.backbones import build_model  # noqa: E402
from tbensemble.train.pipeline import load_images  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - started_import


def measure(backbones: list[str], size: int, batch: int, rounds: int, mixed: bool) -> dict[str, dict]:
    """Build time, first (tracing) step and median step of each backbone, in seconds, and its step relative to
    the first backbone's: the median over rounds of the two steps' ratio within a round.

    All models stay built and take one step each per round, so a neighbour's burst on a shared machine lands on
    every backbone alike (sequential runs per backbone gave ratios off by up to 1.9x here)."""
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch, size, size, 1)).astype(np.float32)
    labels = rng.integers(0, 2, size=(batch, 1)).astype(np.float32)
    models, figures = {}, {}
    for backbone in backbones:
        started = time.perf_counter()
        model = build_model(backbone, size, weights=None)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
        build = time.perf_counter() - started
        started = time.perf_counter()
        model.train_on_batch(images, labels)
        models[backbone] = model
        figures[backbone] = {"build_s": build, "first_step_s": time.perf_counter() - started}
    timings: dict[str, list[float]] = {backbone: [] for backbone in backbones}
    for _ in range(rounds):
        for backbone, model in models.items():
            started = time.perf_counter()
            model.train_on_batch(images, labels)
            timings[backbone].append(time.perf_counter() - started)
    reference = timings[backbones[0]]
    for backbone in backbones:
        ratios = [step / ref for step, ref in zip(timings[backbone], reference, strict=True)]
        figures[backbone].update(
            step_s=statistics.median(timings[backbone]),
            steps=rounds,
            relative_step=statistics.median(ratios),
            relative_to=backbones[0],
        )
    keras.mixed_precision.set_global_policy("float32")
    return figures


def decode_rate(folder: Path, size: int, count: int) -> tuple[int, float]:
    """Images decoded and their rate (images/s) through the trainer's pipeline, a warm-up image excluded."""
    paths = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".dcm"})
    if len(paths) < 2:
        raise SystemExit(f"--decode {folder}: fewer than 2 images (.png, .jpg, .dcm)")
    load_images(paths[:1], size)
    paths = paths[1 : count + 1]
    started = time.perf_counter()
    load_images(paths, size)
    return len(paths), len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="resnet50,densenet201,efficientnetb5")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="timed rounds of one step per backbone, after the first")
    parser.add_argument("--decode", type=Path, help="also time decoding the images of this folder at SIZE")
    parser.add_argument("--decode-count", type=int, default=300, help="images to decode with --decode")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON (estimate_leaderboard.py input)")
    args = parser.parse_args()
    gpus = tf.config.list_physical_devices("GPU")
    device = ", ".join(d.name for d in gpus) or f"CPU only ({platform.processor() or platform.machine()})"
    print(f"devices: {device}; size {args.size}, batch {args.batch}; tensorflow import {IMPORT_SECONDS:.1f}s")
    decoded = None
    if args.decode:
        count, rate = decode_rate(args.decode, args.size, args.decode_count)
        decoded = {"images": count, "images_per_s": rate, "cpus": os.cpu_count()}
        print(f"decode {count} images of {args.decode} at {args.size}: {rate:.1f} images/s ({os.cpu_count()} CPUs)")
    backbones = args.backbones.split(",")
    results = measure(backbones, args.size, args.batch, args.steps, mixed=bool(gpus))
    for backbone, figures in results.items():
        print(
            f"{backbone:16s} build {figures['build_s']:5.1f}s  first step {figures['first_step_s']:6.1f}s  "
            f"step {figures['step_s']:.3f}s  ({args.batch / figures['step_s']:.1f} images/s)  "
            f"x{figures['relative_step']:.2f} {backbones[0]}'s step"
        )
    if args.out:
        report = {
            "device": device,
            "mixed_precision": bool(gpus),
            "image_size": args.size,
            "batch_size": args.batch,
            "tensorflow_import_s": IMPORT_SECONDS,
            "decode": decoded,
            "backbones": results,
        }
        write_json(args.out, report)


if __name__ == "__main__":
    main()
