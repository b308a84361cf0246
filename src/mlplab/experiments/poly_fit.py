"""d2l 4.4 (model selection, underfitting and overfitting): polynomial regression of degree 1, 3, 19.

The data is the book's cubic ``y = 5 + 1.2x - 3.4x^2/2! + 5.6x^3/3! + eps`` (``eps ~ N(0, 0.1^2)``)
on the features ``x^i / i!``, ``i < 20`` (100 training and 100 test rows). A model of degree
``d`` is linear regression without a bias on the first ``d + 1`` columns (``features = d + 1``),
trained by SGD (lr 0.01, batch 10, 400 epochs) with the mean squared error. The data itself is
random here, so every seed ``s`` draws its *own* data set (``polynomial(generator=
Generator().manual_seed(s))``) and trains on it with training seed ``s``; means and CIs are over
these seeds and comparisons are paired on them.

It answers:

- the loss curves of degree 3 (the true cubic), 1 (underfitting) and 19 (overfitting), on a log scale;
- exercise 2: test loss against the degree 0 .. 19 (all degrees one batched group per seed);
- "can you solve this exactly?": the least-squares solution (:func:`exact_solution`) beside SGD's
  weights and the true ones, and its training loss (the minimum) beside SGD's;
- exercise 3: the features ``x^i`` without the ``1/i!`` scaling: with the same lr the high
  powers make SGD diverge or fit far worse (status and losses as computed);
- conclusions: the best degree by test loss, degree 1 against 3 on training loss (paired), the
  train-test gap of degree 19 against 3 (paired), and how far SGD's degree-3 weights are from exact.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mlplab.data import Data, Split
from mlplab.data.synthetic import POLY_TRUE_W, polynomial
from mlplab.errors import ConfigError, check_int, check_real
from mlplab.experiments.base import (
    Conclusion,
    ExperimentConfig,
    FigureSpec,
    Result,
    StoredParts,
    best,
    compare,
    comparison,
    summary_table,
    sweep,
    timed,
)
from mlplab.stats import mean_ci

NAME = "poly-fit"
MAX_DEGREE = 20  # feature columns x^0 .. x^19: degrees 0 .. 19
CURVE_DEGREES = (3, 1, 19)  # the book's three fits: right, underfitting, overfitting
WEIGHT_DEGREES = (3, 19)
QUICK_EPOCHS = 100  # the fits whose weights are set beside the exact solution


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The polynomial experiment; ``--quick``: at most 100 epochs instead of 400.

    ``data`` and ``data_dir`` are ignored: the data is the book's synthetic polynomial.
    """

    seeds: int = 10  # data seeds: 100 points each, so losses vary by orders of magnitude between them
    epochs: int = 400  # per model, the book's setting (quick: 100)
    lr: float = 0.01  # SGD, the book's setting
    batch_size: int = 10  # the book's setting
    n_train: int = 100  # rows per data seed, the book's sizes
    n_test: int = 100
    noise: float = 0.1  # std of eps

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("n_train", self.n_train, MAX_DEGREE)  # fewer rows than weights: no unique exact solution
        check_int("n_test", self.n_test, 1)
        check_real("lr", self.lr, 0.0, low_open=True, what="the learning rate")
        check_real("noise", self.noise, 0.0, what="the noise std")

    @property
    def run_epochs(self) -> int:
        return min(self.epochs, QUICK_EPOCHS) if self.quick else self.epochs


# ---- pure functions -----------------------------------------------------------------------------


