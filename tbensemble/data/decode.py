"""One decoder for every input: PNG (8/16-bit), JPEG and DICOM all become uint8 grayscale H×W.

Training and the ONNX engine both read pixels through ``load_image``, so a model never sees an image
decoded or resized differently at inference than it saw in training.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tbensemble.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
"""Suffixes (compared lower-case) taken as images; files with no suffix count when they hold DICOM."""

DICOM_SUFFIXES = (".dcm", ".dicom")
_EXIF_ORIENTATION = 0x0112

PathLike = str | os.PathLike[str]


class NamedBytes(io.BytesIO):
    """An in-memory image (a request body) that the decoder reads like a file; ``name`` labels its errors."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


Source = PathLike | NamedBytes
"""What the decoder reads: a file path, or bytes already in memory (decoded the same way, never written to disk)."""


def has_dicom_preamble(path: Source) -> bool:
    """True when the file carries the DICOM Part 10 magic 'DICM' at byte 128."""
    if isinstance(path, NamedBytes):
        return path.getbuffer()[128:132].tobytes() == b"DICM"
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def is_image_file(path: PathLike) -> bool:
    """An image by suffix (``IMAGE_SUFFIXES``), or a suffix-less file that starts like DICOM."""
    suffix = Path(path).suffix.lower()
    if suffix:
        return suffix in IMAGE_SUFFIXES
    return has_dicom_preamble(path)


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto 0–255 (clipped, rounded); a flat range gives black."""
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.rint(np.clip(scaled, 0, 255, out=scaled)).astype(np.uint8)


def _min_max(values: np.ndarray) -> np.ndarray:
    return _to_uint8(values, float(values.min()), float(values.max()))


def _has_voi_lut(ds) -> bool:
    """Mirror of pydicom's own choice in ``apply_voi_lut``: a complete VOI LUT wins over the window."""
    sequence = ds.get("VOILUTSequence")
    return bool(sequence) and None not in (sequence[0].get("LUTDescriptor"), sequence[0].get("LUTData"))


def _voi_range(ds) -> tuple[float, float] | None:
    """The output range of the VOI step, so the scale follows the window and not the image's extremes.

    Found by pushing the LUT's whole input domain, or ±inf for a window, through the same pydicom call:
    this also copes with LUTs whose descriptor claims more bits than their data use.
    """
    from pydicom.pixels import apply_voi_lut, apply_windowing

    if _has_voi_lut(ds):
        entries, first = ds.VOILUTSequence[0].LUTDescriptor[:2]
        out = apply_voi_lut(np.arange(first, first + (entries or 2**16), dtype=np.int64), ds)
        return float(out.min()), float(out.max())
    if "WindowCenter" in ds and "WindowWidth" in ds:
        out = apply_windowing(np.array([-np.inf, np.inf]), ds)
        return float(out[0]), float(out[1])
    return None


