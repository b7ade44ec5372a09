"""``predict --ray``: Ray Data carries the image list through an actor pool of ensembles; the driver keeps
each image's per-model scores and ranks them once every image is scored.

- Each actor loads one :class:`Ensemble` (its sessions, hash-checked) once and decodes its own images, so
  pixels never leave the worker; the driver receives per-image positions, decode errors and scores only.
- Rows reach the actors in blocks of whole engine batches (``batch_size`` consecutive images, bad files
  left out, as in single-process ``predict``), so every image is scored in the same session batch and
  the scores are the same numbers.
- The driver holds float64 scores per model and image (the engine's own type: rounding to float32 could
  merge near-ties and change ranks) and the image list, never pixels: its memory grows by a few dozen
  bytes per image and model. The submission is then written by the engine's own writer.

Images and artifacts must be readable at the same path on every node (on a local instance, relative paths
work as in single-process ``predict``).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from tbensemble.core.errors import DataError, TbensError
from tbensemble.data.decode import load_image, set_max_pixels
from tbensemble.distributed.cluster import connected, per_worker_resources, tbens_cause, worker_logging
from tbensemble.engine.decisions import DECISION_COLUMNS, decide_paths
from tbensemble.engine.ensemble import Ensemble
from tbensemble.engine.predict import Prediction, finish_prediction

log = logging.getLogger("tbensemble.distributed")

BATCHES_PER_CALL = 8
"""Engine batches per actor call (and per Ray Data block): fewer, larger calls amortise Ray's overhead."""

POSITION, ERROR, IMAGE_ID = "position", "error", "image_id"
DECIDED = "decision:"
"""Prefix of the decision columns an actor returns (``engine.decisions.DECISION_COLUMNS``) when asked to decide."""
NUMERIC_DECISION_COLUMNS = ("score", "probability", "threshold")


def _decode(path: str, size: int) -> np.ndarray | DataError:
    try:
        return load_image(path, size)
    except DataError as exc:
        return exc


class EnsembleScorer:
    """A Ray Data actor: one ensemble, loaded once; each call decodes and scores a block of images, and
    decides them (``engine.decisions``, per image, so the same rows as in one process) when asked."""

    def __init__(
        self,
        artifacts: str,
        device: str,
        tta: list[str],
        batch_size: int,
        precision: str = "auto",
        max_pixels: int | None = None,
        decide: bool = False,
        operating_point: str | None = None,
        decode_threads: int = 2,
    ):
        worker_logging()  # the provider each actor got reaches the driver's log
        if max_pixels is not None:
            set_max_pixels(max_pixels)  # process-wide, so each actor process sets it
        self.ensemble = Ensemble.load(artifacts, device=device, tta=tta, precision=precision)
        self.batch_size = batch_size
        self.decide, self.operating_point = decide, operating_point
        self.pool = ThreadPoolExecutor(decode_threads, thread_name_prefix="decode")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        positions = batch[POSITION].astype(np.int64)
        images = list(
            self.pool.map(_decode, [str(p) for p in batch["path"]], [self.ensemble.image_size] * len(positions))
        )
        errors = np.array([str(item) if isinstance(item, DataError) else "" for item in images], dtype=object)
        scores = {m.name: np.full(len(positions), np.nan) for m in self.ensemble.manifest.models}
        decided = {column: np.full(len(positions), None, dtype=object) for column in DECISION_COLUMNS}
        engine_batch = positions // self.batch_size
        for number in np.unique(engine_batch):
            good = np.flatnonzero((engine_batch == number) & (errors == ""))
            if not len(good):
                continue
            stacked = np.stack([images[i] for i in good])
            if self.decide:
                ids, paths = [str(batch[IMAGE_ID][i]) for i in good], [str(batch["path"][i]) for i in good]
                result = decide_paths(self.ensemble, stacked, ids, paths, self.operating_point)
                values = result.scores
                for column in DECISION_COLUMNS:
                    decided[column][good] = result.decisions[column].to_numpy()
            else:
                values = self.ensemble.score(stacked)
            for name, model_scores in values.items():
                scores[name][good] = model_scores
        decisions = {f"{DECIDED}{column}": values for column, values in decided.items()} if self.decide else {}
        return {POSITION: positions, ERROR: errors, **scores, **decisions}


