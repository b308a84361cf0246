"""d2l 4.8 "Numerical Stability and Initialization": vanishing and exploding gradients, symmetry,
and normal / Xavier / He initialization on a deep MLP, each answered by data.

Four parts, each a table (and a figure where one helps) with conclusions computed from it:

1. **Vanishing gradients** (4.8.1.1). The sigmoid and its derivative on ``[-8, 8]`` (autograd; at
   most 1/4, at x = 0), and the norm ``||dL/dW_l||`` of every layer's gradient of a deep MLP at
   initialization on one batch (:func:`gradient_norms`), sigmoid against ReLU at the same weights:
   the first layer's norm over the last layer's, per seed, paired.
2. **Exploding products** (4.8.1.2). The book's product of 100 random 4x4 ``N(0, 1)`` matrices:
   its largest entry and Frobenius norm after k = 1 .. 100 multiplications
   (:func:`product_norms`), and the growth per multiplication, ``exp`` of the slope of ``ln norm``
   against k (:func:`growth_rate`), beside the theory (the top Lyapunov exponent, :func:`lyapunov`).
3. **Symmetry** (4.8.2). A one-hidden-layer MLP whose weights all start at one constant, trained
   with SGD: its hidden units stay identical, so ``W_1`` keeps rank 1 (:func:`numerical_rank`,
   :func:`unit_spread`), against full rank from ``normal:0.01``; dropout breaks the tie.
4. **Initialization on a deep MLP** (4.8.2). ``normal:0.01``, Xavier and He with ReLU and tanh on
   6 hidden layers of 256: (a) every layer's output variance and weight-gradient variance at
   initialization (:func:`layer_variances`) beside what :func:`mlplab.doctor.variance_factors`
   predicts; (b) each trained by the sweep engine: final test accuracy, statuses, the best init
   per activation and He against ``normal:0.01`` for ReLU, paired over seeds.

Parts 1, 2 and 4a run no training (one forward and backward per model and seed); part 3 trains a
few small models with :func:`mlplab.train.fit` (a constant init is no sweep hyperparameter); part 4b
trains through the sweep engine, stored in ``OUT/.../init-training`` and reused by a rerun.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mlplab.data import Data
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
from mlplab.init import parse_init
from mlplab.models import ACTIVATIONS, ModelConfig, build_mlp
from mlplab.stats import MeanCI, mean_ci, paired

NAME = "stability"
# --quick: the deep MLP of part 4 at most this wide, and fewer epochs: 18 models of 6 x 256 for
# 3 epochs took 4 minutes on a busy 2-core CPU (2 threads), of 6 x 64 for 2 epochs 9 s (1 thread)
QUICK_WIDTH, QUICK_EPOCHS, QUICK_SYMMETRY_EPOCHS = 64, 3, 2


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The stability experiment; ``--quick``: the 10k/5k subset, fewer epochs (parts 3 and 4b) and
    the deep MLP of part 4 at most ``QUICK_WIDTH`` wide."""

    # part 1: vanishing gradients
    sigmoid_range: float = 8.0  # the sigmoid table spans [-range, range] (the book's figure: [-8, 8])
    sigmoid_points: int = 33  # points in that span (33: a step of 0.5)
    gradient_hidden: tuple[int, ...] = (64,) * 8  # the deep MLP whose per-layer gradient norms are measured
    gradient_activations: tuple[str, ...] = ("sigmoid", "relu")  # compared at the same initial weights
    gradient_inits: tuple[str, ...] = ("xavier", "normal:1")  # the first is the headline comparison
    probe_batch: int = 256  # rows of the one batch the init-time measurements (parts 1 and 4a) use
    # part 2: exploding products
    n_products: int = 100  # multiplications (the book: 100)
    matrix_size: int = 4  # the matrices are size x size, entries N(0, 1) (the book: 4)
    # part 3: symmetry
    symmetry_width: int = 64  # one hidden layer of this width
    symmetry_constant: float = 0.01  # every weight of the constant-init model starts here
    symmetry_dropout: float = 0.5  # the constant model again with this dropout (0: left out)
    symmetry_epochs: int = 5  # SGD epochs (quick: QUICK_SYMMETRY_EPOCHS)
    rank_rtol: float = 1e-4  # singular values below rtol * the largest do not count towards the rank
    # part 4: initialization on a deep MLP
    deep_hidden: tuple[int, ...] = (256,) * 6  # quick: each width capped at QUICK_WIDTH
    deep_activations: tuple[str, ...] = ("relu", "tanh")
    deep_inits: tuple[str, ...] = ("normal:0.01", "xavier", "he")
    epochs: int = 10  # per trained model of part 4b (quick: QUICK_EPOCHS)
    lr: float = 0.1  # SGD, parts 3 and 4b (the book's setting)
    compare_inits: tuple[str, str] = ("he", "normal:0.01")  # paired for relu, when both are in deep_inits

    def __post_init__(self) -> None:
        super().__post_init__()
        check_real("sigmoid_range", self.sigmoid_range, 0.0, 100.0, low_open=True, what="the half-width")
        check_int("sigmoid_points", self.sigmoid_points, 2, 10_001)
        check_int("probe_batch", self.probe_batch, 1)
        check_int("n_products", self.n_products, 2, 10_000)  # a slope needs two points
        check_int("matrix_size", self.matrix_size, 1, 1_000)
        check_int("symmetry_width", self.symmetry_width, 2, 100_000)  # one unit is trivially "symmetric"
        check_real("symmetry_constant", self.symmetry_constant, what="the constant weight")
        check_real("symmetry_dropout", self.symmetry_dropout, 0.0, 1.0, high_open=True, what="a probability")
        check_int("symmetry_epochs", self.symmetry_epochs, 1, 1_000)
        check_real("rank_rtol", self.rank_rtol, 0.0, 1.0, low_open=True, high_open=True, what="the tolerance")
        check_int("epochs", self.epochs, 1, 1_000)
        check_real("lr", self.lr, 0.0, low_open=True, what="the learning rate")
        for name in ("gradient_hidden", "deep_hidden"):
            widths = getattr(self, name)
            if (
                not isinstance(widths, (tuple, list))
                or not widths
                or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths)
            ):
                raise ConfigError(name, widths, "give one or more integer widths >= 1, e.g. 64,64,64")
            object.__setattr__(self, name, tuple(widths))
        for name in ("gradient_activations", "deep_activations"):
            values = getattr(self, name)
            if (
                not isinstance(values, (tuple, list))
                or not values
                or any(a not in ACTIVATIONS for a in values)
                or len(set(values)) != len(values)
            ):
                raise ConfigError(name, values, f"give distinct activations out of {', '.join(ACTIVATIONS)}")
            object.__setattr__(self, name, tuple(values))
        for name in ("gradient_inits", "deep_inits", "compare_inits"):
            values = getattr(self, name)
            if not isinstance(values, (tuple, list)) or not values:
                raise ConfigError(name, values, "give a list of inits, e.g. normal:0.01,xavier,he")
            canonical = tuple(str(parse_init(v, name)) for v in values)  # "Normal:0.010" -> "normal:0.01"
            if name != "compare_inits" and len(set(canonical)) != len(canonical):
                raise ConfigError(name, values, "give each init once")
            object.__setattr__(self, name, canonical)
        if len(self.compare_inits) != 2:
            raise ConfigError("compare_inits", self.compare_inits, "give two inits, e.g. he,normal:0.01")

    @property
    def deep(self) -> tuple[int, ...]:
        """The hidden widths part 4 measures and trains (``deep_hidden``, capped with ``quick``)."""
        return tuple(min(w, QUICK_WIDTH) for w in self.deep_hidden) if self.quick else self.deep_hidden


