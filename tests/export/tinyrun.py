"""A tiny run folder built at test time (random-weight tiny backbones at 32 px, random images), and its
export, cached once per pytest process so export, engine and CLI tests share one conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tbensemble.core.config import TrainConfig, dump_config
from tbensemble.core.metrics import oof_ensemble

SIZE = 32
BACKBONES = ("tinycnn", "tinyresnet")
FOLDS = 2
_CACHE: dict[str, Path] = {}


def write_images(folder: Path, n: int, seed: int, size: int = 48) -> list[Path]:
    """Random gray PNGs with a bright blob in about half of them, so scores are not all alike."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        image = rng.integers(40, 120, size=(size, size)).astype(np.uint8)
        if i % 2:
            y, x = rng.integers(4, size - 16, size=2)
            image[y : y + 12, x : x + 12] = 230
        path = folder / f"img{seed}_{i}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def make_tiny_run(root: Path, backbones: tuple[str, ...] = BACKBONES, size: int = SIZE, n_folds: int = FOLDS) -> Path:
    """A run folder with the layout train-folds writes: config.yaml, folds.csv, models/, oof.csv."""
    import keras

    from tbensemble.data.decode import load_image
    from tbensemble.data.layout import load_training_set
    from tbensemble.data.views import apply_views
    from tbensemble.train.backbones import build_model

    data, run = root / "data", root / "run"
    write_images(data / "Normal", 12, seed=1)
    write_images(data / "Tuberculosis", 12, seed=2)
    config = TrainConfig(
        data=str(data),
        out=str(run),
        backbones=list(backbones),
        weights=None,
        image_size=size,
        folds=n_folds,
        tta=["identity", "crop90"],
    )
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(config))
    frame = load_training_set(data).sort_values("image_id", ignore_index=True)
    frame["fold"] = np.arange(len(frame)) % n_folds
    frame[["image_id", "label", "fold"]].to_csv(run / "folds.csv", index=False)
    images = np.stack([load_image(p, size) for p in frame["path"]])
    oof = frame[["image_id", "label", "fold"]].copy()
    for backbone in backbones:
        oof[backbone] = np.nan
        for fold in range(n_folds):
            keras.utils.set_random_seed(100 + fold)
            model = build_model(backbone, size, weights=None)
            fold_dir = run / "models" / backbone / f"fold{fold}"
            fold_dir.mkdir(parents=True)
            model.save(fold_dir / "model.keras")
            (fold_dir / "done.json").write_text(json.dumps({"val_auc": 0.5}))
            held_out = (frame["fold"] == fold).to_numpy()
            views = apply_views(images[held_out], config.tta).astype(np.float32)[..., None]
            probability = model.predict(views, verbose=0).reshape(len(config.tta), -1).mean(axis=0)
            oof.loc[held_out, backbone] = probability
    oof["ensemble"] = oof_ensemble(oof, list(backbones))
    oof.to_csv(run / "oof.csv", index=False)
    return run


def exported_run(tmp_path_factory) -> Path:
    """One tiny run, exported in-process with Platt calibration; treat it as read-only (copy to tamper)."""
    if "run" not in _CACHE:
        from tbensemble.export.onnx_export import export_run

        run = make_tiny_run(tmp_path_factory.mktemp("tinyrun"))
        export_run(run, isolate=False, calibration="platt")
        _CACHE["run"] = run
    return _CACHE["run"]


def copy_artifacts(run: Path, dest: Path) -> Path:
    """The shippable part of a run (onnx/ + manifest.json), as an edge server would get it."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "onnx").mkdir()
    for path in (run / "onnx").glob("*.onnx"):
        (dest / "onnx" / path.name).write_bytes(path.read_bytes())
    (dest / "manifest.json").write_text((run / "manifest.json").read_text())
    return dest


def read_submission(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"image_id": str})
