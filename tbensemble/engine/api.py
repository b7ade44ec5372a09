"""One Python API for notebooks, the CLI and the service: load the ensemble once, then score paths, arrays
or raw bytes and get the decision rows that ``tbens predict --decisions`` writes.

Loading hashes every model file and opens every ONNX session once; each later call only decodes and runs.
Every input goes through the data layer's one decoder and one resize (``data.decode``), so an image scores
the same whether it arrives as a file, as the bytes of that file, or as its pixels.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from tbensemble.core.errors import DataError
from tbensemble.data.decode import decode_gray, load_array, load_image
from tbensemble.data.dicom_header import read_header
from tbensemble.engine.decisions import DECISION_COLUMNS, decide_images, manifest_sha256
from tbensemble.engine.ensemble import Ensemble
from tbensemble.engine.predict import Prediction, predict_images

T = TypeVar("T")

Input = str | os.PathLike | np.ndarray | bytes | bytearray | memoryview
"""A file path, an image's pixels (uint8/uint16, gray or RGB), or an encoded file's bytes (DICOM, PNG, JPEG)."""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC_OFFSET = 128

log = logging.getLogger(__name__)


def sniff_image_type(data: bytes) -> str | None:
    """``png``, ``jpeg`` or ``dicom`` from the bytes themselves (never a name or a declared type), else None."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    return None


def _default_id(item: Input, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return Path(item).name
    return f"{'array' if isinstance(item, np.ndarray) else 'bytes'}{index}"


SUFFIX_OF_KIND = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm"}
SHARED_MEMORY = Path("/dev/shm")


@contextlib.contextmanager
def bytes_as_file(data: bytes, kind: str) -> Iterator[str]:
    """A path the decoder can open for bytes held in memory, removed on exit.

    Going through a path keeps one decoder, with its limits and codecs, for files and bytes alike (pydicom
    reads pixels from a path it resolves). The file lives in ``/dev/shm`` where there is one (memory, not
    disk: a request's DICOM, patient tags and all, is never written to a disk), else in the temp folder;
    its folder is private (0700).
    """
    where = SHARED_MEMORY if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="tbens-", dir=where) as folder:
        path = Path(folder) / f"image{SUFFIX_OF_KIND[kind]}"
        path.write_bytes(data)
        yield str(path)


def _through_path(item: Input, name: str, read: Callable[[str | os.PathLike], T]) -> T:
    """``read(path)`` for a path, or for bytes held in a private file (``bytes_as_file``): files and bytes
    share every reader (decoder, limits, DICOM header); errors name ``name``, not the private file."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        kind = sniff_image_type(data)
        if kind is None:
            raise DataError(f"{name}: not a PNG, JPEG or DICOM image (no known signature in its first bytes)")
        with bytes_as_file(data, kind) as path:
            try:
                return read(path)
            except DataError as exc:
                raise DataError(str(exc).replace(path, name)) from None
    if isinstance(item, (str, os.PathLike)):
        return read(item)
    raise DataError(f"{name}: cannot read an input of type {type(item).__name__} (a path, an array or bytes)")


@dataclass
class Decoded:
    """One input ready for the decision step: the models' image and its DICOM header facts (None if none)."""

    image: np.ndarray
    header: dict[str, str] | None


@dataclass
class _Failed:
    """An input that could not be decoded, and why (``predict`` skips it if it is a file and asked to)."""

    item: Input
    error: DataError


@dataclass
class Explanation:
    """A CAM heatmap in [0, 1] at the image's own size, the overlay picture, and the decision it explains."""

    decision: dict
    heatmap: np.ndarray
    overlay_png: bytes = field(repr=False)


