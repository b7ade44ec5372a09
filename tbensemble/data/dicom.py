"""DICOM as a PACS sends it: the header first (bounded, deflated files too), then the first frame only.

Codecs come from pydicom's pixel-data plugins: python-gdcm (JPEG Lossless process 14 and SV1, JPEG-LS,
JPEG 2000, JPEG baseline/extended) in the base install, pydicom itself for uncompressed, deflated and
RLE, and Pillow as a second JPEG 2000 decoder. pydicom inflates a whole deflated file in memory before
it reads a single tag, so deflated files are inflated here, in bounded steps, instead.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

PathLike = str | os.PathLike[str]

HEADER_BYTES = 8 * 2**20
"""Inflated bytes of a deflated file searched for the image header; real headers are a few kB."""
_PREAMBLE = 132
_GROUP_LENGTH_TAG = 12
"""Bytes of the (0002,0000) element itself, which the group length it holds does not count."""


@dataclass(frozen=True)
class DicomHeader:
    """What a DICOM file declares before any pixel is decoded."""

    dataset: object
    """A ``pydicom.Dataset`` of every element before Pixel Data (group 0028 at least, for deflated files)."""
    rows: int
    columns: int
    frames: int
    samples: int
    bytes_per_sample: int
    transfer_syntax: str | None

    @property
    def pixel_bytes(self) -> int:
        """Bytes of the uncompressed pixel data the header declares (every frame)."""
        return self.rows * self.columns * self.frames * self.samples * self.bytes_per_sample


def _tag_int(ds, keyword: str, default: int) -> int:
    """An integer header value; absent or empty gives ``default``, garbage raises ValueError naming it."""
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{keyword} is not a number ({value!r})") from None


def _inflate(handle, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` inflated bytes of the raw deflate stream in ``handle``, and whether it ended there."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pending = b""
    while len(out) <= limit and not inflater.eof:
        if not pending:
            pending = handle.read(1 << 16)
            if not pending:
                break
        out += inflater.decompress(pending, limit + 1 - len(out))
        pending = inflater.unconsumed_tail
    return bytes(out[:limit]), len(out) <= limit


def _deflated_offset(handle, meta) -> int:
    """Where the deflated data set starts: after the preamble and the file meta group (by its length)."""
    length = meta.get("FileMetaInformationGroupLength")
    if length is None:
        raise ValueError("deflated file without a File Meta Information Group Length")
    handle.seek(0)
    start = _PREAMBLE if handle.read(_PREAMBLE)[128:] == b"DICM" else 0
    return start + _GROUP_LENGTH_TAG + int(length)


def _read_deflated(path: PathLike, meta, limit: int, whole: bool):
    """The data set of a deflated file, inflating at most ``limit`` bytes; ``whole`` needs it to end there."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset

    with open(path, "rb") as handle:
        handle.seek(_deflated_offset(handle, meta))
        data, ended = _inflate(handle, limit)
    if whole and not ended:
        raise ValueError("deflated data inflate beyond the pixel data size the header declares")
    stop = None if whole else (lambda tag, vr, length: tag >= 0x7FE00008)  # Float/Double Float/Pixel Data
    ds = read_dataset(DicomBytesIO(data), is_implicit_VR=False, is_little_endian=True, stop_when=stop)
    ds.file_meta = meta
    return ds


def read_header(path: PathLike) -> DicomHeader:
    """The header of ``path`` without decoding pixels: every element before Pixel Data.

    A deflated file is inflated at most ``HEADER_BYTES`` here, however large the pixel data it declares.
    """
    import pydicom
    from pydicom.filereader import read_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    try:
        meta = read_file_meta_info(path)
    except Exception:  # no file meta (a bare data set): pydicom guesses the encoding in dcmread
        meta = None
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax == DeflatedExplicitVRLittleEndian:
        ds = _read_deflated(path, meta, HEADER_BYTES, whole=False)
    else:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    if "Rows" not in ds or "Columns" not in ds:
        raise ValueError("no Rows/Columns in the header (no image)")
    bits = _tag_int(ds, "BitsAllocated", 16)
    return DicomHeader(
        dataset=ds,
        rows=_tag_int(ds, "Rows", 0),
        columns=_tag_int(ds, "Columns", 0),
        frames=max(1, _tag_int(ds, "NumberOfFrames", 1)),
        samples=max(1, _tag_int(ds, "SamplesPerPixel", 1)),
        bytes_per_sample=max(1, (bits + 7) // 8),
        transfer_syntax=str(syntax) if syntax else None,
    )


def syntax_name(uid: str | None) -> str:
    """'JPEG Lossless SV1 (1.2.840.10008.1.2.4.70)'-style label; files without file meta say so."""
    if not uid:
        return "no transfer syntax (bare data set)"
    from pydicom.uid import UID

    name = UID(uid).name
    return uid if name == uid else f"{name} ({uid})"


def can_decode(uid: str | None) -> bool:
    """Whether this install has a working pixel decoder for the transfer syntax ``uid``."""
    if not uid:
        return True  # a bare data set is read as uncompressed
    from pydicom.pixels import get_decoder

    try:
        return get_decoder(uid).is_available
    except NotImplementedError:
        return False


def missing_decoder(uid: str | None) -> str:
    """Why ``uid`` cannot be decoded here: the plugins pydicom would need, or that it has no decoder at all."""
    from pydicom.pixels import get_decoder

    try:
        needed = get_decoder(uid).missing_dependencies
    except NotImplementedError:
        return "pydicom has no decoder for it"
    return "; ".join(needed) or "no decoder plugin available"


_JPEG_FRAME_MARKERS = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC} | {0xF7}
"""Start-of-frame markers: JPEG processes 1-14 (SOF0-SOF15 less DHT, JPG, DAC) and JPEG-LS (SOF55)."""