def _decision_frame(pieces: list[tuple[np.ndarray, dict[str, list]]]) -> pd.DataFrame:
    """The decision rows received from the actors, in image order, with the engine's column types."""
    if not pieces:
        return pd.DataFrame(columns=list(DECISION_COLUMNS))
    order = np.argsort(np.concatenate([positions for positions, _ in pieces]), kind="stable")
    columns = {}
    for column in DECISION_COLUMNS:
        values = [value for _, piece in pieces for value in piece[column]]
        if column in NUMERIC_DECISION_COLUMNS:
            columns[column] = np.asarray(values, dtype=np.float64)[order]
        else:
            columns[column] = [str(values[i]) for i in order]
    return pd.DataFrame(columns, columns=list(DECISION_COLUMNS))


def default_actors(ray) -> int:
    """One actor per GPU of the cluster, or one per CPU where it has none."""
    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU", 0)) or int(resources.get("CPU", 1)))


def predict_images_ray(
    ensemble: Ensemble,
    artifacts: str | os.PathLike[str],
    images: pd.DataFrame,
    address: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 8,
    skip_bad: bool = False,
    actors: int | None = None,
    max_pixels: int | None = None,
    decide: bool = False,
    operating_point: str | None = None,
    progress: bool | None = None,
) -> Prediction:
    """What :func:`tbensemble.engine.predict.predict_images` returns, scored by an actor pool on Ray.

    ``ensemble`` (loaded on the driver) names the models and the TTA views; the actors load their own
    from ``artifacts`` with the same ``device`` and ``precision`` (so each model runs the same variant).
    Without ``skip_bad``, a bad file fails the run after all are decoded; errors, skipped list and warnings
    come from the engine's own ``finish_prediction``."""
    ids, paths = images["image_id"].astype(str).tolist(), images["path"].astype(str).tolist()
    n, block = len(paths), batch_size * BATCHES_PER_CALL
    names = [m.name for m in ensemble.manifest.models]
    scores = {name: np.full(n, np.nan) for name in names}
    errors: dict[int, str] = {}
    decided: list[tuple[np.ndarray, dict[str, list]]] = []
    with connected(address) as ray:
        ray.data.DataContext.get_current().enable_progress_bars = False  # the driver's own bar counts images
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        resources = per_worker_resources(ray)
        pool = actors or default_actors(ray)
        log.info("Ray: %d ensemble actors, one %s each", pool, "GPU" if "num_gpus" in resources else "CPU")
        listing = pd.DataFrame({POSITION: np.arange(n), IMAGE_ID: ids, "path": paths})
        dataset = ray.data.from_pandas([listing.iloc[start : start + block] for start in range(0, n, block)])
        scored = dataset.map_batches(
            EnsembleScorer,
            batch_size=block,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=pool),
            fn_constructor_kwargs={
                "artifacts": str(Path(artifacts).resolve()),
                "device": device,
                "tta": ensemble.tta,
                "batch_size": batch_size,
                "precision": precision,
                "max_pixels": max_pixels,
                "decide": decide,
                "operating_point": operating_point,
            },
            **resources,
        )
        started, seen = time.monotonic(), 0
        with tqdm(total=n, unit="img", desc="predict", disable=None if progress is None else not progress) as bar:
            try:
                for out in scored.iter_batches(batch_size=None, batch_format="numpy"):
                    positions = out[POSITION]
                    for name in names:
                        scores[name][positions] = out[name]
                    bad = out[ERROR] != ""
                    errors.update(zip(positions[bad].tolist(), out[ERROR][bad].tolist(), strict=True))
                    if decide:
                        decided.append(
                            (positions[~bad], {c: out[f"{DECIDED}{c}"][~bad].tolist() for c in DECISION_COLUMNS})
                        )
                    seen += len(positions)
                    bar.update(len(positions))
            except Exception as exc:
                cause = tbens_cause(exc)
                if cause is None:
                    raise
                raise cause from None
        if seen != n:
            raise TbensError(f"Ray returned scores for {seen} of {n} images; nothing was written")
        seconds = time.monotonic() - started
        log.info("Ray: %d images scored in %.1fs (%.1f images/s, actors' start-up included)", n, seconds, n / seconds)
    kept = np.ones(n, dtype=bool)
    kept[list(errors)] = False
    return finish_prediction(
        ids,
        paths,
        [image_id for image_id, keep in zip(ids, kept, strict=True) if keep],
        {name: [values[kept]] for name, values in scores.items()},
        sorted(errors.items()),
        skip_bad,
        [_decision_frame(decided)] if decide else None,
    )
