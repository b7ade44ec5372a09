"""Folds: stratified, grouped without leakage, clear errors; class weights against the balanced formula."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tbensemble.core.errors import DataError
from tbensemble.data.folds import assign_folds, class_weights


def test_stratified_folds_keep_the_positive_rate():
    labels = np.array([1] * 23 + [0] * 77)
    frame = pd.DataFrame({"label": labels})
    folds = assign_folds(frame, 5, seed=3)
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    for fold in range(5):
        members = labels[folds == fold]
        assert abs(members.sum() - 23 / 5) <= 1
        assert abs(len(members) - 20) <= 1


def test_folds_depend_on_seed_and_are_reproducible():
    frame = pd.DataFrame({"label": [0, 1] * 30})
    np.testing.assert_array_equal(assign_folds(frame, 3, 7), assign_folds(frame, 3, 7))
    assert not np.array_equal(assign_folds(frame, 3, 7), assign_folds(frame, 3, 8))


def test_grouped_folds_never_split_a_group():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"p{i}" for i in range(40)], rng.integers(1, 5, size=40))
    positive = {f"p{i}" for i in range(0, 40, 3)}
    frame = pd.DataFrame({"label": [int(g in positive) for g in groups], "group": groups})
    folds = assign_folds(frame, 4, seed=0)
    per_group = pd.Series(folds).groupby(frame["group"]).nunique()
    assert (per_group == 1).all()
    assert all(frame["label"][folds == k].nunique() == 2 for k in range(4))


def test_too_small_class_named():
    frame = pd.DataFrame({"label": [0] * 10 + [1] * 2})
    with pytest.raises(DataError, match=r"label 1: only 2 images, fewer than the 3 folds"):
        assign_folds(frame, 3, 0)


def test_too_few_positive_groups_named():
    frame = pd.DataFrame({"label": [0] * 10 + [1] * 6, "group": [f"n{i}" for i in range(10)] + ["a", "b"] * 3})
    with pytest.raises(DataError, match=r"label 1: only 2 patient groups, fewer than the 3 folds"):
        assign_folds(frame, 3, 0)


def test_class_weights_balanced_formula():
    train_labels = [0] * 30 + [1] * 10
    weights = class_weights(train_labels)
    assert weights == pytest.approx({0: 40 / (2 * 30), 1: 40 / (2 * 10)})
    assert set(weights) == {0, 1} and all(isinstance(w, float) for w in weights.values())


def test_class_weights_per_fold_training_split():
    labels = np.array([1] * 10 + [0] * 40)
    folds = assign_folds(pd.DataFrame({"label": labels}), 5, seed=1)
    train = labels[folds != 0]
    weights = class_weights(train)
    assert weights[1] == pytest.approx(len(train) / (2 * train.sum()))
    assert weights[0] == pytest.approx(len(train) / (2 * (len(train) - train.sum())))


def test_class_weights_need_both_classes():
    with pytest.raises(DataError, match=r"need both labels 0 and 1.*\[0\]"):
        class_weights([0, 0, 0])
