"""Lesion statistics of the real TBX11K boxes, for the constants in ``tbensemble/data/phantoms.py``.

The phantoms place lesions the way TBX11K annotators boxed them. This script reads the boxes once and
prints the numbers that ``phantoms.py`` keeps as constants (the package never reads the real data).

Positions and sizes are fractions of the image side: TBX11K radiographs are framed consistently (lungs
span roughly x 0.12-0.88, y 0.12-0.80 of the image), and a phantom maps these fractions through its
own patient placement (scale, shift, rotation) into its lungs.

    python scripts/phantom_box_stats.py /work/shared/data/tbx11k-tb
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

IMAGE_SIDE = 512.0
QUANTILES = np.linspace(0.0, 1.0, 11)
GRID = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder with boxes.csv and labels.csv")
    args = parser.parse_args()
    labels = pd.read_csv(args.data_dir / "labels.csv")
    boxes = pd.read_csv(args.data_dir / "boxes.csv")
    boxes["cx"] = (boxes.xmin + boxes.xmax) / 2 / IMAGE_SIDE
    boxes["cy"] = (boxes.ymin + boxes.ymax) / 2 / IMAGE_SIDE
    boxes["w"] = (boxes.xmax - boxes.xmin) / IMAGE_SIDE
    boxes["h"] = (boxes.ymax - boxes.ymin) / IMAGE_SIDE
    boxes["left"] = boxes.cx < 0.5

    counts = boxes.groupby("image_id").size().reindex(labels["image_id"], fill_value=0)
    print(f"images {len(labels)}, boxes {len(boxes)}")
    shares = counts.value_counts(normalize=True).sort_index()
    print("boxes per image (count: share):", {int(k): round(float(v), 3) for k, v in shares.items()})
    print("finding shares:", boxes["finding"].value_counts(normalize=True).round(3).to_dict())

    multi = boxes.groupby("image_id").filter(lambda g: len(g) > 1).groupby("image_id")["left"]
    both = (multi.nunique() == 2).mean()
    print(f"images with 2+ boxes that have boxes in both lungs: {both:.3f}")
    print(f"share of boxes on the image's left (patient's right): {boxes.left.mean():.3f}")

    print("box width quantiles (0..1 step 0.1):", np.round(np.quantile(boxes.w, QUANTILES), 3).tolist())
    print("box height quantiles (0..1 step 0.1):", np.round(np.quantile(boxes.h, QUANTILES), 3).tolist())
    rho = np.corrcoef(np.log(boxes.w), np.log(boxes.h))[0, 1]
    print(f"correlation of log width and log height: {rho:.3f}")

    edges = np.linspace(0.0, 1.0, GRID + 1)
    hist, _, _ = np.histogram2d(boxes.cy.clip(0, 0.999), boxes.cx.clip(0, 0.999), bins=[edges, edges])
    print(f"box centres, {GRID}x{GRID} grid of the image, rows top->bottom, counts:")
    for row in hist.astype(int):
        print("    " + ", ".join(f"{c:3d}" for c in row))
    thirds = np.digitize(boxes.cy, [0.36, 0.58])
    print(
        "share of centres in upper (y<0.36), middle, lower (y>=0.58) bands:",
        np.round(np.bincount(thirds, minlength=3) / len(boxes), 3).tolist(),
    )


if __name__ == "__main__":
    main()