def _jpeg_size(stream: bytes) -> tuple[int, int] | None:
    """(width, height) from the frame header of a JPEG or JPEG-LS stream, walking its marker segments."""
    at = 2 if stream[:2] == b"\xff\xd8" else -1
    while 0 <= at <= len(stream) - 9:
        if stream[at] != 0xFF:
            return None
        marker = stream[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _JPEG_FRAME_MARKERS:
            height, width = struct.unpack(">HH", stream[at + 5 : at + 9])
            return width, height
        at += 2 + struct.unpack(">H", stream[at + 2 : at + 4])[0]
    return None


def _j2k_size(stream: bytes) -> tuple[int, int] | None:
    """(width, height) from the SIZ segment of a JPEG 2000 codestream (also inside a JP2 wrapper)."""
    at = stream.find(b"\xff\x4f\xff\x51")
    if at < 0 or len(stream) < at + 24:
        return None
    xsiz, ysiz, xoffset, yoffset = struct.unpack(">4I", stream[at + 8 : at + 24])
    return xsiz - xoffset, ysiz - yoffset


def check_codestream(ds, header: DicomHeader) -> None:
    """Refuse a first frame whose codestream declares another size than Rows × Columns.

    Codecs size their output from the codestream, not from the DICOM header: a 2 kB JPEG-LS frame of
    12000×12000 under a 16×16 header took 600 MB to decode (and was then cropped to 16×16 and scored).
    """
    from pydicom.encaps import generate_frames
    from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

    syntax = header.transfer_syntax
    if syntax in JPEG2000TransferSyntaxes:
        read_size = _j2k_size
    elif syntax in JPEGTransferSyntaxes or syntax in JPEGLSTransferSyntaxes:
        read_size = _jpeg_size
    else:
        return
    frame = next(generate_frames(ds.PixelData, number_of_frames=header.frames), b"")
    size = read_size(frame)
    if size is None:
        raise ValueError("no frame header found in the first frame's codestream")
    if size != (header.columns, header.rows):
        raise ValueError(
            f"the codestream declares {size[0]}×{size[1]} pixels, the header {header.columns}×{header.rows}"
        )


def first_frame(path: PathLike, header: DicomHeader) -> np.ndarray:
    """The first frame's stored values (rows × columns, × samples for colour), whatever the codec.

    Only that frame is decoded (``pixel_array(..., index=0)``); from a path, pydicom reads only its bytes.
    """
    from pydicom.pixels import pixel_array
    from pydicom.uid import (
        UID,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

    ds = header.dataset
    if header.transfer_syntax == DeflatedExplicitVRLittleEndian:
        full = _read_deflated(path, ds.file_meta, header.pixel_bytes + HEADER_BYTES, whole=True)
        return pixel_array(full, index=0)
    if header.transfer_syntax and UID(header.transfer_syntax).is_compressed:
        # Encapsulated: the compressed bytes are read whole (their size is the file's), and the first
        # frame's codestream is checked against the header before a codec sees it.
        import pydicom

        full = pydicom.dcmread(path, force=True)
        check_codestream(full, header)
        return pixel_array(full, index=0)
    if header.transfer_syntax:
        return pixel_array(path, index=0)
    implicit, little = ds.original_encoding
    guessed = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    return pixel_array(path, index=0, transfer_syntax_uid=guessed)


def inverted(ds) -> bool:
    """Whether bright must become dark: MONOCHROME1, or a Presentation LUT Shape of INVERSE.

    DX/CR pair MONOCHROME1 with INVERSE ('output after inversion is P-values'): one inversion, not two.
    IDENTITY beside MONOCHROME1 is not a conformant pair; the photometric interpretation wins there.
    """
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    return photometric == "MONOCHROME1" or shape == "INVERSE"
