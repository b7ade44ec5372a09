"""``tbens check-data DIR``: what a dataset holds and every problem in it, before any training."""

from __future__ import annotations

import click


def _format_summary(summary: dict) -> str:
    from tbensemble.data.validate import CLASS_NAMES

    classes = ", ".join(f"{CLASS_NAMES[k]} ({k}): {v}" for k, v in summary["classes"].items())
    lines = [
        f"data:     {summary['data_dir']} ({summary['layout']} layout)",
        f"train:    {summary['train_images']} images; {classes}",
    ]
    if summary["groups"] is not None:
        lines.append(f"groups:   {summary['groups']} patient groups")
    test = summary["test_images"]
    lines.append(f"test:     {'no test/ folder' if test is None else f'{test} image' + ('s' if test != 1 else '')}")
    for axis in ("width", "height"):
        if summary[axis]:
            low, median, high = summary[axis]
            lines.append(f"{axis + ':':<9} {low}-{high} px (median {median})")
    if summary["modes"]:
        lines.append("modes:    " + ", ".join(f"{mode}: {n}" for mode, n in summary["modes"].items()))
    problems = summary["problems"]
    lines.append(f"problems: {len(problems) or 'none'}")
    lines.extend(f"  - {problem}" for problem in problems)
    return "\n".join(lines)


@click.command("check-data")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--decode", is_flag=True, help="Fully decode every image (finds truncated files; slower).")
def command(data_dir: str, decode: bool) -> None:
    """Summarise a dataset (layout, classes, sizes, modes) and list every problem; exit 2 if any.

    \b
    Example:
      tbens check-data data/demo
      tbens check-data /data/tb --decode
    """
    from tbensemble.data.layout import problems_error
    from tbensemble.data.validate import summarise_dataset

    summary = summarise_dataset(data_dir, check_decode=decode)
    click.echo(_format_summary(summary))
    if summary["problems"]:
        raise problems_error(data_dir, summary["problems"])
