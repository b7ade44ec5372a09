"""Compare synthetic phantoms with real TBX11K radiographs, for a person to judge their realism.

Prints the correlation of the mean row and column intensity profiles and of the intensity histograms
(phantoms vs real), and writes a contact sheet: real radiographs on the top rows, phantoms (normal and
TB, lesion outlines in red on the last row) below.

    python scripts/phantom_realism.py /work/shared/data/tbx11k-tb /tmp/realism.png --n 200
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from tbensemble.data.phantoms import DEFAULT_DIFFICULTY, make_phantom

SIDE = 128


def profiles(images: np.ndarray) -> dict[str, np.ndarray]:
    """Mean row profile, mean column profile and mean 32-bin histogram of a stack of uint8 images."""
    hist = np.mean([np.histogram(im, bins=32, range=(0, 256))[0] for im in images], axis=0)
    return {"rows": images.mean(axis=(0, 2)), "columns": images.mean(axis=(0, 1)), "histogram": hist / hist.sum()}


def outline(image: np.ndarray, mask: np.ndarray) -> Image.Image:
    """RGB copy of ``image`` with the border of ``mask`` in red."""
    rgb = np.repeat(image[..., None], 3, axis=2)
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    rgb[edge] = (255, 0, 0)
    return Image.fromarray(rgb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder with the real radiographs in images/")
    parser.add_argument("sheet", type=Path, help="contact sheet PNG to write")
    parser.add_argument("--n", type=int, default=200, help="images of each kind for the profiles")
    parser.add_argument("--difficulty", type=float, default=DEFAULT_DIFFICULTY)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    paths = sorted((args.data_dir / "images").glob("*.png"))[: args.n]
    real = np.stack([np.asarray(Image.open(p).convert("L").resize((SIDE, SIDE), Image.BILINEAR)) for p in paths])
    rng = np.random.default_rng(args.seed)
    drawn = [make_phantom(rng, i % 2 == 1, 2 * SIDE, args.difficulty) for i in range(len(real))]
    fake = np.stack([np.asarray(Image.fromarray(im).resize((SIDE, SIDE), Image.BILINEAR)) for im, _ in drawn])

    ours, theirs = profiles(fake), profiles(real)
    for key in ours:
        r = np.corrcoef(ours[key], theirs[key])[0, 1]
        print(f"{key:10s} correlation phantom vs real: {r:.3f}")
    print(
        f"mean intensity: real {real.mean():.1f} (sd between images {real.mean(axis=(1, 2)).std():.1f}), "
        f"phantom {fake.mean():.1f} (sd {fake.mean(axis=(1, 2)).std():.1f})"
    )
    print("mean row profile, every 16th row (real | phantom):")
    print("  " + " ".join(f"{v:4.0f}" for v in theirs["rows"][::16]))
    print("  " + " ".join(f"{v:4.0f}" for v in ours["rows"][::16]))
    print("mean column profile, every 16th column (real | phantom):")
    print("  " + " ".join(f"{v:4.0f}" for v in theirs["columns"][::16]))
    print("  " + " ".join(f"{v:4.0f}" for v in ours["columns"][::16]))

    cols, tile = 6, 2 * SIDE
    sheet = Image.new("RGB", (cols * tile, 4 * tile))
    for k in range(cols):
        sheet.paste(Image.open(paths[k]).convert("RGB").resize((tile, tile)), (k * tile, 0))
        sheet.paste(Image.open(paths[k + cols]).convert("RGB").resize((tile, tile)), (k * tile, tile))
        normal, _ = drawn[2 * k]
        sheet.paste(Image.fromarray(normal).convert("RGB"), (k * tile, 2 * tile))
        sheet.paste(outline(*drawn[2 * k + 1]), (k * tile, 3 * tile))
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.sheet)
    print(f"contact sheet: {args.sheet} (rows: real, real, phantom normal, phantom TB with lesion outline)")


if __name__ == "__main__":
    main()
