"""d2l 4.5 (weight decay): L2 on the 200-feature, 20-sample linear regression; scratch = concise; L1 vs L2.

The data is the book's ``y = 0.05 + sum_i 0.01 x_i + eps`` with 200 inputs, 20 training and
100 test rows (``eps ~ N(0, 0.01^2)``): a linear model (``hidden=()``) trained by SGD (batch 5,
lr 0.003, 100 epochs, mean squared error) fits the 20 rows and fails on the test set unless the
weights are kept small. Every seed ``s`` draws its own data set (``Generator().manual_seed(s)``)
and trains with seed ``s``; a separate validation set of 100 rows from the same distribution
(generator seed ``VALIDATION_SEED + s``) chooses the penalty.

It answers:

1. scratch = concise: the book's scratch loss ``mse + lambda/2 ||w||^2`` (:func:`l2_penalty`),
   minimized by a plain autograd loop (:func:`scratch_weights`), gives the weights of ``fit`` with
   ``weight_decay=lambda, decay_biases=False`` (the concise version decays the weight only);
2. train and test loss and ``||w||`` against lambda (0 .. 10) with CIs over seeds;
3. the lambda chosen on the validation set, and the test loss *at that lambda* (not the best test one);
4. L1 (``l1 * sum |w|``) against L2: the fraction of near-zero weights (``|w| < 1e-3``) of each
   at its best validation penalty, paired over seeds.

The mse here has no 1/2 (``F.mse_loss``), so the L2 term ``lambda/2 ||w||^2`` has the gradient
``lambda w`` that SGD's ``weight_decay=lambda`` adds: the book's scratch and concise versions agree.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mlplab.data import Data, Split
from mlplab.data.batching import batches
from mlplab.data.synthetic import high_dim_linear, linear
from mlplab.errors import ConfigError, check_int, check_real
from mlplab.experiments.base import Conclusion, ExperimentConfig, FigureSpec, Result, best, summary_table, sweep, timed
from mlplab.models import ModelConfig, build_mlp
from mlplab.stats import mean_ci, paired
from mlplab.train import TrainConfig, fit

NAME = "weight-decay"
LAMBDAS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)  # the book's 0 and 3, and the decades around them
# L1's gradient l1 * sign(w) equals L2's lambda * w where |w| = l1 / lambda; the true weights are
# 0.01, so l1 = 0.01 * lambda pulls as hard as lambda does at the true weights: these match LAMBDAS.
L1S = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1)
NEAR_ZERO = 1e-3  # |w| below this counts as zero (the true weights are 0.01)
VALIDATION_SEED = 10_000  # the validation set's generator seed is this + the data seed
N_FEATURES, TRUE_W, TRUE_B, NOISE = 200, 0.01, 0.05, 0.01  # the book's data
QUICK_EPOCHS = 50


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The weight-decay experiment; ``--quick``: at most 50 epochs instead of 100.

    ``data`` and ``data_dir`` are ignored: the data is the book's synthetic regression.
    """

    lambdas: tuple[float, ...] = LAMBDAS  # L2 weight decay values
    l1s: tuple[float, ...] = L1S  # L1 penalty values
    epochs: int = 100  # the book's setting (quick: 50)
    lr: float = 0.003  # SGD, the book's setting
    batch_size: int = 5  # the book's setting
    n_train: int = 20  # the book's sizes; the validation set has n_test rows too
    n_test: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("lambdas", "l1s"):
            values = getattr(self, field)
            if not values or any(not isinstance(v, (int, float)) or not v >= 0 or math.isinf(v) for v in values):
                raise ConfigError(field, values, "give one or more finite penalties >= 0, e.g. 0,0.1,1")
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("n_train", self.n_train, 1)
        check_int("n_test", self.n_test, 1)
        check_real("lr", self.lr, 0.0, low_open=True, what="the learning rate")

    @property
    def run_epochs(self) -> int:
        return min(self.epochs, QUICK_EPOCHS) if self.quick else self.epochs


# ---- pure functions -----------------------------------------------------------------------------


