"""Dataset layouts: which files are the training images, what their labels are, where the test set is.

Two layouts are read. Competition: ``DIR/train/*``, ``DIR/train_labels.csv`` (``image_id,label``,
optionally ``patient_id`` or ``group``), ``DIR/test/*``, optional ``DIR/sample_submission.csv``.
Folder: ``DIR/Normal/*`` (label 0) and ``DIR/Tuberculosis/*`` (label 1), folder names in any case.
When both are present the competition layout wins.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from tbensemble.core.errors import DataError
from tbensemble.data.decode import IMAGE_SUFFIXES, is_image_file

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

LABELS_FILE = "train_labels.csv"
TRAIN_DIR = "train"
TEST_DIR = "test"
CLASS_FOLDERS = {"normal": 0, "tuberculosis": 1}
GROUP_COLUMNS = ("group", "patient_id")
"""Either column groups folds (``group`` wins when both exist); it is returned as ``group``."""

MAX_EXAMPLES = 3


def natural_key(name: str) -> tuple:
    """Sort key that puts test2 before test10 (digit runs compare as numbers, the rest case-blind)."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def example_list(items: list[str]) -> str:
    """The first few items, comma-separated, with ', ...' when there are more: the examples in an error line."""
    return ", ".join(items[:MAX_EXAMPLES]) + (", ..." if len(items) > MAX_EXAMPLES else "")


def summarise_items(what: str, items: list[str]) -> str:
    """'what: a, b, c' for a few items, '12 what, e.g. a, b, c' for many: one problem stays one short clause."""
    if len(items) <= MAX_EXAMPLES:
        return f"{what}: {', '.join(items)}"
    return f"{len(items)} {what}, e.g. {', '.join(items[:MAX_EXAMPLES])}"


def child_dir(parent: Path, name: str) -> Path | None:
    """The sub-folder of ``parent`` called ``name`` in any letter case (exact case first)."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if not parent.is_dir():
        return None
    for child in sorted(parent.iterdir()):
        if child.name.lower() == name.lower() and child.is_dir():
            return child
    return None


def _entry_kind(entry: os.DirEntry) -> str:
    """'file', 'folder', 'special' (FIFO, socket, device) or 'broken' (a symlink that cannot be followed)."""
    try:
        if entry.is_file():
            return "file"
        if entry.is_dir():
            return "folder"
    except OSError:  # ELOOP and the like: is_file() follows the link and fails
        return "broken"
    return "broken" if entry.is_symlink() else "special"


def list_images(folder: PathLike) -> pd.DataFrame:
    """Image files of ``folder`` as DataFrame[image_id, path], natural order; image_id is the file name.

    Hidden files, sub-folders and special files (FIFOs, devices) are skipped; files with other suffixes
    are skipped and logged at INFO so a folder of .tif files does not just look empty without a word.
    A symlink that leads nowhere (dangling, or a loop) but is named like an image is listed: decoding
    then names it as a bad file, which ``--skip-bad`` skips like any other.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{folder}: folder not found")
    images: list[str] = []
    ignored: list[str] = []
    for entry in os.scandir(root):
        kind = _entry_kind(entry)
        if entry.name.startswith(".") or kind in ("folder", "special"):
            continue
        (images if is_image_file(entry.path) else ignored).append(entry.name)
    if ignored:
        ignored.sort(key=natural_key)
        log.info("%s: ignored %s", folder, summarise_items(f"files that are not {'/'.join(IMAGE_SUFFIXES)}", ignored))
    images.sort(key=natural_key)
    return pd.DataFrame({"image_id": images, "path": [str(root / name) for name in images]}, dtype=object)


