"""Pointing game: does the ensemble heatmap's maximum fall inside a lesion, on TB-positive images?

    python scripts/bench_localization.py --artifacts artifacts/quickstart --data data/demo
    python scripts/bench_localization.py --artifacts artifacts/quickstart --tbx11k ../shared/data/tbx11k-tb

Phantoms (``--data``, a folder written by ``tbens make-demo-data``): lesion masks from ``_truth/masks``,
labels from ``_truth/test_labels.csv`` (``--split test``) or ``train_labels.csv`` (``--split train``).
TBX11K (``--tbx11k``): 512×512 radiographs, a hit when the maximum lies inside any box of that image.

Prints the counts, the hit rate with a Wilson 95% interval, and the chance hit rate: the mean fraction of
the image covered by lesions, i.e. the hit rate of a maximum placed uniformly at random.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from tbensemble.core import atomic
from tbensemble.core.errors import DataError
from tbensemble.data.decode import decode_gray, load_image
from tbensemble.engine.cam import ensemble_heatmaps, resize_maps
from tbensemble.engine.ensemble import Ensemble
from tbensemble.report.evaluate import wilson_interval

PHANTOM_NOTE = (
    "Phantoms are drawn by this project; an ensemble trained on phantoms of the same kind that points at their "
    "lesions shows that the CAM machinery works, not clinical validity."
)
TBX11K_NOTE = (
    "TBX11K radiographs are real, but every one is TB-positive and boxes are coarse; an ensemble trained on "
    "phantoms has never seen a real chest X-ray, so its hit rate here shows the machinery, not clinical validity."
)


def _phantom_cases(data: Path, split: str) -> Iterator[tuple[str, Path, np.ndarray]]:
    """(image_id, image path, lesion mask) for each TB-positive phantom of the split that has a mask."""
    labels_csv = data / "_truth" / "test_labels.csv" if split == "test" else data / "train_labels.csv"
    if not labels_csv.is_file():
        raise DataError(f"{labels_csv}: not found (write the phantoms with 'tbens make-demo-data')")
    labels = pd.read_csv(labels_csv)
    masks = {p.stem: p for p in (data / "_truth" / "masks").glob("*.png")}
    images = {p.stem: p for p in (data / split).iterdir()} if (data / split).is_dir() else {}
    for image_id in labels.loc[labels["label"] == 1, "image_id"].astype(str):
        stem = Path(image_id).stem if Path(image_id).suffix else image_id
        if stem not in masks or stem not in images:
            raise DataError(f"{labels_csv}: TB image {image_id} has no mask in _truth/masks or no file in {split}/")
        mask = decode_gray(masks[stem]) > 127
        if mask.any():
            yield image_id, images[stem], mask


def _tbx11k_cases(root: Path) -> Iterator[tuple[str, Path, np.ndarray]]:
    """(image_id, path, box mask) for every TBX11K image with at least one box; boxes are in 512×512 pixels."""
    boxes = pd.read_csv(root / "boxes.csv")
    for image_id, rows in boxes.groupby("image_id", sort=True):
        path = root / "images" / f"{image_id}.png"
        height, width = decode_gray(path).shape
        mask = np.zeros((height, width), dtype=bool)
        centres_y, centres_x = np.mgrid[:height, :width] + 0.5  # pixel (r, c) covers [c, c+1) x [r, r+1)
        for box in rows.itertuples():
            mask |= (
                (centres_x >= box.xmin) & (centres_x <= box.xmax) & (centres_y >= box.ymin) & (centres_y <= box.ymax)
            )
        yield str(image_id), path, mask


def pointing_game(
    ensemble: Ensemble, cases: Iterator[tuple[str, Path, np.ndarray]], limit: int | None, batch_size: int = 16
) -> pd.DataFrame:
    """One row per image: whether the heatmap's argmax (at the mask's resolution) lies in the mask."""
    rows: list[dict] = []
    batch: list[tuple[str, Path, np.ndarray]] = []

    def flush() -> None:
        images = np.stack([load_image(path, ensemble.image_size) for _, path, _ in batch])
        heatmaps = ensemble_heatmaps(ensemble, images)
        for (image_id, _, mask), heat in zip(batch, heatmaps, strict=True):
            full = resize_maps(heat[None], *mask.shape)[0]
            row, col = np.unravel_index(int(np.argmax(full)), full.shape)
            rows.append(
                {
                    "image_id": image_id,
                    "hit": bool(mask[row, col]) and full.max() > 0,
                    "empty_heatmap": bool(full.max() <= 0),
                    "peak_row": int(row),
                    "peak_col": int(col),
                    "lesion_fraction": float(mask.mean()),
                }
            )
        batch.clear()

    for case in cases:
        if limit is not None and len(rows) + len(batch) >= limit:
            break
        batch.append(case)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame, name: str, note: str) -> dict:
    hits, total = int(results["hit"].sum()), len(results)
    low, high = wilson_interval(hits, total)
    summary = {
        "dataset": name,
        "images": total,
        "hits": hits,
        "hit_rate": hits / total if total else float("nan"),
        "wilson_95ci": [low, high],
        "chance_hit_rate": float(results["lesion_fraction"].mean()) if total else float("nan"),
        "empty_heatmaps": int(results["empty_heatmap"].sum()),
        "note": note,
    }
    print(
        f"{name}: {hits}/{total} hits, hit rate {summary['hit_rate']:.3f} (Wilson 95% CI {low:.3f}-{high:.3f}); "
        f"chance {summary['chance_hit_rate']:.3f} (mean lesion area fraction); "
        f"{summary['empty_heatmaps']} image(s) with no positive evidence counted as misses"
    )
    print(f"  {note}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", required=True, type=Path, help="Exported run folder (manifest.json).")
    parser.add_argument("--data", type=Path, help="Phantom folder from 'tbens make-demo-data'.")
    parser.add_argument("--split", choices=["test", "train"], default="test", help="Phantom split [test].")
    parser.add_argument("--tbx11k", type=Path, help="Folder with images/ and boxes.csv (512×512 boxes).")
    parser.add_argument("--limit", type=int, help="At most this many images per dataset.")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--out", type=Path, help="Write the summaries (JSON) and per-image rows (CSV) here.")
    args = parser.parse_args(argv)
    if args.data is None and args.tbx11k is None:
        parser.error("give --data (phantoms) and/or --tbx11k")
    ensemble = Ensemble.load(args.artifacts, device=args.device)
    summaries = []
    datasets = []
    if args.data is not None:
        datasets.append((f"phantoms ({args.split})", _phantom_cases(args.data, args.split), PHANTOM_NOTE))
    if args.tbx11k is not None:
        datasets.append(("tbx11k-tb", _tbx11k_cases(args.tbx11k), TBX11K_NOTE))
    for name, cases, note in datasets:
        results = pointing_game(ensemble, cases, args.limit)
        summaries.append(summarise(results, name, note))
        if args.out is not None:
            atomic.write_csv(args.out / f"pointing_{name.split()[0]}.csv", results)
    if args.out is not None:
        atomic.write_json(args.out / "pointing_game.json", summaries)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
