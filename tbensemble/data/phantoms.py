"""Synthetic frontal chest X-ray phantoms, with TB-like lesions placed by the TBX11K box statistics.

The demo data lets the whole pipeline (train, export, predict, explain) run anywhere without real
radiographs. A phantom is drawn in *canonical* coordinates (fractions of the image side, x to the
right, y down, as a PA film: the patient's left, and the heart, on the image's right), then placed
with a per-patient scale, shift and rotation. Exposure, tone curve, noise, lung shape and size, heart
size, breast shadows and gastric bubble vary between patients, so that global intensity statistics
do not give the label away; only the lesions do.

``difficulty`` is the lesion contrast dial: lesion density is scaled by ``1 - difficulty``, so 0 gives
the full (obvious) contrast and 1 makes lesions invisible (the mask is still drawn).

The default, 0.35, was chosen with a throwaway probe (600 phantoms at 256 px resized to 128, a
4-block CNN from scratch, per-image standardisation, Adam 2e-3, 12 epochs, 3 stratified folds, OOF
AUC of the best epoch per fold): one model 0.94, two rank-averaged 0.95 (last epoch: 0.89-0.93 and
0.93). At 0.4 one model scored 0.92 (two: 0.93, but 0.89 at the last epoch), at 0.5 about 0.87, at
0.3 0.96. So a small model lands in 0.90-0.95 with room left for ensembling and TTA, and the
ensemble clears 0.90 with margin. Histogram-only logistic regression stays near 0.55.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from tbensemble.core import atomic
from tbensemble.core.errors import ConfigError, DataError

GENERATOR_VERSION = "1"
DEFAULT_DIFFICULTY = 0.35

# --- Lesion statistics of the real TBX11K boxes (800 TB radiographs, 1,211 boxes, 512x512). ---------------
# Computed once by scripts/phantom_box_stats.py from ../shared/data/tbx11k-tb/boxes.csv and labels.csv
# (TBX11K, Liu et al., CVPR 2020); the package never reads that data. Fractions of the image side.
BOXES_PER_IMAGE = {1: 0.522, 2: 0.444, 3: 0.030, 4: 0.004}  # one image with no box counted as one
BILATERAL_SHARE = 0.966  # images with 2+ boxes that have boxes in both lungs
ACTIVE_SHARE = 0.803  # ActiveTuberculosis boxes; the rest are ObsoletePulmonaryTuberculosis
BOX_WIDTH_QUANTILES = (0.044, 0.135, 0.176, 0.195, 0.216, 0.233, 0.249, 0.267, 0.284, 0.306, 0.413)
BOX_HEIGHT_QUANTILES = (0.042, 0.125, 0.161, 0.188, 0.21, 0.232, 0.256, 0.286, 0.321, 0.391, 0.709)
BOX_LOG_SIZE_CORRELATION = 0.826
# Box centres on an 8x8 grid of the image, rows top -> bottom, columns left -> right (counts).
BOX_CENTRE_GRID = np.array(
    [
        [0, 0, 2, 0, 0, 0, 0, 0],
        [0, 5, 159, 46, 13, 126, 14, 0],
        [0, 14, 280, 39, 8, 201, 68, 0],
        [0, 9, 68, 1, 0, 62, 39, 0],
        [0, 7, 11, 0, 1, 11, 9, 1],
        [0, 3, 1, 0, 0, 0, 3, 1],
        [0, 4, 0, 0, 0, 0, 2, 2],
        [0, 1, 0, 0, 0, 0, 0, 0],
    ],
    dtype=np.float64,
)
EFFUSION_SHARE = 0.08  # positives with a blunted costophrenic angle (not boxed in TBX11K; a design choice)

LESION_DENSITY = 0.55  # peak added density of a lesion at difficulty 0 (lung air is about -0.6)
MASK_LEVEL = 0.25  # a pixel is lesion where the lesion profile (about 1 at a lesion core) exceeds this


class _Patient:
    """Per-patient placement: canonical fractions -> pixel coordinates, and the inverse for pixel grids."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.size = size
        self.scale = rng.uniform(0.92, 1.06)
        self.angle = math.radians(rng.uniform(-4.0, 4.0))
        self.shift = rng.normal(0.0, 0.015, size=2)
        self.centre = np.array([0.5, 0.45])
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        self.rot = np.array([[cos, -sin], [sin, cos]])
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def to_px(self, points: np.ndarray) -> np.ndarray:
        """Canonical (N, 2) -> pixel (N, 2)."""
        placed = self.centre + self.scale * (points - self.centre) @ self.rot.T + self.shift
        return placed * self.size

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Canonical coordinates (x, y) of every pixel centre (computed once per patient)."""
        if self._grid is None:
            self._grid = self._make_grid()
        return self._grid

    def _make_grid(self) -> tuple[np.ndarray, np.ndarray]:
        px = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size
        gx, gy = np.meshgrid(px, px)
        dx = gx - self.centre[0] - self.shift[0]
        dy = gy - self.centre[1] - self.shift[1]
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        ux = (cos * dx + sin * dy) / self.scale + self.centre[0]
        uy = (-sin * dx + cos * dy) / self.scale + self.centre[1]
        return ux.astype(np.float32), uy.astype(np.float32)


class _Layer:
    """An 8-bit PIL canvas for one anatomical structure: drawn in canonical coordinates, blurred once."""

    def __init__(self, patient: _Patient) -> None:
        self.patient = patient
        self.image = Image.new("L", (patient.size, patient.size), 0)
        self.draw = ImageDraw.Draw(self.image)

    def _xy(self, points: np.ndarray) -> list[float]:
        return self.patient.to_px(np.asarray(points, dtype=np.float64)).ravel().tolist()

    def lines(self, paths: np.ndarray, width: float, value: int = 255) -> None:
        """Draw K polylines given as one (K, points, 2) canonical array (one transform for all)."""
        px = max(1, round(width * self.patient.scale * self.patient.size))
        for path in self.patient.to_px(paths.reshape(-1, 2)).reshape(paths.shape):
            self.draw.line(path.ravel().tolist(), fill=value, width=px)

    def polygon(self, points: np.ndarray, value: int = 255) -> None:
        self.draw.polygon(self._xy(points), fill=value)

    def line(self, points: np.ndarray, width: float, value: int = 255) -> None:
        px = max(1, round(width * self.patient.scale * self.patient.size))
        self.draw.line(self._xy(points), fill=value, width=px)

    def ellipse(self, centre: tuple[float, float], rx: float, ry: float, tilt: float = 0.0, value: int = 255) -> None:
        t = np.linspace(0.0, 2.0 * math.pi, 40, endpoint=False)
        ex, ey = rx * np.cos(t), ry * np.sin(t)
        c, s = math.cos(tilt), math.sin(tilt)
        self.polygon(np.stack([centre[0] + c * ex - s * ey, centre[1] + s * ex + c * ey], axis=1), value)

    def result(self, blur: float) -> np.ndarray:
        """The layer as float32 in 0..1, blurred by ``blur`` (fraction of the image side)."""
        image = self.image
        radius = blur * self.patient.size
        if radius > 0.3:
            image = image.filter(ImageFilter.GaussianBlur(radius))
        return np.asarray(image, dtype=np.float32) * (1.0 / 255.0)


def _smooth3(image: np.ndarray) -> np.ndarray:
    """Binomial [1, 2, 1] / 4 smoothing along both axes, twice: anti-aliases every thin drawn structure at once."""
    out = image
    for _ in range(2):
        padded = np.pad(out, 1, mode="edge")
        rows = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
        out = 0.25 * rows[:, :-2] + 0.5 * rows[:, 1:-1] + 0.25 * rows[:, 2:]
    return out


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Band-limited noise (unit-ish std): a cells x cells normal grid upsampled bicubically."""
    coarse = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(coarse.resize((size, size), Image.BICUBIC), dtype=np.float32)


