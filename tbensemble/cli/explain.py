"""``tbens explain``: a CAM overlay per image from the exported ensemble (ONNX Runtime, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import click

from tbensemble.core.errors import DataError


def _name_outputs(paths: list[Path], out: Path) -> list[Path]:
    """``<out>/<file name>.cam.png``; two inputs with the same file name would overwrite each other."""
    targets = [out / f"{p.name}.cam.png" for p in paths]
    seen: dict[Path, Path] = {}
    for source, target in zip(paths, targets, strict=True):
        if target in seen:
            raise DataError(f"{source}: same file name as {seen[target]}; their overlays would collide in {out}")
        seen[target] = source
    return targets


@click.command("explain")
@click.option(
    "--artifacts", required=True, type=click.Path(exists=True, file_okay=False), help="Run folder with manifest.json."
)
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the overlay PNGs.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=None,
    help="Refuse images declaring more pixels (all frames); default 50000000.",
)
def command(artifacts: str, images: tuple[str, ...], out: str, device: str, max_pixels: int | None) -> None:
    """Class activation maps of the ensemble, one overlay PNG per image (PNG, JPEG, 16-bit PNG, DICOM).

    Each model's map is its last feature map weighted by its head (the map's mean plus the head bias is
    the model's logit, on the identity view); maps are normalised, averaged with the manifest's weights
    and upsampled to the image. The title gives the ensemble score (historical-rank scale, the TTA of
    the manifest), the calibrated probability when there is one, and the decision at the default point.

    \b
    Example:
      tbens explain --artifacts artifacts/quickstart data/demo/test/test1.png scan.dcm --out explain/
    """

    from tbensemble.core import atomic
    from tbensemble.data.decode import decode_gray, load_image, set_max_pixels
    from tbensemble.engine.cam import ensemble_heatmaps, resize_maps
    from tbensemble.engine.decisions import decide_paths
    from tbensemble.engine.ensemble import Ensemble
    from tbensemble.report.overlay import write_overlay

    if max_pixels is not None:
        set_max_pixels(max_pixels)
    paths = [Path(p) for p in images]
    targets = _name_outputs(paths, Path(out))
    atomic.check_output_path(out, protected_dir=artifacts, folder=True)
    for target in [*targets, Path(out) / "explain.csv"]:
        atomic.check_output_path(target, inputs=paths, protected_dir=artifacts)
    ensemble = Ensemble.load(artifacts, device=device)
    point = ensemble.operating_point
    rows, failures = [], []
    for path, target in zip(paths, targets, strict=True):
        try:
            gray = decode_gray(path)
            batch = load_image(path, ensemble.image_size)[None]
        except DataError as exc:
            failures.append(str(exc))
            continue
        row = decide_paths(ensemble, batch, [path.name], [path]).decisions.iloc[0]
        score = float(row["score"])
        calibrated = None if row["probability"] != row["probability"] else [float(row["probability"])]
        heatmap = resize_maps(ensemble_heatmaps(ensemble, batch), *gray.shape)[0]
        probability = "" if calibrated is None else f" · p(TB) {calibrated[0]:.2f}"
        decision = {"tb": "TB", "normal": "normal"}.get(row["decision"], "refer")
        shown = decision if decision != "refer" else f"refer ({row['reasons']})"
        title = f"{path.name}: score {score:.3f}{probability} · {shown} at {point['name']} (≥ {point['threshold']:.3f})"
        caption = (
            f"Score: historical-rank scale of {len(ensemble.manifest.models)} model(s), TTA {','.join(ensemble.tta)}. "
            "Heatmap: where the models' evidence for TB lies (CAM); not a diagnosis."
        )
        write_overlay(target, gray, heatmap, title, caption)
        rows.append(
            {
                "image": str(path),
                "score": score,
                "probability": None if calibrated is None else float(calibrated[0]),
                "decision": decision,
                "reasons": row["reasons"],
                "overlay": str(target),
            }
        )
        click.echo(f"{path.name}: score {score:.4f}{probability} {shown} -> {target}")
    if rows:
        import pandas as pd

        atomic.write_csv(Path(out) / "explain.csv", pd.DataFrame(rows))
    if failures:
        raise DataError(f"{len(failures)} of {len(paths)} image(s) could not be decoded: {'; '.join(failures[:5])}")
