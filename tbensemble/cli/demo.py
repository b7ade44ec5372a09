"""``tbens demo``: the whole pipeline on synthetic phantoms, ending with the submission's AUC against truth."""

from __future__ import annotations

import time
from pathlib import Path

import click


def _test_auc_table(rows: list[tuple[str, str, str]]) -> str:
    header = ("model", "OOF AUC", "test AUC")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


@click.command("demo")
@click.option(
    "--data",
    default="data/demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the phantom dataset is (made if absent).",
)
@click.option(
    "--out", default="artifacts/quickstart", show_default=True, type=click.Path(file_okay=False), help="Run folder."
)
@click.option(
    "--config",
    "config_path",
    default="configs/quickstart.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Training config.",
)
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
@click.option("--force", is_flag=True, help="Retrain folds that are done already.")
def command(data: str, out: str, config_path: str, device: str, force: bool) -> None:
    """Make phantoms, train the quickstart ensemble, export it to ONNX, predict the test set, score it.

    Every step is the same function the single commands run; a second call resumes (finished folds
    and the dataset are reused).

    \b
    Example:
      tbens demo            # about 9 minutes on 2 CPU cores (measured: 536 s)
    """
    from tbensemble.core.optional import require_training_stack

    require_training_stack("tbens demo")
    import numpy as np
    import pandas as pd

    from tbensemble.core.config import load_config
    from tbensemble.core.metrics import auc, rank_average
    from tbensemble.data.phantoms import write_demo_dataset
    from tbensemble.engine import predict
    from tbensemble.engine.ensemble import Ensemble
    from tbensemble.export.onnx_export import export_run
    from tbensemble.report.build import write_run_report
    from tbensemble.train.trainer import train_folds

    started = time.monotonic()
    data_dir, run = Path(data), Path(out)
    if not (data_dir / "train_labels.csv").is_file():
        click.echo(f"[1/5] writing phantom dataset to {data_dir}")
        write_demo_dataset(data_dir)
    else:
        click.echo(f"[1/5] phantom dataset found at {data_dir}")

    config = load_config(config_path, {"data": str(data_dir), "out": str(run)})
    click.echo(f"[2/5] training {', '.join(config.backbones)} × {config.folds} folds at {config.image_size} px")
    summary = train_folds(config, force=force)

    click.echo("[3/5] exporting every fold model to ONNX (parity checked against Keras, Platt calibration)")
    export_run(run, calibration="platt")

    click.echo("[4/5] predicting the test set with ONNX Runtime")
    ensemble = Ensemble.load(run, device=device)
    images = predict.collect_images([str(data_dir / "test")])
    prediction = predict.predict_images(ensemble, images)
    submission = predict.write_submission(
        prediction,
        ensemble.batch_ensemble(prediction.scores),
        run / "submission.csv",
        data_dir / "sample_submission.csv",
    )

    click.echo("[5/5] writing the evaluation report")
    report = write_run_report(run)

    truth = pd.read_csv(data_dir / "_truth" / "test_labels.csv").set_index("image_id")["label"]
    labels = truth.loc[prediction.image_ids].to_numpy()
    rows = []
    for backbone in config.backbones:
        columns = {m.name: prediction.scores[m.name] for m in ensemble.manifest.models if m.backbone == backbone}
        oof_auc = summary["metrics"]["backbones"][backbone]["oof_auc"]
        rows.append((backbone, f"{oof_auc:.4f}", f"{auc(labels, rank_average(columns)):.4f}"))
    submitted = pd.read_csv(submission).set_index("image_id").iloc[:, 0].loc[prediction.image_ids].to_numpy()
    # With weights fitted on OOF, only the nested cross-validated AUC is an honest OOF figure.
    ensemble_metrics = summary["metrics"]["ensemble"]
    oof_ensemble_auc = ensemble_metrics.get("nested_auc") or ensemble_metrics["oof_auc"]
    rows.append(("ensemble (submission)", f"{oof_ensemble_auc:.4f}", f"{auc(labels, np.asarray(submitted)):.4f}"))
    click.echo(f"\nROC AUC, TTA views {', '.join(ensemble.tta)}; test truth from {data_dir / '_truth'}")
    click.echo(_test_auc_table(rows))
    click.echo(f"\nsubmission: {submission}\nreport:     {report}\ntotal time: {time.monotonic() - started:.0f} s")