def exact_solution(X: np.ndarray, y: np.ndarray, n_features: int) -> np.ndarray:
    """The least-squares weights of a linear model without bias on the first ``n_features`` columns.

    ``w* = argmin_w ||X[:, :n] w - y||^2``, by ``numpy.linalg.lstsq`` (SVD) in float64: the
    minimum of the training MSE that SGD approaches (d2l 4.4, "can you solve this exactly?").

    Parameters
    ----------
    X : array of shape (n_samples, n_columns)
    y : array of shape (n_samples,) or (n_samples, 1)
    n_features : int, 1 <= n_features <= n_columns

    Returns
    -------
    ndarray of shape (n_features,), float64
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or not 1 <= n_features <= X.shape[1]:
        raise ConfigError("n_features", n_features, f"give 1 .. {X.shape[1] if X.ndim == 2 else '?'} columns")
    y = np.asarray(y, dtype=np.float64).reshape(len(X))
    w, *_ = np.linalg.lstsq(X[:, :n_features], y, rcond=None)
    return w


def mse(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """``mean((X w - y)^2)`` in float64: the training loss ``fit`` reports for ``loss="mse"``.

    X : (n, d); y : (n,) or (n, 1); w : (d,).
    """
    X, w = np.asarray(X, dtype=np.float64), np.asarray(w, dtype=np.float64)
    return float(np.mean((X @ w - np.asarray(y, dtype=np.float64).reshape(len(X))) ** 2))


def unscaled(data: Data, max_degree: int = MAX_DEGREE) -> Data:
    """``data`` with the features ``x^i`` instead of ``x^i / i!`` (exercise 3); same targets.

    ``x`` is read back from column 1 (``x^1 / 1! = x``); returns X of shape (n, max_degree).
    """

    def split(s: Split) -> Split:
        x = s.X[:, 1:2]  # (n, 1)
        return Split(x.pow(torch.arange(max_degree, dtype=s.X.dtype)), s.y)  # (n, max_degree)

    return Data(split(data.train), split(data.test))


def poly_data(config: Config, seed: int) -> Data:
    """Data seed ``seed``'s polynomial data set (train rows first, as :func:`polynomial` draws)."""
    return polynomial(config.n_train, config.n_test, MAX_DEGREE, POLY_TRUE_W, config.noise,
                      torch.Generator().manual_seed(seed))  # fmt: skip