def detect_layout(data_dir: PathLike) -> str:
    """'competition' or 'folder'; a DataError names the folder and what was expected otherwise."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{data_dir}: data folder not found")
    if (root / LABELS_FILE).exists() or (root / TRAIN_DIR).is_dir():
        return "competition"
    if any(child_dir(root, name) is not None for name in CLASS_FOLDERS):
        return "folder"
    raise DataError(
        f"{data_dir}: no dataset found; expected {TRAIN_DIR}/ + {LABELS_FILE} (competition layout) "
        "or Normal/ + Tuberculosis/ folders (folder layout)"
    )


def _resolver(train_dir: Path, names: list[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """File names in train/, and extension-less stems → file names, to resolve ids given either way."""
    stems: dict[str, list[str]] = {}
    for name in names:
        suffix = Path(name).suffix
        if suffix.lower() in IMAGE_SUFFIXES:
            stems.setdefault(name[: -len(suffix)], []).append(name)
    return {name: str(train_dir / name) for name in names}, stems


def _rows(row_numbers: Iterable[int]) -> str:
    return ", ".join(str(n) for n in row_numbers)


def _scan_competition(root: Path) -> tuple[pd.DataFrame, list[str]]:
    labels_path = root / LABELS_FILE
    train_dir = child_dir(root, TRAIN_DIR) or root / TRAIN_DIR
    problems: list[str] = []
    empty = pd.DataFrame({"image_id": [], "path": [], "label": []})
    names = list(list_images(train_dir)["image_id"]) if train_dir.is_dir() else []
    if not train_dir.is_dir():
        problems.append(f"{train_dir}: training image folder not found")
    elif not names:
        problems.append(f"{train_dir}: no images ({'/'.join(IMAGE_SUFFIXES)})")
    if not labels_path.is_file():
        problems.append(f"{labels_path}: labels file not found (competition layout needs it beside {TRAIN_DIR}/)")
        return empty, problems
    try:
        table = pd.read_csv(labels_path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        problems.append(f"{labels_path}: not a readable CSV ({str(exc).strip().splitlines()[0]})")
        return empty, problems
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("image_id", "label") if c not in table.columns]
    if missing:
        problems.append(f"{labels_path}: missing column(s) {', '.join(missing)} (found: {', '.join(table.columns)})")
        return empty, problems
    # 'row N' is the line number in the file (header = row 1), as a spreadsheet or editor shows it.
    table["row"] = table.index + 2
    table = table[(table.drop(columns="row") != "").any(axis=1)]
    group_column = next((c for c in GROUP_COLUMNS if c in table.columns), None)

    def where(mask: pd.Series, what: str, value_column: str | None = None) -> None:
        """'FILE rows 3, 7: what ('a', 'b')', shortened to the first rows when there are many."""
        hits = table[mask]
        if not len(hits):
            return
        shown = hits.head(MAX_EXAMPLES)
        more = f" and {len(hits) - len(shown)} more" if len(hits) > len(shown) else ""
        plural = "s" if len(hits) > 1 else ""
        message = f"{labels_path} row{plural} {_rows(shown['row'])}{more}: {what}"
        if value_column:
            message += f" ({', '.join(repr(v) for v in shown[value_column])}{', ...' if more else ''})"
        problems.append(message)

    ids = table["image_id"].str.strip()
    where(ids == "", "empty image_id")
    labels = pd.to_numeric(table["label"].str.strip(), errors="coerce")
    where(table["label"].str.strip() == "", "empty label")
    where(labels.isna() & (table["label"].str.strip() != ""), "label is not a number", "label")
    where(labels.notna() & ~labels.isin([0, 1]), "label is not 0 or 1", "label")
    if group_column is not None:
        where(table[group_column].str.strip() == "", f"empty {group_column}")

    files, stems = _resolver(train_dir, names)
    paths: list[str | None] = []
    for image_id in ids:
        if image_id in files:
            paths.append(files[image_id])
        elif len(stems.get(image_id, [])) == 1:
            paths.append(files[stems[image_id][0]])
        else:
            paths.append(None)
    table["path"] = paths
    ambiguous = ids.map(lambda i: i not in files and len(stems.get(i, [])) > 1)
    where(ambiguous, f"image_id matches several files in {train_dir}", "image_id")
    if train_dir.is_dir():
        where(table["path"].isna() & (ids != "") & ~ambiguous, f"no file in {train_dir}", "image_id")
    keys = table["path"].fillna(ids)
    for key, rows in table[(ids != "") & keys.duplicated(keep=False)].groupby(keys, sort=False):
        written = ", ".join(sorted({repr(i) for i in rows["image_id"]}))
        problems.append(f"{labels_path} rows {_rows(rows['row'])}: duplicate image_id {written} ({key})")

    frame = pd.DataFrame({"image_id": table["image_id"], "path": table["path"], "label": labels, "row": table["row"]})
    if group_column is not None:
        frame["group"] = table[group_column].str.strip()
    good = frame["path"].notna() & frame["label"].isin([0, 1])
    frame = frame[good].drop(columns="row").reset_index(drop=True)
    frame["label"] = frame["label"].astype(int)
    return frame, problems


def _scan_folders(root: Path) -> tuple[pd.DataFrame, list[str]]:
    problems: list[str] = []
    parts: list[pd.DataFrame] = []
    for name, label in CLASS_FOLDERS.items():
        folder = child_dir(root, name)
        if folder is None:
            problems.append(f"{root}: no {name.capitalize()}/ folder (folder layout needs Normal/ and Tuberculosis/)")
            continue
        images = list_images(folder)
        if not len(images):
            problems.append(f"{folder}: no images ({'/'.join(IMAGE_SUFFIXES)})")
        parts.append(images.assign(label=label))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"image_id": [], "path": [], "label": []})
    duplicated = sorted(set(frame.loc[frame["image_id"].duplicated(), "image_id"]), key=natural_key)
    if duplicated:
        problems.append(f"{root}: {summarise_items('file names in both Normal/ and Tuberculosis/', duplicated)}")
    frame["label"] = frame["label"].astype(int)
    return frame, problems


def scan_training_set(data_dir: PathLike) -> tuple[str, pd.DataFrame, list[str]]:
    """(layout, usable rows, problems): every layout-level problem found, none raised, for validation."""
    layout = detect_layout(data_dir)
    root = Path(data_dir)
    frame, problems = _scan_competition(root) if layout == "competition" else _scan_folders(root)
    return layout, frame, problems


def problems_error(data_dir: PathLike, problems: list[str]) -> DataError:
    """One DataError whose single line lists every problem."""
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    return DataError(f"{data_dir}: {count}: " + "; ".join(problems))


def load_training_set(data_dir: PathLike) -> pd.DataFrame:
    """DataFrame[image_id, path, label(, group)] of either layout; a DataError lists every layout problem.

    image_id is as written in train_labels.csv (with or without extension) or the file name in the
    folder layout; ``group`` exists only when the labels carry ``group`` or ``patient_id``. Images are
    not decoded here (``validate.validate_training_set`` does that).
    """
    _, frame, problems = scan_training_set(data_dir)
    if problems:
        raise problems_error(data_dir, problems)
    return frame


def find_test_dir(data_dir: PathLike) -> Path:
    """DIR/test (any letter case), the competition layout's unlabelled images."""
    folder = child_dir(Path(data_dir), TEST_DIR)
    if folder is None:
        raise DataError(f"{data_dir}: no {TEST_DIR}/ folder")
    return folder


