"""The ``tbens`` command group. Each command lives in its own module, loaded only when it is run, so
``tbens predict`` on an edge server never imports TensorFlow."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from tbensemble import __version__
from tbensemble.core.errors import TbensError

COMMANDS: dict[str, str] = {
    "make-demo-data": "tbensemble.cli.make_demo_data",
    "check-data": "tbensemble.cli.check_data",
    "train-folds": "tbensemble.cli.train_folds",
    "export": "tbensemble.cli.export",
    "predict": "tbensemble.cli.predict",
    "evaluate": "tbensemble.cli.evaluate",
    "explain": "tbensemble.cli.explain",
    "demo": "tbensemble.cli.demo",
    "recalibrate": "tbensemble.cli.recalibrate",
    "monitor": "tbensemble.cli.monitor",
    "serve": "tbensemble.cli.serve",
    "optimize": "tbensemble.cli.optimize",
}
"""Command name -> module; each module defines ``command``, a ``click.Command``."""
EXIT_INTERRUPTED = 130
"""128 + SIGINT, what a shell reports for a command stopped with Ctrl-C."""


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        return importlib.import_module(module_name).command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TbensError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            # Temp files are already gone (core.atomic); exit as a shell expects of an interrupted command.
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tbens")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors in the log.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """tbensemble: train, export and run CNN ensembles that tell TB from normal chest X-rays.

    \b
    Typical run:
      tbens make-demo-data data/demo
      tbens train-folds --config configs/quickstart.yaml --data data/demo --out artifacts/quickstart
      tbens export artifacts/quickstart
      tbens predict --artifacts artifacts/quickstart --images data/demo/test --out submission.csv
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if not debug:
        # TensorFlow's C++ start-up chatter (oneDNN notes, "failed call to cuInit" logged as an error on
        # every CPU machine) reads like failures to a user; --debug shows it. Python-level errors still raise.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main() -> None:
    """Console-script entry point."""
    cli(obj={})