def _lung_outline(rng: np.random.Generator, side: int) -> tuple[np.ndarray, dict[str, float]]:
    """Closed outline of one lung (side -1: image left, the patient's right; +1: image right)."""
    apex_y = rng.uniform(0.10, 0.15)
    lateral = rng.uniform(0.36, 0.40)  # distance of the lateral wall from the midline
    medial = rng.uniform(0.045, 0.07)
    apex_d = rng.uniform(0.17, 0.22)  # distance of the apex from the midline
    cp_y = rng.uniform(0.72, 0.80) + (0.025 if side > 0 else 0.0)  # left hemidiaphragm sits lower
    dome_y = cp_y - rng.uniform(0.07, 0.12)
    med_y = dome_y + rng.uniform(0.02, 0.05)
    dome_t = rng.uniform(0.40, 0.60)

    phi = np.linspace(0.0, math.pi / 2, 16)
    wall_d = apex_d + (lateral - apex_d) * np.sin(phi) ** 0.55
    wall_y = cp_y - (cp_y - apex_y) * np.cos(phi) ** 1.1
    t = np.linspace(0.0, 1.0, 16)[1:]
    dia_d = lateral - t * (lateral - medial)
    depth = np.where(
        t < dome_t, (cp_y - dome_y) * (1 - t / dome_t) ** 2, (med_y - dome_y) * ((t - dome_t) / (1 - dome_t)) ** 2
    )
    dia_y = dome_y + depth
    med_d = np.array([medial, medial + 0.005, medial + 0.025, apex_d - 0.06, apex_d - 0.02])
    med_ys = np.array([0.42, 0.30, 0.22, apex_y + 0.03, apex_y + 0.005])
    if side > 0:  # aortic knob pushes the upper medial border out
        med_d[1] += 0.03
    d = np.concatenate([wall_d, dia_d, med_d])
    y = np.concatenate([wall_y, dia_y, med_ys])
    shape = {"apex_y": apex_y, "cp_y": cp_y, "dome_y": dome_y, "lateral": lateral, "medial": medial}
    return np.stack([0.5 + side * d, y], axis=1), shape


