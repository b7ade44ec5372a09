"""Cross-validation folds and class weights, from scikit-learn.

Folds are stratified by label so every fold's AUC is defined and comparable; when the labels carry a
``group`` (patient) column no group is split across folds, since a patient in both training and
validation inflates the out-of-fold AUC.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.class_weight import compute_class_weight

from tbensemble.core.errors import DataError

CLASSES = (0, 1)


def assign_folds(frame: pd.DataFrame, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0 … n_folds-1) for each row of ``frame`` (columns ``label`` and optional ``group``).

    StratifiedKFold(shuffle=True, random_state=seed), or StratifiedGroupKFold with the same arguments
    when ``group`` exists. A class (or, grouped, a class's groups) fewer than ``n_folds`` is a DataError:
    some validation fold would have no image of it and no AUC.
    """
    if n_folds < 2:
        raise DataError(f"folds: need at least 2 folds, got {n_folds}")
    labels = frame["label"].to_numpy(dtype=int)
    grouped = "group" in frame.columns
    for label in CLASSES:
        members = frame.loc[labels == label]
        count = members["group"].nunique() if grouped else len(members)
        if count < n_folds:
            unit = "patient groups" if grouped else "images"
            raise DataError(
                f"label {label}: only {count} {unit}, fewer than the {n_folds} folds; "
                f"every validation fold needs at least one (lower --folds or add data)"
            )
    folds = np.full(len(frame), -1, dtype=int)
    if grouped:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(frame)), labels, groups=frame["group"].astype(str).to_numpy())
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(frame)), labels)
    for fold, (_, validation) in enumerate(splits):
        folds[validation] = fold
    return folds


def class_weights(labels: np.ndarray | pd.Series | list[int]) -> dict[int, float]:
    """scikit-learn "balanced" weights {0: w0, 1: w1} = n / (2 · n_class).

    Pass the labels of one fold's TRAINING split only: the trainer calls this per fold, so the
    validation images never influence training.
    """
    y = np.asarray(labels, dtype=int)
    present = set(np.unique(y).tolist())
    if present != set(CLASSES):
        raise DataError(f"labels: class weights need both labels 0 and 1 in the training split, got {sorted(present)}")
    weights = compute_class_weight("balanced", classes=np.array(CLASSES), y=y)
    return {label: float(w) for label, w in zip(CLASSES, weights, strict=True)}
