"""One decision per image, the same through every door (CLI, Python API, HTTP, Ray).

``decide_images`` is the contract: the doors decode images and carry its rows; none of them
thresholds a score itself. Each model runs once per batch with two outputs, the probability (TTA
mean, as ``Ensemble.score``) and its last feature map (pooled, for the distance from the training
images); the rules themselves live in ``core.decisions``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tbensemble.core import decisions as rules
from tbensemble.core.errors import ArtifactError, TbensError
from tbensemble.core.manifest import MANIFEST_NAME, sha256_of
from tbensemble.core.metrics import historical_rank
from tbensemble.data.dicom_header import read_header
from tbensemble.data.views import apply_views
from tbensemble.engine.ensemble import Ensemble

DECISION_COLUMNS = (
    "image_id",
    "score",
    "probability",
    "decision",
    "reasons",
    "operating_point",
    "threshold",
    "manifest_sha256",
)
"""One row per image. ``score``: historical-rank ensemble scale; ``probability``: calibrated, NaN when the
manifest has no calibration; ``decision``: ``tb``, ``normal`` or ``refer``; ``reasons``: why refer,
``;``-joined, empty otherwise; ``threshold``: the operating point's, on the ``score`` scale."""


@dataclass
class Evidence:
    """What the models said about a batch: per-model TTA-mean probabilities and pooled features."""

    scores: dict[str, np.ndarray]
    """Model name -> (N,) mean probability over the TTA views (exactly ``Ensemble.score``)."""
    features: dict[str, np.ndarray]
    """Model name -> (N, C) feature maps averaged over space and TTA views; empty when not needed."""
    pixel_reasons: list[list[str]]


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    return sha256_of(path)


def manifest_sha256(ensemble: Ensemble) -> str:
    """sha256 of the ensemble's ``manifest.json`` (what the edge box was shipped)."""
    path = ensemble.manifest.root / MANIFEST_NAME
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the manifest to hash it ({exc.strerror})") from None
    return _sha256_cached(str(path), stat.st_mtime_ns, stat.st_size)


def _wants_features(ensemble: Ensemble) -> bool:
    refer = ensemble.manifest.ensemble.refer or {}
    return bool(refer.get("features"))


def gather_evidence(ensemble: Ensemble, images: np.ndarray) -> Evidence:
    """Run every model once on the TTA views of uint8 images (N, S, S) at the models' size."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (ensemble.image_size, ensemble.image_size):
        raise TbensError(
            f"images of shape {images.shape}; the models take (N, {ensemble.image_size}, {ensemble.image_size})"
        )
    if images.dtype != np.uint8:
        raise TbensError(f"images of dtype {images.dtype}; decode them to uint8 first (data.decode.load_image)")
    n, views = images.shape[0], len(ensemble.tta)
    batch = apply_views(images, ensemble.tta).astype(np.float32)[..., None]
    with_features = _wants_features(ensemble)
    scores, features = {}, {}
    for entry in ensemble.manifest.models:
        wanted = [entry.outputs["probability"]]
        if with_features:
            if "features" not in entry.outputs:
                raise ArtifactError(f"{ensemble.manifest.model_path(entry)}: no 'features' output for the refer rule")
            wanted.append(entry.outputs["features"])
        outputs = ensemble.sessions[entry.name].run(wanted, {entry.input.name: batch})
        scores[entry.name] = outputs[0].reshape(views, n).mean(axis=0, dtype=np.float64)
        if with_features:
            pooled = rules.pool_features(outputs[1])
            features[entry.name] = pooled.reshape(views, n, -1).mean(axis=0)
    return Evidence(scores, features, rules.pixel_reasons(images))


def _point(ensemble: Ensemble, name: str | None) -> dict[str, Any]:
    points = ensemble.manifest.ensemble.operating_points
    chosen = name or ensemble.manifest.ensemble.default_operating_point
    if chosen not in points:
        raise TbensError(f"operating point {chosen!r} is not in the manifest; choose from {', '.join(points)}")
    return {"name": chosen, **points[chosen]}


def feature_distances(ensemble: Ensemble, evidence: Evidence) -> np.ndarray:
    """Each image's distance from the training images: per model against its stored reference, then the
    weighted mean over models (about 1 for a typical training image)."""
    references = (ensemble.manifest.ensemble.refer or {})["features"]["models"]
    where = f"{ensemble.manifest.root / MANIFEST_NAME} refer.features.models"
    missing = sorted(set(evidence.features) - set(references))
    if missing or not evidence.features:
        raise ArtifactError(f"{where}: no feature reference for {', '.join(missing) or 'any model'}")
    distances = {
        name: rules.FeatureReference.from_dict(references[name], f"{where}.{name}").distance(pooled)
        for name, pooled in evidence.features.items()
    }
    return rules.combine_distances(distances, ensemble.weights)


def refer_reasons(ensemble: Ensemble, evidence: Evidence, ranks: Mapping[str, np.ndarray]) -> list[list[str]]:
    """Model-side reasons per image: far from the training images' features; backbones disagree."""
    refer = ensemble.manifest.ensemble.refer or {}
    reasons: list[list[str]] = [[] for _ in evidence.pixel_reasons]
    feature_rule = refer.get("features")
    if feature_rule:
        combined = feature_distances(ensemble, evidence)
        for i in np.nonzero(combined > float(feature_rule["threshold"]))[0]:
            reasons[i].append("out_of_distribution")
    disagreement_rule = refer.get("disagreement")
    if disagreement_rule:
        backbone_of = {m.name: m.backbone for m in ensemble.manifest.models}
        spread = rules.backbone_disagreement(ranks, backbone_of)
        for i in np.nonzero(spread > float(disagreement_rule["threshold"]))[0]:
            reasons[i].append("model_disagreement")
    return reasons