# ---- part 1: vanishing gradients --------------------------------------------------------------


def sigmoid_and_derivative(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sigmoid(x)`` and its derivative, the latter by autograd (d2l 4.8.1.1).

    The closed form is ``s (1 - s)``, largest (1/4) at ``x = 0``; the tests check autograd's value
    against it.

    Parameters
    ----------
    x : Tensor of shape (n,)

    Returns
    -------
    (s, ds) : Tensors of shape (n,), detached
    """
    x = x.detach().clone().requires_grad_(True)
    s = torch.sigmoid(x)
    (ds,) = torch.autograd.grad(s.sum(), x)  # elementwise: d(sum s)/dx_i = s'(x_i)
    return s.detach(), ds


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for class labels, mean squared error for float targets."""
    if y.is_floating_point():
        return F.mse_loss(out, y.reshape(out.shape))
    return F.cross_entropy(out, y)


def _linears(model: nn.Module) -> list[nn.Linear]:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("model", type(model).__name__, "needs at least one nn.Linear (use mlplab.models.build_mlp)")
    return linears


def gradient_norms(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The Frobenius norm ``||dL/dW_l||`` of every ``nn.Linear`` weight, input layer first.

    ``L`` is the mean cross-entropy of ``model(X)`` against ``y`` (mse for float targets). The
    gradients come from ``torch.autograd.grad``: the model's ``.grad`` fields are left untouched.

    Parameters
    ----------
    model : nn.Module
        E.g. ``mlplab.models.build_mlp(config, generator)``; its Linear layers in forward order.
    X : Tensor of shape (B, d)
    y : Tensor of shape (B,), int64 class labels (or float targets)

    Returns
    -------
    list of float, one per Linear layer
    """
    weights = [m.weight for m in _linears(model)]
    grads = torch.autograd.grad(_loss(model(X), y), weights)
    return [float(g.norm()) for g in grads]


def _batch(data: Data, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` random training rows, drawn by ``randperm`` from ``Generator().manual_seed(seed)``."""
    idx = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))[:size]
    idx = idx.to(data.train.X.device)
    return data.train.X.index_select(0, idx), data.train.y.index_select(0, idx)


