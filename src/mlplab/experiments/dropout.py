"""d2l 4.6 "Dropout" and the study log's dropout section, answered over seeds.

Four parts, all on the book's 784-256-256-10 ReLU net (normal(0, 0.01) init, SGD lr 0.5, batch 256):

1. **Scratch vs concise.** The from-scratch :class:`mlplab.scratch.MLP` (hand-written forward and
   backward) and the concise ``build_mlp`` with dropout 0.2 / 0.5, both trained by
   :func:`mlplab.train.fit` on the same seeds (so from the same initial weights and batch order;
   the initial weights are compared, not assumed), and the same cell trained by the batched
   sweep engine. Their dropout masks come from different random streams (the scratch MLP's own
   generator, the global RNG that ``fit`` seeds, the engine's per-layer streams), so they are
   not bit-equal: the answer is a paired comparison over seeds of final test accuracy.
2. **The log's 10 x 10 grid** of dropout1 x dropout2 in 0, 0.1, ..., 0.9 (10 epochs), through
   the sweep engine: a heatmap, the best cell and the cells not told apart from it, and the
   log's Q1 ("what if the two layers' rates are swapped?") as paired comparisons of the cell
   (p1 = a, p2 = b) against (p1 = b, p2 = a), one per pair and averaged over every pair a < b.
3. **Dropout left on at test time** (the bug of d2l issue #1093): the concise models of part 1
   evaluated in train mode (dropout active, masks from a fixed seed) against eval mode.
4. **Dropout with weight decay** (the log's Q4): weight decay 0, 1e-4, 1e-3, 3 x dropout 0, 0.5.
   Weight decay 3 at lr 0.5 leaves every model at chance; the conclusion computes why from the
   SGD update ``w <- (1 - lr wd) w - lr g``: the factor ``1 - 0.5 * 3 = -0.5`` is negative, so
   every weight flips sign at every step; it counts the failed models per cell from their stored
   status and quotes :func:`mlplab.doctor.check`, which refuses that setting before training
   (the sweep engine trains what it is given; only the CLI consults the doctor).

Parts 2 and 4 and part 1's batched cell share one store (``OUT/.../models``): a configuration
that two parts train (the grid's (0, 0) and (0.5, 0.5) cells are part 4's weight decay 0) is
trained once. ``--quick``: a 10k/5k subset, 3 epochs (far from trained: a first look), the grid
0, 0.5, 0.9 and weight decay 0, 1e-3, 3: 42 models through the engine and 6 through ``fit``, about
45 s at one CPU thread. The full run (the 10 x 10 x 3 grid took about 50 minutes at one thread;
plus 18 weight-decay models and 6 models through ``fit``) takes about an hour on a CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from mlplab.data import Data, Split, batches
from mlplab.errors import ConfigError, check_int, check_probability, check_real
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
from mlplab.init import parse_init
from mlplab.stats import MeanCI, mean_ci, paired
from mlplab.train import AT_CHANCE

NAME = "dropout"
GRID = tuple(round(0.1 * i, 10) for i in range(10))  # 0, 0.1, ..., 0.9: the log's grid
QUICK_GRID = (0.0, 0.5, 0.9)  # holds 0 and 0.5, so part 4's weight decay 0 cells come from the grid
SWAP_PAIRS = ((0.2, 0.5), (0.1, 0.9), (0.0, 0.9))  # (a, b): cell (a, b) against (b, a), where both are in the grid
WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 3.0)  # 3: the log's Q4 setting, which collapsed every model
QUICK_WEIGHT_DECAYS = (0.0, 1e-3, 3.0)  # one decay that trains, one that collapses
WD_DROPOUTS = (0.0, 0.5)  # dropout after both hidden layers, with each weight decay
METRICS = ["final_test_acc", "final_train_acc", "final_test_loss", "final_train_loss"]


def _probabilities(name: str, values: object, *, at_least: int = 1) -> None:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) < at_least:
        raise ConfigError(name, values, f"give {at_least} or more dropout probabilities in [0, 1), e.g. 0,0.5,0.9")
    for i, p in enumerate(values):
        check_probability(f"{name}[{i}]", p)
    if len(set(values)) != len(values):
        raise ConfigError(name, values, "the values must be distinct")


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The dropout experiment; ``--quick``: 3 epochs of a 10k/5k subset, the grid 0, 0.5, 0.9, weight decay 0, 1e-3, 3."""

    hidden: tuple[int, ...] = (256, 256)  # the book's two hidden layers (the grid needs exactly two)
    dropout: tuple[float, float] = (0.2, 0.5)  # the book's p1, p2 (parts 1 and 3)
    init: str = "normal:0.01"  # the book's weight init (tests use xavier: tiny nets at normal(0.01) barely move)
    lr: float = 0.5  # SGD, the book's setting
    batch_size: int = 256
    epochs: int = 10  # per model, as the log trained
    quick_epochs: int = 3  # per model with --quick (a first look: far from trained)
    grid: tuple[float, ...] = GRID  # dropout1 and dropout2 values of the grid
    quick_grid: tuple[float, ...] = QUICK_GRID  # the grid with --quick
    swap_pairs: tuple[tuple[float, float], ...] = SWAP_PAIRS  # reported one by one where both cells exist
    weight_decays: tuple[float, ...] = WEIGHT_DECAYS  # part 4
    quick_weight_decays: tuple[float, ...] = QUICK_WEIGHT_DECAYS  # part 4 with --quick
    wd_dropouts: tuple[float, ...] = WD_DROPOUTS  # part 4: dropout after every hidden layer

    def __post_init__(self) -> None:
        super().__post_init__()
        hidden = self.hidden
        if (
            isinstance(hidden, (str, bytes))
            or not isinstance(hidden, Sequence)
            or len(hidden) != 2
            or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in hidden)
        ):
            raise ConfigError(
                "hidden", hidden, "give two integer widths >= 1 (the grid sets one rate per layer), e.g. 256,256"
            )
        if isinstance(self.dropout, (str, bytes)) or not isinstance(self.dropout, Sequence) or len(self.dropout) != 2:
            raise ConfigError("dropout", self.dropout, "give the two layers' probabilities, e.g. 0.2,0.5")
        for i, p in enumerate(self.dropout):
            check_probability(f"dropout[{i}]", p)
        parse_init(self.init)  # a ConfigError naming init
        check_real("lr", self.lr, 0.0, low_open=True, what="the learning rate")
        check_int("batch_size", self.batch_size, 1)
        check_int("epochs", self.epochs, 1)
        check_int("quick_epochs", self.quick_epochs, 1)
        _probabilities("grid", self.grid)
        _probabilities("quick_grid", self.quick_grid)
        for pair in self.swap_pairs:
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2 or pair[0] == pair[1]:
                raise ConfigError(
                    "swap_pairs", pair, "give pairs (a, b) of two different probabilities, e.g. (0.2, 0.5)"
                )
            _probabilities("swap_pairs", pair, at_least=2)
        for name in ("weight_decays", "quick_weight_decays"):
            wds = getattr(self, name)
            if isinstance(wds, (str, bytes)) or not isinstance(wds, Sequence) or not wds or len(set(wds)) != len(wds):
                raise ConfigError(name, wds, "give one or more distinct weight decays >= 0, e.g. 0,1e-4,3")
            for i, wd in enumerate(wds):
                check_real(f"{name}[{i}]", wd, 0.0, what="weight decay")
        _probabilities("wd_dropouts", self.wd_dropouts)


