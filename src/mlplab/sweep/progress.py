"""Progress display for :func:`mlplab.sweep.run_sweep`: ``run_sweep(..., progress=True)`` shows it.

Two rich bars (groups, batches of the current group) and one line per finished group, the same
display ``mlplab sweep run`` shows; it draws in a terminal or Jupyter and never changes training.
With ``backend="ray"`` only the groups bar and the lines (groups train in Ray workers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mlplab.sweep.planner import Group
from mlplab.sweep.runner import SweepCallback


class SweepProgress(SweepCallback):
    """Two bars (groups, batches of the current group) and one line per finished group."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.groups_task = self.batch_task = None
        self.done = self.total = self.epochs = 0

    def on_sweep_begin(self, groups: Sequence[Group], n_skipped: int) -> None:
        if n_skipped:
            self.progress.console.print(f"resuming: {n_skipped} stored result(s) skipped")
        self.groups_task = self.progress.add_task("groups", total=len(groups))
        self.total = len(groups)

    def on_group_begin(self, n_models: int, epochs: int, batches_per_epoch: int) -> None:
        self.batch_task = self.progress.add_task(f"epoch 1/{epochs}", total=epochs * batches_per_epoch)
        self.epochs = epochs

    def on_batch_end(self, epoch: int, batch: int) -> None:
        self.progress.advance(self.batch_task)

    def on_epoch_end(self, epoch: int, n_alive: int) -> None:
        self.progress.update(self.batch_task, description=f"epoch {min(epoch + 1, self.epochs)}/{self.epochs}")

    def on_group_end(self, group: Group, results) -> None:
        self.done += 1
        if self.batch_task is not None:  # None with Ray: the group trained in a worker, without batch hooks
            self.progress.remove_task(self.batch_task)
            self.batch_task = None
        self.progress.advance(self.groups_task)
        finals = [r.history.final for r in results if r.history.records]
        if group.first.train.loss == "mse":  # regression: no accuracy; the lowest test loss
            best = f"best test loss {min((f.test_loss for f in finals), default=float('nan')):.4g}"
        else:
            best = f"best test acc {max((f.test_acc or 0.0 for f in finals), default=0.0):.4f}"
        diverged = sum(r.history.status == "diverged" for r in results)
        failed = sum(r.history.status.startswith("failed") for r in results)
        seconds = sum(r.seconds for r in results)
        note = f", [bold red]{diverged} diverged[/]" if diverged else ""
        note += f", [bold red]{failed} failed (at chance or loss rose)[/]" if failed else ""
        self.progress.console.print(
            f"group {self.done}/{self.total}: {group.describe()}: {seconds:.1f} s, {best}{note}"
        )


@contextlib.contextmanager
def sweep_progress(console: Console | None = None) -> Iterator[SweepProgress]:
    """The display as a callback for :func:`mlplab.sweep.run_sweep`, live while the block runs."""
    columns = (
        TextColumn("{task.description:>12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console or Console(highlight=False), transient=True) as bar:
        yield SweepProgress(bar)
