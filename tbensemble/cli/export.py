"""``tbens export RUN``: every finished fold model to ONNX, parity-checked, plus ``manifest.json``."""

from __future__ import annotations

import click

MIN_PARITY_IMAGES = 16
"""Fewer images than this would make the Keras-vs-ONNX parity check too thin to trust."""


@click.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--opset", default=17, show_default=True, help="ONNX opset.")
@click.option(
    "--parity-images",
    default=16,
    show_default=True,
    type=click.IntRange(min=MIN_PARITY_IMAGES),
    help="Images compared between Keras and ONNX Runtime per model (the run's own data when still on disk).",
)
@click.option(
    "--calibration",
    type=click.Choice(["none", "platt", "isotonic"]),
    default="none",
    show_default=True,
    help="Fit a map from the ensemble's historical-rank score to a probability on the OOF scores.",
)
@click.option(
    "--in-process", is_flag=True, help="Convert in this process instead of one fresh process per model (small models)."
)
def command(run: str, opset: int, parity_images: int, calibration: str, in_process: bool) -> None:
    """Export a run to ONNX for the TensorFlow-free engine.

    Writes RUN/onnx/<backbone>-f<k>.onnx (raw 0-255 pixels in, preprocessing inside, outputs
    probability, logit, features) and RUN/manifest.json (hashes, parity, OOF references, operating
    points). Fails, writing nothing, when Keras and ONNX Runtime differ by more than 1e-4 in probability.

    \b
    Example:
      tbens export artifacts/quickstart --calibration platt
    """
    from tbensemble.core.optional import require_training_stack

    require_training_stack("tbens export")
    from tbensemble.core.manifest import load_manifest
    from tbensemble.export.onnx_export import export_run
    from tbensemble.report.decisions import decision_summary

    path = export_run(
        run,
        opset=opset,
        n_parity_images=parity_images,
        calibration=None if calibration == "none" else calibration,
        isolate=not in_process,
    )
    manifest = load_manifest(path)
    for entry in manifest.models:
        click.echo(
            f"{entry.file}: OOF AUC {entry.oof_auc:.4f}, parity max |Δp| {entry.parity['max_abs_diff_probability']:.1e} "
            f"|Δlogit| {entry.parity['max_abs_diff_logit']:.1e} on {entry.parity['n_images']} {entry.parity['images']} images"
        )
    point = manifest.ensemble.operating_points[manifest.ensemble.default_operating_point]
    click.echo(
        f"{path}: {len(manifest.models)} models, ensemble OOF AUC {manifest.ensemble.oof_auc:.4f}; "
        f"{manifest.ensemble.default_operating_point} at {point['threshold']:.4f} "
        f"(sensitivity {point['sensitivity']:.3f}, specificity {point['specificity']:.3f})"
    )
    for line in decision_summary(manifest):
        click.echo(line, err=line.startswith("WARNING"))