# ---- part 1: the book's net, from scratch and concise, through fit -----------------------------


def initial_weight_gap(scratch, concise: nn.Sequential) -> float:
    """Largest ``|W_scratch - W_concise^T|`` over the layers: 0 when both start from the same weights.

    Parameters
    ----------
    scratch : mlplab.scratch.MLP
        Weights ``W_l`` of shape (n_{l-1}, n_l).
    concise : nn.Sequential
        From ``build_mlp``: ``nn.Linear`` weights of shape (n_l, n_{l-1}), in the same order.
    """
    linears = [m for m in concise if isinstance(m, nn.Linear)]
    if len(linears) != len(scratch.weights):
        raise ConfigError("concise", len(linears), f"expected {len(scratch.weights)} Linear layers, as the scratch MLP")
    gaps = [(w - lin.weight.detach().T.to(w)).abs().max().item() for w, lin in zip(scratch.weights, linears)]
    return max(gaps)


def train_book_models(
    config: Config, data: Data, epochs: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[int, nn.Sequential], float]:
    """Train the scratch and the concise net of dropout ``config.dropout`` with ``fit``, per seed.

    Both are built from ``torch.Generator().manual_seed(seed)``, so they start from the same
    weights (the returned gap says so, measured), and ``fit`` gives them the same batch order.

    Returns
    -------
    finals : DataFrame
        One row per (implementation, seed): the final metrics, ``status`` and ``seconds``.
    curves : DataFrame
        One row per (implementation, seed, epoch): ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``.
    concise : dict
        ``{seed: trained concise model}`` (for part 3: nothing is retrained).
    gap : float
        :func:`initial_weight_gap` over the seeds (0.0: identical starts).
    """
    from mlplab.models import ModelConfig, build_mlp
    from mlplab.scratch import MLP
    from mlplab.train import TrainConfig, fit

    n_in, n_out = data.train.X.shape[1], data.n_classes
    model_config = ModelConfig(
        hidden=config.hidden, dropout=config.dropout, init=config.init, n_inputs=n_in, n_outputs=n_out
    )
    finals, curves, models, gap = [], [], {}, 0.0
    for seed in range(config.seeds):
        train = TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=config.lr, seed=seed, device=config.device)
        scratch = MLP([n_in, *config.hidden, n_out], dropout=config.dropout, init=model_config.init,
                      generator=torch.Generator().manual_seed(seed))  # fmt: skip
        concise = build_mlp(model_config, torch.Generator().manual_seed(seed))
        gap = max(gap, initial_weight_gap(scratch, concise))
        for name, model in (("scratch", scratch), ("concise", concise)):
            t0 = time.perf_counter()
            history = fit(model, data, train, progress=config.progress)
            last = history.final
            finals.append({"implementation": name, "seed": seed, "final_test_acc": last.test_acc,
                           "final_train_acc": last.train_acc, "final_test_loss": last.test_loss,
                           "final_train_loss": last.train_loss, "status": history.status,
                           "seconds": time.perf_counter() - t0})  # fmt: skip
            curves += [{"implementation": name, "seed": seed, "epoch": r.epoch, "train_loss": r.train_loss,
                        "train_acc": r.train_acc, "test_loss": r.test_loss, "test_acc": r.test_acc}
                       for r in history.records]  # fmt: skip
        models[seed] = concise
    return pd.DataFrame(finals), pd.DataFrame(curves), models, gap


