"""``tbens predict``: score images with an exported ensemble (no TensorFlow) and write the submission."""

from __future__ import annotations

import click
from click.core import ParameterSource

from tbensemble.cli.options import precision_option, ray_option

DEFAULT_DECISIONS = "decisions.csv"
"""Where single files' decisions go when neither --decisions nor --out names a file."""


@click.command("predict")
@click.option(
    "--artifacts",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Run folder (or a copy of its onnx/ + manifest.json).",
)
@click.option(
    "--images",
    "inputs",
    required=True,
    multiple=True,
    type=click.Path(exists=True),
    help="A folder of images, or image files; repeat for several.",
)
@click.option("--out", default="submission.csv", show_default=True, type=click.Path(dir_okay=False))
@click.option("--tta", default=None, help="Comma-separated views; default: the manifest's (as chosen in training).")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
@precision_option
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--skip-bad", is_flag=True, help="Score the images that decode; list the others in <out stem>.skipped.csv."
)
@click.option(
    "--sample-submission",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Follow its row order and column names (default: sample_submission.csv beside the images folder).",
)
@click.option(
    "--scale",
    type=click.Choice(["batch", "historical"]),
    default="batch",
    show_default=True,
    help="label = rank average within these images (batch), or each model's rank among its OOF scores "
    "(historical: the scale the manifest's operating points are on, the same for one image or many).",
)
@click.option(
    "--decisions",
    "decisions_out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write one row per image: image_id, score, probability, decision (tb/normal/refer), reasons, "
    "operating_point, threshold, manifest_sha256. Single files (no images folder) always get this file "
    f"(at --decisions, else --out when given, else {DEFAULT_DECISIONS}; none with --format json), never a "
    "batch-ranked label.",
)
@click.option(
    "--operating-point",
    default=None,
    help="Decide at this manifest operating point instead of its default (the guaranteed sensitivity point).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: print the decision rows to stdout as a JSON array (messages go to stderr).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=None,
    help="Refuse images declaring more pixels (all frames); default 50000000.",
)
@ray_option("Score on Ray: an actor pool of ensembles fed by Ray Data; same rows as without")
@click.option(
    "--ray-actors",
    type=click.IntRange(min=1),
    default=None,
    help="Ensemble actors with --ray (default: one per GPU of the cluster, else one per CPU).",
)
def command(
    artifacts: str,
    inputs: tuple[str, ...],
    out: str,
    tta: str | None,
    device: str,
    precision: str,
    batch_size: int,
    skip_bad: bool,
    sample_submission: str | None,
    scale: str,
    decisions_out: str | None,
    operating_point: str | None,
    output_format: str,
    max_pixels: int | None,
    ray_address: str | None,
    ray_actors: int | None,
) -> None:
    """Score chest X-rays with the exported ensemble and write image_id,label.

    The label is the rank average of the models' TTA-mean scores over the images given (AUC only needs
    the order). For up to 20 images it also prints each one's score on the historical-rank scale (the
    same for an image alone or in a batch), the calibrated probability when the manifest has one, and
    the decision at the manifest's operating point: TB, normal, or refer (not a frontal chest
    radiograph by its DICOM tags or pixels, far from the training images, or the models disagree) with
    the reasons. Single image files get per-image decisions, never a batch-ranked label.

    \b
    Examples:
      tbens predict --artifacts artifacts/quickstart --images data/demo/test --out submission.csv
      tbens predict --artifacts artifacts/quickstart --images scan1.dcm --images scan2.png --decisions d.csv
      tbens predict --artifacts artifacts/quickstart --images scan1.dcm --format json
      tbens predict --artifacts /shared/lb --images /archive/cxr --out /shared/scores.csv --ray auto
    """
    from pathlib import Path

    if ray_address is not None:
        from tbensemble.distributed.cluster import require_ray

        require_ray()

    import tbensemble
    from tbensemble.core.decisions import who_warning
    from tbensemble.core.errors import TbensError
    from tbensemble.data.decode import set_max_pixels
    from tbensemble.engine import predict

    if max_pixels is not None:
        set_max_pixels(max_pixels)

    views = [v.strip() for v in tta.split(",") if v.strip()] if tta is not None else None
    images = predict.collect_images(list(inputs))
    files_only = all(Path(i).is_file() for i in inputs) and sample_submission is None
    sample = Path(sample_submission) if sample_submission else predict.find_sample_submission(list(inputs))
    as_json = output_format == "json"
    out_given = click.get_current_context().get_parameter_source("out") != ParameterSource.DEFAULT
    if files_only:
        target = decisions_out or (out if out_given else None if as_json else DEFAULT_DECISIONS)
        if target is not None:
            predict.check_decisions_path(target, images, artifacts)
    else:
        target = decisions_out
        predict.check_submission_paths(out, images, artifacts, sample)
        if target is not None:
            predict.check_decisions_path(target, images, artifacts)
    triage = tbensemble.load(artifacts, device=device, tta=views, precision=precision)
    ensemble = triage.ensemble
    points = ensemble.manifest.ensemble.operating_points
    chosen = operating_point or ensemble.manifest.ensemble.default_operating_point
    if chosen not in points:
        raise TbensError(f"--operating-point {chosen!r} is not in the manifest; choose from {', '.join(points)}")
    warning = who_warning({"name": chosen, **points[chosen]})
    if warning:
        click.echo(warning, err=True)
    decide = files_only or target is not None or as_json or len(images) <= predict.FEW_IMAGES
    if ray_address is not None:
        from tbensemble.distributed.scoring import predict_images_ray

        prediction = predict_images_ray(
            ensemble,
            artifacts,
            images,
            None if ray_address == "local" else ray_address,
            device,
            precision=precision,
            batch_size=batch_size,
            skip_bad=skip_bad,
            actors=ray_actors,
            max_pixels=max_pixels,
            decide=decide,
            operating_point=operating_point,
        )
    else:
        prediction = triage.score_files(
            images, batch_size=batch_size, skip_bad=skip_bad, decide=decide, operating_point=operating_point
        )
    written = []
    if not files_only:
        historical = ensemble.historical(prediction.scores)
        labels = historical if scale == "historical" else ensemble.batch_ensemble(prediction.scores)
        written.append(predict.write_submission(prediction, labels, out, sample))
    if target is not None:
        written.append(predict.write_decisions(prediction, target))
    rows = prediction.decisions
    if as_json:
        click.echo(rows.to_json(orient="records"))
    elif rows is not None and len(rows) <= predict.FEW_IMAGES:
        for row in rows.itertuples(index=False):
            probability = "" if row.probability != row.probability else f"  p(TB) {row.probability:.3f}"
            decision = {"tb": "TB", "normal": "normal"}.get(row.decision, f"refer ({row.reasons})")
            click.echo(
                f"{row.image_id}: score {row.score:.4f}{probability}  {decision} at {row.operating_point} "
                f"(threshold {row.threshold:.4f})"
            )
    skipped = f"; {len(prediction.skipped)} skipped" + (
        f", listed in {predict.skipped_path(written[0])}" if written else ""
    )
    sample_note = f" in the order of {sample}" if sample and not files_only else ""
    refer_note = f"; {int((rows['decision'] == 'refer').sum())} referred" if rows is not None else ""
    click.echo(
        f"{', '.join(map(str, written)) or 'stdout'}: {len(prediction.image_ids)} images{sample_note}"
        f"{skipped if prediction.skipped else ''}{refer_note}; "
        f"providers {sorted(set(ensemble.providers.values()))}",
        err=as_json,
    )
