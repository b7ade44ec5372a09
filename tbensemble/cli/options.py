"""Click options that several commands share, declared once so their names and parsing stay the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def ray_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--ray [ADDRESS]``: ``ray_address`` is None without the flag, "local" for a bare ``--ray``."""
    return click.option(
        "--ray",
        "ray_address",
        is_flag=False,
        flag_value="local",
        default=None,
        metavar="[ADDRESS]",
        help=f"{what}, on the cluster at ADDRESS (e.g. auto, HOST:6379) or on a local Ray instance when no "
        "address is given. Needs the ray extra.",
    )


precision_option = click.option(
    "--precision",
    type=click.Choice(["auto", "fp32"]),
    default="auto",
    show_default=True,
    help="auto: each model's faster variant chosen by 'tbens optimize' where it runs here; fp32: the exported models.",
)
"""``--precision auto|fp32``, as ``tbensemble.load(precision=...)`` takes it."""
