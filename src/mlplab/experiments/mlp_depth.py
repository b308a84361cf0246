"""d2l 4.2/4.3, exercise 2 (the study log's Q2): does depth help, and does it depend on the budget?

The log's Q2 saw 10% test accuracy at the first epoch with three hidden layers and concluded that
depth hurts. With the book's normal(0, 0.01) init and SGD lr 0.1 the signal shrinks by each small
layer, so a deeper net needs some epochs before it leaves chance: what it looks like depends on
when it is read. Here 1 to 4 hidden layers of width 256 (ReLU, batch 256), every depth over
``seeds`` seeds, are read at two epoch budgets (10 and 30).

Each depth is trained **once**, for ``max(budgets)`` epochs, and its accuracy at each budget is
read from its per-epoch history (:func:`accuracy_at`) instead of training a second model for the
shorter budget: with the same seed, the same batch order and a constant learning rate, epoch 10 of
a 30-epoch run is exactly what a 10-epoch run ends with.

Reports the test accuracy per depth and budget (mean ± 95% CI), the accuracy-vs-epoch curves per
depth with CI bands over seeds, the best depth at each budget and the depths not told apart from
it, a paired comparison of 1 against 3 layers at each budget and whether its verdict changes
between the budgets, and how many epochs each depth needs to leave chance
(:func:`first_epoch_above`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
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
from mlplab.stats import Paired

NAME = "mlp-depth"
DEPTHS = (1, 2, 3, 4)
BUDGETS = (10, 30)  # epochs at which the nets are compared
QUICK_BUDGETS = (3, 8)  # --quick: the same question scaled down (about 15 s on an idle 2-core CPU)
MAX_DEPTH = 16  # a typo guard: the book's question is about a handful of layers
METRICS = ("test_acc", "train_acc", "test_loss")  # read from the per-epoch histories


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The depth experiment; ``--quick``: budgets of 3 and 8 epochs on a 10k/5k subset."""

    depths: tuple[int, ...] = DEPTHS  # hidden layers, each of width ``width``
    width: int = 256  # of every hidden layer (the book's single layer)
    budgets: tuple[int, ...] = BUDGETS  # epochs; every depth trains max(budgets) epochs (quick: 3, 8)
    lr: float = 0.1  # SGD, the book's setting
    compare_depths: tuple[int, int] = (1, 3)  # the paired comparison the log asked about
    chance: float = 0.2  # "left chance": the first epoch whose mean test accuracy exceeds this

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            not self.depths
            or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_DEPTH for d in self.depths)
            or len(set(self.depths)) != len(self.depths)
        ):
            raise ConfigError("depths", self.depths, f"give distinct integer depths in [1, {MAX_DEPTH}], e.g. 1,2,3,4")
        check_int("width", self.width, 1)
        if (
            not self.budgets
            or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.budgets)
            or len(set(self.budgets)) != len(self.budgets)
        ):
            raise ConfigError("budgets", self.budgets, "give distinct integer epoch budgets >= 1, e.g. 10,30")
        check_real("lr", self.lr, 0.0, low_open=True, what="the learning rate")
        if len(self.compare_depths) != 2 or self.compare_depths[0] == self.compare_depths[1]:
            raise ConfigError("compare_depths", self.compare_depths, "give two different depths, e.g. (1, 3)")
        check_real("chance", self.chance, 0.0, 1.0, low_open=True, high_open=True, what="an accuracy")


# ---- reading the histories --------------------------------------------------------------------


def depth_of(hidden: pd.Series) -> pd.Series:
    """The number of hidden layers of each ``hidden`` text (``"256-256"`` -> 2, ``"none"`` -> 0).

    Parameters
    ----------
    hidden : Series of str, length n
        Widths joined by ``-``, as the sweep stores them.

    Returns
    -------
    Series of int, length n
    """
    text = hidden.astype(str)
    return (text.str.count("-") + 1).where(text != "none", 0).astype(int)


def accuracy_at(
    histories: pd.DataFrame,
    epochs: Iterable[int],
    keep: Sequence[str] = ("depth", "seed"),
    metrics: Sequence[str] = METRICS,
    column: str = "epoch",
) -> pd.DataFrame:
    """Each run's metrics at each of ``epochs``, read from its per-epoch history.

    A run's value at epoch ``e`` is its record of epoch ``e``; a run whose history ends before
    ``e`` (it diverged and stopped, see ``mlplab.sweep.batched.train_group``) keeps its last
    record, which is also its ``final_*`` result: so it counts as what it ended with, never drops
    out of the mean.

    Parameters
    ----------
    histories : DataFrame
        One row per (run, epoch): ``key`` (the run), ``epoch`` (1-based), the ``keep`` columns and
        the ``metrics``, as :func:`mlplab.experiments.base.sweep` returns with ``histories=True``.
    epochs : iterable of int
        The epochs (budgets) to read.
    keep : column names
        Columns of the run to carry (they identify its configuration and seed).
    metrics : column names
    column : str
        The name of the output's epoch column (``budget`` for budgets).

    Returns
    -------
    DataFrame of shape (len(epochs) * runs, 1 + len(keep) + len(metrics))
        ``column``, the ``keep`` columns and the ``metrics``, epochs in the order given, runs in
        the order of their first row in ``histories``.
    """
    parts = []
    for e in epochs:
        upto = histories[histories["epoch"] <= e]
        last = upto.loc[upto.groupby("key", sort=False)["epoch"].idxmax()]  # one row per run
        parts.append(last[[*keep, *metrics]].assign(**{column: int(e)}))
    columns = [column, *keep, *metrics]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def first_epoch_above(
    curves: pd.DataFrame, threshold: float, by: str = "depth", metric: str = "test_acc"
) -> dict[object, int | None]:
    """The first epoch at which each value of ``by`` has a mean ``metric`` above ``threshold``.

    Parameters
    ----------
    curves : DataFrame
        One row per (``by`` value, epoch) with ``epoch`` and ``<metric>_mean`` (a
        :func:`mlplab.experiments.base.summary_table` of the per-epoch results).
    threshold : float
        Strictly above it counts (0.2 on ten classes: twice chance).

    Returns
    -------
    dict
        ``{value: epoch}``, ``None`` for a value that never gets above it; values in the order
        they first appear in ``curves``.
    """
    above = curves[curves[f"{metric}_mean"] > threshold]
    first = above.groupby(by, sort=False)["epoch"].min()
    return {v: (int(first[v]) if v in first.index else None) for v in dict.fromkeys(curves[by])}


