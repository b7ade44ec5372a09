"""``tbens predict``: score images with an exported ensemble (no TensorFlow) and write the submission."""

from __future__ import annotations

import click


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
    "--max-pixels",
    type=click.IntRange(min=1),
    default=None,
    help="Refuse images declaring more pixels (all frames); default 50000000.",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Score on Ray: an actor pool of ensembles fed by Ray Data, on the cluster at ADDRESS (e.g. auto, "
    "HOST:6379) or on a local Ray instance when no address is given. Same rows as without. Needs the ray extra.",
)
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
    batch_size: int,
    skip_bad: bool,
    sample_submission: str | None,
    scale: str,
    max_pixels: int | None,
    ray_address: str | None,
    ray_actors: int | None,
) -> None:
    """Score chest X-rays with the exported ensemble and write image_id,label.

    The label is the rank average of the models' TTA-mean scores over the images given (AUC only needs
    the order). For up to 20 images it also prints each one's score on the historical-rank scale (the
    same for an image alone or in a batch), the calibrated probability when the manifest has one, and
    the decision at the manifest's operating point.

    \b
    Examples:
      tbens predict --artifacts artifacts/quickstart --images data/demo/test --out submission.csv
      tbens predict --artifacts artifacts/quickstart --images scan1.dcm --images scan2.png --out s.csv
      tbens predict --artifacts /shared/lb --images /archive/cxr --out /shared/scores.csv --ray auto
    """
    from pathlib import Path

    if ray_address is not None:
        from tbensemble.distributed.cluster import require_ray

        require_ray()
    from tbensemble.data.decode import set_max_pixels
    from tbensemble.engine import predict
    from tbensemble.engine.ensemble import Ensemble

    if max_pixels is not None:
        set_max_pixels(max_pixels)

    views = [v.strip() for v in tta.split(",") if v.strip()] if tta is not None else None
    images = predict.collect_images(list(inputs))
    sample = Path(sample_submission) if sample_submission else predict.find_sample_submission(list(inputs))
    predict.check_submission_paths(out, images, artifacts, sample)
    ensemble = Ensemble.load(artifacts, device=device, tta=views)
    if ray_address is not None:
        from tbensemble.distributed.scoring import predict_images_ray

        address = None if ray_address == "local" else ray_address
        prediction = predict_images_ray(
            ensemble,
            artifacts,
            images,
            address,
            device,
            batch_size=batch_size,
            skip_bad=skip_bad,
            actors=ray_actors,
            max_pixels=max_pixels,
        )
    else:
        prediction = predict.predict_images(ensemble, images, batch_size=batch_size, skip_bad=skip_bad)
    historical = ensemble.historical(prediction.scores)
    labels = historical if scale == "historical" else ensemble.batch_ensemble(prediction.scores)
    path = predict.write_submission(prediction, labels, out, sample)
    if len(prediction.image_ids) <= predict.FEW_IMAGES:
        calibrated = ensemble.calibrate(historical)
        decisions = ensemble.decide(historical)
        point = ensemble.operating_point
        for i, image_id in enumerate(prediction.image_ids):
            probability = "" if calibrated is None else f"  p(TB) {calibrated[i]:.3f}"
            decision = "TB" if decisions[i] else "normal"
            click.echo(
                f"{image_id}: score {historical[i]:.4f}{probability}  {decision} at {point['name']} (threshold {point['threshold']:.4f})"
            )
    skipped = (
        f"; {len(prediction.skipped)} skipped, listed in {predict.skipped_path(out)}" if prediction.skipped else ""
    )
    sample_note = f" in the order of {sample}" if sample else ""
    click.echo(
        f"{path}: {len(prediction.image_ids)} images{sample_note}{skipped}; providers {sorted(set(ensemble.providers.values()))}"
    )
