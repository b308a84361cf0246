"""d2l 4.2/4.3, exercise 3 (the study log's Q3): which learning rate works best?

The log guessed 0.03. Here one hidden layer of 256 (ReLU, normal(0, 0.01) init, SGD, batch 256,
10 epochs) is trained at learning rates on a log grid (0.01, 0.03, 0.1, 0.3, 1), every rate over
``seeds`` seeds, by the sweep engine. Reports test and train accuracy per rate (mean ± 95% CI),
the best rate and the rates the data cannot tell from it (paired over seeds), the best against
the log's 0.03 as a paired CI, and how many runs of each rate diverged or failed (their
``status``, see :func:`mlplab.train.outcome`), counted from the stored runs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pandas as pd

from mlplab.errors import ConfigError, check_int, check_real
from mlplab.experiments.base import (
    Conclusion,
    ExperimentConfig,
    FigureSpec,
    Result,
    best,
    classification_data,
    compare,
    comparison,
    summary_table,
    sweep,
    timed,
)
from mlplab.train import STATUSES

NAME = "mlp-lr"
LRS = (0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The learning-rate experiment; ``--quick``: 5 epochs on a 10k/5k subset."""

    lrs: tuple[float, ...] = LRS  # SGD learning rates, a log grid
    width: int = 256  # one hidden layer (the book's)
    epochs: int = 10  # per model (quick: 5)
    guess: float = 0.03  # the log's guess, compared with the best (paired)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lrs or len(set(self.lrs)) != len(self.lrs):
            raise ConfigError("lrs", self.lrs, "give one or more distinct learning rates > 0, e.g. 0.01,0.1,1")
        for lr in self.lrs:
            check_real("lrs", lr, 0.0, low_open=True, what="every learning rate")
        check_int("width", self.width, 1)
        check_int("epochs", self.epochs, 1)
        check_real("guess", self.guess, 0.0, low_open=True, what="the learning rate")


def status_column(status: str) -> str:
    """A status as a column name: ``"failed: at chance"`` -> ``"failed_at_chance"``."""
    return re.sub(r"[^0-9a-z]+", "_", status.lower()).strip("_")


def status_counts(results: pd.DataFrame, column: str) -> pd.DataFrame:
    """How many runs of each value of ``column`` ended with each status.

    Parameters
    ----------
    results : DataFrame
        One row per run with ``column`` and ``status`` (one of :data:`mlplab.train.STATUSES`).
    column : str

    Returns
    -------
    DataFrame of shape (values, 1 + statuses)
        ``column`` (values in order of appearance), then one integer column per status of
        :data:`~mlplab.train.STATUSES` (``ok``, ``diverged``, ``failed_at_chance``,
        ``failed_loss_rose``) and per other status found, named by :func:`status_column`.
    """
    found = [*STATUSES, *(s for s in dict.fromkeys(results["status"]) if s not in STATUSES)]
    counts = pd.crosstab(pd.Categorical(results[column], dict.fromkeys(results[column])), results["status"])
    counts = counts.reindex(columns=found, fill_value=0).rename(columns=status_column)
    counts.columns.name = None
    return counts.rename_axis(column).reset_index().astype({status_column(s): int for s in found})


def status_conclusion(counts: pd.DataFrame, column: str) -> Conclusion:
    """``runs per status: lr=0.01: 3 ok; lr=1: 2 diverged, 1 ok`` from :func:`status_counts`."""
    from mlplab.sweep.hyperparameters import value_text

    statuses = [c for c in counts.columns if c != column]
    parts, values = [], {}
    for row in counts.to_dict("records"):
        nonzero = {s: int(row[s]) for s in statuses if row[s]}
        values[value_text(row[column])] = nonzero
        parts.append(f"{column}={value_text(row[column])}: " + ", ".join(f"{n} {s}" for s, n in nonzero.items()))
    bad = int(counts[[s for s in statuses if s != "ok"]].to_numpy().sum())
    text = f"runs by status ({bad} not ok): " + "; ".join(parts)
    return Conclusion(text, {"column": column, "counts": values, "not_ok": bad})


def against_guess(results: pd.DataFrame, top: float, guess: float) -> Conclusion:
    """The best learning rate ``top`` against the log's ``guess``: a paired comparison over seeds.

    When the guess is the best itself there is nothing to compare: the conclusion says so.
    ``results`` has one row per run with ``lr``, ``seed`` and ``final_test_acc``.
    """
    if top == guess:
        return Conclusion(
            f"the log's guess lr={guess:g} is the best learning rate", {"best": top, "guess": guess}, "log-guess"
        )
    c = comparison(compare(results, "lr", top, guess))
    return Conclusion(
        f"the best against the log's guess: {c.text}", {**c.values, "best": top, "guess": guess}, "log-guess"
    )


def run(config: Config) -> Result:
    """Train every learning rate x seed and return the table, the figure and the conclusions."""
    from mlplab.sweep.spec import SweepSpec

    t0, settings = timed(NAME, config)
    data = classification_data(config)
    epochs = 5 if config.quick else config.epochs
    spec = SweepSpec(
        base={"hidden": (config.width,), "epochs": epochs},
        grid={"lr": config.lrs},
        seeds=tuple(range(config.seeds)),
    )
    results = sweep(spec, data, config.folder(NAME) / "lrs", config).results
    counts = status_counts(results, "lr")
    table = summary_table(results, ["lr"], ["final_test_acc", "final_train_acc", "final_test_loss", "seconds"])
    table = table.merge(counts, on="lr", how="left")
    long = pd.concat(
        [
            table[["lr", f"final_{split}_acc_mean", f"final_{split}_acc_ci"]]
            .set_axis(["lr", "accuracy_mean", "accuracy_ci"], axis=1)
            .assign(split=split)
            for split in ("train", "test")
        ],
        ignore_index=True,
    )
    top = best(results, "lr")
    conclusions = [top]
    if config.guess in config.lrs:
        conclusions.append(against_guess(results, top.values["best"], config.guess))
    conclusions.append(status_conclusion(counts, "lr"))
    return Result(
        NAME,
        settings,
        tables={"lrs": table, "accuracy": long},
        figures=[
            FigureSpec(
                "accuracy",
                "accuracy",
                "line",
                "lr",
                "accuracy",
                by="split",
                logx=True,
                title=f"one hidden layer of {config.width}, SGD, {epochs} epochs, {config.seeds} seeds",
            ),
        ],
        conclusions=conclusions,
        seconds=time.perf_counter() - t0,
    )
