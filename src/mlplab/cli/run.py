"""``mlplab run EXPERIMENT``: the chapter's experiments, end to end, under one verb.

Each experiment is the same command as in its own group (``mlplab run shift`` is
``mlplab shift run``); this group is the index of what can be run.
"""

from __future__ import annotations

import typer

from mlplab.cli import shift as _shift

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Run one of the chapter's experiments end to end (tables, figures, JSON).",
    no_args_is_help=True,
)
app.command(
    "shift", help="Distribution shift study (d2l 4.9): label, covariate and concept shift; same as `mlplab shift run`."
)(_shift.run)
