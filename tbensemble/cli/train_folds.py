"""``tbens train-folds``: k-fold training of every backbone of a config into one run folder, resumable."""

from __future__ import annotations

import dataclasses

import click

from tbensemble.cli.options import ray_option


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give at least one name, e.g. resnet50,densenet201")
    return names


def _fold_indices(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    names = _names(ctx, param, value)
    if names is None:
        return None
    try:
        return [int(v) for v in names]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of fold numbers, e.g. 0,2") from None


def auc_table(metrics: dict) -> str:
    """Per backbone: AUC of each fold, of its OOF scores ranked within folds and pooled; then the ensemble."""
    folds = [str(k) for k in range(metrics["folds"])]
    header = ["backbone", *[f"fold{k}" for k in folds], "OOF", "pooled"]

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    rows = []
    for name, entry in metrics["backbones"].items():
        cells = [cell(entry["fold_auc"].get(k)) for k in folds]
        rows.append([name, *cells, cell(entry["oof_auc"]), cell(entry["pooled_auc"])])
    ensemble = metrics.get("ensemble")
    rows.append(["ensemble", *["" for _ in folds], cell(ensemble["oof_auc"] if ensemble else None), ""])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


@click.command(name="train-folds")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="YAML config, e.g. configs/quickstart.yaml.",
)
@click.option("--data", type=click.Path(path_type=str), help="Training data folder (overrides 'data').")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), help="Run folder (overrides 'out').")
@click.option(
    "--backbones", callback=_names, help="Train only these of the config's backbones, e.g. resnet50,densenet201."
)
@click.option("--folds", "fold_list", callback=_fold_indices, help="Train only these folds (0-based), e.g. 0,2.")
@click.option("--force", is_flag=True, help="Retrain folds that are done already (and accept a changed config).")
@click.option("--epochs", type=click.IntRange(min=1), help="Overrides 'epochs'.")
@click.option("--image-size", type=click.IntRange(min=32), help="Overrides 'image_size'.")
@click.option("--weights", help="Overrides 'weights': imagenet, none, or a weights file/folder.")
@ray_option("Train the jobs as Ray tasks, one GPU each (one CPU where the cluster has no GPU)")
def command(
    config_path: str,
    data: str | None,
    out: str | None,
    backbones: list[str] | None,
    fold_list: list[int] | None,
    force: bool,
    epochs: int | None,
    image_size: int | None,
    weights: str | None,
    ray_address: str | None,
) -> None:
    """Train every backbone × fold of a config, write OOF scores, and print an AUC table.

    A finished backbone × fold (its done.json) is skipped, so an interrupted run resumes where it
    stopped. --backbones and --folds let several machines share one run folder: each trains its
    share, and the last one to finish assembles the complete oof.csv and metrics.json.

    \b
    Examples:
      tbens train-folds --config configs/quickstart.yaml
      tbens train-folds --config configs/leaderboard.yaml --data data/tb --out artifacts/lb --backbones resnet50 --folds 0,1
      tbens train-folds --config configs/leaderboard.yaml --out artifacts/lb --ray auto
    """
    from tbensemble.core.optional import require_training_stack

    runner = None
    if ray_address is not None:
        from tbensemble.distributed.cluster import require_ray

        require_ray()
    require_training_stack("tbens train-folds")
    if ray_address is not None:
        from tbensemble.distributed.folds import ray_runner

        runner = ray_runner(None if ray_address == "local" else ray_address)
    from tbensemble.core.config import load_config
    from tbensemble.train.trainer import train_folds

    no_weights = weights is not None and weights.lower() in ("none", "null")
    overrides = {"data": data, "out": out, "epochs": epochs, "image_size": image_size}
    if weights is not None and not no_weights:
        overrides["weights"] = weights
    config = load_config(config_path, overrides)
    if no_weights:
        config = dataclasses.replace(config, weights=None)
    summary = train_folds(config, backbones=backbones, folds=fold_list, force=force, runner=runner)
    metrics = summary["metrics"]
    click.echo(
        f"\n{summary['run']}: trained {len(summary['trained'])}, skipped {len(summary['skipped'])} "
        f"backbone×fold jobs in {summary['seconds']:.0f}s; ROC AUC (TTA: {', '.join(config.tta)})"
    )
    click.echo(auc_table(metrics))
    click.echo("OOF: each fold model's scores ranked within its fold (the ensemble's scale); pooled: raw probabilities")
    ensemble = metrics.get("ensemble")
    if ensemble and len(ensemble["weights"]) > 1:
        weights = ", ".join(f"{b} {w:.2f}" for b, w in ensemble["weights"].items())
        nested = "" if ensemble.get("nested_auc") is None else f", nested-CV AUC {ensemble['nested_auc']:.4f}"
        click.echo(f"ensemble weights: {ensemble['weighting']} ({weights}{nested}); every method in metrics.json")
    if metrics["missing"]:
        click.echo(f"not yet trained: {', '.join(metrics['missing'])}")
