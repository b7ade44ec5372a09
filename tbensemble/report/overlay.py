"""One explain picture: the X-ray in gray, the CAM heatmap on top, the score and the decision in words."""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from tbensemble.core.atomic import write_bytes

MAX_SIDE = 768
"""Large radiographs are shown at most this many pixels across: the picture is for eyes, not measurement."""


def _display_size(height: int, width: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def overlay_png(gray: np.ndarray, heatmap: np.ndarray, title: str, caption: str) -> bytes:
    """The overlay as PNG bytes; ``heatmap`` is in [0, 1] at the image's size and fades out where it is low."""
    height, width = _display_size(*gray.shape)
    shown = np.asarray(Image.fromarray(gray, mode="L").resize((width, height), Image.Resampling.BILINEAR))
    heat = np.asarray(
        Image.fromarray(heatmap.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    )
    figure, ax = plt.subplots(figsize=(6.0, 6.0 * height / width + 0.4))
    ax.imshow(shown, cmap="gray", vmin=0, vmax=255)
    layer = ax.imshow(heat, cmap="jet", vmin=0.0, vmax=1.0, alpha=np.clip(heat, 0.0, 1.0) * 0.55)
    figure.colorbar(layer, ax=ax, fraction=0.046, pad=0.02, label="relative TB evidence (CAM)")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    figure.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=7, wrap=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def write_overlay(
    path: str | os.PathLike[str], gray: np.ndarray, heatmap: np.ndarray, title: str, caption: str
) -> None:
    """Save the overlay PNG (see ``overlay_png``) atomically."""
    write_bytes(path, overlay_png(gray, heatmap, title, caption))
