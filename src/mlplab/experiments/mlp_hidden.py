"""d2l 4.2/4.3, exercise 1 (the study log's Q1): how does the hidden width change accuracy?

One hidden layer of width 8, 16, ..., 1024, everything else the book's (ReLU, normal(0, 0.01)
init, SGD lr 0.1, batch 256, 10 epochs), every width over ``seeds`` seeds, all trained by the
sweep engine. Reports test and train accuracy per width (mean ± 95% CI), the best width and the
widths the data cannot tell from it (paired over seeds), and 256 against 1024 as a paired CI.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import pandas as pd

from mlplab.errors import ConfigError
from mlplab.experiments.base import (
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

NAME = "mlp-hidden"
WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The hidden-width experiment; ``--quick``: the same epochs on a 10k/5k subset."""

    widths: tuple[int, ...] = WIDTHS  # one hidden layer of each width
    epochs: int = 10  # per model
    lr: float = 0.1  # SGD, the book's setting
    compare_widths: tuple[int, int] = (256, 1024)  # the paired comparison the log asked about

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths):
            raise ConfigError("widths", self.widths, "give one or more integer widths >= 1, e.g. 8,16,32")


def run(config: Config) -> Result:
    """Train every width x seed and return the table, the figure and the conclusions."""
    from mlplab.sweep.spec import SweepSpec

    t0, settings = timed(NAME, config)
    data = classification_data(config)
    epochs = config.epochs
    spec = SweepSpec(
        base={"lr": config.lr, "epochs": epochs},
        grid={"hidden": tuple((w,) for w in config.widths)},
        seeds=tuple(range(config.seeds)),
    )
    runs = sweep(spec, data, config.folder(NAME) / "widths", config)
    results = runs.results.assign(width=runs.results["hidden"].astype(int))
    table = summary_table(results, ["width"], ["final_test_acc", "final_train_acc", "final_test_loss", "seconds"])
    long = pd.concat(
        [
            table[["width", f"final_{split}_acc_mean", f"final_{split}_acc_ci"]]
            .set_axis(["width", "accuracy_mean", "accuracy_ci"], axis=1)
            .assign(split=split)
            for split in ("train", "test")
        ],
        ignore_index=True,
    )
    conclusions = [best(results, "width")]
    a, b = config.compare_widths
    if {a, b} <= set(config.widths):
        conclusions.append(dataclasses.replace(comparison(compare(results, "width", a, b)), key="compare-widths"))
    return Result(
        NAME,
        settings,
        tables={"widths": table, "accuracy": long},
        figures=[
            FigureSpec(
                "accuracy",
                "accuracy",
                "line",
                "width",
                "accuracy",
                by="split",
                logx=True,
                title=f"one hidden layer, SGD lr {config.lr:g}, {epochs} epochs, {config.seeds} seeds",
            ),
        ],  # fmt: skip
        conclusions=conclusions,
        seconds=time.perf_counter() - t0,
    )