def _model(
    data: Data, hidden: Sequence[int], activation: str, init: str, seed: int, device: str, dropout: float = 0.0
) -> nn.Sequential:
    """``build_mlp`` for ``data``'s shapes, weights from ``Generator().manual_seed(seed)`` on the CPU
    (so every device starts from the same numbers), then moved to ``device``."""
    config = ModelConfig(
        hidden=tuple(hidden),
        activation=activation,
        init=init,
        dropout=(dropout,) if dropout > 0 else (),
        n_inputs=data.train.X.shape[1],
        n_outputs=data.n_outputs,
    )
    return build_mlp(config, torch.Generator().manual_seed(seed)).to(device)


def sigmoid_table(config: Config) -> pd.DataFrame:
    """x, sigmoid(x) and its derivative on ``config.sigmoid_points`` points of ``[-r, r]``."""
    x = torch.linspace(-config.sigmoid_range, config.sigmoid_range, config.sigmoid_points, dtype=torch.float64)
    x = x.round(decimals=12)  # the middle point is 0, not linspace's -4e-16
    s, ds = sigmoid_and_derivative(x)
    return pd.DataFrame({"x": x.numpy(), "sigmoid": s.numpy(), "derivative": ds.numpy()})


def gradient_norm_runs(data: Data, config: Config) -> pd.DataFrame:
    """One row per (activation, init, seed, layer): ``grad_norm`` at initialization on one batch.

    Models with the same seed start from the same weights (one generator seed, the same shapes),
    whatever their activation, and see the same batch: activations are compared paired.
    """
    rows = []
    for seed in range(config.seeds):
        X, y = _batch(data, config.probe_batch, seed)
        X, y = X.to(config.device), y.to(config.device)
        for init in config.gradient_inits:
            for activation in config.gradient_activations:
                model = _model(data, config.gradient_hidden, activation, init, seed, config.device)
                for layer, norm in enumerate(gradient_norms(model, X, y), start=1):
                    rows.append({"activation": activation, "init": init, "seed": seed, "layer": layer,
                                 "grad_norm": norm})  # fmt: skip
    return pd.DataFrame(rows)


def gradient_ratios(runs: pd.DataFrame) -> pd.DataFrame:
    """First-layer over last-layer gradient norm, one row per (activation, init, seed).

    Parameters
    ----------
    runs : DataFrame with columns activation, init, seed, layer, grad_norm (:func:`gradient_norm_runs`)

    Returns
    -------
    DataFrame with columns activation, init, seed, first, last, ratio
    """
    keys = ["activation", "init", "seed"]
    ordered = runs.sort_values([*keys, "layer"])
    grouped = ordered.groupby(keys, sort=False)["grad_norm"]
    out = pd.concat([grouped.first().rename("first"), grouped.last().rename("last")], axis=1).reset_index()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio"] = out["first"] / out["last"]
    return out


def _sci(ci: MeanCI) -> str:
    """A mean with its CI in 3 significant digits: ``1.23e-05 ± 4.1e-06`` (``.format`` rounds to 4 decimals)."""
    if math.isnan(ci.half_width):
        return f"{ci.mean:.3g}"
    return f"{ci.mean:.3g} ± {ci.half_width:.2g}"


def vanishing_conclusion(ratios: pd.DataFrame, init: str, a: str = "sigmoid", b: str = "relu") -> Conclusion:
    """Activations ``a`` and ``b`` at ``init``: the first/last gradient-norm ratio of each, and a paired
    comparison over seeds of ``log10`` of the ratio (higher: less vanishing).

    Parameters
    ----------
    ratios : DataFrame from :func:`gradient_ratios`
    """
    part = ratios[ratios["init"] == init]

    def of(activation: str) -> dict[int, float]:
        rows = part[part["activation"] == activation]
        return {int(s): float(np.log10(r)) if r > 0 else -math.inf for s, r in zip(rows["seed"], rows["ratio"])}

    ca = mean_ci(part.loc[part["activation"] == a, "ratio"])
    cb = mean_ci(part.loc[part["activation"] == b, "ratio"])
    p = paired(of(b), of(a), labels=(b, a), metric="log10(first/last gradient norm)")
    text = (
        f"at init {init}, the first layer's gradient norm is {_sci(ca)} times the last layer's with {a} and "
        f"{_sci(cb)} times with {b} ({ca.n} seeds, same weights and batch); {p.sentence(2)}"
    )
    return Conclusion(text, {"init": init, "a": a, "b": b, "ratio_a": ca.mean, "ratio_a_ci": ca.half_width,
                             "ratio_b": cb.mean, "ratio_b_ci": cb.half_width,
                             "log10_difference": p.difference.mean, "log10_ci": p.difference.half_width,
                             "winner": p.winner})  # fmt: skip


