"""Pointing game: does the ensemble heatmap's maximum fall inside a lesion, on TB-positive images?

    python scripts/bench_localization.py --artifacts artifacts/quickstart --data data/demo
    python scripts/bench_localization.py --artifacts artifacts/quickstart --tbx11k ../shared/data/tbx11k-tb

Phantoms (``--data``, a folder written by ``tbens make-demo-data``): lesion masks from ``_truth/masks``,
labels from ``_truth/test_labels.csv`` (``--split test``) or ``train_labels.csv`` (``--split train``).
TBX11K (``--tbx11k``): 512×512 radiographs, a hit when the maximum lies inside any box of that image.

Two hit rules, both printed: *strict* (the maximum's pixel lies in the lesion) and *tolerant* (within
``--tolerance`` of the image side of it; the default 0.067 is the pointing game's usual 15 pixels at 224 px,
Zhang et al., ECCV 2016). A CAM from an 8×8 feature map cannot land on a lesion a few pixels wide, so the
strict rule understates a heatmap that sits on the lesion cluster. Each rule comes with its counts, a
Wilson 95% interval and its chance rate: the mean fraction of the image where a uniformly random maximum
would score a hit (the lesion area, or the lesion area grown by the tolerance).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import distance_transform_edt

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
    ensemble: Ensemble,
    cases: Iterator[tuple[str, Path, np.ndarray]],
    limit: int | None,
    tolerance: float,
    batch_size: int = 16,
) -> pd.DataFrame:
    """One row per image: where the heatmap's argmax lies (at the mask's resolution) and how far from the lesion."""
    rows: list[dict] = []
    batch: list[tuple[str, Path, np.ndarray]] = []

    def flush() -> None:
        images = np.stack([load_image(path, ensemble.image_size) for _, path, _ in batch])
        heatmaps = ensemble_heatmaps(ensemble, images)
        for (image_id, _, mask), heat in zip(batch, heatmaps, strict=True):
            full = resize_maps(heat[None], *mask.shape)[0]
            row, col = np.unravel_index(int(np.argmax(full)), full.shape)
            distance = distance_transform_edt(~mask)
            reach = tolerance * max(mask.shape)
            evidence = bool(full.max() > 0)
            rows.append(
                {
                    "image_id": image_id,
                    "hit": evidence and bool(mask[row, col]),
                    "hit_tolerant": evidence and bool(distance[row, col] <= reach),
                    "distance_px": float(distance[row, col]),
                    "empty_heatmap": not evidence,
                    "peak_row": int(row),
                    "peak_col": int(col),
                    "lesion_fraction": float(mask.mean()),
                    "tolerant_fraction": float((distance <= reach).mean()),
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


def _rule(results: pd.DataFrame, hit: str, chance: str) -> dict:
    hits, total = int(results[hit].sum()), len(results)
    low, high = wilson_interval(hits, total)
    return {
        "hits": hits,
        "images": total,
        "hit_rate": hits / total if total else float("nan"),
        "wilson_95ci": [low, high],
        "chance_hit_rate": float(results[chance].mean()) if total else float("nan"),
    }


def summarise(results: pd.DataFrame, name: str, note: str, tolerance: float) -> dict:
    """Both hit rules with counts, Wilson intervals and chance rates; printed and returned."""
    summary = {
        "dataset": name,
        "strict": _rule(results, "hit", "lesion_fraction"),
        "tolerant": {"tolerance_of_side": tolerance, **_rule(results, "hit_tolerant", "tolerant_fraction")},
        "empty_heatmaps": int(results["empty_heatmap"].sum()),
        "note": note,
    }
    print(f"{name}: {len(results)} TB-positive images, {summary['empty_heatmaps']} with no positive evidence (misses)")
    for label, rule in (("strict", summary["strict"]), (f"within {tolerance:.3f} of the side", summary["tolerant"])):
        low, high = rule["wilson_95ci"]
        print(
            f"  {label}: {rule['hits']}/{rule['images']} hits, hit rate {rule['hit_rate']:.3f} "
            f"(Wilson 95% CI {low:.3f}-{high:.3f}); chance {rule['chance_hit_rate']:.3f}"
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
    parser.add_argument(
        "--tolerance", type=float, default=15 / 224, help="Tolerant hit radius as a fraction of the image side [0.067]."
    )
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
        results = pointing_game(ensemble, cases, args.limit, args.tolerance)
        summaries.append(summarise(results, name, note, args.tolerance))
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
