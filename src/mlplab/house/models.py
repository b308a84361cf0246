"""The models of the House Prices comparison, each a complete pipeline from table to prices.

Every model has a ``name`` and one method::

    model.fit_predict_log(train, test, seed) -> ndarray, shape (len(test),)

which fits on the checked training rows ``train`` only and returns predicted ``log(price)`` for
``test``. Three kinds:

* :class:`BookBaseline` -- the book's linear net (see :mod:`mlplab.house.baseline`).
* :class:`Pipeline` -- optional outlier removal (training rows only), a
  :class:`~mlplab.house.features.HousePreprocessor` fitted on the training rows, and an estimator
  (ridge, lasso, SVR, gradient boosting or :class:`MLPRegressor`) on ``log1p(SalePrice)``.
* :class:`Ensemble` -- the weighted mean, in log space, of other models' predictions, with fixed
  weights or weights stacked by an inner cross-validation of the training rows.

:data:`MODELS` holds the tuned configurations under their public names; :func:`get_model`
looks one up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from mlplab.errors import ConfigError, check_int, check_probability, check_real
from mlplab.house.baseline import BookConfig, fit_predict_baseline
from mlplab.house.data import TARGET
from mlplab.house.features import (
    FeatureConfig,
    HousePreprocessor,
    OutlierRule,
    log_price,
    log_target,
)
from mlplab.house.folds import fold_indices, fold_seed


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch thread and one BLAS/OpenMP thread, then restore them.

    The matrices here are small (about 1,200 x 300), so extra threads gain little, while on a
    shared machine threads that wait for a busy core can slow a fit down several times over
    (2-thread MLP fits took 1.7 s each on a quiet machine, 13 s each during a busy spell).
    """
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


class Estimator(Protocol):
    """What a :class:`Pipeline` needs from an estimator (scikit-learn's interface)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> Estimator: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


# --------------------------------------------------------------------------------------------
# The MLP
# --------------------------------------------------------------------------------------------


@dataclass
class MLPConfig:
    """Hyperparameters of :class:`MLPRegressor` (defaults tuned by 5-fold CV: docs/house.md).

    ``hidden``, ``epochs`` and ``lr`` were retuned one factor at a time, then in pairs, on the
    15 folds of shuffles 0-2 (``bench/tune_house_mlp.py`` and BENCHMARKS.md): 0.1183 at 64 units,
    300 epochs, lr 0.01; 0.1178 at 32 units, 500 epochs, lr 0.02.
    """

    hidden: int = 32  # units of the hidden ReLU layer
    members: int = 4  # independently initialized nets trained side by side; predictions averaged
    epochs: int = 500  # full-batch Adam steps
    lr: float = 0.02  # peak learning rate of the one-cycle schedule
    dropout: float = 0.5  # dropout on the hidden units while training
    weight_decay: float = 0.05  # L2 penalty weight_decay * ||W||^2 on the hidden-path weights
    l1_linear: float = 0.015  # L1 penalty l1_linear * ||w||_1 on the linear (skip) path
    linear_path: bool = True  # add a linear path from input to output (a "wide and deep" net)

    def __post_init__(self) -> None:
        for name in ("hidden", "members", "epochs"):
            check_int(name, getattr(self, name), 1)
        check_real("lr", self.lr, 0.0, low_open=True, what="the learning rate")
        check_probability("dropout", self.dropout)
        for name in ("weight_decay", "l1_linear"):
            check_real(name, getattr(self, name), 0.0, what="the penalty weight")


class MLPRegressor:
    """A small torch MLP for tabular regression, trained full-batch on standardized targets.

    ``output = mean over members m of [ReLU(x W1_m + b1_m) W2_m + b2_m + x w_m]``: a hidden ReLU
    layer with dropout plus a linear path, several members trained at once as one batched
    computation (``members`` x ``hidden`` units), Adam with a one-cycle learning-rate schedule,
    squared error plus the L2 (hidden path) and L1 (linear path) penalties of :class:`MLPConfig`.

    Parameters
    ----------
    config : MLPConfig
    seed : int
        Seeds the ``torch.Generator`` used for initialization and dropout masks.
    """

    def __init__(self, config: MLPConfig | None = None, seed: int = 0) -> None:
        self.config = config or MLPConfig()
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> MLPRegressor:
        """Train on features ``X`` (n, d) and targets ``y`` (n,)."""
        cfg = self.config
        gen = torch.Generator().manual_seed(self.seed)
        x = torch.tensor(X, dtype=torch.float32)
        t = torch.tensor(y, dtype=torch.float32)
        self.y_mean_, self.y_std_ = float(t.mean()), float(t.std()) or 1.0
        t = (t - self.y_mean_) / self.y_std_
        k, d, h = cfg.members, x.shape[1], cfg.hidden

        def uniform(*shape: int, fan_in: int) -> torch.Tensor:  # nn.Linear's default init
            bound = 1.0 / math.sqrt(fan_in)
            return torch.empty(*shape).uniform_(-bound, bound, generator=gen).requires_grad_()

        self.w1_ = uniform(k, d, h, fan_in=d)
        self.b1_ = uniform(k, 1, h, fan_in=d)
        self.w2_ = uniform(k, h, 1, fan_in=h)
        self.b2_ = torch.zeros(k, 1, 1, requires_grad=True)
        self.lin_ = torch.zeros(k, d, 1, requires_grad=cfg.linear_path)
        params = [self.w1_, self.b1_, self.w2_, self.b2_] + ([self.lin_] if cfg.linear_path else [])
        opt = torch.optim.Adam(params, lr=cfg.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs)
        keep = 1.0 - cfg.dropout
        for _ in range(cfg.epochs):
            hidden = torch.relu(x @ self.w1_ + self.b1_)  # (k, n, h)
            if cfg.dropout:
                hidden = hidden * (torch.rand(hidden.shape, generator=gen) < keep) / keep
            out = self._output(x, hidden)
            loss = ((out - t) ** 2).mean()
            loss = loss + cfg.weight_decay * ((self.w1_**2).sum() + (self.w2_**2).sum()) / k
            if cfg.linear_path and cfg.l1_linear:
                loss = loss + cfg.l1_linear * self.lin_.abs().sum() / k
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        return self

    def _output(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        out = (hidden @ self.w2_ + self.b2_).squeeze(-1)  # (k, n)
        if self.config.linear_path:
            out = out + (x @ self.lin_).squeeze(-1)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Mean prediction of the members for ``X`` (m, d); shape (m,)."""
        with torch.no_grad():
            x = torch.tensor(X, dtype=torch.float32)
            out = self._output(x, torch.relu(x @ self.w1_ + self.b1_)).mean(0)
        return out.numpy().astype(np.float64) * self.y_std_ + self.y_mean_


