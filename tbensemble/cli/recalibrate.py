"""``tbens recalibrate``: a site's own operating points and calibration, chosen on its labelled images."""

from __future__ import annotations

import click


@click.command("recalibrate")
@click.option(
    "--artifacts", required=True, type=click.Path(exists=True, file_okay=False), help="The shipped artifacts folder."
)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="The site's labelled images: competition layout (train/ + train_labels.csv) or Normal/ + Tuberculosis/.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New artifacts folder to write.")
@click.option(
    "--calibration",
    type=click.Choice(["same", "none", "platt", "isotonic"]),
    default="same",
    show_default=True,
    help="Probability map refitted on the site's scores (same: the shipped manifest's method).",
)
@click.option(
    "--target-sensitivity",
    type=click.FloatRange(0.5, 1.0, max_open=True),
    default=None,
    help="Sensitivity the guaranteed point must reach [default: the shipped manifest's target].",
)
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--force", is_flag=True, help="Replace a non-empty --out folder.")
def command(
    artifacts: str,
    data: str,
    out: str,
    calibration: str,
    target_sensitivity: float | None,
    device: str,
    batch_size: int,
    force: bool,
) -> None:
    """Re-choose the operating points (guaranteed, as at export) and the calibration on a site's data.

    WHO advises calibrating a CAD threshold locally. The site's labelled images are scored with the
    shipped models; the new folder holds the same model files (hash-identical) and a manifest whose
    points, calibration, refer thresholds (raised to the site's 99th percentiles, never lowered) and
    drift reference come from the site, with the site data's size, sha256 and date recorded.

    \b
    Example:
      tbens recalibrate --artifacts artifacts/quickstart --data data/site-b --out artifacts/quickstart-site-b
    """
    from tbensemble.core.manifest import load_manifest
    from tbensemble.engine.recalibrate import recalibrate
    from tbensemble.report.decisions import decision_summary

    method = {"same": None, "none": ""}.get(calibration, calibration)
    path, summary = recalibrate(
        artifacts,
        data,
        out,
        calibration=method,
        target_sensitivity=target_sensitivity,
        device=device,
        batch_size=batch_size,
        force=force,
    )
    site = summary["site"]
    shipped = site["shipped_point_on_site"]
    click.echo(
        f"{data}: {site['n']} images ({site['n_positive']} TB), site AUC {site['auc']:.4f}; shipped point "
        f"{shipped['name']} (threshold {shipped['threshold']:.4f}) gives sensitivity {shipped['sensitivity']:.3f}, "
        f"specificity {shipped['specificity']:.3f} here"
    )
    click.echo(f"{path}: models copied unchanged (sha256 checked); site data sha256 {site['sha256'][:12]}…")
    for line in decision_summary(load_manifest(path)):
        click.echo(line, err=line.startswith("WARNING"))
