"""What the manifest needs to decide well, read from out-of-fold data: the refer thresholds (backbone disagreement, distance from the training images' features), and the
score distribution drift is measured against."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tbensemble.core import decisions as rules
from tbensemble.core.errors import TbensError
from tbensemble.core.metrics import within_fold_ranks

FEATURE_COMPONENTS = 8
"""PCA axes kept per model: a compact reference (8 x channels numbers) that still separates other images."""
MIN_REFERENCE_IMAGES = 40
"""Fewer held-out images in a fold than this give no feature reference (and no out-of-distribution rule):
the cross-fitted threshold needs a few dozen images for 8 axes."""

log = logging.getLogger(__name__)


def disagreement_rule(oof: pd.DataFrame, backbones: list[str]) -> dict[str, Any] | None:
    """The OOF 99th percentile of the range of backbone ranks; None with one backbone (nothing to disagree)."""
    if len(backbones) < 2:
        return None
    folds = oof["fold"].to_numpy()
    ranks = {b: within_fold_ranks(oof[b].to_numpy(), folds) for b in backbones}
    spread = rules.backbone_disagreement(ranks, {b: b for b in backbones})
    return {
        "statistic": "range of backbone mean historical ranks",
        "quantile": rules.REFER_QUANTILE,
        "threshold": rules.upper_quantile(spread),
    }


def _fold_images(run_dir: Path, data_dir: str, size: int) -> pd.DataFrame | None:
    """The run's training images with their fold, or None (with a warning) when the data is gone."""
    from tbensemble.data.layout import load_training_set

    data_path = Path(data_dir)
    if not data_path.is_absolute() and not data_path.exists():
        data_path = run_dir / data_dir
    try:
        frame = load_training_set(data_path)
        folds = pd.read_csv(run_dir / "folds.csv", usecols=["image_id", "fold"], dtype={"image_id": str})
    except (TbensError, OSError, ValueError) as exc:
        log.warning(
            "refer: run data %s not usable (%s); no feature reference, so no out-of-distribution rule", data_dir, exc
        )
        return None
    return frame.merge(folds, on="image_id", how="inner")


def pooled_features(
    session: Any, input_name: str, output_name: str, images: np.ndarray, tta: list[str], batch: int = 32
) -> np.ndarray:
    """(N, C) features pooled over space and TTA views, exactly as ``engine.decisions.gather_evidence``."""
    from tbensemble.data.views import apply_views

    parts = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        (features,) = session.run([output_name], {input_name: apply_views(chunk, tta).astype(np.float32)[..., None]})
        parts.append(rules.pool_features(features).reshape(len(tta), len(chunk), -1).mean(axis=0))
    return np.concatenate(parts)


def feature_rule(
    run_dir: Path,
    data_dir: str,
    size: int,
    tta: list[str],
    models: Mapping[str, dict[str, Any]],
    weights: Mapping[str, float],
) -> dict[str, Any] | None:
    """Per model a PCA reference of its held-out fold's pooled features; threshold at the OOF 99th percentile.

    ``models``: name -> ``{"path", "backbone", "fold", "input", "features"}``. Distances for the threshold
    are cross-fitted (each image against a reference fitted without it), then combined per image over
    its fold's models with the backbone weights, as the engine combines all models for a new image.
    """
    import onnxruntime as ort

    from tbensemble.data.decode import load_image

    frame = _fold_images(run_dir, data_dir, size)
    if frame is None:
        return None
    references: dict[str, Any] = {}
    combined = []
    for fold in sorted(frame["fold"].unique()):
        fold_models = {name: m for name, m in models.items() if m["fold"] == fold}
        paths = frame.loc[frame["fold"] == fold, "path"].tolist()
        if not fold_models or len(paths) < MIN_REFERENCE_IMAGES:
            continue
        images = np.stack([load_image(p, size) for p in paths])
        distances = {}
        for name, m in fold_models.items():
            session = ort.InferenceSession(str(m["path"]), providers=["CPUExecutionProvider"])
            pooled = pooled_features(session, m["input"], m["features"], images, tta)
            k = rules.reference_components(len(pooled), FEATURE_COMPONENTS)
            references[name] = rules.FeatureReference.fit(pooled, k).to_dict()
            distances[name] = rules.cross_fitted_distances(pooled, k)
        combined.append(rules.combine_distances(distances, weights))
    if not combined or set(references) != set(models):
        log.warning("refer: too few training images per fold for a feature reference; no out-of-distribution rule")
        return None
    return {
        "statistic": "weighted mean over models of the PCA distance of pooled features (1 ~ typical image)",
        "n_components": FEATURE_COMPONENTS,
        "quantile": rules.REFER_QUANTILE,
        "threshold": rules.upper_quantile(np.concatenate(combined)),
        "models": references,
    }