# --------------------------------------------------------------------------------------------
# Estimator configurations
# --------------------------------------------------------------------------------------------


@dataclass
class RidgeConfig:
    """scikit-learn ``Ridge``: least squares with an L2 penalty."""

    alpha: float = 200.0  # penalty alpha * ||w||^2 (features standardized, target log1p price)

    def build(self, seed: int) -> Estimator:
        """A fresh estimator (``seed`` unused: ridge is deterministic)."""
        from sklearn.linear_model import Ridge

        return Ridge(alpha=self.alpha)


@dataclass
class LassoConfig:
    """scikit-learn ``Lasso``: least squares with an L1 penalty (sparse weights)."""

    alpha: float = 0.003  # penalty alpha * ||w||_1, objective scaled by 1 / (2 n)
    max_iter: int = 50_000  # coordinate-descent sweeps

    def build(self, seed: int) -> Estimator:
        """A fresh estimator (coordinate descent is deterministic)."""
        from sklearn.linear_model import Lasso

        return Lasso(alpha=self.alpha, max_iter=self.max_iter)


@dataclass
class SVRConfig:
    """scikit-learn ``SVR`` with an RBF kernel (far-away houses fall back to the mean)."""

    C: float = 3.0  # inverse regularization strength
    gamma: float = 0.0003  # RBF width: exp(-gamma * ||x - x'||^2) on ~290 standardized features
    epsilon: float = 0.01  # half-width of the loss-free tube, in log-price units

    def build(self, seed: int) -> Estimator:
        """A fresh estimator (deterministic)."""
        from sklearn.svm import SVR

        return SVR(C=self.C, gamma=self.gamma, epsilon=self.epsilon)


