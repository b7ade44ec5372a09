"""The few DICOM header facts that say whether a file is a frontal chest radiograph, read without pixels."""

from __future__ import annotations

import os
from pathlib import Path

from tbensemble.data.decode import DICOM_SUFFIXES, has_dicom_preamble

HEADER_KEYWORDS = ("Modality", "BodyPartExamined", "ViewPosition")


def _facts(dataset) -> dict[str, str]:
    return {keyword: str(dataset.get(keyword, "") or "").strip() for keyword in HEADER_KEYWORDS}


def read_header(source: str | os.PathLike[str]) -> dict[str, str] | None:
    """``{keyword: value}`` for ``HEADER_KEYWORDS`` of a DICOM file; None when not DICOM (in-memory
    bytes go through a file first, as ``engine.api`` does, so the bounded header reader serves them too).

    Reads the header only (``data.dicom.read_header`` for files: bounded, deflated files too). A file
    that is not DICOM, or whose header cannot be parsed, gives None: the decoder reports undecodable
    files, and the header only adds reasons to refer, never removes them.
    """
    from tbensemble.data import dicom

    try:
        path = Path(source)
        if path.suffix.lower() not in DICOM_SUFFIXES and not has_dicom_preamble(path):
            return None
        dataset = dicom.read_header(path).dataset
    except Exception:  # any unreadable header: no facts (decoding reports the file itself)
        return None
    return None if dataset is None else _facts(dataset)