def sigmoid_conclusion(table: pd.DataFrame, small: float = 0.01) -> Conclusion:
    """Where the sigmoid's derivative peaks and from which ``|x|`` on it stays below ``small``.

    Parameters
    ----------
    table : DataFrame with columns x, derivative (:func:`sigmoid_table`)
    """
    peak = table.loc[table["derivative"].idxmax()]
    ax, d = table["x"].abs().to_numpy(), table["derivative"].to_numpy()
    above = ax[d >= small]
    edge = ax[(d < small) & (ax > (above.max() if len(above) else -1.0))]
    cutoff = float(edge.min()) if len(edge) else math.nan
    ends = table.loc[ax == ax.max(), "derivative"].max()
    text = (
        f"the sigmoid's derivative (autograd) peaks at {peak['derivative']:.4f} at x = {peak['x']:g}; it is below "
        f"{small:g} for |x| >= {cutoff:g} and {ends:.2g} at |x| = {ax.max():g}: a sigmoid layer scales the gradient "
        "through it by s'(x), a quarter at best and far less once saturated"
    )
    return Conclusion(text, {"max_derivative": float(peak["derivative"]), "at_x": float(peak["x"]),
                             "below": small, "from_abs_x": cutoff, "at_ends": float(ends)}, "sigmoid")  # fmt: skip


# ---- part 2: exploding products ---------------------------------------------------------------