# ---- part 2: the grid and the swap of the two layers' rates ------------------------------------


def cell_label(p1: float, p2: float) -> str:
    """``dropout1=0.2 dropout2=0.5``: a grid cell, as a trial's label writes it."""
    return f"dropout1={p1:g} dropout2={p2:g}"


def _rounded(results: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    # grid values come back from the store as parsed text; rounding makes 0.1 * 3 match 0.3
    return results.assign(**{c: results[c].astype(float).round(10) for c in columns})


def swap_differences(results: pd.DataFrame, metric: str = "final_test_acc") -> pd.DataFrame:
    """Per seed and pair ``a < b`` of grid values: ``metric(p1=a, p2=b) - metric(p1=b, p2=a)``.

    Parameters
    ----------
    results : DataFrame
        One row per (cell, seed), with columns ``dropout1``, ``dropout2``, ``seed`` and ``metric``.

    Returns
    -------
    DataFrame
        Columns ``a``, ``b``, ``seed``, ``ab`` (the cell (a, b)), ``ba`` (the cell (b, a)) and
        ``difference`` = ab - ba: positive when the larger rate is better on the second layer.
        Only pairs whose two cells are both in ``results``, and seeds that ran both.
    """
    cells = _rounded(results, ["dropout1", "dropout2"]).pivot(
        index="seed", columns=["dropout1", "dropout2"], values=metric
    )
    values = sorted(set(cells.columns.get_level_values(0)) & set(cells.columns.get_level_values(1)))
    parts = []
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            if (a, b) not in cells.columns or (b, a) not in cells.columns:
                continue
            part = pd.DataFrame({"a": a, "b": b, "seed": cells.index, "ab": cells[(a, b)].to_numpy(),
                                 "ba": cells[(b, a)].to_numpy()})  # fmt: skip
            parts.append(part.dropna(subset=["ab", "ba"]))
    columns = ["a", "b", "seed", "ab", "ba", "difference"]
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)
    out["seed"] = out["seed"].astype(int)
    return out.assign(difference=out["ab"] - out["ba"])[columns]


def swap_table(differences: pd.DataFrame, metric: str = "final_test_acc") -> pd.DataFrame:
    """One row per pair of :func:`swap_differences`: both cells' means and the paired difference.

    Columns ``a``, ``b``, ``pair`` (``a/b``), ``ab_mean``, ``ba_mean``, ``difference_mean``,
    ``difference_ci`` (95% half-width over seeds), ``n`` (seeds) and ``winner`` (the better cell's
    label, or ``""`` when the interval includes 0).
    """
    rows = []
    for (a, b), part in differences.groupby(["a", "b"], sort=True):
        p = paired(dict(zip(part["seed"], part["ab"])), dict(zip(part["seed"], part["ba"])),
                   labels=(cell_label(a, b), cell_label(b, a)), metric=metric)  # fmt: skip
        rows.append({"a": a, "b": b, "pair": f"{a:g}/{b:g}", "ab_mean": p.a_mean, "ba_mean": p.b_mean,
                     "difference_mean": p.difference.mean, "difference_ci": p.difference.half_width,
                     "n": p.difference.n, "winner": p.winner or ""})  # fmt: skip
    columns = ["a", "b", "pair", "ab_mean", "ba_mean", "difference_mean", "difference_ci", "n", "winner"]
    return pd.DataFrame(rows, columns=columns)


