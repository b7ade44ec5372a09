"""A site's own operating points: score its labelled images with the shipped models, re-choose the
points (guaranteed, as at export) and the calibration on them, and write a new artifacts folder.

The models are copied byte for byte (and their hashes checked), and so are their OOF references, so the
historical-rank scale is unchanged: only where it is cut, and how it reads as a probability, changes.
The refer thresholds are raised, never lowered, to the site images' own 99th percentiles (a site's
detector is not a reason to refer all its images; a photograph still is), and the drift reference
becomes the site's score distribution.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tbensemble.core import decisions as rules
from tbensemble.core.calibration import fit_calibration
from tbensemble.core.errors import ArtifactError, DataError
from tbensemble.core.manifest import MANIFEST_NAME, Manifest, save_manifest, sha256_of, verify_model_files
from tbensemble.core.metrics import auc, historical_rank
from tbensemble.data.layout import load_training_set
from tbensemble.engine import decisions as engine_decisions
from tbensemble.engine.ensemble import Ensemble
from tbensemble.engine.predict import decoded_batches

MIN_SITE_POSITIVES = 10
"""Fewer labelled TB images than this cannot place a sensitivity threshold at all."""


def site_data_hash(frame: pd.DataFrame) -> str:
    """sha256 over the sorted ``image_id,label,file sha256`` lines: same images and labels, same hash."""
    lines = sorted(f"{row.image_id},{int(row.label)},{sha256_of(row.path)}" for row in frame.itertuples(index=False))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def load_site(data_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The site's labelled images (competition layout or Normal/ + Tuberculosis/), with enough of both."""
    frame = load_training_set(data_dir)
    positives = int(frame["label"].sum())
    negatives = len(frame) - positives
    if positives < MIN_SITE_POSITIVES or negatives < MIN_SITE_POSITIVES:
        raise DataError(
            f"{data_dir}: {positives} TB and {negatives} normal labelled images; recalibration needs at least "
            f"{MIN_SITE_POSITIVES} of each (a few hundred for a guarantee near 0.90)"
        )
    return frame


@dataclasses.dataclass
class SiteScores:
    scores: np.ndarray
    """Historical-rank ensemble score per image."""
    distances: np.ndarray | None
    """Combined feature distance per image (None without a feature reference)."""
    disagreement: np.ndarray | None
    pixel_referred: int


def score_site(ensemble: Ensemble, frame: pd.DataFrame, batch_size: int = 16) -> SiteScores:
    """Score, feature distance and backbone disagreement of every labelled site image."""
    refer = ensemble.manifest.ensemble.refer or {}
    backbone_of = {m.name: m.backbone for m in ensemble.manifest.models}
    scores, distances, spreads, pixel_referred = [], [], [], 0
    paths = frame["path"].astype(str).tolist()
    for batch in decoded_batches(paths, ensemble.image_size, batch_size, workers=2):
        bad = [item for item in batch if not isinstance(item, np.ndarray)]
        if bad:
            raise DataError(f"{bad[0]}; site images must all decode")
        evidence = engine_decisions.gather_evidence(ensemble, np.stack(batch))
        ranks = {name: historical_rank(s, ensemble.references[name]) for name, s in evidence.scores.items()}
        scores.append(ensemble.historical(evidence.scores))
        pixel_referred += sum(bool(r) for r in evidence.pixel_reasons)
        if refer.get("features"):
            distances.append(engine_decisions.feature_distances(ensemble, evidence))
        if refer.get("disagreement"):
            spreads.append(rules.backbone_disagreement(ranks, backbone_of))
    return SiteScores(
        np.concatenate(scores),
        np.concatenate(distances) if distances else None,
        np.concatenate(spreads) if spreads else None,
        pixel_referred,
    )


def _raised(rule: dict[str, Any] | None, values: np.ndarray | None) -> dict[str, Any] | None:
    """The rule with its threshold raised to the site's 99th percentile when that is higher."""
    if not rule or values is None:
        return rule
    site_threshold = rules.upper_quantile(values)
    return {
        **rule,
        "threshold": max(float(rule["threshold"]), site_threshold),
        "training_threshold": rule.get("training_threshold", rule["threshold"]),
    }


def recalibrate(
    artifacts: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    calibration: str | None = None,
    target_sensitivity: float | None = None,
    device: str = "auto",
    batch_size: int = 16,
    force: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Write ``out`` (onnx/ + manifest.json) with the site's operating points; returns its manifest path
    and a summary. ``calibration``: a method, or None for the shipped manifest's method (none if none)."""
    source = Path(artifacts)
    target = Path(out)
    if target.resolve() == source.resolve():
        raise DataError(f"{target}: --out must be a new folder, not the artifacts being recalibrated")
    if target.exists() and any(target.iterdir()) and not force:
        raise DataError(f"{target}: exists and is not empty; use --force to replace it")
    ensemble = Ensemble.load(source, device=device)
    manifest = ensemble.manifest
    frame = load_site(data_dir)
    labels = frame["label"].to_numpy().astype(int)
    site = score_site(ensemble, frame, batch_size)
    default = manifest.ensemble.operating_points[manifest.ensemble.default_operating_point]
    target_sens = target_sensitivity or float(
        (default.get("guarantee") or {}).get("target_sensitivity", rules.WHO_MIN_SENSITIVITY)
    )
    points, default_name = rules.decision_points(labels, site.scores, target_sens)
    method = calibration if calibration is not None else (manifest.ensemble.calibration or {}).get("method")
    refer = dict(manifest.ensemble.refer or {})
    refer["features"] = _raised(refer.get("features"), site.distances)
    refer["disagreement"] = _raised(refer.get("disagreement"), site.disagreement)
    site_record = {
        "data": str(Path(data_dir).resolve()),
        "n": int(labels.size),
        "n_positive": int(labels.sum()),
        "sha256": site_data_hash(frame),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "auc": auc(labels, site.scores, f"{data_dir} site scores"),
        "recalibrated_from": {"run": manifest.run, "manifest_sha256": sha256_of(source / MANIFEST_NAME)},
        "shipped_point_on_site": {
            "name": manifest.ensemble.default_operating_point,
            "threshold": float(default["threshold"]),
            **rules.confusion_at(labels, site.scores, float(default["threshold"])),
        },
    }
    ensemble_entry = dataclasses.replace(
        manifest.ensemble,
        operating_points=points,
        default_operating_point=default_name,
        calibration=fit_calibration(site.scores, labels, method) if method else None,
        refer=refer,
        drift=rules.drift_reference(site.scores),
        site=site_record,
    )
    new_manifest = dataclasses.replace(
        manifest,
        ensemble=ensemble_entry,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    path = _write_artifacts(manifest, new_manifest, target)
    return path, {"site": site_record, "default": {"name": default_name, **points[default_name]}}


def _write_artifacts(old: Manifest, new: Manifest, target: Path) -> Path:
    """Copy the model files (hash-checked), write the manifest, and move the folder into place whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    mask = os.umask(0)
    os.umask(mask)
    staging.chmod(0o777 & ~mask)  # mkdtemp makes 0700; the folder ships like any other output
    try:
        for entry in old.models:
            destination = staging / entry.file
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(old.model_path(entry), destination)
        new.root = staging
        verify_model_files(new)
        save_manifest(new, staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except OSError as exc:
        raise ArtifactError(f"{target}: cannot write the recalibrated artifacts ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / MANIFEST_NAME