def product_norms(n: int, size: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The book's ``M = normal(0, 1, (s, s)); M = M @ normal(0, 1, (s, s))`` repeated ``n`` times.

    All ``n + 1`` matrices are drawn at once, ``torch.normal(0, 1, (n + 1, s, s), generator=...)``
    (float32, as the book's), and multiplied left to right in float64, so the norms are exact
    beyond float32's range: ``M_k = G_0 G_1 ... G_k``.

    Returns
    -------
    (max_abs, frobenius) : ndarrays of shape (n,)
        ``max |M_k|`` and ``||M_k||_F`` for k = 1 .. n.
    """
    G = torch.normal(0.0, 1.0, (n + 1, size, size), generator=generator).double()  # (n + 1, s, s)
    M = G[0]
    max_abs, frob = np.empty(n), np.empty(n)
    for k in range(1, n + 1):  # n small matrix products: the chain itself is sequential
        M = M @ G[k]
        max_abs[k - 1], frob[k - 1] = float(M.abs().max()), float(torch.linalg.matrix_norm(M))
    return max_abs, frob


def growth_rate(k: np.ndarray, values: np.ndarray) -> float:
    """The slope of ``ln values`` against ``k``, fitted by least squares (``numpy.polyfit``, degree 1).

    ``exp`` of it is the geometric-mean growth factor per step: ``values = c * g**k`` gives ``ln g``.

    Parameters
    ----------
    k, values : array-like of shape (n,), ``values > 0``
    """
    return float(np.polyfit(np.asarray(k, float), np.log(np.asarray(values, float)), 1)[0])


def lyapunov(size: int) -> float:
    """Top Lyapunov exponent of products of ``size x size`` matrices with i.i.d. N(0, 1) entries.

    ``||x G||^2`` for a unit vector ``x`` is chi-squared with ``size`` degrees of freedom (G is
    rotation invariant), so each product multiplies the norm by ``exp(E[ln chi2_n] / 2)``:
    ``lambda = (ln 2 + digamma(n / 2)) / 2`` (Newman 1986): 0.558 for n = 4, a factor 1.75.
    """
    from scipy.special import digamma

    return 0.5 * (math.log(2.0) + float(digamma(size / 2)))


def product_runs(config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Norms after each multiplication (seed, k, max_abs, frobenius) and the fitted growth per seed."""
    k = np.arange(1, config.n_products + 1)
    rows, growth = [], []
    for seed in range(config.seeds):
        max_abs, frob = product_norms(config.n_products, config.matrix_size, torch.Generator().manual_seed(seed))
        rows.append(pd.DataFrame({"seed": seed, "k": k, "max_abs": max_abs, "frobenius": frob}))
        for metric, values in (("max_abs", max_abs), ("frobenius", frob)):
            slope = growth_rate(k, values)
            growth.append({"seed": seed, "metric": metric, "slope": slope, "factor": math.exp(slope)})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(growth)


def product_conclusion(products: pd.DataFrame, growth: pd.DataFrame, size: int) -> Conclusion:
    """The final norm and the growth per multiplication (mean over seeds) against the theory."""
    n = int(products["k"].max())
    final = products.loc[products["k"] == n, "frobenius"]
    factor = mean_ci(growth.loc[growth["metric"] == "frobenius", "factor"])
    entry = mean_ci(growth.loc[growth["metric"] == "max_abs", "factor"])
    theory = math.exp(lyapunov(size))
    text = (
        f"after {n} products of {size}x{size} N(0, 1) matrices the Frobenius norm is {final.median():.2g} "
        f"(median of {len(final)} seeds); it grows by a factor {_sci(factor)} per multiplication (largest entry: "
        f"{_sci(entry)}; exp of the slope of ln norm against k), against {theory:.3f} from the top Lyapunov "
        f"exponent (ln 2 + digamma(n/2))/2"
    )
    return Conclusion(text, {"n_products": n, "final_median": float(final.median()), "factor": factor.mean,
                             "factor_ci": factor.half_width, "max_abs_factor": entry.mean,
                             "theory": theory})  # fmt: skip


# ---- part 3: symmetry -------------------------------------------------------------------------


def constant_init_(model: nn.Module, value: float) -> nn.Module:
    """Set every ``nn.Linear`` weight of ``model`` to ``value`` and its bias to 0, in place (d2l 4.8.2)."""
    with torch.no_grad():
        for m in _linears(model):
            m.weight.fill_(value)
            if m.bias is not None:
                m.bias.zero_()
    return model


def numerical_rank(weight: torch.Tensor, rtol: float) -> int:
    """Singular values above ``rtol`` times the largest (``torch.linalg.matrix_rank``), of (n_out, n_in)."""
    return int(torch.linalg.matrix_rank(weight.detach().double(), rtol=rtol))


def unit_spread(weight: torch.Tensor) -> float:
    """The largest difference between two hidden units' weight vectors: ``max_j (max_i W_ij - min_i W_ij)``.

    0 when every row (unit) of ``weight``, shape (n_units, n_in), is the same.
    """
    w = weight.detach()
    return float((w.max(dim=0).values - w.min(dim=0).values).max())


def symmetry_runs(data: Data, config: Config) -> pd.DataFrame:
    """Constant and ``normal:0.01`` (and constant with dropout) one-hidden-layer MLPs trained with SGD.

    One row per (start, seed): the rank of ``W_1`` after training, the rank a full one would have,
    the spread between units (:func:`unit_spread`) and the final test accuracy.
    """
    from mlplab.train import TrainConfig, fit

    epochs = QUICK_SYMMETRY_EPOCHS if config.quick else config.symmetry_epochs
    starts = [("constant", 0.0), ("normal:0.01", 0.0)]
    if config.symmetry_dropout > 0:
        starts.append(("constant", config.symmetry_dropout))
    rows = []
    for seed in range(config.seeds):
        for start, p in starts:
            init = "normal:0.01" if start == "constant" else start
            model = _model(data, (config.symmetry_width,), "relu", init, seed, config.device, dropout=p)
            if start == "constant":
                constant_init_(model, config.symmetry_constant)
            train = TrainConfig(epochs=epochs, lr=config.lr, seed=seed, device=config.device)
            history = fit(model, data, train)
            W1 = _linears(model)[0].weight
            rows.append({
                "start": f"constant {config.symmetry_constant:g}" if start == "constant" else start, "dropout": p,
                "seed": seed, "rank": numerical_rank(W1, config.rank_rtol), "full_rank": min(W1.shape),
                "spread": unit_spread(W1), "final_test_acc": history.final.test_acc, "status": history.status,
            })  # fmt: skip
    return pd.DataFrame(rows)


def symmetry_conclusion(runs: pd.DataFrame, rtol: float) -> Conclusion:
    """The rank of ``W_1`` after training per start (and dropout): rank 1 from the constant, full otherwise.

    Parameters
    ----------
    runs : DataFrame with columns start, dropout, seed, rank, full_rank, spread (:func:`symmetry_runs`)
    """
    parts, values = [], {}
    for (start, p), rows in runs.groupby(["start", "dropout"], sort=False):
        ranks = sorted(set(int(r) for r in rows["rank"]))
        rank = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]}"
        full = int(rows["full_rank"].max())
        what = f"{start}" + (f" with dropout {p:g}" if p > 0 else "")
        parts.append(f"{what}: rank {rank} of {full}, units differ by at most {rows['spread'].max():.2g}")
        values[what] = {"ranks": ranks, "full_rank": full, "max_spread": float(rows["spread"].max())}
    constant = [v for k, v in values.items() if k.startswith("constant") and "dropout" not in k]
    dropped = [v for k, v in values.items() if k.startswith("constant") and "dropout" in k]
    stays = bool(constant) and constant[0]["ranks"] == [1]
    breaks = bool(dropped) and min(dropped[0]["ranks"]) > 1
    verdict = (
        "equal initial weights stayed equal: the hidden layer acts as one unit"
        if stays
        else "the constant start did not stay at rank 1"
    )
    if dropped:
        verdict += "; dropout's random masks broke the symmetry" if breaks else "; dropout did not break it"
    text = f"after SGD, W_1's numerical rank (rtol {rtol:g}): " + "; ".join(parts) + f"; {verdict}"
    return Conclusion(
        text, {"rtol": rtol, "constant_stays_rank_1": stays, "dropout_breaks": breaks, **values}, "symmetry"
    )