def submission_ids(sample_ids: list[str], names: list[str]) -> dict[str, str]:
    """File name → the id its submission row carries: the name itself, or its stem when the sample
    submission uses stems (none of its ids is a file name). Two files mapping to one id raise DataError
    naming both, instead of one score silently replacing the other."""
    if set(sample_ids) & set(names):
        return {name: name for name in names}
    ids = {name: Path(name).stem for name in names}
    by_id: dict[str, list[str]] = {}
    for name, image_id in ids.items():
        by_id.setdefault(image_id, []).append(name)
    clashes = sorted((v for v in by_id.values() if len(v) > 1), key=lambda v: natural_key(v[0]))
    if clashes:
        shown = "; ".join(f"{' and '.join(sorted(v, key=natural_key))} -> {ids[v[0]]}" for v in clashes[:MAX_EXAMPLES])
        more = f" and {len(clashes) - MAX_EXAMPLES} more" if len(clashes) > MAX_EXAMPLES else ""
        raise DataError(
            f"the sample submission's ids are file stems, and several files give the same id: {shown}{more}"
        )
    return ids


def read_sample_submission(path: PathLike) -> pd.DataFrame:
    """The sample submission, ids as text; its first column is the id column, its second the score column.

    Its row order and column names are what a submission must reproduce.
    """
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: sample submission not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[0]})") from None
    if table.shape[1] < 2:
        raise DataError(f"{path}: needs an id column and a score column, found {list(table.columns)}")
    id_column = table.columns[0]
    duplicated = table.loc[table[id_column].duplicated(), id_column].tolist()
    if duplicated:
        raise DataError(f"{path}: {summarise_items(f'duplicate {id_column}', duplicated)}")
    return table
