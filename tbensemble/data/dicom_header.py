"""The few DICOM header facts that say whether a file is a frontal chest radiograph, read without pixels."""

from __future__ import annotations

import io
import os
from pathlib import Path

from tbensemble.data.decode import DICOM_SUFFIXES, has_dicom_preamble

HEADER_KEYWORDS = ("Modality", "BodyPartExamined", "ViewPosition")


def _facts(dataset) -> dict[str, str]:
    return {keyword: str(dataset.get(keyword, "") or "").strip() for keyword in HEADER_KEYWORDS}


def read_header(source: str | os.PathLike[str] | bytes) -> dict[str, str] | None:
    """``{keyword: value}`` for ``HEADER_KEYWORDS`` of a DICOM file or its bytes; None when not DICOM.

    Reads with ``stop_before_pixels``, so it costs a few kilobytes of I/O. A file that is not DICOM, or
    whose header cannot be parsed, gives None: the decoder reports undecodable files, and the header
    only adds reasons to refer, never removes them.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if isinstance(source, bytes):
        if source[128:132] != b"DICM":
            return None
        handle: io.BytesIO | str = io.BytesIO(source)
    else:
        path = Path(source)
        if path.suffix.lower() not in DICOM_SUFFIXES and not has_dicom_preamble(path):
            return None
        handle = str(path)
    try:
        dataset = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, AttributeError):
        return None
    return _facts(dataset)