# ---- part 4: initialization on a deep MLP -----------------------------------------------------


@dataclass(frozen=True)
class LayerVariances:
    """Variances at one forward and backward pass (:func:`layer_variances`)."""

    activation: list[float]  # Var of each Linear's output z_l over batch and units, l = 1 .. L (L: logits)
    gradient: list[float]  # Var of the entries of dL/dW_l
    input_second_moment: float  # mean of X^2 (what the first layer scales by n_in sigma^2)
    input_gradient: float  # Var of the entries of dL/dX
    output_gradient: float  # Var of the entries of dL/dz_L

    @property
    def forward(self) -> float:
        """The measured forward factor ``Var(z_L) / E[X^2]`` (the doctor's forward prediction)."""
        return self.activation[-1] / self.input_second_moment

    @property
    def backward(self) -> float:
        """The measured backward factor ``Var(dL/dX) / Var(dL/dz_L)`` (the doctor's backward prediction)."""
        return self.input_gradient / self.output_gradient


def layer_variances(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> LayerVariances:
    """The variance of every Linear layer's output and of its weight gradient, on one batch.

    Forward hooks collect each ``nn.Linear``'s output ``z_l``; one ``torch.autograd.grad`` call gives
    ``dL/dW_l``, ``dL/dX`` and ``dL/dz_L`` (``L``: mean cross-entropy, mse for float targets).
    Variances are over all entries (batch and units), ``correction=0``. The model's ``.grad``
    fields are left untouched.

    Parameters
    ----------
    model : nn.Module
        Its last Linear layer gives the outputs (as ``build_mlp``'s does).
    X : Tensor of shape (B, d)
    y : Tensor of shape (B,)

    Returns
    -------
    LayerVariances
    """
    linears = _linears(model)
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in linears]
    try:
        Xg = X.detach().clone().requires_grad_(True)
        loss = _loss(model(Xg), y)
    finally:
        for h in hooks:
            h.remove()
    grads = torch.autograd.grad(loss, [Xg, outputs[-1], *(m.weight for m in linears)])
    dX, dz, dW = grads[0], grads[1], grads[2:]
    return LayerVariances(
        activation=[float(z.detach().var(correction=0)) for z in outputs],
        gradient=[float(g.var(correction=0)) for g in dW],
        input_second_moment=float(X.detach().double().pow(2).mean()),
        input_gradient=float(dX.var(correction=0)),
        output_gradient=float(dz.var(correction=0)),
    )


def predicted_variances(model: ModelConfig, input_second_moment: float) -> list[float]:
    """What :func:`mlplab.doctor.layer_variances` predicts for each Linear layer's output variance.

    ``Var(z_1) = n_in sigma_1^2 E[X^2]``, then ``Var(z_l) = n_in sigma_l^2 E[phi(z_{l-1})^2]`` with
    the activation's second moment taken over a Gaussian of the previous layer's variance.

    Returns
    -------
    list of float, one per Linear layer, input layer first
    """
    from mlplab.doctor import layer_variances as predicted

    return predicted(model, input_second_moment)[0]


def _label(init: str, activation: str) -> str:
    return f"{init}, {activation}"


def variance_runs(data: Data, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (init, activation, seed): every layer's variances (with the doctor's prediction), and the
    whole network's measured and predicted forward and backward factors."""
    from mlplab.doctor import variance_factors

    layers, factors = [], []
    for seed in range(config.seeds):
        X, y = _batch(data, config.probe_batch, seed)
        X, y = X.to(config.device), y.to(config.device)
        for init in config.deep_inits:
            for activation in config.deep_activations:
                model = _model(data, config.deep, activation, init, seed, config.device)
                spec = ModelConfig(hidden=config.deep, activation=activation, init=init,
                                   n_inputs=data.train.X.shape[1], n_outputs=data.n_outputs)  # fmt: skip
                v = layer_variances(model, X, y)
                predicted = predicted_variances(spec, v.input_second_moment)
                for layer, (a, g, p) in enumerate(zip(v.activation, v.gradient, predicted), start=1):
                    layers.append({"init": init, "activation": activation, "seed": seed, "layer": layer,
                                   "activation_var": a, "predicted_activation_var": p, "gradient_var": g})  # fmt: skip
                forward, backward = variance_factors(spec, v.input_second_moment)
                factors.append({"init": init, "activation": activation, "seed": seed, "forward": v.forward,
                                "predicted_forward": forward, "backward": v.backward,
                                "predicted_backward": backward})  # fmt: skip
    return pd.DataFrame(layers), pd.DataFrame(factors)


