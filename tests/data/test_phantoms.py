"""Synthetic chest phantoms: reproducible, shaped like the contract, lesions where TB sits, and not
solvable from the intensity histogram."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tbensemble.core.errors import ConfigError, DataError
from tbensemble.data.phantoms import DEFAULT_DIFFICULTY, GENERATOR_VERSION, make_phantom, write_demo_dataset


def test_same_seed_same_phantom_and_different_seed_differs() -> None:
    a, mask_a = make_phantom(np.random.default_rng(7), True, 64)
    b, mask_b = make_phantom(np.random.default_rng(7), True, 64)
    c, _ = make_phantom(np.random.default_rng(8), True, 64)
    assert np.array_equal(a, b) and np.array_equal(mask_a, mask_b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("size", [32, 64, 96])
def test_shapes_and_dtypes(size: int) -> None:
    image, mask = make_phantom(np.random.default_rng(0), True, size)
    assert image.shape == (size, size) and image.dtype == np.uint8
    assert mask.shape == (size, size) and mask.dtype == bool
    assert image.std() > 20, "a phantom has anatomy, not a flat field"


def test_mask_empty_for_normals_and_set_for_positives() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        assert not make_phantom(rng, False, 48)[1].any()
        assert make_phantom(rng, True, 48)[1].any()


def test_lesions_brighten_the_image_where_the_mask_is() -> None:
    """Same patient drawn with and without lesion contrast: the pixels change inside the mask only."""
    faint, mask = make_phantom(np.random.default_rng(3), True, 64, difficulty=1.0)
    clear, _ = make_phantom(np.random.default_rng(3), True, 64, difficulty=0.0)
    change = np.abs(clear.astype(int) - faint.astype(int))
    assert change[mask].mean() > 5 * max(change[~mask].mean(), 0.1)


def test_dark_lungs_and_heart_on_the_image_right() -> None:
    """Mean over normals: lung fields darker than the mediastinum; the lower right (heart) brighter
    than the lower left lung, as on a PA film."""
    rng = np.random.default_rng(2)
    mean = np.mean([make_phantom(rng, False, 64)[0].astype(float) for _ in range(20)], axis=0)
    left_lung = mean[20:36, 10:24].mean()
    right_lung = mean[20:32, 42:54].mean()
    mediastinum = mean[20:40, 29:35].mean()
    assert mediastinum > left_lung + 40 and mediastinum > right_lung + 40
    assert mean[36:44, 34:42].mean() > mean[36:44, 22:30].mean() + 15


def test_lesions_mostly_in_upper_zones() -> None:
    """TBX11K puts 77% of box centres above y = 0.36 of the image. About half of the lung area lies
    above y = 0.45, so lesions placed anywhere in the lungs would put about half their pixels there."""
    rng = np.random.default_rng(4)
    upper = total = 0
    for _ in range(120):
        rows = np.nonzero(make_phantom(rng, True, 32)[1])[0] / 32
        upper += int((rows < 0.45).sum())
        total += rows.size
    assert upper / total > 0.75


def test_histogram_alone_does_not_tell_tb_from_normal() -> None:
    """Logistic regression on a 32-bin intensity histogram must stay below OOF AUC 0.70."""
    rng = np.random.default_rng(5)
    labels = np.arange(300) % 2
    hists = np.stack(
        [np.histogram(make_phantom(rng, bool(y), 64)[0], bins=32, range=(0, 256))[0] for y in labels]
    ).astype(float)
    hists /= hists.sum(axis=1, keepdims=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = cross_val_predict(model, hists, labels, cv=folds, method="predict_proba")[:, 1]
    assert roc_auc_score(labels, scores) < 0.70


def test_difficulty_outside_range_is_refused() -> None:
    with pytest.raises(ValueError, match="difficulty"):
        make_phantom(np.random.default_rng(0), True, 32, difficulty=1.5)


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_demo_dataset_layout(tmp_path) -> None:
    out = tmp_path / "demo"
    summary = write_demo_dataset(out, n_train=20, n_test=10, seed=3, size=32)
    train = pd.read_csv(out / "train_labels.csv")
    sample = pd.read_csv(out / "sample_submission.csv")
    truth = pd.read_csv(out / "_truth" / "test_labels.csv")
    assert list(train.columns) == ["image_id", "label"] and list(sample.columns) == ["image_id", "label"]
    assert train.image_id.tolist() == [f"train{i}.png" for i in range(1, 21)]
    assert sample.image_id.tolist() == truth.image_id.tolist() == [f"test{i}.png" for i in range(1, 11)]
    assert (sample.label == 0.5).all()
    assert train.label.sum() == 4 and truth.label.sum() == 2  # exactly 20% positives per split
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(train.image_id)
    assert sorted(p.name for p in (out / "test").iterdir()) == sorted(truth.image_id)
    with Image.open(out / "train" / "train1.png") as image:
        assert image.mode == "L" and image.size == (32, 32)
    positives = set(train.image_id[train.label == 1]) | set(truth.image_id[truth.label == 1])
    assert {p.name for p in (out / "_truth" / "masks").iterdir()} == positives
    provenance = (out / "_truth" / "PROVENANCE.txt").read_text()
    assert "seed: 3" in provenance and f"generator_version: {GENERATOR_VERSION}" in provenance
    assert f"difficulty: {DEFAULT_DIFFICULTY}" in provenance
    assert summary["train_positives"] == 4 and summary["test_positives"] == 2
    assert not list(out.glob("test/_*")) and not list(out.glob("**/*.tmp"))


def test_write_demo_dataset_is_deterministic_and_parallel_matches_serial(tmp_path) -> None:
    write_demo_dataset(tmp_path / "a", n_train=48, n_test=24, seed=11, size=24, workers=1)
    write_demo_dataset(tmp_path / "b", n_train=48, n_test=24, seed=11, size=24, workers=2)
    write_demo_dataset(tmp_path / "c", n_train=48, n_test=24, seed=12, size=24, workers=1)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    images = {name for name in a if not name.startswith("_truth")}
    assert images <= c.keys() and any(a[name] != c[name] for name in images)


def test_rewrite_replaces_a_previous_demo_but_refuses_other_folders(tmp_path) -> None:
    out = tmp_path / "demo"
    write_demo_dataset(out, n_train=10, n_test=4, size=16)
    write_demo_dataset(out, n_train=5, n_test=2, size=16)
    assert len(list((out / "train").iterdir())) == 5, "stale images from the first run must go"
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="mine: folder is not empty"):
        write_demo_dataset(other, n_train=4, n_test=2, size=16)
    write_demo_dataset(other, n_train=4, n_test=2, size=16, force=True)
    assert (other / "notes.txt").read_text() == "keep"


def test_bad_arguments_name_the_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"^positive_rate"):
        write_demo_dataset(tmp_path / "x", n_train=4, positive_rate=0.0)


def test_sites_image_the_same_patients_and_lesions_differently() -> None:
    from tbensemble.data.phantoms import DEFAULT_SITE, SITES

    default, _ = make_phantom(np.random.default_rng(7), True, 64)
    assert np.array_equal(make_phantom(np.random.default_rng(7), True, 64, site=DEFAULT_SITE)[0], default)
    masks = {name: make_phantom(np.random.default_rng(7), True, 64, site=name)[1] for name in SITES}
    assert all(np.array_equal(mask, masks[DEFAULT_SITE]) for mask in masks.values()), "same lesions at every site"
    images = {name: make_phantom(np.random.default_rng(7), True, 64, site=name)[0] for name in SITES}
    assert all(not np.array_equal(images[name], default) for name in SITES if name != DEFAULT_SITE)
    with pytest.raises(ValueError, match="site 'nowhere'"):
        make_phantom(np.random.default_rng(7), True, 64, site="nowhere")


def test_site_dataset_keeps_labels_and_records_the_site(tmp_path) -> None:
    a = write_demo_dataset(tmp_path / "a", n_train=10, n_test=5, size=32, seed=4, workers=1)
    b = write_demo_dataset(tmp_path / "b", n_train=10, n_test=5, size=32, seed=4, workers=1, site="hospital-b")
    assert a["site"] == "hospital-a" and b["site"] == "hospital-b"
    for name in ("train_labels.csv", "_truth/test_labels.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert "site: hospital-b" in (tmp_path / "b" / "_truth" / "PROVENANCE.txt").read_text()
    with pytest.raises(ConfigError, match="site"):
        write_demo_dataset(tmp_path / "c", n_train=4, n_test=0, size=16, site="nowhere")