def overall_swap(differences: pd.DataFrame) -> MeanCI:
    """The mean over all pairs of ``ab - ba``, with a 95% CI over seeds.

    Per seed the differences are averaged over the pairs (only seeds that ran every pair count,
    so each seed's average is over the same pairs); the interval is then ``mean_ci`` of those
    per-seed averages: the seeds are the independent replicates, the pairs of one seed are not.
    """
    if differences.empty:
        return MeanCI(math.nan, math.nan, 0)
    n_pairs = len(differences.groupby(["a", "b"]))
    per_seed = differences.groupby("seed")["difference"].agg(["mean", "count"])
    return mean_ci(per_seed.loc[per_seed["count"] == n_pairs, "mean"])


def swap_conclusions(
    differences: pd.DataFrame, pairs: Sequence[tuple[float, float]], metric: str = "final_test_acc"
) -> list[Conclusion]:
    """The log's Q1: the chosen pairs one by one (those in the grid), then every pair together.

    The overall sentence says the layers' rates are interchangeable when the CI of the mean
    difference includes 0, and otherwise on which layer the larger rate does better.
    """
    table = swap_table(differences, metric)
    out = []
    for a, b in pairs:
        a, b = sorted((round(float(a), 10), round(float(b), 10)))
        part = differences[(differences["a"] == a) & (differences["b"] == b)]
        if part.empty:
            continue
        p = paired(dict(zip(part["seed"], part["ab"])), dict(zip(part["seed"], part["ba"])),
                   labels=(cell_label(a, b), cell_label(b, a)), metric=metric)  # fmt: skip
        c = comparison(p)
        out.append(Conclusion(f"swapping the two layers' rates: {c.text}", {**c.values, "pair": (a, b)}))
    ci = overall_swap(differences)
    if ci.n == 0:
        return out
    larger_second = [cell_label(a, b) for a, b in zip(table["a"], table["b"])]  # a < b: the larger rate on layer 2
    on_second = int((table["winner"] == larger_second).sum())
    on_first = int(((table["winner"] != "") & (table["winner"] != larger_second)).sum())
    if math.isnan(ci.half_width):
        verdict = "no interval (need >= 2 seeds)"
        interchangeable = None
    elif ci.low > 0:
        verdict = "not interchangeable: the larger rate does better on the second (deeper) layer"
        interchangeable = False
    elif ci.high < 0:
        verdict = "not interchangeable: the larger rate does better on the first layer"
        interchangeable = False
    else:
        verdict = "interchangeable within this noise: the interval includes 0"
        interchangeable = True
    text = (
        f"Q1, are the two layers' rates interchangeable? Over all {len(table)} pairs a < b of the grid, "
        f"{metric}(dropout1=a, dropout2=b) - {metric}(dropout1=b, dropout2=a) = {ci.mean:+.4f}"
        + ("" if math.isnan(ci.half_width) else f" ± {ci.half_width:.4f}")
        + f" (per seed the mean over the pairs, then a 95% CI over {ci.n} seeds): {verdict}. "
        f"One by one, {on_second} pair(s) favour the larger rate on the second layer, {on_first} on the first, "
        f"{len(table) - on_second - on_first} are not told apart"
    )
    values = {"mean": ci.mean, "ci": ci.half_width, "n": ci.n, "pairs": len(table), "interchangeable": interchangeable,
              "larger_on_second": on_second, "larger_on_first": on_first}  # fmt: skip
    return [*out, Conclusion(text, values, "q1-swap")]


def grid_best(results: pd.DataFrame, metric: str = "final_test_acc", listed: int = 6) -> Conclusion:
    """The grid cell with the best mean ``metric`` and how many others the data cannot tell from it.

    :func:`mlplab.experiments.base.best` over the cell label; the cells not told apart are listed
    when there are at most ``listed`` of them (on a 10 x 10 grid with 3 seeds most are: counted).
    """
    cells = _rounded(results, ["dropout1", "dropout2"])
    cells = cells.assign(cell=[cell_label(a, b) for a, b in zip(cells["dropout1"], cells["dropout2"])])
    c = best(cells, "cell", metric)
    tied, others = c.values["tied"], cells["cell"].nunique() - 1
    ci = MeanCI(c.values["mean"], c.values["ci"], c.values["n"])
    text = f"best cell of the grid: {c.values['best']}, {metric} {ci.format()} ({ci.n} seeds); "
    if tied:
        text += f"the data cannot tell it from {len(tied)} of the {others} other cells (paired 95% CIs include 0)"
        text += f": {', '.join(tied)}" if len(tied) <= listed else ""
    elif others:
        text += f"it beats each of the {others} other cells (paired 95% CIs)"
    else:
        text += "the only cell"
    return Conclusion(text, {**c.values, "others": others})


