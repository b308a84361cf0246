"""The strict cross-validation protocol for House Prices models.

Shuffled K-fold over *all* training rows (:func:`~mlplab.house.folds.fold_indices`): every
row is validated exactly once, none is ever dropped from a validation fold (outlier rules only
touch training folds), and each model is fitted on the training folds alone. The score is the
competition's metric, the RMSE between the logs of predicted (clamped to >= 1) and true prices,
per fold; a model is summarized by the mean and standard deviation (``ddof=0``) of its fold
scores.

The book's baseline keeps its own preprocessing here: standardization statistics over the
features of the training and validation rows together, as the book computes them over train and
test (a price is never used).

Ensembles reuse their members' fold predictions, so asking for ``best`` next to its members
costs nothing extra beyond, for a stacked ensemble, fitting its weights in each fold: an inner
cross-validation of the members over that fold's training rows only.

No model is handed a validation price: the validation rows of each fold are passed without the
``SalePrice`` column. The learner's own models (:mod:`mlplab.house.own`) are also refitted on the
first fold once all folds are done, to catch a model that remembers houses between fits.

:func:`cv` is the learner's entry point: their model next to the book's baseline and ``best``,
over one or more fold shuffles, compared fold by fold (:class:`~mlplab.house.study.CVStudy`).
The module itself is callable, so ``mlplab.house.cv(model)`` is :func:`cv` while
``mlplab.house.cv.cross_validate`` stays this module's function.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlplab.errors import ConfigError, check_int, check_seed
from mlplab.house.data import TARGET, check_schema
from mlplab.house.folds import fold_indices, fold_seed
from mlplab.house.models import Ensemble, leaves_of
from mlplab.house.own import Model, OwnModel, as_model
from mlplab.house.study import REFERENCES, CVStudy, shuffle_seeds

HOUSE_MAX_SEED = 2**32 - 1  # scikit-learn's random_state takes 32 bits

#: The models ``mlplab house cv`` compares by default, in table order: all but ``stack``, whose
#: inner cross-validation triples the run's time and measured no better than ``best``.
DEFAULT_MODELS: tuple[str, ...] = ("baseline", "ridge", "lasso", "svr", "gbm", "mlp", "best")

#: ``progress(done, total, label)``: called before each fit (label "model fold i/k") and at the end.
ProgressFn = Callable[[int, int, str], None]
#: Most fold shuffles one :func:`cv` call runs (10 is what targets are judged on).
MAX_SHUFFLES = 100


@dataclass(frozen=True)
class ModelScore:
    """One model's cross-validation result.

    Attributes
    ----------
    name : str
    fold_scores : tuple of float, length k
        Log-RMSE on each validation fold.
    seconds : float
        Wall time spent fitting and predicting (for an ensemble: its members' total).
    oof_log : ndarray, shape (n_train,)
        Out-of-fold predicted ``log(price)`` of every training row.
    weights : tuple of tuple of float, optional
        For an ensemble: its member weights in each fold (fitted there if it is stacked).
    description : str
        What the model is (the tables' "what" column).
    """

    name: str
    fold_scores: tuple[float, ...]
    seconds: float
    oof_log: np.ndarray
    weights: tuple[tuple[float, ...], ...] | None = None
    description: str = ""

    @property
    def mean(self) -> float:
        """Mean log-RMSE over the folds."""
        return float(np.mean(self.fold_scores))

    @property
    def std(self) -> float:
        """Standard deviation (ddof=0) of the fold log-RMSEs."""
        return float(np.std(self.fold_scores))


@dataclass(frozen=True)
class CVReport:
    """Result of :func:`cross_validate`: one :class:`ModelScore` per requested model."""

    scores: tuple[ModelScore, ...]
    folds: int
    seed: int
    n_rows: int
    seconds: float

    def __getitem__(self, name: str) -> ModelScore:
        for score in self.scores:
            if score.name == name:
                return score
        raise KeyError(name)

    def table(self) -> pd.DataFrame:
        """One row per model, in the order asked: ``model, mean, std`` (log-RMSE over the folds),
        ``folds`` (each fold's score) and ``seconds``."""
        return pd.DataFrame(
            {
                "model": [s.name for s in self.scores],
                "mean": [s.mean for s in self.scores],
                "std": [s.std for s in self.scores],
                "folds": [" ".join(f"{v:.3f}" for v in s.fold_scores) for s in self.scores],
                "seconds": [s.seconds for s in self.scores],
            }
        )

    def _repr_html_(self) -> str:
        """How Jupyter shows the report: :meth:`table` with the protocol's settings."""
        from mlplab.display import cv_html

        return cv_html(self)


def cross_validate(
    train: pd.DataFrame,
    models: Sequence[str | object] = DEFAULT_MODELS,
    folds: int = 5,
    seed: int = 0,
    progress: ProgressFn | bool | None = None,
) -> CVReport:
    """Cross-validate models with the strict protocol (see the module docstring).

    Parameters
    ----------
    train : DataFrame, shape (n, 81)
        The competition's training table (checked with
        :func:`~mlplab.house.data.check_schema`).
    models : sequence of str or model
        Names from :data:`mlplab.house.models.MODELS`, ``"MODULE:NAME"`` specs, model objects,
        or the learner's own regressors (anything :func:`mlplab.house.own.as_model` takes).
    folds : int
        Number of folds ``k`` (>= 2).
    seed : int
        Seeds the shuffling of the rows into folds and every model's randomness.
    progress : callable or bool, optional
        See :data:`ProgressFn`; ``True`` shows a progress bar (terminal or Jupyter), as
        ``mlplab house cv`` does.

    Returns
    -------
    CVReport

    Raises
    ------
    OwnModelError
        One of the learner's models failed, returned unusable predictions, or remembers houses
        between fits (:meth:`~mlplab.house.own.OwnModel.check_memoryless`).
    """
    if progress is True:
        from mlplab.progress import step_progress

        with step_progress("cross-validating") as bar:
            return cross_validate(train, models, folds, seed, bar)
    progress = progress or None
    check_seed("seed", seed, HOUSE_MAX_SEED)
    if isinstance(models, str):
        models = [models]
    resolved: dict[str, Model] = {}
    for item in models:
        model = as_model(item)
        if resolved.setdefault(model.name, model) != model:
            raise ConfigError("models", model.name, "one model per name (two different models are called that)")
    if not resolved:
        raise ConfigError("models", models, "at least one model name")
    train = check_schema(train, "train", source="train")
    check_int("folds", folds, 2, len(train))
    names = list(resolved)
    fitted = leaves_of(resolved.values())  # requested models and ensemble members, once each
    own = [leaf for leaf in fitted if isinstance(leaf, OwnModel)]
    splits = fold_indices(len(train), folds, seed)
    y_log = np.log(train[TARGET].to_numpy(np.float64))
    oof = {leaf.name: np.zeros(len(train)) for leaf in fitted}  # leaf name -> (n,)
    seconds = {leaf.name: 0.0 for leaf in fitted}
    ensembles = [name for name in names if isinstance(resolved[name], Ensemble)]
    stacked = [name for name in ensembles if resolved[name].stack_folds]
    weights: dict[str, list[np.ndarray]] = {name: [] for name in ensembles}
    total, done, start = (len(fitted) + len(stacked)) * folds + len(own), 0, time.perf_counter()

    frames = [
        (train.iloc[tr].reset_index(drop=True), train.iloc[va].drop(columns=TARGET).reset_index(drop=True))
        for tr, va in splits
    ]  # (training rows, validation rows without their prices) of each fold

    for leaf in fitted:
        for i in range(folds):
            if progress is not None:
                progress(done, total, f"{leaf.name} fold {i + 1}/{folds}")
            t0 = time.perf_counter()
            oof[leaf.name][splits[i][1]] = leaf.fit_predict_log(*frames[i], fold_seed(seed, i))
            seconds[leaf.name] += time.perf_counter() - t0
            done += 1
        if isinstance(leaf, OwnModel):
            if progress is not None:
                progress(done, total, f"{leaf.name} memory check")
            t0 = time.perf_counter()
            va = splits[0][1]
            leaf.check_memoryless(*frames[0], fold_seed(seed, 0), oof[leaf.name][va], y_log[va])
            seconds[leaf.name] += time.perf_counter() - t0
            done += 1
    for name in ensembles:
        model = resolved[name]
        for i in range(folds):
            if model.stack_folds and progress is not None:
                progress(done, total, f"{name} weights {i + 1}/{folds}")
            t0 = time.perf_counter()
            weights[name].append(model.fit_weights(frames[i][0], fold_seed(seed, i)))
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
            done += int(model.stack_folds > 0)
    if progress is not None:
        progress(total, total, "done")
    scores = []
    for name in names:
        model = resolved[name]
        fold_weights = None
        if isinstance(model, Ensemble):
            leaves = [leaf.name for leaf in model.leaves()]
            pred = np.zeros(len(train))
            for (_, va), w in zip(splits, weights[name]):
                pred[va] = model.combine({leaf: oof[leaf][va] for leaf in leaves}, w)
            secs = seconds[name] + sum(seconds[leaf] for leaf in leaves)
            fold_weights = tuple(tuple(float(v) for v in w) for w in weights[name])
        else:
            pred, secs = oof[model.name], seconds[model.name]
        # log(max(pred, 1)) - log(price): the book's clamp, in log space
        fold_scores = tuple(float(np.sqrt(np.mean((np.maximum(pred[va], 0.0) - y_log[va]) ** 2))) for _, va in splits)
        scores.append(ModelScore(name, fold_scores, secs, pred, fold_weights, model.description))
    return CVReport(tuple(scores), folds, seed, len(train), time.perf_counter() - start)


def cv(
    model: object = None,
    train: pd.DataFrame | None = None,
    *,
    preprocess: object | None = None,
    name: str | None = None,
    compare: Sequence[str] = REFERENCES,
    folds: int = 5,
    shuffles: int = 1,
    seed: int = 0,
    progress: ProgressFn | bool | None = None,
) -> CVStudy:
    """Cross-validate ``model`` next to the ``compare`` models, over ``shuffles`` fold shuffles.

    The learner's entry point (``mlplab.house.cv(model)``, ``mlplab house cv --model MODULE:NAME``):
    the strict protocol of :func:`cross_validate`, run for the fold shuffles seeded ``seed,
    seed + 1, ..., seed + shuffles - 1``; the result compares every model with the book's baseline
    and ``best`` fold by fold (:class:`~mlplab.house.study.CVStudy`).

    Parameters
    ----------
    model : object, optional
        Your model: a scikit-learn-style regressor (``fit(X, y)``/``predict(X)``), its class, a
        function without arguments returning one, an ``nn.Module`` factory (``nn.Module`` subclass
        or function of ``n_features``), ``"MODULE:NAME"``, or a registered name. It is fitted on
        ``X`` (the ``mlp`` member's leak-free features, or ``preprocess``'s) and
        ``y = log1p(SalePrice)``, and predicts ``log1p(SalePrice)``. ``None``: only ``compare``.
    train : DataFrame, optional
        The training table (Kaggle schema); default :func:`mlplab.house.load`'s.
    preprocess : object, optional
        Your own preprocessing for ``model``: an object with ``fit(train)`` and
        ``transform(frame) -> array (rows, d)``, its class, a function returning one,
        ``"MODULE:NAME"``, or a :class:`~mlplab.house.features.FeatureConfig`.
    name : str, optional
        ``model``'s row in the table (default: its class or function name).
    compare : sequence of str
        Registered models to run next to it; paired differences are given to ``baseline`` and
        ``best`` when they are among them (the default is exactly those two).
    folds : int
        Folds per shuffle (>= 2).
    shuffles : int
        Fold shuffles (1 to :data:`MAX_SHUFFLES`). One is quick but not evidence: the mean moves by
        about 0.002 between shuffles, as much as many differences between models; decide on 10
        (``shuffles=10``), as the project's targets are judged.
    seed : int
        The first shuffle's seed.
    progress : callable or bool, optional
        ``progress(done, total, label)`` before each fit, counted over all shuffles; ``True``
        shows a progress bar.

    Returns
    -------
    CVStudy

    Raises
    ------
    ConfigError
        A bad argument, or a ``model`` of no usable kind (the message says what is missing).
    OwnModelError
        Your model (or preprocessing) raised an exception, returned predictions of the wrong shape
        or with NaN, or remembers houses between fits.

    Example
    -------
    >>> from sklearn.linear_model import Ridge
    >>> from mlplab.house import cv
    >>> study = cv(Ridge(alpha=30.0), shuffles=3)         # doctest: +SKIP
    >>> study.table()                                      # doctest: +SKIP
    >>> print(study.sentence("Ridge", "best"))             # doctest: +SKIP
    """
    if progress is True:
        from mlplab.progress import step_progress

        with step_progress("cross-validating") as bar:
            return cv(
                model,
                train,
                preprocess=preprocess,
                name=name,
                compare=compare,
                folds=folds,
                shuffles=shuffles,
                seed=seed,
                progress=bar,
            )
    progress = progress or None
    check_int("shuffles", shuffles, 1, MAX_SHUFFLES)
    check_seed("seed", seed, HOUSE_MAX_SEED - shuffles + 1)
    if isinstance(compare, str):
        compare = [c.strip() for c in compare.split(",") if c.strip()]
    models: list[Model] = [] if model is None else [as_model(model, preprocess=preprocess, name=name)]
    if model is None and (preprocess is not None or name is not None):
        raise ConfigError("model", None, "preprocess and name are for your model: pass one")
    models += [as_model(c) for c in compare if all(c != m.name for m in models)]
    if not models:
        raise ConfigError("compare", compare, "at least one model, or a model of your own")
    if train is None:
        from mlplab.house.data import load

        train = load().train
    seeds = shuffle_seeds(seed, shuffles)
    runs = []
    for j, s in enumerate(seeds):
        report = None if progress is None else _shuffle_progress(progress, j, len(seeds))
        runs.append(cross_validate(train, models, folds, s, report))
    return CVStudy(tuple(runs))


def _shuffle_progress(progress: ProgressFn, index: int, count: int) -> ProgressFn:
    """``progress`` for shuffle ``index`` of ``count``: steps counted over all the shuffles."""

    def report(done: int, total: int, label: str) -> None:
        where = f"shuffle {index + 1}/{count}: " if count > 1 else ""
        progress(index * total + done, count * total, where + label)

    return report


class _CallableModule(types.ModuleType):
    """This module, callable: ``mlplab.house.cv(model, ...)`` is :func:`cv`."""

    def __call__(self, *args: object, **kwargs: object) -> CVStudy:
        return cv(*args, **kwargs)  # type: ignore[arg-type]


sys.modules[__name__].__class__ = _CallableModule
