"""``tbens evaluate``: a report (Markdown + PNGs + metrics.json) from a run's OOF scores or a submission."""

from __future__ import annotations

import click


@click.command(name="evaluate")
@click.argument("run", required=False, type=click.Path(file_okay=False, path_type=str))
@click.option("--submission", type=click.Path(dir_okay=False, path_type=str), help="A submission CSV (image_id,label).")
@click.option(
    "--decisions",
    type=click.Path(dir_okay=False, path_type=str),
    help="A decisions CSV ('tbens predict --decisions'): refer rates, AUC on decided images, sensitivity with refer as flagged.",
)
@click.option("--truth", type=click.Path(dir_okay=False, path_type=str), help="Truth CSV (image_id,label 0/1).")
@click.option(
    "--artifacts",
    type=click.Path(file_okay=False, path_type=str),
    help="With --submission: a run folder whose manifest's operating points are applied (historical-rank scale).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=str), help="Report folder [RUN/report, or report].")
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
@click.option(
    "--n-bootstrap", default=2000, show_default=True, type=click.IntRange(min=100), help="Bootstrap resamples."
)
def command(
    run: str | None,
    submission: str | None,
    decisions: str | None,
    truth: str | None,
    artifacts: str | None,
    out: str | None,
    seed: int,
    n_bootstrap: int,
) -> None:
    """Evaluate a run (AUC with 95% CIs, WHO operating points, calibration) or a submission against truth.

    \b
    Examples:
      tbens evaluate artifacts/quickstart
      tbens evaluate --submission submission.csv --truth data/demo/_truth/test_labels.csv --out report-test
      tbens evaluate --decisions decisions.csv --truth data/demo/_truth/test_labels.csv --out report-decisions
    """
    from tbensemble.report.build import write_run_report, write_submission_report

    if (run is not None) + (submission is not None) + (decisions is not None) != 1:
        raise click.UsageError("give either RUN or --submission with --truth (or --decisions with --truth)")
    if decisions is not None:
        if truth is None:
            raise click.UsageError("--decisions needs --truth")
        from tbensemble.report.build import write_decisions_report

        report = write_decisions_report(decisions, truth, out or "report")
    elif submission is not None:
        if truth is None:
            raise click.UsageError("--submission needs --truth")
        report = write_submission_report(submission, truth, out or "report", artifacts, n_bootstrap, seed)
    else:
        if truth is not None or artifacts is not None:
            raise click.UsageError("--truth and --artifacts go with --submission; RUN is evaluated on its oof.csv")
        report = write_run_report(run, out, n_bootstrap, seed)
    click.echo(f"wrote {report}")