# ---- part 3: dropout left on at test time ----------------------------------------------------


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, *, dropout_on: bool, seed: int = 0, batch_size: int = 8192) -> float:
    """Accuracy of ``model`` on ``split`` in eval mode, or in train mode (dropout active).

    Train mode is what evaluating without ``model.eval()`` does (d2l issue #1093). Its masks come
    from the global RNG (``nn.Dropout``'s), here forked and seeded with ``seed``, so the number is
    reproducible and the caller's RNG state is untouched. The model's mode is restored after.

    Parameters
    ----------
    model : nn.Module
        Maps X of shape (B, d) to logits (B, k).
    split : Split
        ``X`` (n, d) and int64 labels ``y`` (n,); moved to the model's device.
    dropout_on : bool
        True: ``model.train()``; False: ``model.eval()``.
    """
    device = next(model.parameters()).device
    split = split.to(device)
    was_training = model.training
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model.train(dropout_on)
        try:
            for X, y in batches(split, batch_size, shuffle=False):
                correct += (model(X).argmax(dim=1) == y).sum()
        finally:
            model.train(was_training)
    return correct.item() / len(split)


def eval_vs_train_mode(models: Mapping[int, nn.Module], split: Split) -> pd.DataFrame:
    """Per seed: ``eval_acc`` (dropout off) and ``train_mode_acc`` (dropout on, masks seeded by the seed)."""
    rows = [{"seed": s, "eval_acc": accuracy(m, split, dropout_on=False),
             "train_mode_acc": accuracy(m, split, dropout_on=True, seed=s)} for s, m in models.items()]  # fmt: skip
    return pd.DataFrame(rows, columns=["seed", "eval_acc", "train_mode_acc"])


def left_on_conclusion(per_seed: pd.DataFrame, what: str) -> Conclusion:
    """Eval mode against train mode at test time, as a paired comparison over seeds."""
    p = paired(dict(zip(per_seed["seed"], per_seed["eval_acc"])), dict(zip(per_seed["seed"], per_seed["train_mode_acc"])),
               labels=("dropout off (eval mode)", "dropout on (train mode)"), metric="test accuracy")  # fmt: skip
    c = comparison(p)
    return Conclusion(f"dropout left on at test time (d2l issue #1093), {what}: {c.text}", c.values)


# ---- part 4: dropout with weight decay --------------------------------------------------------


def decay_factor(lr: float, weight_decay: float) -> float:
    """What one plain SGD step multiplies every weight by before the gradient: ``1 - lr * wd``.

    From d2l 4.5's update ``w <- w - lr (g + wd w) = (1 - lr wd) w - lr g``: <= 0 flips (or zeroes)
    every weight at every step.
    """
    return 1.0 - lr * weight_decay


def weight_decay_table(results: pd.DataFrame, lr: float) -> pd.DataFrame:
    """Per (weight_decay, dropout): the decay factor, the models at chance and failed, the metrics.

    Parameters
    ----------
    results : DataFrame
        One row per (weight_decay, dropout, seed) with ``status`` and the final metrics.

    Returns
    -------
    DataFrame
        ``weight_decay``, ``wd`` (as text, for a categorical axis), ``dropout``, ``decay_factor``,
        ``n``, ``at_chance`` (status ``failed: at chance``), ``failed`` (any status but ``ok``), and
        the mean and CI of ``final_test_acc`` and ``final_train_loss``.
    """
    table = summary_table(results, ["weight_decay", "dropout"], ["final_test_acc", "final_train_loss"])
    counts = results.groupby(["weight_decay", "dropout"], sort=False)["status"].agg(
        at_chance=lambda s: int((s == AT_CHANCE).sum()), failed=lambda s: int((s != "ok").sum())
    )
    table = table.merge(counts.reset_index(), on=["weight_decay", "dropout"])
    table.insert(1, "wd", [f"{w:g}" for w in table["weight_decay"]])
    table.insert(3, "decay_factor", [decay_factor(lr, w) for w in table["weight_decay"]])
    return table


