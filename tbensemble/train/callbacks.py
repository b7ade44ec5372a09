"""Training callbacks: an atomic best-AUC checkpoint and one concise progress line per epoch with a run ETA."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import keras

log = logging.getLogger("tbensemble.train")


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever ``monitor`` beats its best so far (mode max), as a temp file then a rename,
    so an interrupted run never leaves a half-written ``model.keras``. Shared across warm-up and fine-tuning."""

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_auc"):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = -math.inf
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) <= self.best:
            return
        self.best, self.best_epoch = float(value), epoch + 1
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.keras")
        try:
            self.model.save(tmp)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


class RunClock:
    """Progress over a whole train-folds call (all backbone × fold jobs), for an ETA that covers the run."""

    def __init__(self, n_jobs: int):
        self.n_jobs = max(n_jobs, 1)
        self.jobs_done = 0
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def eta(self, epoch: int, epochs: int) -> float:
        """Seconds left, assuming every remaining job runs all its epochs at the pace seen so far
        (early stopping makes it an upper bound)."""
        progress = (self.jobs_done + epoch / max(epochs, 1)) / self.n_jobs
        return self.elapsed() * (1 - progress) / progress if progress > 0 else math.nan


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class EpochProgress(keras.callbacks.Callback):
    """One log line per epoch: backbone, fold, epoch, train loss, val AUC, epoch time, run elapsed and ETA.
    Also records each epoch's duration for history.csv."""

    def __init__(self, label: str, epochs: int, clock: RunClock, checkpoint: BestCheckpoint):
        super().__init__()
        self.label = label
        self.epochs = epochs
        self.clock = clock
        self.checkpoint = checkpoint
        self.seconds: dict[int, float] = {}
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.seconds[epoch + 1] = time.monotonic() - self._t0
        log.info(
            "%s epoch %d/%d  loss %.4f  val_auc %.4f (best %.4f @%d)  %.1fs  elapsed %s  eta %s",
            self.label,
            epoch + 1,
            self.epochs,
            logs.get("loss", math.nan),
            logs.get("val_auc", math.nan),
            self.checkpoint.best,
            self.checkpoint.best_epoch,
            self.seconds[epoch + 1],
            _clock(self.clock.elapsed()),
            _clock(self.clock.eta(epoch + 1, self.epochs)),
        )
