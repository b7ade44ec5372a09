"""``tbens optimize``: build faster variants of every fold model and keep those that decide like fp32."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from tbensemble.optimize.run import ModelReport


def _figure(value: float | None, spec: str) -> str:
    """``value`` formatted, or a dash as wide as the column."""
    width = int(spec.lstrip("+").split(".")[0]) + spec.endswith("%")
    if value is None:
        return "—".rjust(width)
    return format(value, spec.rstrip("%")) + ("%" if spec.endswith("%") else "")


def format_report(report: ModelReport) -> str:
    """One model's table: variant, img/s, ratio to fp32, each gate figure, chosen or not, and why."""
    lines = [
        f"{report.model}: {report.n_heldout} held-out images, chosen {report.chosen}"
        + (" (from an earlier run)" if report.reused else ""),
        f"  {'variant':<20} {'img/s':>7} {'×fp32':>6} {'Spearman':>9} {'AUC':>7} {'ΔAUC':>8} {'flipped':>8} {'max|Δp|':>8}  chosen  why",
    ]
    for row in report.rows:
        gate = row.gate or {}
        auc = gate.get("auc_variant", gate.get("auc_fp32"))
        lines.append(
            f"  {row.variant:<20} {_figure(row.images_per_s, '7.1f')} {_figure(row.ratio, '6.2f')} "
            f"{_figure(gate.get('spearman'), '9.5f')} {_figure(auc, '7.4f')} {_figure(gate.get('delta_auc'), '+8.4f')} "
            f"{_figure(None if 'flipped_fraction' not in gate else 100 * gate['flipped_fraction'], '7.2f%')} "
            f"{_figure(gate.get('max_abs_diff'), '8.4f')}  {'yes' if row.chosen else 'no':<6}  {row.reason}"
        )
    return "\n".join(lines)


@click.command("optimize")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--target",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="cpu: the variants below, timed on this CPU; cuda: an FP16 copy on ONNX Runtime's CUDA provider, "
    "timed against fp32 on this GPU (no GPU: exit 4). A run holds one target's variants.",
)
@click.option("--variants", default=None, help="Comma-separated subset of the target's variants (default: all).")
@click.option(
    "--data",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="The run's training data, if moved since training (default: config.yaml's data).",
)
@click.option(
    "--calibration-images",
    default=None,
    type=click.IntRange(min=1),
    help="Training images sampled to calibrate INT8 (default 128; each with its TTA views, run one view at a "
    "time, so memory does not grow with the count).",
)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--force", is_flag=True, help="Rebuild models already optimized (by default a rerun resumes).")
def command(
    run: str,
    target: str,
    variants: str | None,
    data: str | None,
    calibration_images: int | None,
    batch_size: int,
    force: bool,
) -> None:
    """Build faster variants of each fold model; ship each only where it decides like fp32.

    For every fold model: OpenVINO fp32, bf16 (where the CPU has BF16) and INT8 (NNCF); ONNX Runtime
    INT8 (all but the head; QOperator and QDQ; convolutions only). INT8 is calibrated on the fold's
    training images. With --target cuda: FP16 on the CUDA provider (inputs, outputs and head fp32). Each
    variant scores the fold's held-out (OOF) images beside fp32 in one interleaved run and must keep
    Spearman >= 0.99, |ΔAUC| <= 0.005 and <= 1% decisions flipped at the default operating point (each
    side ranked against its own OOF reference). The fastest passing variant becomes the model's default
    in the manifest; `tbens predict --precision auto` runs it.

    \b
    Examples:
      tbens optimize artifacts/quickstart
      tbens optimize artifacts/quickstart --variants openvino-bf16,ort-int8-qoperator --force
      tbens optimize artifacts/quickstart --target cuda --force
    """
    from tbensemble.optimize.run import optimize_run

    names = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    reports = optimize_run(
        run,
        target=target,
        variant_names=names,
        data_dir=data,
        n_calibration=calibration_images,
        batch_size=batch_size,
        force=force,
        on_model=lambda report: click.echo(format_report(report) + "\n"),
    )
    chosen = {r.model: r.chosen for r in reports}
    click.echo(f"{run}/manifest.json: defaults {chosen}")