def variance_conclusion(factors: pd.DataFrame, hidden: Sequence[int]) -> Conclusion:
    """Measured against predicted forward and backward factors per (init, activation), and which
    ones the doctor flags.

    Parameters
    ----------
    factors : DataFrame with columns init, activation, forward_mean, backward_mean,
        predicted_forward, predicted_backward, doctor_flags (the ``variance_factors`` table)
    """
    parts, values = [], {}
    for row in factors.itertuples(index=False):
        name = _label(row.init, row.activation)
        parts.append(
            f"{name} {row.forward_mean:.2g} (doctor {row.predicted_forward:.2g}) forward, "
            f"{row.backward_mean:.2g} ({row.predicted_backward:.2g}) back" + (", flagged" if row.doctor_flags else "")
        )
        values[name] = {"forward": row.forward_mean, "predicted_forward": row.predicted_forward,
                        "backward": row.backward_mean, "predicted_backward": row.predicted_backward,
                        "flagged": bool(row.doctor_flags)}  # fmt: skip
    text = (
        f"variance factors through hidden {'-'.join(map(str, hidden))} at init, measured (mean over seeds) against "
        "mlplab.doctor's prediction (flagged: its variance check warns): " + "; ".join(parts)
    )
    return Conclusion(text, values)


def _doctor_flags(init: str, activation: str, hidden: Sequence[int], n_inputs: int, n_outputs: int) -> bool:
    """True when ``mlplab.doctor.check`` warns that variance vanishes or explodes for this model."""
    from mlplab.doctor import check
    from mlplab.train import TrainConfig

    spec = ModelConfig(hidden=tuple(hidden), activation=activation, init=init, n_inputs=n_inputs, n_outputs=n_outputs)
    return any(f.check.startswith("variance-") for f in check(spec, TrainConfig()))


def training_table(results: pd.DataFrame) -> pd.DataFrame:
    """Final accuracy and loss per (init, activation) with CIs, and how many models ended ``ok``.

    Parameters
    ----------
    results : DataFrame with columns init, activation, seed, final_test_acc, final_train_loss, status
    """
    table = summary_table(results, ["init", "activation"], ["final_test_acc", "final_train_loss"])
    counts = results.groupby(["init", "activation"], sort=False)["status"]
    n_ok = counts.apply(lambda s: int((s == "ok").sum())).rename("n_ok")
    text = counts.apply(lambda s: ", ".join(f"{k}: {v}" for k, v in s.value_counts().sort_index().items()))
    extra = pd.concat([n_ok, text.rename("statuses")], axis=1).reset_index()
    return table.merge(extra, on=["init", "activation"], how="left")


def training_conclusions(results: pd.DataFrame, compare_inits: tuple[str, str]) -> list[Conclusion]:
    """The best init per activation (:func:`best`) and ``compare_inits`` paired for relu.

    Parameters
    ----------
    results : DataFrame with columns init, activation, seed, final_test_acc, status
    """
    out = []
    for activation, rows in results.groupby("activation", sort=False):
        found = best(rows, "init")
        failed = rows[rows["status"] != "ok"].groupby("init", sort=False).size()
        note = "" if failed.empty else "; not ok: " + ", ".join(f"{i} {n}" for i, n in failed.items())
        out.append(Conclusion(f"{activation}: {found.text}{note}", {**found.values, "activation": activation,
                                                                     "not_ok": failed.to_dict()}))  # fmt: skip
    a, b = compare_inits
    relu = results[results["activation"] == "relu"]
    if {a, b} <= set(relu["init"]):
        c = comparison(compare(relu, "init", a, b))
        out.append(Conclusion(f"relu: {c.text}", {**c.values, "activation": "relu"}))
    return out


# ---- the experiment ---------------------------------------------------------------------------


