"""Dataset validation: find every problem before an hour of training, report them in one line.

``validate_training_set`` is what the trainer runs; ``summarise_dataset`` is what ``tbens check-data``
prints, reading image headers only (sizes, modes, bit depths) unless asked to decode.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from tbensemble.core.errors import DataError
from tbensemble.data import dicom
from tbensemble.data.decode import (
    ImageHeader,
    ImageRefused,
    check_limits,
    check_name,
    decode_gray,
    error_reason,
    read_header,
    shown_path,
)
from tbensemble.data.layout import (
    TEST_DIR,
    child_dir,
    example_list,
    list_images,
    natural_key,
    problems_error,
    read_sample_submission,
    scan_training_set,
    submission_ids,
)

PathLike = str | os.PathLike[str]

SAMPLE_SUBMISSION = "sample_submission.csv"
CLASS_NAMES = {0: "normal", 1: "tuberculosis"}


def _workers() -> int:
    return min(8, (os.cpu_count() or 1) + 2)


def _decode_problem(path: str) -> str | None:
    try:
        decode_gray(path)
    except DataError as exc:
        return str(exc)
    return None


def check_decodable(paths: Sequence[str], what: str = "images", total: int | None = None) -> str | None:
    """Decode every file in parallel threads (Pillow and numpy release the GIL); one problem clause or None.

    'N of M images cannot be decoded: a (reason), b (reason), c (reason)': the count (of ``total``, by
    default of ``paths``) and the first examples.
    """
    with ThreadPoolExecutor(_workers()) as pool:
        results = list(
            tqdm(pool.map(_decode_problem, paths), total=len(paths), desc=f"decoding {what}", unit="img", disable=None)
        )
    failures = [r for r in results if r is not None]
    if not failures:
        return None
    return f"{len(failures)} of {total or len(paths)} {what} cannot be decoded: {example_list(failures)}"


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
    folders, a missing class, and with ``check_decode`` images refused by the decode limits, in a
    transfer syntax this install cannot decode, or that do not decode) and raises one DataError
    listing them all, so a user fixes a dataset in one round instead of one error at a time.
    """
    _, frame, problems = scan_training_set(data_dir)
    problems += class_problems(data_dir, frame)
    if check_decode and not frame.empty:
        problems += inspect_images(list(frame["path"]), "training images", decode=True)[1]
    if problems:
        raise problems_error(data_dir, problems)
    return frame


@dataclass(frozen=True)
class _HeaderCheck:
    path: str
    header: ImageHeader | None = None
    refused: str | None = None
    unreadable: str | None = None


def _check_header(path: str) -> _HeaderCheck:
    """The header of ``path`` checked against the name rule and the decode limits, reading no pixels."""
    try:
        check_name(path)
        header = read_header(path)
        check_limits(header.width, header.height, header.frames)
    except ImageRefused as exc:
        return _HeaderCheck(path, refused=f"{shown_path(path)} ({error_reason(exc)})")
    except Exception as exc:
        return _HeaderCheck(path, unreadable=f"{shown_path(path)} ({error_reason(exc)})")
    return _HeaderCheck(path, header=header)


def _syntax_problems(checks: list[_HeaderCheck], what: str) -> list[str]:
    """One clause per DICOM transfer syntax found that no decoder installed here can read."""
    files: dict[str | None, list[str]] = {}
    for check in checks:
        if check.header is not None and check.header.kind.startswith("DICOM"):
            files.setdefault(check.header.transfer_syntax, []).append(shown_path(check.path))
    return [
        f"{len(paths)} {what} in {dicom.syntax_name(uid)}, which this install cannot decode "
        f"({dicom.missing_decoder(uid)}): {example_list(paths)}"
        for uid, paths in files.items()
        if not dicom.can_decode(uid)
    ]


def inspect_images(
    paths: Sequence[str], what: str = "images", decode: bool = False
) -> tuple[list[ImageHeader], list[str]]:
    """Headers of the images that pass, and one problem clause per kind of failure.

    Kinds: refused before decoding (limits, file name), a transfer syntax this install cannot decode,
    and no readable header; with ``decode``, every other image is fully decoded instead of the last
    check (finds truncated files too).
    """
    with ThreadPoolExecutor(_workers()) as pool:
        checks = list(pool.map(_check_header, paths))
    problems = []
    refused = [c.refused for c in checks if c.refused]
    if refused:
        problems.append(f"{len(refused)} of {len(paths)} {what} refused before decoding: {example_list(refused)}")
    unreadable = [c.unreadable for c in checks if c.unreadable]
    if unreadable and not decode:  # decoding them below names them as 'cannot be decoded'
        problems.append(f"{len(unreadable)} of {len(paths)} {what} have no readable header: {example_list(unreadable)}")
    problems += _syntax_problems(checks, what)
    headers = [c.header for c in checks if c.header is not None]
    if decode:
        decodable = [
            c.path for c in checks if c.unreadable or (c.header and dicom.can_decode(c.header.transfer_syntax))
        ]
        problem = check_decodable(decodable, what, len(paths)) if decodable else None
        if problem:
            problems.append(problem)
    return headers, problems


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
    sample_ids = table.iloc[:, 0].tolist()
    try:
        ids = submission_ids(sample_ids, list(test_files["image_id"]))
    except DataError as exc:
        return [f"{path}: {exc}"]
    missing = sorted(set(sample_ids) - set(ids.values()), key=natural_key)
    if not missing:
        return []
    return [
        f"{path}: {len(missing)} id{'s' if len(missing) > 1 else ''} with no file in {TEST_DIR}/: {example_list(missing)}"
    ]


def summarise_dataset(data_dir: PathLike, check_decode: bool = False) -> dict[str, Any]:
    """What ``tbens check-data`` prints: layout, counts per class, test count, sizes, modes, groups, problems.

    Sizes, modes and DICOM transfer syntaxes come from image headers (fast on large sets). Unreadable
    headers, images refused by the decode limits and transfer syntaxes this install cannot decode are
    problems; with ``check_decode`` every other image is also fully decoded, which finds truncated files.
    A folder holding neither layout raises DataError directly.
    """
    root = Path(data_dir)
    layout, frame, problems = scan_training_set(data_dir)
    problems += class_problems(data_dir, frame)
    test_dir = child_dir(root, TEST_DIR)
    test_files = list_images(test_dir) if test_dir is not None else None
    problems += _sample_submission_problems(root, test_files)
    paths = list(frame["path"]) + (list(test_files["path"]) if test_files is not None else [])
    headers, image_problems = inspect_images(paths, decode=check_decode)
    problems += image_problems
    counts = frame["label"].value_counts()
    return {
        "data_dir": str(data_dir),
        "layout": layout,
        "train_images": len(frame),
        "classes": {label: int(counts.get(label, 0)) for label in CLASS_NAMES},
        "groups": int(frame["group"].nunique()) if "group" in frame.columns else None,
        "test_images": len(test_files) if test_files is not None else None,
        "width": _spread([h.width for h in headers]),
        "height": _spread([h.height for h in headers]),
        "modes": dict(Counter(h.kind for h in headers).most_common()),
        "transfer_syntaxes": {
            dicom.syntax_name(uid): n
            for uid, n in Counter(h.transfer_syntax for h in headers if h.kind.startswith("DICOM")).most_common()
        },
        "undecodable_syntaxes": sorted(
            {dicom.syntax_name(h.transfer_syntax) for h in headers if not dicom.can_decode(h.transfer_syntax)}
        ),
        "problems": problems,
    }
