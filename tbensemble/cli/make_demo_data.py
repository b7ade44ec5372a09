"""``tbens make-demo-data``: write synthetic chest phantoms in the competition layout."""

from __future__ import annotations

from pathlib import Path

import click

from tbensemble.data.phantoms import DEFAULT_SITE, SITES


@click.command("make-demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n-train", default=600, show_default=True, type=click.IntRange(min=2), help="Training images.")
@click.option("--n-test", default=200, show_default=True, type=click.IntRange(min=0), help="Test images.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Same seed, same files.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, 2048), help="Image side in pixels.")
@click.option(
    "--difficulty",
    default=None,
    type=click.FloatRange(0.0, 1.0),
    help="Lesion contrast dial: lesions are drawn at (1 - difficulty) of full contrast. [default: DEFAULT_DIFFICULTY of tbensemble.data.phantoms, printed in the summary]",
)
@click.option(
    "--positive-rate",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    help="Share of TB images in each split.",
)
@click.option(
    "--site",
    type=click.Choice(list(SITES)),
    default=DEFAULT_SITE,
    show_default=True,
    help="The hospital whose detector images the phantoms (same patients, lesions and prevalence): "
    + "; ".join(f"{name}: {site.description}" for name, site in SITES.items())
    + ".",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty folder that is not a demo dataset (its train/, test/ and _truth/ are replaced).",
)
def command(
    out_dir: Path,
    n_train: int,
    n_test: int,
    seed: int,
    size: int,
    difficulty: float | None,
    positive_rate: float,
    site: str,
    force: bool,
) -> None:
    """Write TB / normal chest phantoms to OUT_DIR: train/, test/, train_labels.csv, sample_submission.csv.

    Test labels and lesion masks go to OUT_DIR/_truth/, apart from the images. A previous demo dataset
    in OUT_DIR is replaced.

    \b
    Example:
      tbens make-demo-data data/demo
      tbens make-demo-data data/hard --difficulty 0.8 --n-train 1000 --seed 3
      tbens make-demo-data data/site-b --site hospital-b --n-train 300 --n-test 1000 --seed 7
    """
    from tbensemble.data.phantoms import DEFAULT_DIFFICULTY, write_demo_dataset

    summary = write_demo_dataset(
        out_dir,
        n_train=n_train,
        n_test=n_test,
        seed=seed,
        size=size,
        difficulty=DEFAULT_DIFFICULTY if difficulty is None else difficulty,
        positive_rate=positive_rate,
        site=site,
        force=force,
    )
    click.echo(
        f"wrote {summary['n_train']} train ({summary['train_positives']} TB) and {summary['n_test']} test "
        f"({summary['test_positives']} TB) phantoms of {site}, {size} px, difficulty {summary['difficulty']}, "
        f"seed {seed} to {out_dir} in {summary['seconds']} s"
    )