@contextmanager
def _one_thread(device: str) -> Iterator[None]:
    """One torch thread for the block on the CPU (elsewhere: nothing changes).

    The matrices of the measurements are small, and on a shared 2-core machine a second thread
    that waits for a busy core made them slower, not faster (0.4 s against 9 s). The sweep keeps
    torch's threads: on an idle machine they are faster there.
    """
    if not device.startswith("cpu"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _with_log10(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with ``log10_<c>`` beside each column ``c``.

    The figures draw these: values spread over decades get their CI over seeds in log space, where
    it is symmetric (a mean's CI on a log axis reaches below 0 and fills the plot).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return frame.assign(**{f"log10_{c}": np.log10(frame[c].astype(float)) for c in columns})


def _measure(data: Data, config: Config) -> tuple[dict[str, pd.DataFrame], list[Conclusion]]:
    """The tables and conclusions of parts 1, 2, 3 and 4a (no sweep)."""
    n_in, n_out, deep = data.train.X.shape[1], data.n_outputs, config.deep
    tables: dict[str, pd.DataFrame] = {}
    conclusions: list[Conclusion] = []

    # part 1
    sig = sigmoid_table(config)
    tables["sigmoid"] = sig
    tables["sigmoid_curves"] = pd.concat(
        [sig[["x", f]].set_axis(["x", "value"], axis=1).assign(function=f) for f in ("sigmoid", "derivative")],
        ignore_index=True,
    )
    conclusions.append(sigmoid_conclusion(sig))
    norms = gradient_norm_runs(data, config)
    norms = _with_log10(norms, ["grad_norm"])
    grad_table = summary_table(norms, ["activation", "init", "layer"], ["grad_norm", "log10_grad_norm"])
    grad_table.insert(0, "model", [_label(i, a) for i, a in zip(grad_table["init"], grad_table["activation"])])
    tables["gradient_norms"] = grad_table
    ratios = gradient_ratios(norms)
    tables["gradient_ratio"] = summary_table(ratios, ["activation", "init"], ["ratio", "first", "last"])
    if {"sigmoid", "relu"} <= set(config.gradient_activations):
        conclusions.append(vanishing_conclusion(ratios, config.gradient_inits[0]))

    # part 2
    products, growth = product_runs(config)
    tables["products"] = products
    tables["product_growth"] = growth
    conclusions.append(product_conclusion(products, growth, config.matrix_size))

    # part 3
    sym = symmetry_runs(data, config)
    tables["symmetry"] = sym
    conclusions.append(symmetry_conclusion(sym, config.rank_rtol))

    # part 4a
    layers, factors = variance_runs(data, config)
    layers = _with_log10(layers, ["activation_var", "gradient_var"])
    var_table = summary_table(
        layers,
        ["init", "activation", "layer"],
        ["activation_var", "gradient_var", "predicted_activation_var", "log10_activation_var", "log10_gradient_var"],
    )
    var_table = var_table.drop(columns="predicted_activation_var_ci").rename(
        columns={"predicted_activation_var_mean": "predicted_activation_var"}
    )  # the prediction's E[X^2] varies with the batch only, so its mean is the column
    var_table.insert(0, "model", [_label(i, a) for i, a in zip(var_table["init"], var_table["activation"])])
    tables["variances"] = var_table
    factor_table = summary_table(factors, ["init", "activation"], ["forward", "backward"])
    first = factors.groupby(["init", "activation"], sort=False)[["predicted_forward", "predicted_backward"]].first()
    factor_table = factor_table.merge(first.reset_index(), on=["init", "activation"])
    factor_table["doctor_flags"] = [
        _doctor_flags(i, a, deep, n_in, n_out) for i, a in zip(factor_table["init"], factor_table["activation"])
    ]
    tables["variance_factors"] = factor_table
    conclusions.append(variance_conclusion(factor_table, deep))
    return tables, conclusions


def run(config: Config) -> Result:
    """Measure parts 1, 2, 3 and 4a, train part 4b through the sweep engine, and return the Result."""
    from mlplab.sweep.spec import SweepSpec

    t0, settings = timed(NAME, config)
    data = classification_data(config)
    deep = config.deep
    epochs = QUICK_EPOCHS if config.quick else config.epochs
    spec = SweepSpec(
        base={"hidden": deep, "lr": config.lr, "epochs": epochs},
        grid={"init": config.deep_inits, "activation": config.deep_activations},
        seeds=tuple(range(config.seeds)),
    )
    with _one_thread(config.device):  # small matrices: a second thread only waits
        tables, conclusions = _measure(data, config)  # parts 1, 2, 3 and 4a
    results = sweep(spec, data, config.folder(NAME) / "init-training", config).results  # part 4b
    tables["training"] = training_table(results)
    conclusions += training_conclusions(results, config.compare_inits)

    depth = f"hidden {'-'.join(map(str, deep))}"
    figures = [
        FigureSpec("sigmoid", "sigmoid_curves", "line", "x", "value", by="function",
                   title="sigmoid and its derivative (autograd), d2l 4.8.1.1"),
        FigureSpec("gradient_norms", "gradient_norms", "line", "layer", "log10_grad_norm", by="model",
                   title=f"log10 ||dL/dW_l|| at init, hidden {'-'.join(map(str, config.gradient_hidden))}, "
                   f"{config.seeds} seeds"),
        FigureSpec("products", "products", "line", "k", "frobenius", by="seed", logy=True,
                   title=f"||product of k random {config.matrix_size}x{config.matrix_size} N(0,1) matrices||_F"),
        FigureSpec("activation_variance", "variances", "line", "layer", "log10_activation_var", by="model",
                   title=f"log10 Var(z_l) at init, {depth}, {config.seeds} seeds"),
        FigureSpec("gradient_variance", "variances", "line", "layer", "log10_gradient_var", by="model",
                   title=f"log10 Var(dL/dW_l) at init, {depth}, {config.seeds} seeds"),
        FigureSpec("training", "training", "bar", "init", "final_test_acc", by="activation",
                   title=f"{depth}, SGD lr {config.lr:g}, {epochs} epochs, {config.seeds} seeds"),
    ]  # fmt: skip
    return Result(NAME, settings, tables=tables, figures=figures, conclusions=conclusions,
                  seconds=time.perf_counter() - t0)  # fmt: skip
