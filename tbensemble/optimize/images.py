"""The images ``tbens optimize`` uses for one fold model: calibration from its training split, the gate's
held-out set from its own OOF fold. Both come from the run's training data (``folds.csv`` + the data
folder in ``config.yaml``); test images are never touched, so no choice is made on them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tbensemble.core.config import load_config
from tbensemble.core.errors import DataError
from tbensemble.data.decode import load_image
from tbensemble.data.layout import load_training_set


@dataclass
class FoldImages:
    """Uint8 images (N, S, S) of one fold model: held-out with labels, and a calibration sample."""

    heldout: np.ndarray
    labels: np.ndarray
    calibration: np.ndarray


def run_training_set(run_dir: Path, data_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """``image_id``, ``label``, ``fold``, ``path`` of the run's training images.

    The data folder is ``data_dir`` or the ``data`` key of the run's ``config.yaml``.
    """
    folds_path = run_dir / "folds.csv"
    if not folds_path.is_file():
        raise DataError(
            f"{folds_path}: not found; optimize needs the run's folds to pick calibration and held-out images"
        )
    if data_dir is None:
        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise DataError(f"{config_path}: not found; give --data with the run's training data folder")
        data_dir = load_config(config_path).data
    folds = pd.read_csv(folds_path, dtype={"image_id": str})
    missing = [c for c in ("image_id", "label", "fold") if c not in folds.columns]
    if missing:
        raise DataError(f"{folds_path}: columns {missing} are missing")
    training = load_training_set(data_dir)[["image_id", "path"]]
    frame = folds.merge(training, on="image_id", how="left")
    absent = frame.loc[frame["path"].isna(), "image_id"].tolist()
    if absent:
        raise DataError(
            f"{folds_path}: {len(absent)} images are not in {data_dir} (e.g. {absent[0]}); give --data with the run's training data"
        )
    return frame


def fold_images(frame: pd.DataFrame, fold: int, size: int, n_calibration: int, seed: int = 0) -> FoldImages:
    """Decode the fold's held-out images and a seeded sample of its training images at ``size``."""
    heldout = frame[frame["fold"] == fold]
    training = frame[frame["fold"] != fold]
    if heldout.empty or training.empty:
        raise DataError(f"folds.csv: fold {fold} has {len(heldout)} held-out and {len(training)} training images")
    sample = training.sample(n=min(n_calibration, len(training)), random_state=seed)
    return FoldImages(
        heldout=np.stack([load_image(p, size) for p in heldout["path"]]),
        labels=heldout["label"].to_numpy(dtype=np.int64),
        calibration=np.stack([load_image(p, size) for p in sample["path"]]),
    )