def regression_data(config: Config, seed: int) -> tuple[Data, Split]:
    """Data seed ``seed``'s train/test data (``high_dim_linear``) and its validation split.

    The validation rows come from the same ``y = X w + b + eps`` with their own generator
    (seed ``VALIDATION_SEED + seed``), so they share nothing with the training or test rows.
    """
    data = high_dim_linear(config.n_train, config.n_test, N_FEATURES, TRUE_W, TRUE_B, NOISE,
                           torch.Generator().manual_seed(seed))  # fmt: skip
    w = torch.full((N_FEATURES,), TRUE_W)
    return data, linear(w, TRUE_B, config.n_test, NOISE, torch.Generator().manual_seed(VALIDATION_SEED + seed))


def l2_penalty(w: torch.Tensor) -> torch.Tensor:
    """``||w||^2 / 2`` (d2l 4.5.2's ``l2_penalty``): its gradient is ``w``."""
    return (w**2).sum() / 2


def scratch_weights(
    data: Data, lam: float, lr: float, batch_size: int, epochs: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's scratch weight decay: SGD on ``mse(X w + b, y) + lam * l2_penalty(w)``, by autograd.

    Starts from ``build_mlp``'s initial weights for ``seed`` and visits the batches of
    ``batches(data.train, batch_size, Generator().manual_seed(seed))`` (the order ``fit`` uses);
    the bias is not penalized. Returns the final ``w`` of shape (1, d) and ``b`` of shape (1,).
    """
    d = data.train.X.shape[1]
    init = build_mlp(ModelConfig(hidden=(), n_inputs=d, n_outputs=1), torch.Generator().manual_seed(seed))[-1]
    w = init.weight.detach().clone().requires_grad_(True)  # (1, d)
    b = init.bias.detach().clone().requires_grad_(True)  # (1,)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for X, y in batches(data.train, batch_size, order):
            loss = F.mse_loss(X @ w.T + b, y.reshape(-1, 1)) + lam * l2_penalty(w)
            gw, gb = torch.autograd.grad(loss, (w, b))
            with torch.no_grad():
                w -= lr * gw
                b -= lr * gb
    return w.detach(), b.detach()


def concise_weights(
    data: Data, lam: float, lr: float, batch_size: int, epochs: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The concise version: ``fit`` with SGD ``weight_decay=lam, decay_biases=False``; (w (1, d), b (1,))."""
    d = data.train.X.shape[1]
    net = build_mlp(ModelConfig(hidden=(), n_inputs=d, n_outputs=1), torch.Generator().manual_seed(seed))
    fit(net, data, TrainConfig(loss="mse", lr=lr, batch_size=batch_size, epochs=epochs, weight_decay=lam,
                               decay_biases=False, seed=seed))  # fmt: skip
    return net[-1].weight.detach(), net[-1].bias.detach()


def weight_metrics(w: np.ndarray, b: np.ndarray, splits: dict[str, Split]) -> dict[str, float]:
    """``||w||``, the fraction of ``|w| < NEAR_ZERO`` and the mse on each split, for one model.

    w : (K, d) weights of K models; b : (K,); returns arrays of shape (K,) per key:
    ``weight_norm``, ``near_zero`` and ``<name>_loss`` for every split.
    """
    out = {"weight_norm": np.linalg.norm(w, axis=1), "near_zero": (np.abs(w) < NEAR_ZERO).mean(axis=1)}
    for name, split in splits.items():
        X, y = split.X.double().numpy(), split.y.double().numpy().reshape(-1)
        out[f"{name}_loss"] = ((X @ w.T + b - y[:, None]) ** 2).mean(axis=0)  # (K,)
    return out


def validation_choice(results: pd.DataFrame, column: str, penalty: str) -> Conclusion:
    """The ``column`` value with the lowest mean validation loss, and the test loss *there*.

    ``results``: one row per (value, seed) with ``validation_loss`` and ``test_loss``. The test
    loss at the test set's own best value is reported beside it, to show what choosing on the
    test set would have claimed.
    """
    chosen = best(results, column, "validation_loss", higher_is_better=False)
    at = results[results[column] == chosen.values["best"]]
    test = mean_ci(at["test_loss"])
    by_test = results.groupby(column)["test_loss"].mean()
    text = (
        f"{penalty}: {chosen.text}; test loss at {column}={chosen.values['best']:g}: {test.format(5)} "
        f"(the test set's own best, {column}={by_test.idxmin():g}, would claim {by_test.min():.5f})"
    )
    return Conclusion(text, {**chosen.values, "test_loss": test.mean, "test_ci": test.half_width,
                             "test_best": by_test.idxmin(), "test_best_loss": float(by_test.min())})  # fmt: skip


def sparsity_comparison(l1: pd.DataFrame, l2: pd.DataFrame, l1_value: float, l2_value: float) -> Conclusion:
    """L1 at ``l1_value`` against L2 at ``l2_value`` on the fraction of near-zero weights, paired over seeds.

    ``l1`` has columns l1, seed, near_zero; ``l2`` has lambda, seed, near_zero.
    """
    a = {int(s): float(v) for s, v in l1.loc[l1["l1"] == l1_value, ["seed", "near_zero"]].itertuples(index=False)}
    b = {int(s): float(v) for s, v in l2.loc[l2["lambda"] == l2_value, ["seed", "near_zero"]].itertuples(index=False)}
    p = paired(a, b, labels=(f"L1 (l1={l1_value:g})", f"L2 (lambda={l2_value:g})"), metric="fraction |w| < 1e-3")
    return Conclusion(
        f"at their best validation penalties: {p.sentence()}",
        {"l1": l1_value, "lambda": l2_value, "l1_mean": p.a_mean, "l2_mean": p.b_mean,
         "difference": p.difference.mean, "ci": p.difference.half_width, "winner": p.winner},
    )  # fmt: skip


# ---- training -------------------------------------------------------------------------------------


def _specs(config: Config, seed: int):
    from mlplab.sweep.spec import SweepSpec

    base = {"hidden": (), "loss": "mse", "lr": config.lr, "batch_size": config.batch_size,
            "epochs": config.run_epochs, "decay_biases": False}  # fmt: skip
    return (
        SweepSpec(base=base, grid={"weight_decay": tuple(map(float, config.lambdas))}, seeds=(seed,)),
        SweepSpec(base=base, grid={"l1": tuple(map(float, config.l1s))}, seeds=(seed,)),
    )


def trained_weights(trials, data: Data, device: str) -> tuple[np.ndarray, np.ndarray]:
    """The final weights (K, d) and biases (K,) of ``trials`` (one group), trained as the sweep trains."""
    from mlplab.sweep.batched import BatchedMLP, train_group

    model = BatchedMLP.from_trials(trials, device)
    train_group(trials, data, device, model=model)
    return model.weights[0][..., 0].detach().cpu().double().numpy(), model.biases[0][
        :, 0, 0
    ].detach().cpu().double().numpy()


def run(config: Config) -> Result:
    """Sweep lambda and l1 on every data seed, then weights, validation choice and scratch = concise."""
    t0, settings = timed(NAME, config)
    epochs = config.run_epochs
    l2_rows, l1_rows, stored = [], [], []
    for s in range(config.seeds):
        data, validation = regression_data(config, s)
        folder = config.folder(NAME) / f"data-{s}"
        specs = _specs(config, s)
        for spec in specs:
            stored.append(sweep(spec, data, folder, config).results)
        trials = list({t.key: t for spec in specs for t in spec.trials(n_inputs=N_FEATURES, n_outputs=1)}.values())
        w, b = trained_weights(trials, data, config.device)
        metrics = weight_metrics(w, b, {"train": data.train, "validation": validation, "test": data.test})
        for k, t in enumerate(trials):
            row = {"seed": s, **{m: float(v[k]) for m, v in metrics.items()}}
            if t.train.l1 == 0:
                l2_rows.append({"lambda": t.train.weight_decay, **row})
            if t.train.weight_decay == 0:
                l1_rows.append({"l1": t.train.l1, **row})
    l2, l1 = pd.DataFrame(l2_rows), pd.DataFrame(l1_rows)
    l2, l1 = l2[l2["lambda"].isin(config.lambdas)], l1[l1["l1"].isin(config.l1s)]
    results = pd.concat(stored, ignore_index=True).drop_duplicates("key")
    metrics = ["train_loss", "validation_loss", "test_loss", "weight_norm", "near_zero"]
    l2_table = summary_table(l2, ["lambda"], metrics).sort_values("lambda", ignore_index=True)
    l1_table = summary_table(l1, ["l1"], metrics).sort_values("l1", ignore_index=True)
    stored_table = summary_table(
        results.assign(penalty=np.where(results["l1"] > 0, "l1", "l2")),
        ["penalty", "weight_decay", "l1"],
        ["final_train_loss", "final_test_loss", "seconds"],
    )
    long = pd.concat(
        [l2_table[["lambda", f"{split}_loss_mean", f"{split}_loss_ci"]]
         .set_axis(["lambda", "loss_mean", "loss_ci"], axis=1).assign(split=split)
         for split in ("train", "validation", "test")], ignore_index=True,
    )  # fmt: skip
    # (1) scratch = concise, on seed 0's data
    data0, _ = regression_data(config, 0)
    agree = []
    for lam in config.lambdas:
        ws, bs = scratch_weights(data0, lam, config.lr, config.batch_size, epochs, 0)
        wc, bc = concise_weights(data0, lam, config.lr, config.batch_size, epochs, 0)
        agree.append({"lambda": lam, "max_abs_w_diff": float((ws - wc).abs().max()),
                      "abs_b_diff": float((bs - bc).abs().max()), "scratch_norm": float(ws.norm()),
                      "concise_norm": float(wc.norm())})  # fmt: skip
    agree_table = pd.DataFrame(agree)
    worst = float(agree_table[["max_abs_w_diff", "abs_b_diff"]].to_numpy().max())
    conclusions = [
        Conclusion(
            f"scratch (mse + lambda/2 ||w||^2 by autograd) and concise (SGD weight_decay, weights only) agree: "
            f"largest |difference| of a final weight or bias over lambda in {list(config.lambdas)} is {worst:.2g} (seed 0)",
            {"max_abs_diff": worst, "agree_1e-5": worst <= 1e-5},
        )
    ]
    norms = l2_table.set_index("lambda")["weight_norm_mean"]
    conclusions.append(
        Conclusion(
            "||w|| against lambda: " + ", ".join(f"{lam:g}: {n:.4f}" for lam, n in norms.items())
            + f"; it {'falls' if norms.is_monotonic_decreasing else 'does not fall'} monotonically with lambda",
            {"norms": norms.to_dict(), "monotone": bool(norms.is_monotonic_decreasing)},
        )
    )  # fmt: skip
    l2_choice = validation_choice(l2, "lambda", "L2")
    l1_choice = validation_choice(l1, "l1", "L1")
    conclusions += [l2_choice, l1_choice]
    conclusions.append(sparsity_comparison(l1, l2, l1_choice.values["best"], l2_choice.values["best"]))
    title = (
        f"200 inputs, 20 rows, SGD lr {config.lr:g}, batch {config.batch_size}, {epochs} epochs, {config.seeds} seeds"
    )
    return Result(
        NAME,
        settings,
        tables={
            "lambdas": l2_table,
            "losses": long,
            "l1": l1_table,
            "stored": stored_table,
            "scratch_vs_concise": agree_table,
        },
        figures=[
            FigureSpec("losses", "losses", "line", "lambda", "loss", by="split", logy=True, title=title),
            FigureSpec(
                "weight_norm", "lambdas", "line", "lambda", "weight_norm", title=f"||w|| against lambda; {title}"
            ),
            FigureSpec("l1_near_zero", "l1", "line", "l1", "near_zero", title=f"fraction |w| < 1e-3 under L1; {title}"),
        ],  # fmt: skip
        conclusions=conclusions,
        seconds=time.perf_counter() - t0,
    )