def collapse_conclusions(
    results: pd.DataFrame, lr: float, findings: Mapping[float, str] | None = None, chance: float = 0.1
) -> list[Conclusion]:
    """Why weight decay collapses training, computed from the SGD update and counted from the status.

    One conclusion per weight decay whose factor ``f = 1 - lr * wd`` is <= 0. Unrolling the update
    ``w_{t+1} = f w_t - lr g_t`` gives ``w_T = f^T w_0 - lr sum_t f^(T-1-t) g_t``: each gradient's
    contribution is multiplied by ``f`` at every later step, so with ``f < 0`` it changes sign each
    step and shrinks ``1/|f|``-fold (``f = 0``: erased at the next step); nothing accumulates. The
    conclusion names ``f``, counts the models of those cells at chance (their ``status``), the same
    for the weight decays with ``f > 0``, and quotes the doctor's finding ``findings[wd]``. Without
    such a weight decay: one conclusion saying so, with the count.

    Parameters
    ----------
    results : DataFrame
        One row per model: ``weight_decay``, ``status`` and ``final_test_acc``.
    chance : float
        Accuracy of guessing (1 / classes), quoted beside the collapsed models' accuracy.
    """
    findings = findings or {}
    factor = 1.0 - lr * results["weight_decay"].astype(float)
    positive = results[factor > 0]
    positive_chance = int((positive["status"] == AT_CHANCE).sum())
    positive_wds = ", ".join(f"{w:g}" for w in sorted(positive["weight_decay"].unique()))
    out = []
    for wd in sorted(results.loc[factor <= 0, "weight_decay"].unique()):
        rows = results[results["weight_decay"] == wd]
        f = decay_factor(lr, wd)
        n_chance = int((rows["status"] == AT_CHANCE).sum())
        acc = mean_ci(rows["final_test_acc"])
        if f < 0:
            effect = (f"< 0 before the gradient is added, so the weights flip sign at every step, and each step's "
                      f"gradient is multiplied by {f:g} at every later step: it changes sign each step and shrinks "
                      f"{1 / abs(f):g}-fold, so nothing accumulates")  # fmt: skip
        else:
            effect = "= 0 before the gradient is added: every step erases the weights, only the last gradient is left"
        text = (
            f"Q4, why weight_decay {wd:g} at lr {lr:g} collapses: SGD's step w <- (1 - lr*wd) w - lr*grad multiplies "
            f"every weight by 1 - {lr:g}*{wd:g} = {f:g} {effect}. {n_chance} of {len(rows)} models there ended "
            f"'{AT_CHANCE}' (test accuracy {acc.format()}; chance {chance:g})"
        )
        if len(positive):
            text += f"; with 1 - lr*wd > 0 (weight_decay {positive_wds}): {positive_chance} of {len(positive)}"
        if wd in findings:
            text += f". The doctor refuses it before training: {findings[wd]}"
        out.append(Conclusion(text, {"weight_decay": float(wd), "lr": lr, "decay_factor": f, "at_chance": n_chance,
                                     "models": len(rows), "acc": acc.mean, "acc_ci": acc.half_width,
                                     "positive_at_chance": positive_chance, "positive_models": len(positive),
                                     "doctor": findings.get(wd)}, "q4-collapse"))  # fmt: skip
    if not out:
        text = (f"no weight decay here has lr*wd >= 1 (the smallest factor 1 - lr*wd is {factor.min():g} > 0): "
                f"{positive_chance} of {len(positive)} models ended '{AT_CHANCE}'")  # fmt: skip
        out.append(
            Conclusion(text, {"lr": lr, "positive_at_chance": positive_chance, "positive_models": len(positive)})
        )
    return out


def dropout_decay_table(results: pd.DataFrame, lr: float, metric: str = "final_test_acc") -> pd.DataFrame:
    """Per weight decay: what the largest dropout adds over the smallest, and whether that changes with decay.

    ``gain`` = metric(dropout high) - metric(dropout low), paired over seeds; ``interaction`` =
    gain at this weight decay - gain at weight decay 0 (also paired over seeds): 0 when the two
    regularizers add up, negative when together they help less than each alone suggests.

    Returns
    -------
    DataFrame
        ``weight_decay``, ``decay_factor``, ``low_mean``, ``high_mean``, ``gain_mean``, ``gain_ci``,
        ``interaction_mean``, ``interaction_ci`` (NaN at weight decay 0 or without it), ``n``.
    """
    low, high = results["dropout"].min(), results["dropout"].max()
    cells = results.pivot(index="seed", columns=["weight_decay", "dropout"], values=metric)
    gains = {wd: cells[(wd, high)] - cells[(wd, low)] for wd in sorted(results["weight_decay"].unique())}
    rows = []
    for wd, gain in gains.items():
        g = mean_ci(gain.dropna())
        inter = mean_ci((gain - gains[0.0]).dropna()) if 0.0 in gains and wd != 0.0 else MeanCI(math.nan, math.nan, 0)
        rows.append({"weight_decay": wd, "decay_factor": decay_factor(lr, wd), "low_mean": cells[(wd, low)].mean(),
                     "high_mean": cells[(wd, high)].mean(), "gain_mean": g.mean, "gain_ci": g.half_width,
                     "interaction_mean": inter.mean, "interaction_ci": inter.half_width, "n": g.n})  # fmt: skip
    return pd.DataFrame(rows).assign(low=low, high=high)