def chance_conclusion(first: Mapping[object, int | None], threshold: float, epochs: int) -> Conclusion:
    """``epochs to leave chance (...): depth 1: 1, depth 3: 4, depth 4: not within 30`` from :func:`first_epoch_above`."""
    parts = [f"depth {d}: {e if e is not None else f'not within {epochs}'}" for d, e in first.items()]
    return Conclusion(
        f"epochs to leave chance (first epoch with mean test_acc > {threshold:g}): " + ", ".join(parts),
        {"threshold": threshold, "epochs": epochs, "first_epoch": dict(first)},
        "leave-chance",
    )


def ranking_change(pairs: Mapping[int, Paired]) -> Conclusion:
    """Whether a paired comparison gives the same verdict at every budget.

    Parameters
    ----------
    pairs : {budget: Paired}
        The same two configurations compared at each epoch budget.

    Returns
    -------
    Conclusion
        Its values hold ``verdicts`` ({budget: winner label or None}) and ``changes`` (True when
        the verdicts differ between budgets: a winner flips, or one budget tells them apart and
        another does not).
    """
    first = next(iter(pairs.values()))
    verdicts = {b: p.winner for b, p in pairs.items()}
    changes = len(set(verdicts.values())) > 1
    said = "; ".join(f"at {b} epochs {w or 'neither (not told apart)'}" for b, w in verdicts.items())
    text = (
        f"{first.a} vs {first.b}: the verdict {'changes' if changes else 'is the same'} between budgets: "
        f"{said} (paired 95% CIs over seeds)"
    )
    return Conclusion(text, {"a": first.a, "b": first.b, "verdicts": verdicts, "changes": changes}, "depth-budgets")


def _at(budget: int, conclusion: Conclusion) -> Conclusion:
    return Conclusion(f"at {budget} epochs: {conclusion.text}", {**conclusion.values, "budget": budget})


# ---- the experiment ---------------------------------------------------------------------------


def run(config: Config) -> Result:
    """Train every depth x seed for ``max(budgets)`` epochs; read each budget from the histories."""
    from mlplab.sweep.spec import SweepSpec

    t0, settings = timed(NAME, config)
    data = classification_data(config)
    budgets = tuple(sorted(QUICK_BUDGETS if config.quick else config.budgets))
    epochs = budgets[-1]
    spec = SweepSpec(
        base={"lr": config.lr, "epochs": epochs},
        grid={"hidden": tuple((config.width,) * d for d in config.depths)},
        seeds=tuple(range(config.seeds)),
    )
    runs = sweep(spec, data, config.folder(NAME) / "depths", config, histories=True)
    histories = runs.histories.assign(depth=depth_of(runs.histories["hidden"]))
    at_budget = accuracy_at(histories, budgets, column="budget")
    table = summary_table(at_budget, ["budget", "depth"], METRICS)
    curves = summary_table(accuracy_at(histories, range(1, epochs + 1)), ["epoch", "depth"], ["test_acc"])
    first = first_epoch_above(curves, config.chance)
    chance = pd.DataFrame({"depth": list(first), "first_epoch_above": pd.array(list(first.values()), "Int64")})

    conclusions = [_at(b, best(at_budget[at_budget["budget"] == b], "depth", "test_acc")) for b in budgets]
    a, b = config.compare_depths
    if {a, b} <= set(config.depths):
        pairs = {n: compare(at_budget[at_budget["budget"] == n], "depth", a, b, "test_acc") for n in budgets}
        conclusions += [_at(n, comparison(p)) for n, p in pairs.items()]
        conclusions.append(ranking_change(pairs))
    conclusions.append(chance_conclusion(first, config.chance, epochs))
    setting = f"width {config.width}, SGD lr {config.lr:g}, {config.seeds} seeds"
    return Result(
        NAME,
        settings,
        tables={"depths": table, "curves": curves, "chance": chance},
        figures=[
            FigureSpec(
                "curves",
                "curves",
                "line",
                "epoch",
                "test_acc",
                by="depth",
                title=f"test accuracy per epoch by depth ({setting})",
            ),
            FigureSpec(
                "depths",
                "depths",
                "line",
                "depth",
                "test_acc",
                by="budget",
                title=f"test accuracy by depth at each epoch budget ({setting})",
            ),
        ],
        conclusions=conclusions,
        seconds=time.perf_counter() - t0,
    )