def gap_column(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with ``degree = features - 1``, ``gap = final_test_loss - final_train_loss`` and
    the losses in decades: ``log_train_loss``, ``log_test_loss`` (log10) and ``log_gap`` (log10 of
    test over train loss). Across data seeds the losses differ by orders of magnitude, so they are
    compared as ratios: a paired difference of logs."""
    log = lambda column: np.log10(np.maximum(results[column].to_numpy(float), 1e-300))
    return results.assign(
        degree=results["features"].astype(int) - 1,
        gap=results["final_test_loss"] - results["final_train_loss"],
        log_train_loss=log("final_train_loss"),
        log_test_loss=log("final_test_loss"),
        log_gap=log("final_test_loss") - log("final_train_loss"),
    )


def conclusions_from(results: pd.DataFrame) -> list[Conclusion]:
    """The best degree by test loss, underfitting (1 vs 3, train loss) and overfitting (19 vs 3, gap).

    ``results`` has the columns of :func:`gap_column`. Every comparison is paired over seeds and
    made in decades (log10), since a loss ratio, not a difference, is what carries over between
    data seeds: "degree 1's training loss is 10^(2.9 ± 0.3) times degree 3's".
    """
    out = [best(results, "degree", "log_test_loss", higher_is_better=False)]
    degrees = set(results["degree"])
    if {1, 3} <= degrees:
        p = compare(results, "degree", 1, 3, "log_train_loss", higher_is_better=False)
        out.append(_in_decades(p, p.winner == p.b, "underfits", ("degree 1 underfits", "no underfitting shown"),
                               "its training loss is", "times degree 3's", "the interval includes 0"))  # fmt: skip
    if {19, 3} <= degrees:
        p = compare(results, "degree", 19, 3, "log_gap", higher_is_better=True)  # "wins": the larger gap
        out.append(_in_decades(p, p.winner == p.a, "larger_gap", ("degree 19 overfits more", "no larger overfitting shown"),
                               "its test loss over its training loss is", "times degree 3's ratio",
                               "the interval does not exclude 0 on that side"))  # fmt: skip
    return out


def _in_decades(p, shown: bool, key: str, verdicts: tuple[str, str], what: str, than: str, caveat: str) -> Conclusion:
    """A paired log10 difference as "VERDICT: WHAT 10^(d ± ci) THAN (paired over n seeds[; CAVEAT])"."""
    d = p.difference
    text = (
        f"{verdicts[0] if shown else verdicts[1]}: {what} 10^({d.mean:+.2f} ± {d.half_width:.2f}) {than} "
        f"(paired over {d.n} seeds{'' if shown else '; ' + caveat})"
    )
    return Conclusion(text, {**comparison(p).values, key: shown})


# ---- training -------------------------------------------------------------------------------------


def _spec(config: Config, seed: int, features: tuple[int, ...]):
    from mlplab.sweep.spec import SweepSpec

    base = {"hidden": (), "bias": False, "loss": "mse", "lr": config.lr, "batch_size": config.batch_size,
            "epochs": config.run_epochs}  # fmt: skip
    return SweepSpec(base=base, grid={"features": features}, seeds=(seed,))


def trained_weights(
    config: Config, data: Data, seed: int, degrees: tuple[int, ...], parts: StoredParts | None = None
) -> dict[int, np.ndarray]:
    """SGD's final weights ``{degree: (degree + 1,)}`` for seed ``seed``, trained as the sweep trains.

    One batched group (``train_group`` with ``model=``, which keeps the weights): the same
    initial weights and batch order as the stored models of this seed. With ``parts``, the
    weights are stored there (keyed by the models' trial keys) and a rerun reads them back.
    """
    from mlplab.sweep.batched import BatchedMLP, train_group

    trials = _spec(config, seed, tuple(d + 1 for d in degrees)).trials(n_inputs=MAX_DEGREE, n_outputs=1)
    settings = {"trials": [t.key for t in trials], "device": config.device}
    if parts is not None and (stored := parts.load(f"weights-seed{seed}", settings)) is not None:
        return {int(d): np.asarray(w, dtype=np.float64) for d, w in stored["weights"].items()}
    model = BatchedMLP.from_trials(trials, config.device)
    train_group(trials, data, config.device, model=model)
    weights = {
        t.model.n_inputs - 1: model.to_module(k, t.model)[-1].weight.detach().cpu().double().numpy().ravel()
        for k, t in enumerate(trials)
    }
    if parts is not None:
        parts.save(f"weights-seed{seed}", {"config": settings, "weights": {d: w.tolist() for d, w in weights.items()}})
    return weights


def run(config: Config) -> Result:
    """Sweep degrees 0 .. 19 on every data seed, then the weights, the exact fits and exercise 3."""
    t0, settings = timed(NAME, config)
    folder: Path = config.folder(NAME)
    results, curves, unscaled_rows, weights, exact_rows = [], [], [], [], []
    true_w = np.zeros(MAX_DEGREE)
    true_w[: len(POLY_TRUE_W)] = POLY_TRUE_W
    for s in range(config.seeds):
        data = poly_data(config, s)
        runs = sweep(_spec(config, s, tuple(range(1, MAX_DEGREE + 1))), data, folder / f"data-{s}", config,
                     histories=True)  # fmt: skip
        results.append(runs.results)
        curves.append(runs.histories)
        raw = sweep(_spec(config, s, tuple(d + 1 for d in WEIGHT_DEGREES)), unscaled(data),
                    folder / f"data-{s}-unscaled", config)  # fmt: skip
        unscaled_rows.append(raw.results)
        X, y = data.train.X.double().numpy(), data.train.y.double().numpy()
        sgd = trained_weights(config, data, s, WEIGHT_DEGREES, StoredParts(folder / "weights"))
        for d in WEIGHT_DEGREES:
            exact = exact_solution(X, y, d + 1)
            exact_rows.append({"degree": d, "seed": s, "exact_train_loss": mse(X[:, : d + 1], y, exact),
                               "sgd_train_loss": mse(X[:, : d + 1], y, sgd[d]),
                               "max_abs_sgd_minus_exact": float(np.abs(sgd[d] - exact).max())})  # fmt: skip
            if s == 0:  # one seed's weights: a table to read, not to average
                weights += [{"degree": d, "i": i, "true_w": true_w[i], "sgd_w": sgd[d][i], "exact_w": exact[i]}
                            for i in range(d + 1)]  # fmt: skip
    res = gap_column(pd.concat(results, ignore_index=True))
    hist = pd.concat(curves, ignore_index=True)
    hist = hist.assign(degree=hist["features"].astype(int) - 1)
    hist = hist[hist["degree"].isin(CURVE_DEGREES)]
    long = pd.concat(
        [hist[["degree", "seed", "epoch", f"{split}_loss"]].rename(columns={f"{split}_loss": "loss"}).assign(split=split)
         for split in ("train", "test")], ignore_index=True,
    )  # fmt: skip
    long["curve"] = "degree " + long["degree"].astype(str) + " " + long["split"]
    curve_table = summary_table(long, ["degree", "split", "curve", "epoch"], ["loss"])
    degree_table = summary_table(res, ["degree"], ["final_test_loss", "final_train_loss", "gap"])
    degree_long = pd.concat(
        [degree_table[["degree", f"final_{split}_loss_mean", f"final_{split}_loss_ci"]]
         .set_axis(["degree", "loss_mean", "loss_ci"], axis=1).assign(split=split) for split in ("train", "test")],
        ignore_index=True,
    )  # fmt: skip
    exact = pd.DataFrame(exact_rows)
    exact_table = summary_table(
        exact.merge(res[["degree", "seed", "final_train_loss"]], on=["degree", "seed"]),
        ["degree"],
        ["exact_train_loss", "sgd_train_loss", "final_train_loss", "max_abs_sgd_minus_exact"],
    )
    raw = gap_column(pd.concat(unscaled_rows, ignore_index=True))
    status = (
        raw.groupby("degree")["status"]
        .agg(lambda s: ", ".join(f"{k} x{v}" for k, v in s.value_counts().items()))
        .rename("unscaled_status")
    )
    scaled_vs_raw = (
        summary_table(res[res["degree"].isin(WEIGHT_DEGREES)], ["degree"], ["final_train_loss", "final_test_loss"])
        .merge(
            summary_table(raw, ["degree"], ["final_train_loss", "final_test_loss"])
            .drop(columns="n")
            .rename(columns=lambda c: c if c == "degree" else f"unscaled_{c}"),
            on="degree",
        )
        .merge(status, left_on="degree", right_index=True)
    )
    conclusions = conclusions_from(res)
    d3 = exact[exact["degree"] == 3]
    gap3 = mean_ci(d3["sgd_train_loss"] - d3["exact_train_loss"])
    dev = mean_ci(d3["max_abs_sgd_minus_exact"])
    conclusions.append(
        Conclusion(
            f"degree 3: max |w_sgd - w_exact| = {dev.format()} over {dev.n} seeds (largest {d3['max_abs_sgd_minus_exact'].max():.4g}); "
            f"SGD's training loss exceeds the exact minimum by {gap3.format(6)}",
            {
                "max_abs_diff_mean": dev.mean,
                "max_abs_diff_ci": dev.half_width,
                "max_abs_diff_max": float(d3["max_abs_sgd_minus_exact"].max()),
                "train_loss_excess_mean": gap3.mean,
                "train_loss_excess_ci": gap3.half_width,
            },
            "exact",
        )  # fmt: skip
    )
    for row in scaled_vs_raw.itertuples(index=False):
        text = (
            f"exercise 3, degree {row.degree} on x^i without 1/i!: {row.unscaled_status}; test loss "
            f"{_fmt(row.unscaled_final_test_loss_mean)} against {_fmt(row.final_test_loss_mean)} with the scaling"
        )
        conclusions.append(Conclusion(text, {"degree": row.degree, "status": row.unscaled_status,
                                             "unscaled_test_loss": row.unscaled_final_test_loss_mean,
                                             "scaled_test_loss": row.final_test_loss_mean},
                                      f"unscaled-{row.degree}"))  # fmt: skip
    weight_table = pd.DataFrame(weights)
    weights3 = weight_table[weight_table["degree"] == 3].melt(
        id_vars=["degree", "i"], value_vars=["true_w", "sgd_w", "exact_w"], var_name="source", value_name="w"
    )
    epochs = config.run_epochs
    title = f"linear model on x^i/i!, SGD lr {config.lr:g}, batch {config.batch_size}, {epochs} epochs, {config.seeds} seeds"
    return Result(
        NAME,
        settings,
        tables={
            "curves": curve_table,
            "degrees": degree_table,
            "degree_losses": degree_long,
            "weights": weight_table,
            "weights_degree3": weights3,
            "exact": exact_table,
            "unscaled": scaled_vs_raw,
        },
        figures=[
            FigureSpec("curves", "curves", "line", "epoch", "loss", by="curve", logy=True, title=title),
            FigureSpec("degrees", "degree_losses", "line", "degree", "loss", by="split", logy=True, title=title),
            FigureSpec(
                "weights",
                "weights_degree3",
                "bar",
                "i",
                "w",
                by="source",
                title="degree 3, seed 0: true, SGD and exact least-squares weights",
            ),
        ],  # fmt: skip
        conclusions=conclusions,
        seconds=time.perf_counter() - t0,
    )


def _fmt(value: float) -> str:
    return "nan (diverged)" if not math.isfinite(value) else f"{value:.4g}"
