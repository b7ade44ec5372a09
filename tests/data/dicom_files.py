"""DICOM files made at test time: uncompressed, re-encoded in every transfer syntax a PACS sends, and bombs.

Encoders: pydicom's own (RLE, deflate), pyjpegls (JPEG-LS), pylibjpeg-openjpeg (JPEG 2000) from the dev
extra, and GDCM (JPEG Lossless process 14 and SV1, which no pydicom encoder writes) from the base install.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
"""Computed Radiography Image Storage."""

SYNTAXES = {
    "explicit-le": ExplicitVRLittleEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-lossless-p14": JPEGLossless,
    "jpeg-lossless-sv1": JPEGLosslessSV1,
    "jpeg-ls-lossless": JPEGLSLossless,
    "jpeg-ls-near-lossless": JPEGLSNearLossless,
    "jpeg2000-lossless": JPEG2000Lossless,
    "jpeg2000": JPEG2000,
}
"""Every transfer syntax the edge install must decode, by a short name usable in file and test ids."""
LOSSY = {"jpeg-ls-near-lossless", "jpeg2000"}


def cr_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12, **attrs) -> Dataset:
    """A minimal CR data set holding ``pixels`` (H×W or frames×H×W, unsigned) uncompressed, with a preamble."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype("u1" if bits <= 8 else "<u2").tobytes()
    return ds


def write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12, **attrs) -> None:
    """A minimal uncompressed DICOM (Explicit VR Little Endian) with a 128-byte preamble."""
    cr_dataset(pixels, photometric, bits, **attrs).save_as(path, enforce_file_format=True)


def _gdcm_transcode(source: Path, target: Path, syntax: str) -> None:
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    if not reader.Read():
        raise RuntimeError(f"gdcm cannot read {source}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(syntax)))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"gdcm cannot encode {source} as {syntax}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"gdcm cannot write {target}")


def transcode(source: Path, target: Path, name: str) -> Path:
    """Re-encode the uncompressed DICOM ``source`` in the transfer syntax ``SYNTAXES[name]`` at ``target``."""
    syntax = SYNTAXES[name]
    if name.startswith("jpeg-lossless"):
        _gdcm_transcode(source, target, syntax)
        return target
    ds = pydicom.dcmread(source)
    if name in ("explicit-le", "deflated"):
        ds.file_meta.TransferSyntaxUID = syntax  # pydicom deflates the data set when it writes
    elif name == "jpeg-ls-near-lossless":
        ds.compress(syntax, jls_error=2)
    elif name == "jpeg2000":
        ds.compress(syntax, j2k_cr=[10])
    else:
        ds.compress(syntax)
    ds.save_as(target, enforce_file_format=True)
    return target


def write_deflated_bomb(path: Path, rows: int = 30000, columns: int = 30000) -> Path:
    """A deflated CR file declaring rows×columns 8-bit zeros: under 1 MB on disk, ``rows·columns`` bytes inflated.

    Streamed through zlib in 1 MiB steps, so writing it never holds the inflated data in memory.
    """
    ds = cr_dataset(np.zeros((1, 1), np.uint8), bits=8)
    del ds.PixelData
    ds.Rows, ds.Columns = rows, columns
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    size = rows * columns
    pixel_header = b"\xe0\x7f\x10\x00OB\x00\x00" + (size + size % 2).to_bytes(4, "little")
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    with open(path, "wb") as handle:
        handle.write(b"\0" * 128 + b"DICM" + meta.getvalue())
        handle.write(deflate.compress(body.getvalue() + pixel_header))
        left = size + size % 2
        while left:
            step = min(left, len(chunk))
            handle.write(deflate.compress(chunk[:step]))
            left -= step
        handle.write(deflate.flush())
    return path
