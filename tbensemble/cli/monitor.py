"""``tbens monitor``: has a site's batch drifted from what the models were shipped (or recalibrated) on?"""

from __future__ import annotations

import json

import click


@click.command("monitor")
@click.option(
    "--artifacts", required=True, type=click.Path(exists=True, file_okay=False), help="Run folder with manifest.json."
)
@click.option(
    "--decisions",
    "decision_files",
    required=True,
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Decisions CSV written by 'tbens predict --decisions'; repeat to pool several batches.",
)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def command(artifacts: str, decision_files: tuple[str, ...], output_format: str) -> None:
    """Compare a batch's scores with the manifest's reference distribution and print ok or alert.

    The statistic is the population stability index (PSI) over the reference's 10 score deciles
    (out-of-fold scores, or the site's own after 'tbens recalibrate'): PSI above 0.2 alerts (the usual
    convention: below 0.1 stable, 0.1-0.2 moderate shift). A refer rate above 10% alerts too. Rows
    written under another manifest are noted on stderr: their scores share this scale only when the
    models are the same (a recalibrated copy).

    \b
    Example:
      tbens monitor --artifacts artifacts/quickstart --decisions decisions.csv
    """
    import pandas as pd

    from tbensemble.core import decisions as rules
    from tbensemble.core.errors import ArtifactError, DataError
    from tbensemble.core.manifest import MANIFEST_NAME, load_manifest, sha256_of

    manifest = load_manifest(artifacts)
    if manifest.ensemble.drift is None:
        raise ArtifactError(f"{manifest.root / MANIFEST_NAME}: no drift reference; re-export with this tbensemble")
    frames = []
    for path in decision_files:
        try:
            frame = pd.read_csv(path, dtype={"image_id": str, "reasons": str, "manifest_sha256": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
        missing = [c for c in ("score", "decision", "manifest_sha256") if c not in frame.columns]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)} (write it with 'tbens predict --decisions')"
            )
        frames.append(frame.assign(source=path))
    batch = pd.concat(frames, ignore_index=True)
    own = sha256_of(manifest.root / MANIFEST_NAME)
    foreign = sorted(set(batch["manifest_sha256"].dropna()) - {own})
    if foreign:
        references = {m.sha256 for m in manifest.models}
        click.echo(
            f"note: {len(foreign)} other manifest(s) wrote some rows (e.g. {foreign[0][:12]}…); scores are comparable "
            f"only if their models are these {len(references)} (a recalibrated copy is)",
            err=True,
        )
    summary = rules.drift_summary(
        manifest.ensemble.drift, batch["score"].to_numpy(), batch["decision"].astype(str).tolist()
    )
    reference = "site data" if manifest.ensemble.site else "out-of-fold scores"
    summary["reference"] = reference
    if output_format == "json":
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"{summary['status']}: PSI {summary['psi']:.3f} against the {reference} (alert above {summary['psi_alert_above']:.2f}), "
        f"refer rate {summary['refer_rate']:.1%} of {summary['n']} images"
        + "".join(f"; {a}" for a in summary["alerts"])
        + "".join(f"; note: {n}" for n in summary["notes"])
    )
