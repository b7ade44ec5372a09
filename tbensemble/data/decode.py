"""One decoder for every input: PNG (8/16-bit), JPEG and DICOM all become uint8 grayscale H×W.

Training and the ONNX engine both read pixels through ``load_image``, so a model never sees an image
decoded or resized differently at inference than it saw in training. Before any pixel is decoded the
file name and the size declared in the header are checked (``check_limits``), so a small file that
declares a huge image (a decompression bomb) is refused in one line instead of filling the memory.
"""

from __future__ import annotations

import os
import re
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tbensemble.core.errors import DataError
from tbensemble.data import dicom

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
"""Suffixes (compared lower-case) taken as images; files with no suffix count when they hold DICOM."""

DICOM_SUFFIXES = (".dcm", ".dicom")
_EXIF_ORIENTATION = 0x0112

DEFAULT_MAX_PIXELS = 50_000_000
"""Refuse images declaring more pixels (all frames). The largest CR/DX detectors (43×43 cm at 0.1 mm,
about 4300×4300) give 18.5 megapixels, so 50 leaves room for stitched or oversampled images while a
decoded 16-bit image stays near 100 MB (and its float copies in the LUT steps a few hundred)."""
MAX_ASPECT_RATIO = 10.0
"""Refuse images whose long side exceeds this many times the short one: chest films are about 1:1.2,
stitched long-leg or spine images about 1:4; 1×100000 is an attack, and its overlay alone needs GBs."""

_limits = {"max_pixels": DEFAULT_MAX_PIXELS}

PathLike = str | os.PathLike[str]


class ImageRefused(ValueError):
    """An image the decoder will not open: too many pixels, an absurd shape, or an unsafe file name."""


def _set_pillow_limit(max_pixels: int) -> None:
    # Pillow raises DecompressionBombError above twice its MAX_IMAGE_PIXELS: at half the limit, any
    # Image.open in the process refuses exactly what ``check_limits`` refuses. Its warning between the
    # two only repeats what is accepted here, so it is silenced.
    Image.MAX_IMAGE_PIXELS = max_pixels / 2


