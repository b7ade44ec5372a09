"""The exported ensemble: verified ONNX sessions, TTA in one call per model, and the two ensemble scales.

- batch scale: each model's scores ranked within the batch, weighted mean (the submission; AUC only
  needs the order);
- historical scale: each model's score ranked within its own stored OOF scores, weighted mean (the
  same number for an image alone or in any batch; operating points and calibration live on it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from tbensemble.core.calibration import apply_calibration
from tbensemble.core.config import TTA_VIEWS
from tbensemble.core.errors import TbensError
from tbensemble.core.manifest import Manifest, load_manifest, read_model
from tbensemble.core.metrics import historical_rank, rank_average, weighted_rank_average
from tbensemble.data.views import apply_views
from tbensemble.engine.variants import open_model, reference_for

log = logging.getLogger(__name__)


def check_tta(views: list[str], manifest: Manifest) -> list[str]:
    """Validate TTA view names; warn when they differ from the views the operating points were chosen with."""
    unknown = [v for v in views if v not in TTA_VIEWS]
    if not views or unknown:
        raise TbensError(f"--tta {','.join(views)}: unknown or no views; allowed: {', '.join(TTA_VIEWS)}")
    if list(views) != list(manifest.ensemble.tta):
        log.warning(
            "TTA views %s differ from the manifest's %s: historical scores and the operating point assume the latter",
            views,
            manifest.ensemble.tta,
        )
    return list(views)


@dataclass
class Ensemble:
    manifest: Manifest
    sessions: dict[str, Any]
    providers: dict[str, str]
    tta: list[str]
    image_size: int
    variants: dict[str, str] = field(default_factory=dict)
    """Model name -> the variant running it (``fp32`` or a name from ``tbens optimize``)."""

    @classmethod
    def load(
        cls,
        artifacts_dir: str | os.PathLike[str],
        device: str = "auto",
        tta: list[str] | None = None,
        precision: str = "auto",
    ) -> Ensemble:
        """Read and check the manifest, refuse outside, missing or tampered model files, open one session
        per model from the very bytes that were hashed (the chosen faster variant under ``precision=auto``
        where it can run here), and check each session against its entry."""
        manifest = load_manifest(artifacts_dir)
        views = check_tta(tta, manifest) if tta else list(manifest.ensemble.tta)
        sessions, providers, variants = {}, {}, {}
        for entry in manifest.models:
            sessions[entry.name], providers[entry.name], variants[entry.name] = open_model(
                manifest, entry, read_model(manifest, entry), device, precision
            )
        return cls(manifest, sessions, providers, views, manifest.image_size, variants)

    @cached_property
    def weights(self) -> dict[str, float]:
        return {m.name: m.weight for m in self.manifest.models}

    @cached_property
    def references(self) -> dict[str, np.ndarray]:
        """Each model's sorted OOF scores as arrays (the running variant's own), built once rather than on
        every scored batch."""
        return {m.name: np.asarray(reference_for(m, self.variants.get(m.name, "fp32"))) for m in self.manifest.models}

    def score(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Per model, the mean probability over TTA views of uint8 images (N, S, S); one session call each."""
        if images.ndim != 3 or images.shape[1:] != (self.image_size, self.image_size):
            raise TbensError(
                f"images of shape {images.shape}; the models take (N, {self.image_size}, {self.image_size})"
            )
        n = images.shape[0]
        batch = apply_views(images, self.tta).astype(np.float32)[..., None]
        scores = {}
        for entry in self.manifest.models:
            (probability,) = self.sessions[entry.name].run([entry.outputs["probability"]], {entry.input.name: batch})
            scores[entry.name] = probability.reshape(len(self.tta), n).mean(axis=0, dtype=np.float64)
        return scores

    def batch_ensemble(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """The submission score: within-batch ranks per model, weighted mean."""
        return rank_average(scores, self.weights)

    def historical(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """Per-image ensemble on the historical-rank scale (each model against its stored OOF scores)."""
        ranks = {name: historical_rank(s, self.references[name]) for name, s in scores.items()}
        return weighted_rank_average(ranks, self.weights)

    @property
    def operating_point(self) -> dict[str, Any]:
        ensemble = self.manifest.ensemble
        return {"name": ensemble.default_operating_point, **ensemble.operating_points[ensemble.default_operating_point]}

    def decide(self, historical_scores: np.ndarray) -> np.ndarray:
        """True (TB) where the historical-scale score reaches the manifest's default operating point."""
        return np.asarray(historical_scores) >= float(self.operating_point["threshold"])

    def calibrate(self, historical_scores: np.ndarray) -> np.ndarray | None:
        """The calibrated probability of TB, or None when the manifest carries no calibration."""
        params = self.manifest.ensemble.calibration
        return None if params is None else apply_calibration(params, historical_scores)