def dropout_decay_conclusion(table: pd.DataFrame) -> Conclusion:
    """Q4, are dropout and weight decay additive? From :func:`dropout_decay_table`, the factors > 0."""
    low, high = table["low"].iloc[0], table["high"].iloc[0]

    def told(mean: float, ci: float) -> str:
        if math.isnan(ci):
            return "no interval"
        return "told apart from 0" if abs(mean) > ci else "not told apart from 0"

    parts = []
    for r in table[table["decay_factor"] > 0].itertuples():
        s = f"weight_decay {r.weight_decay:g}: {r.gain_mean:+.4f} ± {r.gain_ci:.4f} ({told(r.gain_mean, r.gain_ci)})"
        if not math.isnan(r.interaction_mean):
            s += (f", against weight_decay 0: {r.interaction_mean:+.4f} ± {r.interaction_ci:.4f} "
                  f"({told(r.interaction_mean, r.interaction_ci)})")  # fmt: skip
        parts.append(s)
    inter = table[(table["decay_factor"] > 0) & table["interaction_mean"].notna()]
    additive = None
    if inter.empty:
        summary = "No weight decay > 0 that trains to compare with"
    elif all(abs(m) <= c for m, c in zip(inter["interaction_mean"], inter["interaction_ci"])):
        additive = True
        summary = ("At every weight decay with 1 - lr*wd > 0, the gain of dropout is not told apart from its gain "
                   "without decay: the two add up within this noise")  # fmt: skip
    else:
        additive = False
        summary = ("The gain of dropout changes with weight decay (the difference from its gain without decay is "
                   "told apart from 0): they do not simply add up")  # fmt: skip
    text = (f"Q4, dropout with weight decay: final test accuracy of dropout {high:g} - dropout {low:g}, paired over "
            f"seeds: " + "; ".join(parts) + f". {summary}")  # fmt: skip
    return Conclusion(text, {"additive": additive, "rows": table.to_dict("records")}, "q4-additive")


def doctor_findings(
    config: Config, weight_decays: Sequence[float], n_inputs: int, n_outputs: int, n_train: int
) -> dict[float, str]:
    """``{weight_decay: the doctor's error for it}`` for the weight decays it refuses (``lr * wd >= 1``).

    :func:`mlplab.doctor.check` on ``config``'s model and SGD settings, one weight decay at a time.
    """
    from mlplab.doctor import check
    from mlplab.models import ModelConfig
    from mlplab.train import TrainConfig

    out = {}
    for wd in weight_decays:
        model = ModelConfig(hidden=config.hidden, init=config.init, n_inputs=n_inputs, n_outputs=n_outputs)
        train = TrainConfig(epochs=1, batch_size=config.batch_size, lr=config.lr, weight_decay=wd)
        errors = [
            f for f in check(model, train, n_train) if f.severity == "error" and f.check.startswith("weight-decay")
        ]
        if errors:
            out[float(wd)] = str(errors[0])
    return out


# ---- the experiment ---------------------------------------------------------------------------

Part = tuple[dict[str, pd.DataFrame], list[FigureSpec], list[Conclusion]]  # tables, figures, conclusions


def _grid_part(config: Config, data: Data, store: Path, base: dict, values: tuple[float, ...], title: str) -> Part:
    """Part 2: the p1 x p2 grid, its best cell and the swap of the two layers' rates."""
    from mlplab.sweep.spec import SweepSpec

    spec = SweepSpec(base=base, grid={"dropout1": values, "dropout2": values}, seeds=tuple(range(config.seeds)))
    results = _rounded(sweep(spec, data, store, config).results, ["dropout1", "dropout2"])
    table = summary_table(results, ["dropout1", "dropout2"], ["final_test_acc", "final_train_loss"])
    failed = results.groupby(["dropout1", "dropout2"], sort=False)["status"].agg(lambda s: int((s != "ok").sum()))
    table = table.merge(failed.rename("failed").reset_index(), on=["dropout1", "dropout2"])
    differences = swap_differences(results)
    figures = [
        FigureSpec("grid", "grid", "heatmap", "dropout2", "final_test_acc", by="dropout1",
                   title=f"mean test accuracy; {title}"),
        FigureSpec("swaps", "swaps", "bar", "pair", "difference",
                   title="acc(dropout1=a, dropout2=b) - acc(dropout1=b, dropout2=a), pair a/b"),
    ]  # fmt: skip
    conclusions = [grid_best(results), *swap_conclusions(differences, config.swap_pairs)]
    return {"grid": table, "swaps": swap_table(differences)}, figures, conclusions


def _decay_part(config: Config, data: Data, store: Path, base: dict, title: str) -> Part:
    """Part 4: weight decay x dropout, the collapse explained, and whether the two add up."""
    from mlplab.sweep.spec import SweepSpec

    wds = config.quick_weight_decays if config.quick else config.weight_decays
    grid = {"weight_decay": wds, "dropout": config.wd_dropouts}
    results = sweep(SweepSpec(base=base, grid=grid, seeds=tuple(range(config.seeds))), data, store, config).results
    results = results.assign(dropout=results["dropout1"].astype(float).round(10))  # both layers have the same p
    effect = dropout_decay_table(results, config.lr)
    findings = doctor_findings(config, wds, data.train.X.shape[1], data.n_classes, len(data.train))
    conclusions = [
        *collapse_conclusions(results, config.lr, findings, chance=1.0 / data.n_classes),
        dropout_decay_conclusion(effect),
    ]
    figure = FigureSpec("weight_decay", "weight_decay", "bar", "wd", "final_test_acc", by="dropout",
                        title=f"weight decay x dropout; {title}")  # fmt: skip
    return {"weight_decay": weight_decay_table(results, config.lr), "dropout_with_decay": effect}, [figure], conclusions