def _rib_paths(rng: np.random.Generator, side: int, first_y: float, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Ten posterior ribs (from the spine, arching laterally and down) and the anterior ribs they become
    (lateral wall -> sternum), as (10, points, 2) canonical paths."""
    i = np.arange(10)[:, None]
    t = np.linspace(0.0, 1.0, 12)[None, :]
    reach = 0.30 + 0.07 * np.minimum(i, 4) / 4 + rng.normal(0, 0.005, size=(10, 1))
    d = 0.035 + reach * t
    y = first_y + i * spacing - 0.03 * np.sin(math.pi * t * 0.8) + (0.10 + 0.012 * i) * t**1.8
    s = np.linspace(0.0, 1.0, 10)[None, :]
    end_d, end_y = d[:, -1:], y[:, -1:]
    ad = end_d - (end_d - 0.12) * s
    ay = end_y + 0.02 + (0.10 + 0.005 * i) * s**1.3 - 0.03 * np.sin(math.pi * s)
    return np.stack([0.5 + side * d, y], axis=-1), np.stack([0.5 + side * ad, ay], axis=-1)


def _anatomy(rng: np.random.Generator, patient: _Patient) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Density map of a normal chest (soft tissue ~1, aerated lung ~0.4, bone adds) and the lung mask."""
    size = patient.size
    ux, uy = patient.grid()

    body = _Layer(patient)
    half = rng.uniform(0.43, 0.50)
    neck = rng.uniform(0.09, 0.12)
    shoulder_y = rng.uniform(-0.04, 0.04)
    outline = [
        [0.5 - neck, -0.1],
        [0.5 - neck, shoulder_y],
        [0.5 - neck - 0.12, shoulder_y + 0.03],
        [0.5 - half + 0.02, shoulder_y + 0.07],
        [0.5 - half - 0.04, shoulder_y + 0.14],
        [0.5 - half - 0.03, 0.45],
        [0.5 - half + 0.02, 1.1],
    ]
    body.polygon(np.array(outline + [[1.0 - x, y] for x, y in reversed(outline)]))
    if rng.random() < 0.7:  # arms beside the chest
        arm_gap = rng.uniform(0.015, 0.04)
        for side in (-1, 1):
            x_in = 0.5 + side * (half + 0.04 + arm_gap)
            arm = [[x_in, 0.2], [x_in + side * 0.2, 0.1], [x_in + side * 0.2, 1.1], [x_in + side * 0.02, 1.1]]
            body.polygon(np.array(arm), 170)
    body_map = body.result(0.012)
    thickness = np.sqrt(np.clip(1.0 - ((ux - 0.5) / (half + 0.06)) ** 2, 0.0, 1.0))
    soft = body_map * (0.2 + 0.85 * thickness**1.5) * (0.7 + 0.3 * np.clip(uy / 0.25, 0.0, 1.0))

    lungs = _Layer(patient)
    shapes = {}
    for side in (-1, 1):
        outline, shape = _lung_outline(rng, side)
        lungs.polygon(outline)
        shapes[side] = shape
    lung_sharp = lungs.result(0.0)
    lung_soft = lungs.result(0.03)
    lung_depth = lung_sharp * (0.5 + 0.5 * lung_soft)
    lung_depth *= 0.9 + 0.1 * np.clip((uy - 0.12) / 0.6, 0.0, 1.0)  # thicker lung towards the bases

    heart = _Layer(patient)
    heart_cy = shapes[1]["dome_y"] - rng.uniform(0.04, 0.07)
    heart.ellipse(
        (rng.uniform(0.56, 0.59), heart_cy),
        rng.uniform(0.15, 0.19),
        rng.uniform(0.12, 0.15),
        tilt=rng.uniform(0.3, 0.6),
    )
    heart.ellipse((rng.uniform(0.46, 0.48), heart_cy + 0.03), 0.05, 0.09, value=230)  # right atrium border
    heart.ellipse((0.5 + 0.07, rng.uniform(0.25, 0.29)), 0.03, 0.028, value=230)  # aortic knob
    heart.polygon(np.array([[0.45, 0.1], [0.55, 0.1], [0.57, 0.5], [0.43, 0.5]]), 200)  # mediastinum
    heart_map = heart.result(0.008)

    bones = _Layer(patient)
    first_y = rng.uniform(0.10, 0.13)
    spacing = rng.uniform(0.058, 0.066)
    rib_width = rng.uniform(0.018, 0.024)
    for side in (-1, 1):
        posterior, anterior = _rib_paths(rng, side, first_y, spacing)
        bones.lines(posterior, rib_width, 230)
        bones.lines(posterior, rib_width * 0.5, 170)  # denser cortex at the rib's edges
        bones.lines(anterior[:6], rib_width * 0.8, 70)
        clav_y = rng.uniform(0.13, 0.17)
        cs = np.linspace(0.0, 1.0, 8)
        clavicle = np.stack(
            [0.5 + side * (0.04 + 0.28 * cs), clav_y - 0.06 * cs + 0.012 * np.sin(2 * math.pi * cs)], axis=1
        )
        bones.line(clavicle, 0.034, 255)
        bones.line(np.array([[0.5 + side * 0.22, shoulder_y + 0.1], [0.5 + side * 0.34, 0.42]]), 0.01, 90)  # scapula
    bone_map = bones.result(0.0)

    spine_w = rng.uniform(0.03, 0.038)
    vertebra = 0.88 + 0.12 * np.cos(2 * math.pi * (uy - first_y) / spacing)
    spine_z = ((ux - 0.5) / spine_w) ** 2
    spine = np.exp(-spine_z * spine_z * spine_z) * vertebra

    airways = _Layer(patient)
    carina_y = rng.uniform(0.32, 0.36)
    airways.line(np.array([[0.5, -0.05], [0.5, carina_y]]), 0.03, 255)
    airways.line(np.array([[0.5, carina_y], [0.42, carina_y + 0.06]]), 0.016, 200)
    airways.line(np.array([[0.5, carina_y], [0.59, carina_y + 0.07]]), 0.014, 200)
    if rng.random() < 0.7:  # gastric bubble under the left hemidiaphragm
        bubble = (rng.uniform(0.62, 0.7), shapes[1]["cp_y"] + 0.03)
        airways.ellipse(bubble, rng.uniform(0.03, 0.06), rng.uniform(0.02, 0.035), value=255)
    airway_map = airways.result(0.0)

    vessels = _Layer(patient)
    steps = np.linspace(0, 1, 5)[None, :, None]
    for side in (-1, 1):
        hilum = np.array([0.5 + side * rng.uniform(0.09, 0.12), rng.uniform(0.40, 0.45)])
        vessels.ellipse(tuple(hilum), 0.03, 0.05, value=120)
        angle = rng.uniform(-1.3, 1.5, size=16)  # from horizontal: mostly lateral, upwards and downwards
        direction = np.stack([side * np.cos(angle), -np.sin(angle)], axis=1)[:, None, :]
        length = rng.uniform(0.12, 0.3, size=(16, 1, 1))
        paths = hilum + steps * length * direction + steps**2 * rng.normal(0, 0.04, size=(16, 1, 2))
        vessels.lines(paths[:, :3], 0.011, 170)
        vessels.lines(paths[:, 2:], 0.006, 110)
    vessel_map = vessels.result(0.0)

    extra = np.zeros_like(soft)
    if rng.random() < 0.4:  # breast shadows
        shadow = _Layer(patient)
        for side in (-1, 1):
            shadow.ellipse((0.5 + side * rng.uniform(0.26, 0.32), rng.uniform(0.72, 0.82)), 0.17, 0.12)
        extra = shadow.result(0.02) * rng.uniform(0.08, 0.18)

    lung_texture = _smooth_noise(rng, size, 40) * 0.035
    air = lung_depth * (1.0 - heart_map)
    density = soft + extra - 0.62 * air * body_map
    density += lung_sharp * (0.2 * vessel_map + lung_texture)
    bone_show = 0.45 + 0.55 * air  # bone is seen against lung, barely against the abdomen
    density += body_map * (0.3 * bone_map * bone_show + 0.1 * spine - 0.15 * airway_map * (1 - lung_sharp))
    return _smooth3(density), lung_sharp, {"shapes": shapes}


_BOX_COUNTS = np.array(list(BOXES_PER_IMAGE))
_BOX_COUNT_P = np.array(list(BOXES_PER_IMAGE.values())) / sum(BOXES_PER_IMAGE.values())
_IMAGE_LEFT = np.arange(8) < 4  # grid columns on the image's left (the patient's right lung)
_CENTRE_P = {left: (BOX_CENTRE_GRID * (left == _IMAGE_LEFT)).ravel() for left in (True, False)}
_CENTRE_P = {left: p / p.sum() for left, p in _CENTRE_P.items()}
_LEFT_SHARE = float(BOX_CENTRE_GRID[:, _IMAGE_LEFT].sum() / BOX_CENTRE_GRID.sum())
_QUANTILE_LEVELS = np.linspace(0.0, 1.0, 11)


def _sample_boxes(rng: np.random.Generator) -> list[tuple[float, float, float, float, bool]]:
    """Lesion boxes (cx, cy, w, h, active) in canonical fractions, drawn from the TBX11K statistics:
    box count, side (further boxes mostly in the other lung), centre cell, size (Gaussian copula of
    the width and height quantiles) and finding."""
    n = int(rng.choice(_BOX_COUNTS, p=_BOX_COUNT_P))
    first_left = bool(rng.random() < _LEFT_SHARE)
    boxes = []
    for i in range(n):
        left = first_left if i == 0 or rng.random() >= BILATERAL_SHARE else not first_left
        row, col = divmod(int(rng.choice(64, p=_CENTRE_P[left])), 8)
        z0, z1 = rng.standard_normal(2)
        z1 = BOX_LOG_SIZE_CORRELATION * z0 + math.sqrt(1 - BOX_LOG_SIZE_CORRELATION**2) * z1
        q0, q1 = (0.5 * (1 + math.erf(z / math.sqrt(2))) for z in (z0, z1))
        w = float(np.interp(q0, _QUANTILE_LEVELS, BOX_WIDTH_QUANTILES))
        h = float(np.interp(q1, _QUANTILE_LEVELS, BOX_HEIGHT_QUANTILES))
        cx, cy = (col + rng.random()) / 8, (row + rng.random()) / 8
        boxes.append((cx, cy, w, h, bool(rng.random() < ACTIVE_SHARE)))
    return boxes


def _window(patient: _Patient, cx: float, cy: float, extent: float) -> tuple[slice, slice]:
    """Pixel rows and columns that cover a canonical disc of radius ``extent`` around (cx, cy)."""
    px, py = patient.to_px(np.array([[cx, cy]]))[0]
    r = extent * patient.scale * patient.size + 2
    size = patient.size
    y0, y1 = int(max(0, py - r)), int(min(size, py + r + 1))
    x0, x1 = int(max(0, px - r)), int(min(size, px + r + 1))
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _add_blob(profile: np.ndarray, patient: _Patient, cx: float, cy: float, r: float, amp: float = 1.0) -> None:
    """Add a Gaussian blob of radius ``r`` (canonical) to ``profile``, computed only where it matters."""
    win = _window(patient, cx, cy, 3.0 * r)
    ux, uy = patient.grid()
    profile[win] += amp * np.exp(-((ux[win] - cx) ** 2 + (uy[win] - cy) ** 2) / (2 * r * r))


def _add_cavity(
    profile: np.ndarray, patient: _Patient, rng: np.random.Generator, cx: float, cy: float, radius: float
) -> None:
    """A thick-walled ring with a lucent (air-filled) centre, in a halo of consolidation."""
    win = _window(patient, cx, cy, 3.5 * radius)
    ux, uy = patient.grid()
    wall = radius * rng.uniform(0.25, 0.4)
    dist = np.sqrt((ux[win] - cx) ** 2 + ((uy[win] - cy) / rng.uniform(0.8, 1.2)) ** 2)
    ring = np.exp(-(((dist - radius) / wall) ** 2))
    lucent = np.exp(-((dist / (0.7 * radius)) ** 4))
    halo = np.exp(-(dist**2) / (2 * (1.6 * radius) ** 2))
    profile[win] += ring - 0.35 * lucent + 0.3 * halo


def _inside_lung(
    rng: np.random.Generator, patient: _Patient, lung: np.ndarray, cx: float, cy: float
) -> tuple[float, float]:
    """Move a lesion centre towards the upper mid-lung until it sits on this patient's lung."""
    for _ in range(30):
        px, py = patient.to_px(np.array([[cx, cy]]))[0].astype(int)
        if 0 <= px < patient.size and 0 <= py < patient.size and lung[py, px] > 0.5:
            break
        cx += (0.5 + math.copysign(0.2, cx - 0.5) - cx) * 0.2 + rng.normal(0, 0.01)
        cy += (0.35 - cy) * 0.2 + rng.normal(0, 0.01)
    return cx, cy


def _lesions(rng: np.random.Generator, patient: _Patient, lung: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Lesion density profile (peak ~1 per lesion; a cavity's centre is negative) on the pixel grid."""
    size = patient.size
    patchy = np.zeros((size, size), dtype=np.float32)  # consolidation, mottled below
    profile = np.zeros((size, size), dtype=np.float32)
    streaks = None
    for box_cx, box_cy, w, h, active in _sample_boxes(rng):
        cx, cy = _inside_lung(rng, patient, lung, box_cx, box_cy)
        spread = np.array([0.6 * w, 0.6 * h])

        def spot(cx: float = cx, cy: float = cy, spread: np.ndarray = spread) -> tuple[float, float]:
            dx, dy = rng.uniform(-0.5, 0.5, 2) * spread
            return cx + dx, cy + dy

        kind = rng.choice(["consolidation", "nodules", "cavity"], p=[0.45, 0.35, 0.2]) if active else "fibrosis"
        if kind == "consolidation":
            for _ in range(rng.integers(4, 9)):
                _add_blob(patchy, patient, *spot(), rng.uniform(0.15, 0.3) * min(w, h), 0.6)
        elif kind == "nodules":
            for _ in range(rng.integers(3, 12)):
                _add_blob(profile, patient, *spot(), rng.uniform(0.006, 0.016))
        elif kind == "cavity":
            _add_cavity(profile, patient, rng, cx, cy, rng.uniform(0.15, 0.3) * min(w, h) + 0.01)
        else:  # old TB: fibrotic streaks pulled towards the hilum, small calcified nodules
            streaks = streaks or _Layer(patient)
            hilum = np.array([0.5 + math.copysign(0.1, cx - 0.5), 0.42])
            for _ in range(rng.integers(3, 7)):
                start = np.array(spot())
                end = start + (hilum - start) * rng.uniform(0.2, 0.45) + rng.normal(0, 0.01, 2)
                streaks.line(np.stack([start, end]), rng.uniform(0.005, 0.01), 255)
            for _ in range(rng.integers(1, 4)):
                _add_blob(profile, patient, *spot(), 0.006)
    if patchy.any():
        profile += patchy * (0.6 + 0.5 * _smooth_noise(rng, size, 48).clip(-0.8, 0.8))
    if streaks is not None:
        profile += 0.8 * _smooth3(streaks.result(0.0))
    if rng.random() < EFFUSION_SHARE:
        ux, uy = patient.grid()
        side = int(rng.choice([-1, 1]))
        shape = info["shapes"][side]
        level = shape["cp_y"] - rng.uniform(0.06, 0.12)
        lateral = 0.5 + side * shape["lateral"]
        meniscus = np.clip((uy - level) / 0.03 + 1.0 - np.abs(ux - lateral) / 0.12, 0, 1.5)
        profile += np.where(np.sign(ux - 0.5) == side, 0.7 * meniscus, 0)
    return np.clip(profile, -1.0, 1.5) * lung


@dataclass(frozen=True)
class Site:
    """How one hospital's detector turns density into pixels; the patients and lesions stay the same.

    Ranges are drawn per image. The default site draws exactly what generator version 1 drew, so
    existing demo data and the models trained on it stay valid.
    """

    name: str
    description: str
    window_low: tuple[float, float] = (-0.12, 0.05)
    window_high: tuple[float, float] = (1.2, 1.45)
    gamma: tuple[float, float] = (0.7, 1.4)
    noise: tuple[float, float] = (0.008, 0.03)
    blur: float = 0.0
    """Gaussian blur of the detector, as a fraction of the image side (0: none)."""
    collimation: tuple[float, float] = (0.0, 0.0)
    """Share of the side blanked by the collimator at each edge (0: none)."""
    marker: bool = False
    """A burned-in side marker (a bright letter block) in a top corner."""


DEFAULT_SITE = "hospital-a"
SITES = {
    "hospital-a": Site("hospital-a", "the demo's own site (the quickstart trains on it)"),
    "hospital-b": Site(
        "hospital-b",
        "a flat-panel unit with strong noise reduction: smoother images (blur), little noise, a harder tone "
        "curve; the quickstart model silently loses sensitivity here",
        window_low=(-0.05, 0.08),
        window_high=(1.3, 1.5),
        gamma=(0.9, 1.3),
        noise=(0.002, 0.006),
        blur=0.006,
    ),
    "hospital-c": Site(
        "hospital-c",
        "an older portable CR unit: flat tone curve, noisy blurred plates, tight collimation, burned-in side "
        "markers; the quickstart model calls almost everything TB here",
        window_low=(-0.35, -0.2),
        window_high=(1.7, 2.0),
        gamma=(0.55, 0.8),
        noise=(0.03, 0.05),
        blur=0.006,
        collimation=(0.03, 0.09),
        marker=True,
    ),
}
"""Site name -> detector response; ``tbens make-demo-data --site`` lists these."""


def _site_effects(rng: np.random.Generator, film: np.ndarray, site: Site) -> np.ndarray:
    """Detector blur, collimator edges and a burned-in marker on a 0..1 film (sites other than the default)."""
    size = film.shape[0]
    if site.blur > 0:
        from scipy.ndimage import gaussian_filter

        film = gaussian_filter(film.astype(np.float32), site.blur * size, mode="nearest")
    if site.collimation[1] > 0:
        top, bottom, left, right = (round(rng.uniform(*site.collimation) * size) for _ in range(4))
        film = film.copy()
        film[:top], film[size - bottom :], film[:, :left], film[:, size - right :] = 0.0, 0.0, 0.0, 0.0
    if site.marker:
        side = max(3, size // 16)
        x = round(rng.uniform(0.08, 0.14) * size) if rng.random() < 0.5 else round(rng.uniform(0.8, 0.86) * size)
        y = round(rng.uniform(0.1, 0.16) * size)
        film = film.copy()
        film[y : y + side, x : x + side // 3] = 0.97
        film[y + side - side // 3 : y + side, x : x + side] = 0.97
    return film


def _render(rng: np.random.Generator, density: np.ndarray, site: Site = SITES[DEFAULT_SITE]) -> np.ndarray:
    """Density -> 8-bit film: per-patient exposure window and tone curve, heel-effect gradient, noise,
    then the site's detector effects."""
    size = density.shape[0]
    gradient = rng.normal(0, 0.03) * np.linspace(-1, 1, size, dtype=np.float32)
    density = density + gradient[:, None] + rng.normal(0, 0.02) * np.linspace(-1, 1, size, dtype=np.float32)[None, :]
    lo = rng.uniform(*site.window_low)
    hi = rng.uniform(*site.window_high)
    gamma = rng.uniform(*site.gamma)
    film = np.clip((density - lo) / (hi - lo), 0.0, 1.0) ** gamma
    noise = rng.uniform(*site.noise) * math.sqrt(12.0)  # uniform noise of that std: cheaper than normal
    film += noise * (rng.random(film.shape, dtype=np.float32) - 0.5)
    if site.name != DEFAULT_SITE:
        film = _site_effects(rng, film, site)
    return (np.clip(film, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_phantom(
    rng: np.random.Generator,
    positive: bool,
    size: int = 256,
    difficulty: float = DEFAULT_DIFFICULTY,
    site: str = DEFAULT_SITE,
) -> tuple[np.ndarray, np.ndarray]:
    """One frontal chest phantom: a uint8 size x size image and its bool lesion mask (all False if normal).

    ``difficulty`` in [0, 1] scales lesion contrast by ``1 - difficulty``; ``site`` (a key of ``SITES``)
    is the detector that images the same patient and lesions."""
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty {difficulty} is outside [0, 1]")
    if site not in SITES:
        raise ValueError(f"site {site!r} is not known; choose from {', '.join(SITES)}")
    patient = _Patient(rng, size)
    density, lung, info = _anatomy(rng, patient)
    mask = np.zeros((size, size), dtype=bool)
    if positive:
        profile = _lesions(rng, patient, lung, info)
        mask = np.abs(profile) > MASK_LEVEL
        density = density + LESION_DENSITY * (1.0 - difficulty) * profile
    return _render(rng, density, SITES[site]), mask


def _write_chunk(jobs: list[tuple[Path, Path | None, np.random.SeedSequence, bool, int, float, str]]) -> None:
    """Draw and save one chunk of phantoms (runs in a worker process)."""
    for image_path, mask_path, seed_seq, positive, size, difficulty, site in jobs:
        image, mask = make_phantom(np.random.default_rng(seed_seq), positive, size, difficulty, site)
        # Film noise barely compresses: the fastest zlib level costs ~8% in size and a quarter of the time.
        Image.fromarray(image).save(image_path, format="PNG", compress_level=1)
        if mask_path is not None:
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path, format="PNG", compress_level=1)


def _labels(rng: np.random.Generator, n: int, positive_rate: float) -> np.ndarray:
    """Exactly round(n * positive_rate) positives, in random order: every split has the stated rate."""
    labels = np.zeros(n, dtype=int)
    labels[: round(n * positive_rate)] = 1
    return rng.permutation(labels)


def is_demo_dataset(out_dir: str | os.PathLike[str]) -> bool:
    """True when ``out_dir`` was written by :func:`write_demo_dataset` (it holds our provenance file)."""
    return (Path(out_dir) / "_truth" / "PROVENANCE.txt").is_file()


def _check_target(out: Path, force: bool) -> None:
    """Refuse to write into a non-empty folder that is not a previous demo dataset, unless forced."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (force or is_demo_dataset(out)):
        raise DataError(f"{out}: folder is not empty and holds no demo dataset; use --force to write into it")
    for stale in ("train", "test", "_truth"):
        if (out / stale).is_dir():
            shutil.rmtree(out / stale)


def write_demo_dataset(
    out_dir: str | os.PathLike[str],
    n_train: int = 600,
    n_test: int = 200,
    seed: int = 0,
    size: int = 256,
    difficulty: float = DEFAULT_DIFFICULTY,
    positive_rate: float = 0.2,
    *,
    site: str = DEFAULT_SITE,
    force: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Write a phantom dataset in the competition layout; test labels and all masks go to ``_truth/``.

    ``out_dir/train/train{i}.png``, ``out_dir/test/test{i}.png``, ``train_labels.csv``,
    ``sample_submission.csv``; ``_truth/test_labels.csv``, ``_truth/masks/<image_id>.png`` (positives),
    ``_truth/PROVENANCE.txt``. The same arguments give the same bytes, whatever ``workers`` is.
    A previous demo dataset in ``out_dir`` is replaced; any other non-empty folder needs ``force``."""
    checks = {
        "n_train": n_train >= 2,
        "n_test": n_test >= 0,
        "size": 16 <= size <= 2048,
        "difficulty": 0.0 <= difficulty <= 1.0,
        "positive_rate": 0.0 < positive_rate < 1.0,
        "site": site in SITES,
    }
    for key, ok in checks.items():
        if not ok:
            value = locals()[key]
            raise ConfigError(
                f"{key}: {value} is out of range (n_train >= 2, n_test >= 0, size 16-2048, difficulty 0-1, "
                f"0 < positive_rate < 1, site one of {', '.join(SITES)})"
            )
    start = time.perf_counter()
    out = Path(out_dir)
    _check_target(out, force)
    label_seq, image_seq = np.random.SeedSequence(seed).spawn(2)
    label_rng = np.random.default_rng(label_seq)
    splits = {"train": _labels(label_rng, n_train, positive_rate), "test": _labels(label_rng, n_test, positive_rate)}
    for folder in ("train", "test", "_truth/masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)

    seeds = iter(image_seq.spawn(n_train + n_test))
    jobs = []
    frames = {}
    for split, labels in splits.items():
        ids = [f"{split}{i}.png" for i in range(1, len(labels) + 1)]
        frames[split] = pd.DataFrame({"image_id": ids, "label": labels})
        for image_id, label in zip(ids, labels, strict=True):
            mask_path = out / "_truth" / "masks" / image_id if label else None
            jobs.append((out / split / image_id, mask_path, next(seeds), bool(label), size, difficulty, site))

    workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    chunks = [jobs[i :: max(1, workers * 4)] for i in range(max(1, workers * 4))]
    if workers <= 1 or len(jobs) < 64:
        _write_chunk(jobs)
    else:
        # fork is fast (no re-import); after TensorFlow has started its threads, fork is unsafe: spawn then.
        method = "spawn" if "tensorflow" in sys.modules or "fork" not in mp.get_all_start_methods() else "fork"
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method)) as pool:
            list(pool.map(_write_chunk, [c for c in chunks if c]))

    atomic.write_csv(out / "train_labels.csv", frames["train"])
    atomic.write_csv(out / "sample_submission.csv", frames["test"].assign(label=0.5))
    atomic.write_csv(out / "_truth" / "test_labels.csv", frames["test"])
    summary = {
        "out_dir": str(out),
        "n_train": n_train,
        "n_test": n_test,
        "train_positives": int(splits["train"].sum()),
        "test_positives": int(splits["test"].sum()),
        "size": size,
        "seed": seed,
        "difficulty": difficulty,
        "positive_rate": positive_rate,
        "site": site,
        "generator_version": GENERATOR_VERSION,
    }
    provenance = "\n".join(
        [
            "Synthetic chest phantoms written by tbensemble (tbensemble.data.phantoms.write_demo_dataset).",
            "Not real radiographs. Lesion sizes and positions follow TBX11K box statistics (Liu et al., CVPR 2020).",
            "Test labels and lesion masks are here, apart from test/, so a model never sees them.",
            *(f"{key}: {value}" for key, value in summary.items() if key != "out_dir"),
        ]
    )
    atomic.write_text(out / "_truth" / "PROVENANCE.txt", provenance + "\n")
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return summary