def _decode_dicom(path: PathLike) -> np.ndarray:
    """Stored values → Modality LUT → VOI LUT or window → 0–255, MONOCHROME1 inverted; first frame only.

    Without a VOI LUT or window the image's own min–max sets the scale (the modality output range is
    not known in general, e.g. after a rescale).
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds:
        raise ValueError("no pixel data")
    pixels = ds.pixel_array
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1 or pixels.ndim == (4 if samples > 1 else 3):
        pixels = pixels[0]
    if samples > 1:
        # Colour DICOM (pydicom already converted YBR to RGB): ITU-R 601 luma, like Pillow's convert("L").
        luma = pixels[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return _to_uint8(luma, 0, 2 ** int(ds.get("BitsStored", 8)) - 1)
    values = apply_modality_lut(pixels, ds)
    if _has_voi_lut(ds) and values.dtype.kind == "f":
        values = np.rint(values).astype(np.int64)  # a VOI LUT is indexed by integer values
    window = _voi_range(ds)
    values = apply_voi_lut(values, ds)
    gray = _min_max(values) if window is None else _to_uint8(values, *window)
    if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        np.subtract(255, gray, out=gray)
    return gray


def _pil_to_gray(image: Image.Image) -> Image.Image:
    """Any Pillow mode → mode L.

    16-bit PNG (mode I;16*, or I from a PNG) is scaled by its 16-bit depth (value / 65535 · 255): PNG has
    no reliable 'bits used' field that Pillow reads, so 12-bit data stored in 16 bits stays dim but is
    scaled the same way for every file. Other integer or float modes (I, F) have no known depth and
    are min–max scaled. Alpha (RGBA, LA, PA) is dropped, not composited: the radiograph's pixel values
    are the data and alpha is an export artefact. Palette and RGB go through ITU-R 601 luma.
    """
    if image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG"):
        return Image.fromarray(_to_uint8(np.asarray(image), 0, 65535), mode="L")
    if image.mode in ("I", "F"):
        return Image.fromarray(_min_max(np.asarray(image)), mode="L")
    if image.mode != "L":
        return image.convert("L")
    return image


def _open_gray(path: Source, size: int | None) -> Image.Image:
    """Decode ``path`` to a Pillow L image; ``size`` lets JPEG decode at a reduced scale (``draft``)."""
    if not isinstance(path, NamedBytes) and Path(path).suffix.lower() in DICOM_SUFFIXES:
        return Image.fromarray(_decode_dicom(path), mode="L")
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        if has_dicom_preamble(path):
            if isinstance(path, NamedBytes):
                path.seek(0)
            return Image.fromarray(_decode_dicom(path), mode="L")
        raise
    try:
        if size is not None and image.format == "JPEG":
            image.draft("L", (size, size))
        image.load()  # for single-frame files this also closes the file
    except Exception:
        image.close()
        raise
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return _pil_to_gray(image)


def error_reason(exc: Exception) -> str:
    """An exception's message on one line (pydicom lists missing plugins on several), or its class name."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def decode_gray(path: Source) -> np.ndarray:
    """Decode any supported image to a writable uint8 H×W array; failures raise ``DataError`` naming it."""
    try:
        return np.array(_open_gray(path, None))
    except Exception as exc:
        raise DataError(f"{path}: cannot decode ({error_reason(exc)})") from exc


def load_image(path: Source, size: int) -> np.ndarray:
    """Decode and resize to uint8 size×size: the one resize shared by training and the ONNX engine.

    Pillow BILINEAR, which widens its kernel when downscaling (antialiased), and is deterministic for a
    given file. The aspect ratio is not kept: the full field of view is squeezed into the square, as
    every image gets the same treatment in training and inference. JPEGs are decoded at the smallest
    DCT scale still at least ``size`` (``Image.draft``), a large saving for big radiographs.
    """
    try:
        image = _open_gray(path, size)
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return np.array(image)
    except Exception as exc:
        raise DataError(f"{path}: cannot decode ({error_reason(exc)})") from exc


def load_array(pixels: np.ndarray, size: int | None, name: str = "array") -> np.ndarray:
    """An image already in memory (uint8 or uint16; H×W gray, H×W×3 RGB or H×W×4 RGBA) as uint8 size×size
    (``size=None``: gray at its own size).

    It takes the same gray conversion as a PNG holding those pixels (16-bit scaled by its depth, RGB
    through luma, alpha dropped) and the same resize as ``load_image``, so an array and its PNG score alike.
    """
    array = np.asarray(pixels)
    if array.dtype not in (np.uint8, np.uint16) or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint8)
    ):
        raise DataError(
            f"{name}: array of dtype {array.dtype} and shape {array.shape}; expected uint8/uint16 H×W or uint8 H×W×3/4"
        )
    if min(array.shape[:2]) < 1:
        raise DataError(f"{name}: empty image of shape {array.shape}")
    image = _pil_to_gray(Image.fromarray(np.ascontiguousarray(array)))
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.array(image)
