"""The few DICOM header facts that say whether a file is a frontal chest radiograph, read without pixels."""

from __future__ import annotations

import io
import os
from pathlib import Path

from tbensemble.data.decode import DICOM_SUFFIXES, has_dicom_preamble

HEADER_KEYWORDS = ("Modality", "BodyPartExamined", "ViewPosition")


def _facts(dataset) -> dict[str, str]:
    return {keyword: str(dataset.get(keyword, "") or "").strip() for keyword in HEADER_KEYWORDS}


def _from_bytes(data: bytes):
    """A dataset from in-memory DICOM (stop before pixels); a deflated one is skipped: pydicom would
    inflate all of it before the first tag, and ``data.dicom`` bounds that only for files."""
    import pydicom
    from pydicom.filereader import read_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    meta = read_file_meta_info(io.BytesIO(data))
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return None
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)


def read_header(source: str | os.PathLike[str] | bytes) -> dict[str, str] | None:
    """``{keyword: value}`` for ``HEADER_KEYWORDS`` of a DICOM file or its bytes; None when not DICOM.

    Reads the header only (``data.dicom.read_header`` for files: bounded, deflated files too). A file
    that is not DICOM, or whose header cannot be parsed, gives None: the decoder reports undecodable
    files, and the header only adds reasons to refer, never removes them.
    """
    from tbensemble.data import dicom

    try:
        if isinstance(source, bytes):
            dataset = _from_bytes(source) if source[128:132] == b"DICM" else None
        else:
            path = Path(source)
            if path.suffix.lower() not in DICOM_SUFFIXES and not has_dicom_preamble(path):
                return None
            dataset = dicom.read_header(path).dataset
    except Exception:  # any unreadable header: no facts (decoding reports the file itself)
        return None
    return None if dataset is None else _facts(dataset)