_set_pillow_limit(DEFAULT_MAX_PIXELS)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def set_max_pixels(max_pixels: int) -> None:
    """The process-wide pixel limit (``--max-pixels``), as Pillow's own ``MAX_IMAGE_PIXELS`` is process-wide."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    _limits["max_pixels"] = int(max_pixels)
    _set_pillow_limit(int(max_pixels))


def max_pixels() -> int:
    """The pixel limit in force."""
    return _limits["max_pixels"]


def check_limits(width: int, height: int, frames: int = 1) -> None:
    """Raise ``ImageRefused`` for a declared size no chest radiograph has: checked before decoding."""
    if width < 1 or height < 1:
        raise ImageRefused(f"declares {width}×{height} pixels")
    declared = width * height * frames
    if declared > max_pixels():
        size = f"{width}×{height}" + (f"×{frames} frames" if frames > 1 else "")
        raise ImageRefused(
            f"declares {size} = {declared / 1e6:.1f} megapixels, above the {max_pixels() / 1e6:g}-megapixel "
            "limit (--max-pixels)"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageRefused(f"declares {width}×{height} pixels, an aspect ratio above {MAX_ASPECT_RATIO:g}:1")


def shown_path(path: PathLike) -> str:
    """``path`` as printable text on one line: control characters appear escaped (``\\r``), as in repr."""
    text = os.fsdecode(path)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def check_name(path: PathLike) -> None:
    """Refuse a file name holding a control character (CR, LF, tab, ...) or bytes that are not UTF-8.

    Such a name would split a CSV row or a log line, or fail when the submission is written.
    """
    name = os.fsdecode(Path(path).name)
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cs")]
    if bad:
        raise ImageRefused(f"file name holds {bad[0]!r}, a control character or non-UTF-8 byte")


def has_dicom_preamble(path: PathLike) -> bool:
    """True when the file carries the DICOM Part 10 magic 'DICM' at byte 128."""
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
    """Stored values → Modality LUT → VOI LUT or window → 0–255, inverted when the header says so.

    The header is read and checked against the limits first; only the first frame is decoded. Without a
    VOI LUT or window the image's own min–max sets the scale (the modality output range is not known in
    general, e.g. after a rescale).
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    header = dicom.read_header(path)
    check_limits(header.columns, header.rows, header.frames)
    ds = header.dataset
    pixels = dicom.first_frame(path, header)
    if header.samples > 1:
        # Colour DICOM (pydicom already converted YBR to RGB): ITU-R 601 luma, like Pillow's convert("L").
        luma = pixels[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return _to_uint8(luma, 0, 2 ** int(ds.get("BitsStored", 8)) - 1)
    values = apply_modality_lut(pixels, ds)
    if _has_voi_lut(ds) and values.dtype.kind == "f":
        values = np.rint(values).astype(np.int64)  # a VOI LUT is indexed by integer values
    window = _voi_range(ds)
    values = apply_voi_lut(values, ds)
    gray = _min_max(values) if window is None else _to_uint8(values, *window)
    if dicom.inverted(ds):
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


def is_dicom(path: PathLike) -> bool:
    """DICOM by suffix, or a suffix-less file with the DICOM preamble."""
    suffix = Path(path).suffix.lower()
    return suffix in DICOM_SUFFIXES or (not suffix and has_dicom_preamble(path))


def _open_pillow(path: PathLike) -> Image.Image:
    """``Image.open`` (header only); Pillow's own bomb check is reported as the limit it enforces here."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"{int(found.group(1)) / 1e6:.1f}" if found else "more than the"
        raise ImageRefused(
            f"declares {declared} megapixels, above the {max_pixels() / 1e6:g}-megapixel limit (--max-pixels)"
        ) from None


def _open_gray(path: PathLike, size: int | None) -> Image.Image:
    """Decode ``path`` to a Pillow L image; ``size`` lets JPEG decode at a reduced scale (``draft``)."""
    check_name(path)
    if Path(path).suffix.lower() in DICOM_SUFFIXES:
        return Image.fromarray(_decode_dicom(path), mode="L")
    try:
        image = _open_pillow(path)
    except UnidentifiedImageError:
        if has_dicom_preamble(path):
            return Image.fromarray(_decode_dicom(path), mode="L")
        raise
    try:
        check_limits(image.width, image.height)
        if size is not None and image.format == "JPEG":
            image.draft("L", (size, size))
        image.load()  # for single-frame files this also closes the file
    except Exception:
        image.close()
        raise
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return _pil_to_gray(image)


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


@dataclass(frozen=True)
class ImageHeader:
    """What a file declares before decoding: size, frames, 'FORMAT depth', and DICOM's transfer syntax."""

    width: int
    height: int
    frames: int
    kind: str
    transfer_syntax: str | None = None


def read_header(path: PathLike) -> ImageHeader:
    """The header of any supported image, without decoding pixels (deflated DICOM inflated boundedly)."""
    if is_dicom(path):
        header = dicom.read_header(path)
        ds = header.dataset
        kind = f"DICOM {ds.get('PhotometricInterpretation', '?')} {ds.get('BitsStored', '?')}-bit"
        if header.frames > 1:
            kind += f" {header.frames} frames"
        return ImageHeader(header.columns, header.rows, header.frames, kind, header.transfer_syntax)
    with _open_pillow(path) as image:
        kind = f"{image.format} {_MODE_DEPTHS.get(image.mode, image.mode)}"
        return ImageHeader(image.width, image.height, 1, kind)


def error_reason(exc: Exception) -> str:
    """An exception's message on one line (pydicom lists missing plugins on several), or its class name."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def _data_error(path: PathLike, exc: Exception) -> DataError:
    what = "refused" if isinstance(exc, ImageRefused) else "cannot decode"
    return DataError(f"{shown_path(path)}: {what} ({error_reason(exc)})")


def decode_gray(path: PathLike) -> np.ndarray:
    """Decode any supported image to a writable uint8 H×W array; failures raise ``DataError`` naming it."""
    try:
        return np.array(_open_gray(path, None))
    except Exception as exc:
        raise _data_error(path, exc) from exc


def load_image(path: PathLike, size: int) -> np.ndarray:
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
        raise _data_error(path, exc) from exc


def load_array(pixels: np.ndarray, size: int | None, name: str = "array") -> np.ndarray:
    """An image already in memory (uint8 or uint16; H×W gray, H×W×3 RGB or H×W×4 RGBA) as uint8 size×size
    (``size=None``: gray at its own size).

    It takes the limits, the gray conversion of a PNG holding those pixels (16-bit scaled by its depth,
    RGB through luma, alpha dropped) and the resize of ``load_image``, so an array and its PNG score alike.
    """
    array = np.asarray(pixels)
    if array.dtype not in (np.uint8, np.uint16) or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint8)
    ):
        raise DataError(
            f"{name}: array of dtype {array.dtype} and shape {array.shape}; expected uint8/uint16 H×W or uint8 H×W×3/4"
        )
    try:
        check_limits(array.shape[1], array.shape[0])
    except ImageRefused as exc:
        raise DataError(f"{name}: refused ({exc})") from None
    image = _pil_to_gray(Image.fromarray(np.ascontiguousarray(array)))
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.array(image)
