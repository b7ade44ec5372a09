"""Dataset validation: find every problem before an hour of training, report them in one line.

``validate_training_set`` is what the trainer runs; ``summarise_dataset`` is what ``tbens check-data``
prints, reading image headers only (sizes, modes, bit depths) unless asked to decode.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from tbensemble.core.errors import DataError
from tbensemble.data.decode import DICOM_SUFFIXES, decode_gray, error_reason, has_dicom_preamble
from tbensemble.data.layout import (
    TEST_DIR,
    child_dir,
    example_list,
    list_images,
    problems_error,
    read_sample_submission,
    scan_training_set,
)

PathLike = str | os.PathLike[str]

SAMPLE_SUBMISSION = "sample_submission.csv"
CLASS_NAMES = {0: "normal", 1: "tuberculosis"}
_MODE_DEPTHS = {
    "1": "1-bit",
    "L": "8-bit gray",
    "LA": "8-bit gray+alpha",
    "P": "8-bit palette",
    "PA": "8-bit palette+alpha",
    "RGB": "8-bit RGB",
    "RGBA": "8-bit RGBA",
    "CMYK": "8-bit CMYK",
    "I;16": "16-bit gray",
    "I;16B": "16-bit gray",
    "I": "32-bit integer",
    "F": "32-bit float",
}


def _workers() -> int:
    return min(8, (os.cpu_count() or 1) + 2)


def _decode_problem(path: str) -> str | None:
    try:
        decode_gray(path)
    except DataError as exc:
        return str(exc)
    return None


def check_decodable(paths: Sequence[str], what: str = "images") -> str | None:
    """Decode every file in parallel threads (Pillow and numpy release the GIL); one problem clause or None.

    'N of M images cannot be decoded: a (reason), b (reason), c (reason)': the count and the first examples.
    """
    with ThreadPoolExecutor(_workers()) as pool:
        results = list(
            tqdm(pool.map(_decode_problem, paths), total=len(paths), desc=f"decoding {what}", unit="img", disable=None)
        )
    failures = [r for r in results if r is not None]
    if not failures:
        return None
    return f"{len(failures)} of {len(paths)} {what} cannot be decoded: {example_list(failures)}"


def class_problems(data_dir: PathLike, frame: pd.DataFrame) -> list[str]:
    """Training needs both classes: AUC, stratified folds and class weights are undefined otherwise."""
    if frame.empty:
        return [f"{data_dir}: no labelled images"]
    counts = frame["label"].value_counts()
    missing = [label for label in CLASS_NAMES if label not in counts.index]
    if missing:
        have = ", ".join(f"label {k} ({CLASS_NAMES[k]}): {v}" for k, v in counts.items())
        return [f"{data_dir}: only one class ({have}); training needs labels 0 and 1"]
    return []


def validate_training_set(data_dir: PathLike, check_decode: bool = True) -> pd.DataFrame:
    """The training frame of ``layout.load_training_set``, after checking everything that can be checked.

    Collects every problem (labels file, columns, label values, duplicates, missing files, empty
    folders, a missing class, and with ``check_decode`` images that do not decode) and raises one
    DataError listing them all, so a user fixes a dataset in one round instead of one error at a time.
    """
    _, frame, problems = scan_training_set(data_dir)
    problems += class_problems(data_dir, frame)
    if check_decode and not frame.empty:
        problem = check_decodable(list(frame["path"]), "training images")
        if problem:
            problems.append(problem)
    if problems:
        raise problems_error(data_dir, problems)
    return frame


def read_header(path: str) -> tuple[int, int, str]:
    """(width, height, 'FORMAT depth') from the header alone: no pixel decoding."""
    if Path(path).suffix.lower() in DICOM_SUFFIXES or (not Path(path).suffix and has_dicom_preamble(path)):
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        kind = f"DICOM {ds.get('PhotometricInterpretation', '?')} {ds.get('BitsStored', '?')}-bit"
        return int(ds.Columns), int(ds.Rows), kind + (f" {frames} frames" if frames > 1 else "")
    with Image.open(path) as image:
        return image.width, image.height, f"{image.format} {_MODE_DEPTHS.get(image.mode, image.mode)}"


def _header_or_problem(path: str) -> tuple[int, int, str] | str:
    try:
        return read_header(path)
    except Exception as exc:
        return f"{path} ({error_reason(exc)})"


def _spread(values: list[int]) -> list[int]:
    return [int(min(values)), int(np.median(values)), int(max(values))] if values else []


def _sample_submission_problems(root: Path, test_files: pd.DataFrame | None) -> list[str]:
    path = root / SAMPLE_SUBMISSION
    if not path.is_file():
        return []
    try:
        table = read_sample_submission(path)
    except DataError as exc:
        return [str(exc)]
    if test_files is None:
        return [f"{path}: present but there is no {TEST_DIR}/ folder"]
    missing = sorted(set(table.iloc[:, 0]) - set(test_files["image_id"]))
    if not missing:
        return []
    return [
        f"{path}: {len(missing)} id{'s' if len(missing) > 1 else ''} with no file in {TEST_DIR}/: {example_list(missing)}"
    ]


def summarise_dataset(data_dir: PathLike, check_decode: bool = False) -> dict[str, Any]:
    """What ``tbens check-data`` prints: layout, counts per class, test count, sizes, modes, groups, problems.

    Sizes and modes come from image headers (fast on large sets). Unreadable headers are problems;
    with ``check_decode`` every image is fully decoded instead, which also finds truncated files.
    A folder holding neither layout raises DataError directly.
    """
    root = Path(data_dir)
    layout, frame, problems = scan_training_set(data_dir)
    problems += class_problems(data_dir, frame)
    test_dir = child_dir(root, TEST_DIR)
    test_files = list_images(test_dir) if test_dir is not None else None
    problems += _sample_submission_problems(root, test_files)
    paths = list(frame["path"]) + (list(test_files["path"]) if test_files is not None else [])
    with ThreadPoolExecutor(_workers()) as pool:
        headers = list(pool.map(_header_or_problem, paths))
    readable = [h for h in headers if isinstance(h, tuple)]
    unreadable = [h for h in headers if isinstance(h, str)]
    if check_decode:
        problem = check_decodable(paths)
        if problem:
            problems.append(problem)
    elif unreadable:
        problems.append(f"{len(unreadable)} of {len(paths)} images have no readable header: {example_list(unreadable)}")
    counts = frame["label"].value_counts()
    return {
        "data_dir": str(data_dir),
        "layout": layout,
        "train_images": len(frame),
        "classes": {label: int(counts.get(label, 0)) for label in CLASS_NAMES},
        "groups": int(frame["group"].nunique()) if "group" in frame.columns else None,
        "test_images": len(test_files) if test_files is not None else None,
        "width": _spread([h[0] for h in readable]),
        "height": _spread([h[1] for h in readable]),
        "modes": dict(Counter(h[2] for h in readable).most_common()),
        "problems": problems,
    }
