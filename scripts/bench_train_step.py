"""Seconds per training step (forward + backward + Adam) per backbone: the per-job cost that sizes a
`train-folds --ray` run on N GPUs. Mixed precision on a GPU, as the trainer does with `mixed_precision: auto`.

    python scripts/bench_train_step.py --backbones resnet50,densenet201,efficientnetb5 --size 384 --batch 16

Prints, per backbone, the first step (tracing) and the median of the timed steps, on random images
(step cost does not depend on pixel values) and random weights (ImageNet weights change no cost).
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from tbensemble.train.backbones import build_model


def step_seconds(backbone: str, size: int, batch: int, steps: int, mixed: bool) -> tuple[float, float]:
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    model = build_model(backbone, size, weights=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch, size, size, 1)).astype(np.float32)
    labels = rng.integers(0, 2, size=(batch, 1)).astype(np.float32)
    started = time.perf_counter()
    model.train_on_batch(images, labels)
    first = time.perf_counter() - started
    timings = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(images, labels)
        timings.append(time.perf_counter() - started)
    keras.mixed_precision.set_global_policy("float32")
    return first, statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="resnet50,densenet201,efficientnetb5")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    gpus = tf.config.list_physical_devices("GPU")
    print(f"devices: {[d.name for d in gpus] or 'CPU only'}; size {args.size}, batch {args.batch}")
    for backbone in args.backbones.split(","):
        first, median = step_seconds(backbone, args.size, args.batch, args.steps, mixed=bool(gpus))
        print(f"{backbone:16s} first step {first:6.1f}s  step {median:.3f}s  ({args.batch / median:.0f} images/s)")


if __name__ == "__main__":
    main()
