"""Score a folder (or a few files) with the ensemble and write the submission.

Decoding runs in a thread pool a few batches ahead of inference (Pillow and ONNX Runtime both release
the GIL), so the CPU never waits on PNG decoding, and at most ``(ahead + 1) * batch_size`` decoded
images exist at any time, however many files there are.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from tbensemble.core import atomic
from tbensemble.core.errors import DataError
from tbensemble.data.decode import is_image_file, load_image, shown_path
from tbensemble.data.layout import example_list, list_images, read_sample_submission, submission_ids
from tbensemble.engine.decisions import decide_paths
from tbensemble.engine.ensemble import Ensemble

SUBMISSION_COLUMNS = ("image_id", "label")
FEW_IMAGES = 20
"""Up to this many images, ``tbens predict`` also prints each image's score and decision (the edge use)."""

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """Per-model TTA-mean scores of the images that decoded, and the ones that did not."""

    image_ids: list[str]
    scores: dict[str, np.ndarray]
    skipped: list[dict[str, str]] = field(default_factory=list)
    decisions: pd.DataFrame | None = None
    """With ``predict_images(decide=True)``: one ``engine.decisions.DECISION_COLUMNS`` row per image kept."""


def collect_images(inputs: list[str | os.PathLike[str]]) -> pd.DataFrame:
    """``image_id`` (the file name, as in the competition) and ``path`` for folders and single files."""
    frames = []
    for item in map(Path, inputs):
        if item.is_dir():
            frames.append(list_images(item))
        elif item.is_file():
            if not is_image_file(item):
                raise DataError(f"{item}: not an image file (png, jpg, jpeg, dcm)")
            frames.append(pd.DataFrame({"image_id": [item.name], "path": [str(item)]}))
        else:
            raise DataError(f"{item}: no such file or folder")
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["image_id", "path"])
    if frame.empty:
        raise DataError(f"{', '.join(map(str, inputs))}: no images found (png, jpg, jpeg, dcm)")
    duplicated = frame["image_id"][frame["image_id"].duplicated()]
    if not duplicated.empty:
        raise DataError(f"{duplicated.iloc[0]}: image id given twice (ids are file names and must be unique)")
    return frame


def _load(path: str, size: int) -> np.ndarray | DataError:
    try:
        return load_image(path, size)
    except DataError as exc:
        return exc


def decoded_batches(
    paths: list[str], size: int, batch_size: int, workers: int, ahead: int = 2
) -> Iterator[list[np.ndarray | DataError]]:
    """Decoded batches in order; while one is consumed, the next ``ahead`` batches are being decoded."""
    starts = iter(range(0, len(paths), batch_size))
    pending: collections.deque[list[Future]] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:

        def submit(start: int) -> None:
            pending.append([pool.submit(_load, p, size) for p in paths[start : start + batch_size]])

        for start in itertools.islice(starts, ahead + 1):
            submit(start)
        while pending:
            yield [f.result() for f in pending.popleft()]
            following = next(starts, None)
            if following is not None:
                submit(following)


def predict_images(
    ensemble: Ensemble,
    images: pd.DataFrame,
    batch_size: int = 8,
    skip_bad: bool = False,
    workers: int = 2,
    progress: bool | None = None,
    decide: bool = False,
    operating_point: str | None = None,
) -> Prediction:
    """Score every image of ``images`` (``image_id``, ``path``); bad files fail the run unless ``skip_bad``.

    With ``decide``, each batch also goes through ``engine.decisions`` (same session calls, plus the
    feature output and DICOM headers) and the prediction carries its decision rows.

    The progress bar shows on a terminal (``progress=None``), always (True) or never (False).
    Without ``skip_bad``, inference stops at the first bad file but decoding goes on, so the error can
    say how many files are bad.
    """
    ids, paths = images["image_id"].astype(str).tolist(), images["path"].astype(str).tolist()
    kept: list[str] = []
    chunks: dict[str, list[np.ndarray]] = {m.name: [] for m in ensemble.manifest.models}
    decided: list[pd.DataFrame] = []
    bad: list[tuple[int, DataError | str]] = []
    position = 0
    with tqdm(total=len(paths), unit="img", desc="predict", disable=None if progress is None else not progress) as bar:
        for batch in decoded_batches(paths, ensemble.image_size, batch_size, workers):
            good = [(position + i, item) for i, item in enumerate(batch) if isinstance(item, np.ndarray)]
            bad += [(position + i, item) for i, item in enumerate(batch) if isinstance(item, DataError)]
            position += len(batch)
            bar.update(len(batch))
            if (bad and not skip_bad) or not good:
                continue
            batch_images = np.stack([image for _, image in good])
            if decide:
                frame = decide_paths(
                    ensemble, batch_images, [ids[i] for i, _ in good], [paths[i] for i, _ in good], operating_point
                )
                decided.append(frame.decisions)
                scores_of_batch = frame.scores
            else:
                scores_of_batch = ensemble.score(batch_images)
            for name, scores in scores_of_batch.items():
                chunks[name].append(scores)
            kept += [ids[i] for i, _ in good]
    return finish_prediction(ids, paths, kept, chunks, bad, skip_bad, decided if decide else None)


