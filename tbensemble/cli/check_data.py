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
    if summary["transfer_syntaxes"]:
        undecodable = set(summary["undecodable_syntaxes"])
        lines.append(
            "dicom:    "
            + ", ".join(
                f"{name}: {n}" + (" (cannot be decoded here)" if name in undecodable else "")
                for name, n in summary["transfer_syntaxes"].items()
            )
        )
    problems = summary["problems"]
    lines.append(f"problems: {len(problems) or 'none'}")
    lines.extend(f"  - {problem}" for problem in problems)
    return "\n".join(lines)


@click.command("check-data")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--decode", is_flag=True, help="Fully decode every image (finds truncated files; slower).")
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=None,
    help="Refuse images declaring more pixels (all frames); default 50000000.",
)
def command(data_dir: str, decode: bool, max_pixels: int | None) -> None:
    """Summarise a dataset (layout, classes, sizes, modes, DICOM transfer syntaxes) and list every problem; exit 2 if any.

    Images above the decode limits (--max-pixels, an aspect ratio above 10:1), with control characters
    in their names, or in a DICOM transfer syntax this install cannot decode are problems.

    \b
    Example:
      tbens check-data data/demo
      tbens check-data /data/tb --decode
    """
    from tbensemble.data.decode import set_max_pixels
    from tbensemble.data.layout import problems_error
    from tbensemble.data.validate import summarise_dataset

    if max_pixels is not None:
        set_max_pixels(max_pixels)

    summary = summarise_dataset(data_dir, check_decode=decode)
    click.echo(_format_summary(summary))
    if summary["problems"]:
        raise problems_error(data_dir, summary["problems"])
