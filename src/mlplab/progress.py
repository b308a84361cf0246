"""Progress displays for long library calls: ``fit(..., progress=True)`` shows one.

A rich progress bar over the run's mini-batches and a table row per finished epoch, the same
display ``mlplab train`` shows. It draws in a terminal and in Jupyter (rich renders there too), and
it only draws: it never changes training. Nothing is imported or drawn unless asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlplab.train import Callback, EpochRecord, History, TrainConfig

HEADER = f"{'epoch':>5}  {'train_loss':>10}  {'train_acc':>9}  {'test_loss':>9}  {'test_acc':>8}  {'seconds':>7}"


def format_record(r: EpochRecord) -> str:
    """One row under :data:`HEADER`; ``-`` for a metric the run does not have (accuracy of a regression)."""

    def num(v, width, digits=4):
        return f"{'-':>{width}}" if v is None else f"{v:>{width}.{digits}f}"

    return (
        f"{r.epoch:>5}  {num(r.train_loss, 10)}  {num(r.train_acc, 9)}  {num(r.test_loss, 9)}  "
        f"{num(r.test_acc, 8)}  {num(r.seconds, 7, 2)}"
    )


class EpochProgress(Callback):
    """A progress bar over batches and epochs, and a table row per finished epoch (it only draws)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = None

    def on_train_begin(self, config: TrainConfig, batches_per_epoch: int, history: History) -> None:
        total = batches_per_epoch * config.epochs
        done = batches_per_epoch * len(history.records)
        self.task = self.progress.add_task("training", total=total, completed=done)
        self.progress.console.print(HEADER)

    def on_batch_end(self, epoch: int, batch: int) -> None:
        self.progress.advance(self.task)

    def on_epoch_end(self, record: EpochRecord) -> None:
        self.progress.console.print(format_record(record))


@contextlib.contextmanager
def epoch_progress(console: Console | None = None) -> Iterator[EpochProgress]:
    """The display as a callback for :func:`mlplab.train.fit`, live while the block runs."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console or Console(highlight=False), transient=True) as bar:
        yield EpochProgress(bar)


class StepProgress:
    """A ``progress(done, total, label)`` callback drawing one rich bar (House Prices CV and fits)."""

    def __init__(self, bar: Progress, description: str) -> None:
        self.bar = bar
        self.task = bar.add_task(description, total=None)

    def __call__(self, done: int, total: int, label: str) -> None:
        self.bar.update(self.task, completed=done, total=total, description=label)


@contextlib.contextmanager
def step_progress(description: str, console: Console | None = None) -> Iterator[StepProgress]:
    """A :class:`StepProgress` live while the block runs (on stderr unless ``console`` says otherwise)."""
    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console or Console(stderr=True, highlight=False), transient=True) as bar:
        yield StepProgress(bar, description)