def finish_prediction(
    ids: list[str],
    paths: list[str],
    kept: list[str],
    chunks: dict[str, list[np.ndarray]],
    bad: list[tuple[int, DataError | str]],
    skip_bad: bool,
    decided: list[pd.DataFrame] | None = None,
) -> Prediction:
    """The ``Prediction`` of one scoring pass over ``ids``/``paths``, whoever scored it (this process, or
    Ray actors): bad files (position, error) fail the run unless ``skip_bad``; skipped ones are logged
    and listed. ``kept`` are the scored ids in order, ``chunks`` their per-model scores and ``decided``
    their decision rows, in pieces (None: not decided)."""
    if bad and not skip_bad:
        raise DataError(
            f"{bad[0][1]}; {len(bad)} of {len(paths)} images cannot be decoded (--skip-bad scores the rest)"
        )
    if not kept:
        raise DataError(f"none of the {len(paths)} images could be decoded; first: {bad[0][1]}")
    for _, error in bad:
        log.warning("skipped %s", error)
    return Prediction(
        image_ids=kept,
        scores={name: np.concatenate(parts) for name, parts in chunks.items()},
        # Escaped (shown_path): a name with a control character must not split its row of the skipped list.
        skipped=[
            {"image_id": shown_path(ids[i]), "path": shown_path(paths[i]), "reason": str(error)} for i, error in bad
        ],
        decisions=pd.concat(decided, ignore_index=True) if decided is not None else None,
    )


def find_sample_submission(inputs: list[str | os.PathLike[str]]) -> Path | None:
    """``sample_submission.csv`` beside a single images folder (the competition layout), if there is one."""
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        candidate = Path(inputs[0]).resolve().parent / "sample_submission.csv"
        if candidate.is_file():
            return candidate
    return None


def submission_frame(
    image_ids: list[str], labels: np.ndarray, sample_path: Path | None = None, skipped: list[str] | None = None
) -> pd.DataFrame:
    """``image_id,label`` rows; with a sample submission, its row order and column names (ids must match)."""
    if sample_path is None:
        return pd.DataFrame({SUBMISSION_COLUMNS[0]: image_ids, SUBMISSION_COLUMNS[1]: labels})
    sample = read_sample_submission(sample_path)
    id_column, label_column = sample.columns[:2]
    wanted = sample[id_column].astype(str).tolist()
    try:
        to_id = submission_ids(wanted, [*image_ids, *(skipped or [])])
    except DataError as exc:
        raise DataError(f"{sample_path}: {exc}") from None
    by_id = {to_id[i]: v for i, v in zip(image_ids, labels, strict=True)}
    skipped_ids = {to_id[i] for i in skipped or []}
    missing = [i for i in wanted if i not in by_id and i not in skipped_ids]
    extra = sorted(set(by_id) - set(wanted))
    if missing or extra:
        raise DataError(
            f"{sample_path}: ids differ from the images: {len(missing)} in the sample but not among the images"
            f"{f' (e.g. {example_list(missing)})' if missing else ''}, {len(extra)} images not in the sample"
            f"{f' (e.g. {example_list(extra)})' if extra else ''}"
        )
    rows = [i for i in wanted if i in by_id]
    return pd.DataFrame({id_column: rows, label_column: [by_id[i] for i in rows]})


def skipped_path(out: str | os.PathLike[str]) -> Path:
    """Where the list of skipped files goes: ``submission.csv`` -> ``submission.skipped.csv``."""
    return Path(out).with_suffix(".skipped.csv")


def check_submission_paths(
    out: str | os.PathLike[str],
    images: pd.DataFrame,
    artifacts: str | os.PathLike[str],
    sample_path: Path | None = None,
) -> None:
    """Before any scoring: the submission and its skipped-files list may not overwrite an input image, the
    sample submission or anything in the artifacts folder, and their folder must be writable."""
    inputs = [*images["path"], *([sample_path] if sample_path else [])]
    for path in (out, skipped_path(out)):
        atomic.check_output_path(path, inputs=inputs, protected_dir=artifacts)


def write_submission(
    prediction: Prediction, labels: np.ndarray, out: str | os.PathLike[str], sample_path: Path | None = None
) -> Path:
    """Write the submission and the skipped-files list atomically (a clean run removes a stale list, so
    the list beside a submission is always its own); returns the submission path."""
    skipped_ids = [row["image_id"] for row in prediction.skipped]
    frame = submission_frame(prediction.image_ids, labels, sample_path, skipped_ids)
    if prediction.skipped:
        atomic.write_csv(skipped_path(out), pd.DataFrame(prediction.skipped, columns=["image_id", "path", "reason"]))
    else:
        skipped_path(out).unlink(missing_ok=True)
    atomic.write_csv(out, frame)
    return Path(out)


def check_decisions_path(out: str | os.PathLike[str], images: pd.DataFrame, artifacts: str | os.PathLike[str]) -> None:
    """Before any scoring: the decisions file (and its skipped list) may not overwrite an input or the artifacts."""
    for path in (out, skipped_path(out)):
        atomic.check_output_path(path, inputs=images["path"], protected_dir=artifacts, option="--decisions")


def write_decisions(prediction: Prediction, out: str | os.PathLike[str]) -> Path:
    """Write the decision rows (and the skipped-files list, if any) atomically; returns the path."""
    if prediction.decisions is None:
        raise DataError(f"{out}: no decisions were made (predict_images(decide=True))")
    if prediction.skipped:
        atomic.write_csv(skipped_path(out), pd.DataFrame(prediction.skipped, columns=["image_id", "path", "reason"]))
    else:
        skipped_path(out).unlink(missing_ok=True)
    atomic.write_csv(out, prediction.decisions)
    return Path(out)