class TriageEnsemble:
    """An exported ensemble loaded once (hashes checked, sessions open): ``predict`` and ``explain`` inputs."""

    def __init__(self, ensemble: Ensemble, decode_workers: int = 2) -> None:
        self.ensemble = ensemble
        self.decode_workers = decode_workers
        self._figure_lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.ensemble.image_size

    @property
    def providers(self) -> list[str]:
        return sorted(set(self.ensemble.providers.values()))

    @property
    def manifest_sha256(self) -> str:
        return manifest_sha256(self.ensemble)

    def prepare(self, item: Input, name: str) -> Decoded:
        """Decode and resize one input for the models, with its DICOM header facts; ``DataError`` naming
        ``name`` when it cannot be decoded."""
        if isinstance(item, np.ndarray):
            return Decoded(load_array(item, self.image_size, name), None)
        return _through_path(item, name, lambda path: Decoded(load_image(path, self.image_size), read_header(path)))

    def decide(
        self, image_ids: Sequence[str], decoded: Sequence[Decoded], operating_point: str | None = None
    ) -> pd.DataFrame:
        """The decision rows of a decoded batch: ``engine.decisions.decide_images``, the step every door shares."""
        images = np.stack([d.image for d in decoded])
        return decide_images(self.ensemble, images, list(image_ids), [d.header for d in decoded], operating_point)

    def predict(
        self,
        inputs: Input | Iterable[Input],
        ids: Sequence[str] | None = None,
        batch_size: int = 8,
        skip_bad: bool = False,
        operating_point: str | None = None,
    ) -> pd.DataFrame:
        """Decision rows (``DECISION_COLUMNS``) for one input or many, in order; a bad input raises ``DataError``
        (with ``skip_bad``, bad files are logged and left out; arrays and bytes never are).

        A list of paths goes through ``score_files``, decoding a few batches ahead of the models; arrays and
        bytes are decoded a batch at a time in a small thread pool (Pillow releases the GIL). Either way they
        are scored ``batch_size`` at a time, so a long list never holds more than a few batches of pixels.
        """
        single = (str, os.PathLike, np.ndarray, bytes, bytearray, memoryview)
        items = [inputs] if isinstance(inputs, single) else list(inputs)
        names = list(ids) if ids is not None else [_default_id(item, i) for i, item in enumerate(items)]
        if len(names) != len(items):
            raise DataError(f"{len(names)} ids for {len(items)} inputs")
        if not items:
            return pd.DataFrame(columns=list(DECISION_COLUMNS))
        if all(isinstance(item, (str, os.PathLike)) for item in items):
            files = pd.DataFrame({"image_id": names, "path": [os.fspath(item) for item in items]})
            prediction = self.score_files(
                files, batch_size, skip_bad, decide=True, operating_point=operating_point, progress=False
            )
            return prediction.decisions
        frames = []
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="decode") as pool:
            for start in range(0, len(items), batch_size):
                chunk = slice(start, start + batch_size)
                decoded = list(pool.map(self._prepare_or_error, items[chunk], names[chunk]))
                kept = [(name, d) for name, d in zip(names[chunk], decoded, strict=True) if isinstance(d, Decoded)]
                for failed in (d for d in decoded if isinstance(d, _Failed)):
                    if not (skip_bad and isinstance(failed.item, (str, os.PathLike))):
                        raise failed.error
                    log.warning("skipped %s", failed.error)
                if kept:
                    frames.append(self.decide([n for n, _ in kept], [d for _, d in kept], operating_point))
        if not frames:
            raise DataError(f"none of the {len(items)} inputs could be decoded")
        return pd.concat(frames, ignore_index=True)

    def _prepare_or_error(self, item: Input, name: str) -> Decoded | _Failed:
        try:
            return self.prepare(item, name)
        except DataError as error:
            return _Failed(item, error)

    def score_files(
        self,
        images: pd.DataFrame,
        batch_size: int = 8,
        skip_bad: bool = False,
        decide: bool = False,
        operating_point: str | None = None,
        progress: bool | None = None,
    ) -> Prediction:
        """Per-model scores (for a batch-ranked submission) and, with ``decide``, the decision rows of image
        files (``image_id``, ``path``): what ``tbens predict`` writes. Decoding runs a few batches ahead of
        the models; bad files fail the call unless ``skip_bad``; a progress bar shows on a terminal."""
        return predict_images(
            self.ensemble,
            images,
            batch_size=batch_size,
            skip_bad=skip_bad,
            workers=self.decode_workers,
            progress=progress,
            decide=decide,
            operating_point=operating_point,
        )

    def gray(self, item: Input, name: str) -> np.ndarray:
        """One input as uint8 gray at its own size (what an overlay is drawn on)."""
        if isinstance(item, np.ndarray):
            return load_array(item, None, name)
        return _through_path(item, name, decode_gray)

    def heatmap(self, image: np.ndarray, height: int, width: int) -> np.ndarray:
        """The ensemble's CAM for one model-sized uint8 image, resized to height×width."""
        from tbensemble.engine.cam import ensemble_heatmaps, resize_maps

        return resize_maps(ensemble_heatmaps(self.ensemble, image[None]), height, width)[0]

    def explain(self, item: Input, name: str | None = None) -> Explanation:
        """The decision, the CAM heatmap at the image's own size and the overlay PNG for one input."""
        name = name or _default_id(item, 0)
        decoded = self.prepare(item, name)
        gray = self.gray(item, name)
        row = self.decide([name], [decoded]).iloc[0].to_dict()
        heatmap = self.heatmap(decoded.image, *gray.shape)
        return Explanation(row, heatmap, self.overlay(gray, heatmap, row))

    def overlay(self, gray: np.ndarray, heatmap: np.ndarray, row: dict) -> bytes:
        """The overlay PNG with the score and decision in its title (matplotlib is serialised: not thread-safe)."""
        from tbensemble.report.overlay import overlay_png

        probability = "" if pd.isna(row["probability"]) else f" · p(TB) {row['probability']:.2f}"
        title = (
            f"{row['image_id']}: score {row['score']:.3f}{probability} · {row['decision']} "
            f"at {row['operating_point']} (≥ {row['threshold']:.3f})"
        )
        caption = (
            f"Score: historical-rank scale of {len(self.ensemble.manifest.models)} model(s), "
            f"TTA {','.join(self.ensemble.tta)}. Heatmap: where the models' evidence for TB lies (CAM); not a diagnosis."
        )
        with self._figure_lock:
            return overlay_png(gray, heatmap, title, caption)

    def warm_up(self) -> None:
        """Decide a blank image once, so the first request pays neither ONNX Runtime's first run nor the manifest hash."""
        self.decide(["warm-up"], [Decoded(np.zeros((self.image_size, self.image_size), dtype=np.uint8), None)])


def load(
    artifacts: str | os.PathLike[str],
    device: str = "auto",
    tta: list[str] | None = None,
    precision: str = "auto",
    decode_workers: int = 2,
) -> TriageEnsemble:
    """Load an exported run (``onnx/`` + ``manifest.json``): every model hashed and its session opened once.

    ``device``: ``auto`` (CUDA where it works, else CPU), ``cuda`` or ``cpu``; ``tta``: views other than the
    manifest's; ``precision``: ``auto`` runs each model's variant chosen by ``tbens optimize`` where it can
    run here, ``fp32`` the exported models.
    """
    return TriageEnsemble(Ensemble.load(artifacts, device=device, tta=tta, precision=precision), decode_workers)
