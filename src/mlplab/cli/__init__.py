"""The ``mlplab`` command line: a thin typer app over the library.

Each command lives in a module of this package and only parses flags, calls the library and
prints; anything a command does, a notebook can do with the same library call.
"""

from __future__ import annotations

import typer

from mlplab.cli import data as _data
from mlplab.cli import house as _house
from mlplab.cli import train as _train

app = typer.Typer(
    name="mlplab",
    help="Multilayer perceptrons from Dive into Deep Learning, chapter 4: train, sweep, explore.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(_data.app, name="data")
app.add_typer(_house.app, name="house")
app.command("train")(_train.train)


def main() -> None:
    """Console-script entry point."""
    app()
