"""Test-time augmentation views on a uint8 batch (N, H, W), in numpy and Pillow only.

The ONNX engine imports this, so no TensorFlow here. The OOF scores of training go through the same
functions, which is what makes an edge score comparable to the stored OOF distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from tbensemble.core.config import TTA_VIEWS
from tbensemble.core.errors import ConfigError

CROP_FRACTION = 0.9
BRIGHTER_GAMMA = 0.9
DARKER_GAMMA = 1.1


def _gamma_lut(gamma: float) -> np.ndarray:
    """256-entry table of round(255 · (v/255)^gamma): a gamma change becomes one indexing pass."""
    return np.rint(255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)


_BRIGHTER = _gamma_lut(BRIGHTER_GAMMA)
_DARKER = _gamma_lut(DARKER_GAMMA)


def _crop90(images: np.ndarray) -> np.ndarray:
    """Centre 90% of each image, resized back with the Pillow BILINEAR used by ``decode.load_image``."""
    height, width = images.shape[1:]
    margin_x, margin_y = width * (1 - CROP_FRACTION) / 2, height * (1 - CROP_FRACTION) / 2
    box = (margin_x, margin_y, width - margin_x, height - margin_y)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i] = Image.fromarray(image, mode="L").resize((width, height), Image.Resampling.BILINEAR, box=box)
    return out


_VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda images: images,
    "hflip": lambda images: np.ascontiguousarray(images[:, :, ::-1]),
    "crop90": _crop90,
    "brighter": lambda images: _BRIGHTER[images],
    "darker": lambda images: _DARKER[images],
}


def _check(images: np.ndarray, names: Sequence[str]) -> None:
    for name in names:
        if name not in _VIEWS:
            raise ConfigError(f"tta: unknown view {name!r}; allowed: {', '.join(TTA_VIEWS)}")
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"views need a uint8 batch (N, H, W), got {images.dtype} {images.shape}")


def apply_view(images: np.ndarray, name: str) -> np.ndarray:
    """One view of a uint8 (N, H, W) batch, same shape and dtype; identity returns ``images`` itself."""
    _check(images, [name])
    return _VIEWS[name](images)


def apply_views(images: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """All views stacked view-major, (V·N, H, W): images 0…N-1 of view 0, then of view 1, …

    One array so the engine sends every view of a batch through a session in one call.
    """
    _check(images, names)
    count = len(images)
    out = np.empty((len(names) * count, *images.shape[1:]), dtype=np.uint8)
    for v, name in enumerate(names):
        out[v * count : (v + 1) * count] = _VIEWS[name](images)
    return out
