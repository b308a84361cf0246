"""d2l 4.1, exercises (ReLU against sigmoid, tanh and pReLU): which activation trains best here?

One hidden layer of 256 with each activation and everything else the same (normal(0, 0.01)
init, SGD lr 0.1, batch 256, 10 epochs, the same seeds, so the same initial weights and batch
order for every activation), all trained by the sweep engine. Reports test and train accuracy
per activation (mean ± 95% CI), the best activation and the ones the data cannot tell from it,
and ReLU against each other activation as paired CIs over seeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from mlplab.errors import ConfigError, check_choice, check_int, check_real
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
from mlplab.sweep.hyperparameters import BY_NAME

NAME = "activations"
ACTIVATIONS = BY_NAME["activation"].choices  # relu, sigmoid, tanh, prelu: what the models build


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The activation experiment; ``--quick``: 5 epochs on a 10k/5k subset."""

    activations: tuple[str, ...] = ACTIVATIONS  # each trained on the same budget
    width: int = 256  # one hidden layer (the book's)
    lr: float = 0.1  # SGD, the book's setting
    epochs: int = 10  # per model (quick: 5)
    reference: str = "relu"  # compared (paired) with every other activation

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.activations or len(set(self.activations)) != len(self.activations):
            raise ConfigError("activations", self.activations, f"give distinct activations of {', '.join(ACTIVATIONS)}")
        for a in self.activations:
            check_choice("activations", a, ACTIVATIONS)
        check_int("width", self.width, 1)
        check_real("lr", self.lr, 0.0, low_open=True, what="the learning rate")
        check_int("epochs", self.epochs, 1)
        if self.reference not in self.activations:
            raise ConfigError("reference", self.reference, f"must be one of activations: {', '.join(self.activations)}")


def against_reference(results: pd.DataFrame, reference: str = "relu") -> list[Conclusion]:
    """``reference`` against every other activation of ``results``: paired comparisons over seeds.

    ``results`` has one row per run with ``activation``, ``seed`` and ``final_test_acc``; the
    others come in their order of appearance.
    """
    others = [a for a in dict.fromkeys(results["activation"]) if a != reference]
    return [comparison(compare(results, "activation", reference, other)) for other in others]


def run(config: Config) -> Result:
    """Train every activation x seed and return the table, the figure and the conclusions."""
    from mlplab.sweep.spec import SweepSpec

    t0, settings = timed(NAME, config)
    data = classification_data(config)
    epochs = 5 if config.quick else config.epochs
    spec = SweepSpec(
        base={"hidden": (config.width,), "lr": config.lr, "epochs": epochs},
        grid={"activation": config.activations},
        seeds=tuple(range(config.seeds)),
    )
    results = sweep(spec, data, config.folder(NAME) / "activations", config).results
    table = summary_table(results, ["activation"], ["final_test_acc", "final_train_acc", "final_test_loss", "seconds"])
    conclusions = [best(results, "activation"), *against_reference(results, config.reference)]
    return Result(
        NAME,
        settings,
        tables={"activations": table},
        figures=[
            FigureSpec(
                "accuracy",
                "activations",
                "bar",
                "activation",
                "final_test_acc",
                title=f"one hidden layer of {config.width}, SGD lr {config.lr:g}, {epochs} epochs, "
                f"{config.seeds} seeds",
            ),
        ],
        conclusions=conclusions,
        seconds=time.perf_counter() - t0,
    )