def _book_parts(config: Config, data: Data, store: Path, base: dict, epochs: int, title: str) -> Part:
    """Parts 1 and 3: scratch, concise (fit) and batched on the same seeds; the concise ones at test time."""
    from mlplab.sweep.spec import SweepSpec

    p1, p2 = (float(p) for p in config.dropout)
    finals, curves, concise, gap = train_book_models(config, data, epochs)
    spec = SweepSpec(base={**base, "dropout1": p1, "dropout2": p2}, seeds=tuple(range(config.seeds)))
    batched = sweep(spec, data, store, config, histories=True)  # a grid cell when the grid holds (p1, p2)
    finals = pd.concat([finals, batched.results.assign(implementation="batched")[list(finals.columns)]],
                       ignore_index=True)  # fmt: skip
    curves = pd.concat([curves, batched.histories.assign(implementation="batched")[list(curves.columns)]],
                       ignore_index=True)  # fmt: skip
    net = f"the book's net (dropout {p1:g}/{p2:g}, {epochs} epochs)"
    start = "the same initial weights (measured)" if gap == 0 else f"initial weights that differ by up to {gap:.3g}"
    streams = {
        "scratch": f"both start from {start}; the scratch MLP draws its dropout masks from its own generator, "
        "the concise one from the global RNG that fit seeds",
        "batched": "both are built by build_mlp from the same seed; the engine draws its masks from per-layer "
        "streams, the concise model from the global RNG",
    }
    conclusions = []
    for a in ("scratch", "batched"):
        c = comparison(compare(finals, "implementation", a, "concise"))
        conclusions.append(Conclusion(f"{net}, {a} vs concise: {c.text}; {streams[a]}",
                                      {**c.values, "initial_weight_gap": gap}))  # fmt: skip

    per_seed = eval_vs_train_mode(concise, data.test)
    modes = (("eval (dropout off)", "eval_acc"), ("train (dropout on)", "train_mode_acc"))
    test_time = pd.concat(
        [
            summary_table(per_seed.rename(columns={col: "test_acc"}), [], ["test_acc"]).assign(mode=m)
            for m, col in modes
        ],
        ignore_index=True,
    )[["mode", "n", "test_acc_mean", "test_acc_ci"]]
    conclusions.append(left_on_conclusion(per_seed, f"the concise {p1:g}/{p2:g} models of part 1"))
    tables = {
        "book": summary_table(finals, ["implementation"], [*METRICS, "seconds"]),
        "book_curves": summary_table(curves, ["implementation", "epoch"], ["test_acc", "train_loss"]),
        "test_time_dropout": test_time,
        "test_time_dropout_seeds": per_seed,
    }
    figures = [
        FigureSpec("book_curves", "book_curves", "line", "epoch", "test_acc", by="implementation",
                   title=f"dropout {p1:g}/{p2:g}, three implementations; {title}"),
        FigureSpec("test_time_dropout", "test_time_dropout", "bar", "mode", "test_acc",
                   title=f"concise {p1:g}/{p2:g} models evaluated with dropout off and on"),
    ]  # fmt: skip
    return tables, figures, conclusions


def run(config: Config) -> Result:
    """Train the four parts' models (stored, reused on a rerun) and return tables, figures, conclusions."""
    t0, settings = timed(NAME, config)
    data = classification_data(config)
    epochs = config.quick_epochs if config.quick else config.epochs
    values = tuple(float(v) for v in (config.quick_grid if config.quick else config.grid))
    store = config.folder(NAME) / "models"  # one store: a configuration two parts train is trained once
    base = {"hidden": config.hidden, "init": config.init, "lr": config.lr, "batch_size": config.batch_size,
            "epochs": epochs}  # fmt: skip
    title = f"{'-'.join(map(str, config.hidden))}, SGD lr {config.lr:g}, {epochs} epochs, {config.seeds} seeds"
    # the grid first: it holds part 4's weight decay 0 cells (and part 1's batched cell on the full grid)
    grid = _grid_part(config, data, store, base, values, title)
    decay = _decay_part(config, data, store, base, title)
    book = _book_parts(config, data, store, base, epochs, title)
    result = Result(NAME, settings)
    for tables, figures, conclusions in (book, grid, decay):  # in the order of the parts
        result.tables.update(tables)
        result.figures += figures
        result.conclusions += conclusions
    result.seconds = time.perf_counter() - t0
    return result
