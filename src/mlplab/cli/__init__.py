"""The ``mlplab`` command line: a thin typer app over the library.

Each command lives in a module of this package and only parses flags, calls the library and
prints; anything a command does, a notebook can do with the same library call.
"""

from __future__ import annotations

from importlib import metadata

import typer

from mlplab import __version__
from mlplab.cli import data as _data
from mlplab.cli import doctor as _doctor
from mlplab.cli import house as _house
from mlplab.cli import report as _report
from mlplab.cli import run as _run
from mlplab.cli import shift as _shift
from mlplab.cli import sweep as _sweep
from mlplab.cli import train as _train
from mlplab.cli._common import set_debug

app = typer.Typer(
    rich_markup_mode="markdown",
    name="mlplab",
    help="Multilayer perceptrons from Dive into Deep Learning, chapter 4: train, sweep, explore.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        try:  # read from the installed metadata: importing torch would take seconds
            torch_version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            torch_version = "not installed"
        typer.echo(f"mlplab {__version__} (torch {torch_version})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an unexpected error (a bug) instead of one line."
    ),
) -> None:
    """Multilayer perceptrons from Dive into Deep Learning, chapter 4: train, sweep, explore."""
    set_debug(debug)


app.command("train")(_train.train)
app.command("doctor")(_doctor.doctor)
app.command("report")(_report.report)
app.add_typer(_sweep.app, name="sweep")
app.add_typer(_shift.app, name="shift")
app.add_typer(_house.app, name="house")
app.add_typer(_run.app, name="run")
app.add_typer(_data.app, name="data")


def main() -> None:
    """Console-script entry point."""
    app()