def decisions_from_evidence(
    ensemble: Ensemble,
    evidence: Evidence,
    image_ids: Sequence[str],
    headers: Sequence[Mapping[str, Any] | None] | None = None,
    operating_point: str | None = None,
) -> pd.DataFrame:
    """The ``DECISION_COLUMNS`` frame for a batch already run through ``gather_evidence``."""
    n = len(evidence.pixel_reasons)
    if len(image_ids) != n:
        raise TbensError(f"{len(image_ids)} image ids for {n} images")
    if headers is not None and len(headers) != n:
        raise TbensError(f"{len(headers)} DICOM headers for {n} images")
    point = _point(ensemble, operating_point)
    ranks = {name: historical_rank(s, ensemble.references[name]) for name, s in evidence.scores.items()}
    score = ensemble.historical(evidence.scores)
    model_reasons = refer_reasons(ensemble, evidence, ranks)
    reasons = [
        rules.dicom_reasons(headers[i] if headers is not None else None) + evidence.pixel_reasons[i] + model_reasons[i]
        for i in range(n)
    ]
    decisions, joined = rules.decide(score, float(point["threshold"]), reasons)
    calibrated = ensemble.calibrate(score) if n else None
    return pd.DataFrame(
        {
            "image_id": [str(i) for i in image_ids],
            "score": score,
            "probability": calibrated if calibrated is not None else np.full(n, np.nan),
            "decision": decisions,
            "reasons": joined,
            "operating_point": point["name"],
            "threshold": float(point["threshold"]),
            "manifest_sha256": manifest_sha256(ensemble),
        },
        columns=list(DECISION_COLUMNS),
    )


def decide_images(
    ensemble: Ensemble,
    images: np.ndarray,
    image_ids: Sequence[str],
    headers: Sequence[Mapping[str, Any] | None] | None = None,
    operating_point: str | None = None,
) -> pd.DataFrame:
    """Decide a batch of decoded images: one row per image with the columns ``DECISION_COLUMNS``.

    Args:
        ensemble: the loaded ``Ensemble`` (``Ensemble.load(artifacts)``).
        images: uint8 array (N, S, S) at ``ensemble.image_size``, as ``data.decode.load_image`` returns them.
        image_ids: N ids, written as given.
        headers: optional, one per image: a mapping of DICOM keywords (``Modality``,
            ``BodyPartExamined``, ``ViewPosition``) to values, or None for a non-DICOM image; see
            ``data.dicom_header.read_header``.
        operating_point: a name among the manifest's operating points; None = its default.

    Returns:
        A DataFrame with columns ``DECISION_COLUMNS`` in that order, rows in the order of ``images``.
        ``decision`` is ``refer`` when any rule of ``core.decisions`` applies (``reasons`` says which),
        else ``tb`` when ``score >= threshold``, else ``normal``. The score is the same for an image
        alone or in any batch, so the decision is too.
    """
    return decisions_from_evidence(ensemble, gather_evidence(ensemble, images), image_ids, headers, operating_point)


@dataclass
class BatchDecisions:
    scores: dict[str, np.ndarray]
    """Per-model TTA-mean probabilities (what ``Ensemble.score`` gives), for a batch-ranked submission."""
    decisions: pd.DataFrame


def decide_paths(
    ensemble: Ensemble,
    images: np.ndarray,
    image_ids: Sequence[str],
    paths: Sequence[str | os.PathLike[str]],
    operating_point: str | None = None,
) -> BatchDecisions:
    """``decide_images`` for images decoded from ``paths``: DICOM headers are read from the files, and the
    per-model scores come back too, so a batch is run through the models once for both outputs."""
    evidence = gather_evidence(ensemble, images)
    headers = [read_header(path) for path in paths]
    return BatchDecisions(
        evidence.scores, decisions_from_evidence(ensemble, evidence, image_ids, headers, operating_point)
    )