class SeedAveraged:
    """The mean prediction of several fits of one estimator, each with its own seed.

    Gradient boosting with row and feature subsampling varies from seed to seed by about 0.0003
    log-RMSE alone; averaging two fits removes part of that noise at twice the cost.
    """

    def __init__(self, estimators: list[Estimator]) -> None:
        self.estimators = estimators

    def fit(self, X: np.ndarray, y: np.ndarray) -> SeedAveraged:
        """Fit every estimator on ``X`` (n, d) and ``y`` (n,)."""
        for estimator in self.estimators:
            estimator.fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The estimators' mean prediction for ``X`` (m, d); shape (m,)."""
        return np.mean([estimator.predict(X) for estimator in self.estimators], axis=0)


@dataclass
class GBMConfig:
    """scikit-learn ``GradientBoostingRegressor`` with the Huber loss (robust to odd sales).

    ``seeds`` fits are averaged (seeds ``seed, seed + 1, ...``): in ``best``, two seeds measured
    0.0001 better than one fit at the same weight (0.11425 against 0.11436 on shuffles 0-2,
    ``bench/tune_house.py blend``), for about 17 s more per ``mlplab house cv`` run (one thread).
    """

    n_estimators: int = 1500  # boosting stages
    learning_rate: float = 0.03  # shrinkage per stage
    max_depth: int = 4  # depth of each tree
    min_samples_leaf: int = 15  # rows per leaf at least
    min_samples_split: int = 10  # rows a node needs to be split
    max_features: str = "sqrt"  # features tried per split
    subsample: float = 0.8  # rows drawn (without replacement) per stage
    loss: str = "huber"  # "huber" or "squared_error"
    seeds: int = 2  # fits with seeds seed, seed + 1, ... averaged (1: a single fit)

    def __post_init__(self) -> None:
        check_int("seeds", self.seeds, 1)

    def build(self, seed: int) -> Estimator:
        """A fresh estimator; ``seed`` drives the row and feature subsampling."""
        from sklearn.ensemble import GradientBoostingRegressor

        fits = [
            GradientBoostingRegressor(
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                max_depth=self.max_depth,
                min_samples_leaf=self.min_samples_leaf,
                min_samples_split=self.min_samples_split,
                max_features=self.max_features,
                subsample=self.subsample,
                loss=self.loss,
                random_state=(seed + k) % 2**32,  # scikit-learn takes 32 bits
            )
            for k in range(self.seeds)
        ]
        return fits[0] if self.seeds == 1 else SeedAveraged(fits)


@dataclass
class MLPBuild:
    """Adapter so :class:`MLPConfig` plugs into a :class:`Pipeline` like the others."""

    config: MLPConfig = field(default_factory=MLPConfig)

    def build(self, seed: int) -> Estimator:
        """A fresh :class:`MLPRegressor` seeded with ``seed``."""
        return MLPRegressor(self.config, seed=seed)


EstimatorConfig = RidgeConfig | LassoConfig | SVRConfig | GBMConfig | MLPBuild

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass
class BookBaseline:
    """The book's baseline as a model (statistics over train and test features together)."""

    name: str = "baseline"
    config: BookConfig = field(default_factory=BookConfig)
    description: str = "book: linear net on raw prices, Adam lr 5"

    def fit_predict_log(self, train: pd.DataFrame, test: pd.DataFrame, seed: int) -> np.ndarray:
        """``log`` of the baseline's predicted prices (clamped to >= 1, as in the book)."""
        with one_thread():
            return np.log(fit_predict_baseline(train, test, self.config, seed=seed))


@dataclass
class Pipeline:
    """Outlier removal, leak-free features and an estimator on ``log1p(SalePrice)``.

    Attributes
    ----------
    name : str
    estimator : EstimatorConfig
    features : FeatureConfig
        Options of the preprocessor, fitted on the (kept) training rows only.
    outliers : OutlierRule or None
        Training rows it flags are dropped before anything is fitted; ``None`` keeps them all.
        Rows to predict are never dropped.
    """

    name: str
    estimator: EstimatorConfig
    features: FeatureConfig = field(default_factory=FeatureConfig)
    outliers: OutlierRule | None = field(default_factory=OutlierRule)
    description: str = ""

    def fit_predict_log(self, train: pd.DataFrame, test: pd.DataFrame, seed: int) -> np.ndarray:
        """Fit on ``train`` only; predicted ``log(price)`` for ``test``, shape (len(test),)."""
        if self.outliers is not None:
            train = self.outliers.keep(train)
        pre = HousePreprocessor(self.features).fit(train)
        with one_thread():
            model = self.estimator.build(seed).fit(pre.transform(train), log_target(train))
            z = model.predict(pre.transform(test))
        return log_price(z)  # the target is log1p(price)


def stack_weights(predictions: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Blend weights: non-negative least squares of ``target`` on the columns, then normalized.

    Solves ``min ||predictions @ w - target||^2`` subject to ``w >= 0`` (Lawson and Hanson's
    active-set method, ``scipy.optimize.nnls``) and rescales ``w`` to sum to 1, so the blend
    stays a weighted mean. If every weight comes out 0, the weights are equal.

    Parameters
    ----------
    predictions : ndarray, shape (n, m)
        One column per member: its out-of-fold predictions (here: ``log(price)``).
    target : ndarray, shape (n,)

    Returns
    -------
    ndarray, shape (m,)
        Non-negative weights summing to 1.
    """
    from scipy.optimize import nnls

    predictions = np.asarray(predictions, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if predictions.ndim != 2 or predictions.shape[0] != target.shape[0] or not len(target):
        raise ConfigError(
            "predictions", predictions.shape, f"a 2-D array with one row per target value ({target.shape[0]})"
        )
    w, _ = nnls(predictions, target)
    total = w.sum()
    return w / total if total > 0 else np.full(predictions.shape[1], 1.0 / predictions.shape[1])


@dataclass
class Ensemble:
    """Weighted mean of member models' ``log(price)`` predictions, weights fixed or stacked.

    With ``stack_folds = 0`` the weights are fixed: ``weights`` if given, else equal. With ``stack_folds = K >= 2`` they are
    fitted on the training rows alone, every time the ensemble is fitted: a shuffled K-fold split
    *of the training rows* gives each member's out-of-fold predictions, and
    :func:`stack_weights` (non-negative least squares, normalized) regresses the training prices
    on them. The rows to predict never take part, so the weights are tuned without looking at
    validation or test rows.

    Attributes
    ----------
    name : str
    members : tuple of Model
        The member models themselves (a :class:`Pipeline`, :class:`BookBaseline` or an
        unstacked :class:`Ensemble`), in blending order; look one up by name with
        :func:`get_model`.
    stack_folds : int
        0: fixed weights; K >= 2: weights fitted by K-fold inner cross-validation.
    outliers : OutlierRule or None
        Training rows the weight fit leaves out, as the pipelines leave them out of their fits
        (``None``: every training row counts).
    weights : tuple of float, optional
        Fixed positive weights, one per member (normalized to sum to 1); ``None``: equal.
        Not with ``stack_folds``.
    """

    name: str
    members: tuple[Model, ...]
    description: str = ""
    stack_folds: int = 0
    outliers: OutlierRule | None = field(default_factory=OutlierRule)
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_int("stack_folds", self.stack_folds, 0)
        if self.stack_folds == 1:
            raise ConfigError("stack_folds", 1, "0 (equal weights) or an integer >= 2")
        self.members = tuple(self.members)
        if not self.members:
            raise ConfigError("members", self.members, "at least one model")
        for member in self.members:
            if not isinstance(member, (BookBaseline, Pipeline, Ensemble)):
                raise ConfigError("members", member, "models, not names (get_model(name) looks one up)")
            if isinstance(member, Ensemble) and member.stack_folds:
                raise ConfigError("members", member.name, f"models other than stacked ensembles ({member.name} is one)")
        leaves_of(self.members)  # two different models under one name would share predictions
        if self.weights is not None:
            if self.stack_folds:
                raise ConfigError("weights", self.weights, "None for a stacked ensemble (its weights are fitted)")
            self.weights = tuple(self.weights)
            if len(self.weights) != len(self.members):
                raise ConfigError("weights", self.weights, f"one weight per member ({len(self.members)})")
            for w in self.weights:
                check_real("weights", w, 0.0, low_open=True, what="a member weight")

    def leaves(self) -> list[Model]:
        """The models that must be fitted: members, and members of member ensembles, once each."""
        return leaves_of(self.members)

    def fixed_weights(self) -> np.ndarray:
        """The weights of an unstacked ensemble, summing to 1 (``weights`` or equal); shape (len(members),)."""
        if self.weights is None:
            return np.full(len(self.members), 1.0 / len(self.members))
        w = np.asarray(self.weights, dtype=np.float64)
        return w / w.sum()

    def fit_weights(self, train: pd.DataFrame, seed: int) -> np.ndarray:
        """Member weights for an ensemble fitted on ``train``; shape (len(members),).

        Without stacking these are the :meth:`fixed_weights`. Stacked weights come from
        ``stack_folds``-fold cross-validation of every member on ``train`` (folds shuffled with
        ``seed``), then :func:`stack_weights` on the out-of-fold ``log(price)`` predictions of
        the rows that ``outliers`` keeps.
        """
        if not self.stack_folds:
            return self.fixed_weights()
        oof = np.zeros((len(train), len(self.members)))  # (n, members)
        for i, (tr, va) in enumerate(fold_indices(len(train), self.stack_folds, seed)):
            inner_train = train.iloc[tr].reset_index(drop=True)
            inner_val = train.iloc[va].reset_index(drop=True)
            for j, member in enumerate(self.members):
                oof[va, j] = member.fit_predict_log(inner_train, inner_val, fold_seed(seed, i))
        keep = np.ones(len(train), bool) if self.outliers is None else ~self.outliers.mask(train)
        y_log = np.log(train[TARGET].to_numpy(np.float64))
        return stack_weights(oof[keep], y_log[keep])

    def combine(self, leaf_logs: dict[str, np.ndarray], weights: np.ndarray | None = None) -> np.ndarray:
        """Blend predictions of the :meth:`leaves` (leaf name -> shape (m,)) into one, shape (m,).

        ``weights`` (one per member, e.g. from :meth:`fit_weights`) default to the fixed ones.
        """
        w = self.fixed_weights() if weights is None else np.asarray(weights, dtype=np.float64)
        stacked = [
            member.combine(leaf_logs) if isinstance(member, Ensemble) else leaf_logs[member.name]
            for member in self.members
        ]  # members x (m,)
        return (w[:, None] * np.stack(stacked)).sum(0) / w.sum()

    def fit_predict_log(
        self,
        train: pd.DataFrame,
        test: pd.DataFrame,
        seed: int,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> np.ndarray:
        """Fit the weights and every leaf model on ``train``; blended predictions for ``test``.

        ``progress(done, total, label)`` is called before each fit (the stacking weights count as
        one) and once at the end.
        """
        leaves = self.leaves()
        stacked = int(self.stack_folds > 0)
        total = len(leaves) + stacked
        report = progress if progress is not None else (lambda done, total, label: None)
        if stacked:
            report(0, total, "fitting stacking weights")
        weights = self.fit_weights(train, seed)
        leaf_logs = {}
        for i, leaf in enumerate(leaves, start=stacked):
            report(i, total, f"fitting {leaf.name}")
            leaf_logs[leaf.name] = leaf.fit_predict_log(train, test, seed)
        report(total, total, "done")
        return self.combine(leaf_logs, weights)


Model = BookBaseline | Pipeline | Ensemble


def leaves_of(models: Iterable[Model]) -> list[Model]:
    """The models that fitting ``models`` fits: each one or an ensemble's leaves, once, in order.

    Predictions are keyed by model name, so two different models under one name are refused.
    """
    out: dict[str, Model] = {}
    for model in models:
        for leaf in model.leaves() if isinstance(model, Ensemble) else [model]:
            if out.setdefault(leaf.name, leaf) != leaf:
                raise ConfigError("models", leaf.name, "one model per name (two different models are called that)")
    return list(out.values())


# Preprocessing for the linear models, the SVR and the MLP: squares and interactions of the
# strongest features, rare categories (< 3 training rows) dropped, numeric features winsorized
# at the training 1% / 99% quantiles so that unusual houses are not extrapolated linearly.
LINEAR_FEATURES = FeatureConfig(
    min_category_count=3,
    squares=True,
    interactions=True,
    sale_month_as_category=False,
    clip_to_train_range=True,
    clip_quantile=0.01,
)
# The RBF SVR bounds extrapolation by itself (far houses fall back to the mean): no clipping.
KERNEL_FEATURES = FeatureConfig(
    min_category_count=3,
    squares=True,
    interactions=True,
    sale_month_as_category=False,
)
# Trees need neither squares nor clipping, and fewer one-hot columns might help "sqrt" feature
# sampling; but gbm measured no worse on LINEAR_FEATURES, and better there with the two partial
# sales kept (see _tuned_models). Kept as an option (bench/tune_house.py's LightGBM runs use it).
TREE_FEATURES = FeatureConfig(min_category_count=10)

# Inner folds of the stacked ensemble: 3 keeps its weight fit to about twice the members' own
# fitting time (the inner fits use 2/3 of the training rows each).
STACK_FOLDS = 3


def _tuned_models() -> tuple[Model, ...]:
    """The tuned models, in table order; the ensembles hold the very member objects listed.

    One exception: ``best``'s ``svr_clip`` is a member only, not a registered model of its own
    (``mlplab house cv --models`` and its help spell the registered names out).

    ``best``'s composition was chosen on the 15 folds of shuffles 0-2 and confirmed on shuffles
    3-9 (``bench/tune_house.py blend``; mean log-RMSE over shuffles 0-2 / 3-9 / 0-9): the old
    equal mean of lasso, svr, gbm and mlp 0.11498 / 0.11583 / 0.11558, this one 0.11425 /
    0.11510 / 0.11484 (paired over the 50 folds: -0.0007 +- 0.0004; better on all ten
    shuffles). Two changes:

    * ``gbm`` keeps the two cheap partial sales in training and uses the clipped features of
      the linear models (0.1210 alone over shuffles 0-9, was 0.1227). A tree cannot extrapolate,
      so the outliers cannot tilt it as they tilt a linear fit; kept, one of them in a training
      fold pulls the forecast for the other down. Its two seeds are averaged
      (``GBMConfig.seeds``).
    * A second SVR, ``svr_clip``, on the clipped features: it prices the two partial sales
      less extremely than ``svr`` (whose good shuffles 0-2 owe much to one lucky fold), and
      ``gbm`` counts twice: each family (linear: lasso, mlp; kernel: the two SVRs; trees) gets a
      third of the weight. ``gbm`` is the member least like the others.

    Most of the gain is on those two houses (blend errors 1.16 / 1.30 -> 1.13 / 1.26 in log
    price, mean over shuffles 0-9); scored without them, the new blend is 0.0002 better
    (0.10701 -> 0.10679): the other 1,458 houses gain a little too.
    """
    lasso = Pipeline("lasso", LassoConfig(), LINEAR_FEATURES, description="lasso, log1p target")
    svr = Pipeline("svr", SVRConfig(), KERNEL_FEATURES, description="RBF support vector regression")
    svr_clip = Pipeline(
        "svr_clip", SVRConfig(gamma=0.0005), LINEAR_FEATURES, description="RBF SVR on the clipped features"
    )
    gbm = Pipeline(
        "gbm",
        GBMConfig(),
        LINEAR_FEATURES,
        outliers=None,
        description="gradient boosting, Huber loss, 2 seeds, outliers kept",
    )
    mlp = Pipeline("mlp", MLPBuild(), LINEAR_FEATURES, description="torch MLP, dropout + weight decay")
    blend = (lasso, svr, gbm, mlp)
    return (
        BookBaseline(),
        Pipeline("ridge", RidgeConfig(), LINEAR_FEATURES, description="ridge, log1p target"),
        lasso,
        svr,
        gbm,
        mlp,
        Ensemble(
            "stack", blend, stack_folds=STACK_FOLDS, description="lasso, svr, gbm, mlp; weights by inner-CV stacking"
        ),
        Ensemble(
            "best",
            (lasso, svr, svr_clip, mlp, gbm),
            weights=(1.0, 1.0, 1.0, 1.0, 2.0),
            description="mean of lasso, svr, svr_clip, mlp and gbm (weight 2)",
        ),
    )


#: The tuned models under their public names (``mlplab house cv --models ...``).
MODELS: dict[str, Model] = {model.name: model for model in _tuned_models()}


def get_model(name: str) -> Model:
    """The registered model called ``name``; :class:`ConfigError` listing the names otherwise."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ConfigError("model", name, "one of " + ", ".join(MODELS)) from None
