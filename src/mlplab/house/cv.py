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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlplab.errors import ConfigError, check_int, check_seed
from mlplab.house.data import TARGET, check_schema
from mlplab.house.folds import fold_indices, fold_seed
from mlplab.house.models import Ensemble, get_model, leaves_of

HOUSE_MAX_SEED = 2**32 - 1  # scikit-learn's random_state takes 32 bits

#: The models ``mlplab house cv`` compares by default, in table order: all but ``stack``, whose
#: inner cross-validation triples the run's time and measured no better than ``best``.
DEFAULT_MODELS: tuple[str, ...] = ("baseline", "ridge", "lasso", "svr", "gbm", "mlp", "best")

#: ``progress(done, total, label)``: called before each fit (label "model fold i/k") and at the end.
ProgressFn = Callable[[int, int, str], None]


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
    """

    name: str
    fold_scores: tuple[float, ...]
    seconds: float
    oof_log: np.ndarray
    weights: tuple[tuple[float, ...], ...] | None = None

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


def cross_validate(
    train: pd.DataFrame,
    models: Sequence[str] = DEFAULT_MODELS,
    folds: int = 5,
    seed: int = 0,
    progress: ProgressFn | bool | None = None,
) -> CVReport:
    """Cross-validate the named models with the strict protocol (see the module docstring).

    Parameters
    ----------
    train : DataFrame, shape (n, 81)
        The competition's training table (checked with
        :func:`~mlplab.house.data.check_schema`).
    models : sequence of str
        Names from :data:`mlplab.house.models.MODELS`.
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
    """
    if progress is True:
        from mlplab.progress import step_progress

        with step_progress("cross-validating") as bar:
            return cross_validate(train, models, folds, seed, bar)
    progress = progress or None
    check_seed("seed", seed, HOUSE_MAX_SEED)
    train = check_schema(train, "train", source="train")
    check_int("folds", folds, 2, len(train))
    names = list(dict.fromkeys(models))
    if not names:
        raise ConfigError("models", models, "at least one model name")
    resolved = {name: get_model(name) for name in names}
    fitted = leaves_of(resolved.values())  # requested models and ensemble members, once each
    splits = fold_indices(len(train), folds, seed)
    y_log = np.log(train[TARGET].to_numpy(np.float64))
    oof = {leaf.name: np.zeros(len(train)) for leaf in fitted}  # leaf name -> (n,)
    seconds = {leaf.name: 0.0 for leaf in fitted}
    ensembles = [name for name in names if isinstance(resolved[name], Ensemble)]
    stacked = [name for name in ensembles if resolved[name].stack_folds]
    weights: dict[str, list[np.ndarray]] = {name: [] for name in ensembles}
    total, done, start = (len(fitted) + len(stacked)) * folds, 0, time.perf_counter()

    frames = [
        (train.iloc[tr].reset_index(drop=True), train.iloc[va].reset_index(drop=True)) for tr, va in splits
    ]  # (training rows, validation rows) of each fold

    for leaf in fitted:
        for i in range(folds):
            if progress is not None:
                progress(done, total, f"{leaf.name} fold {i + 1}/{folds}")
            t0 = time.perf_counter()
            oof[leaf.name][splits[i][1]] = leaf.fit_predict_log(*frames[i], fold_seed(seed, i))
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
        scores.append(ModelScore(name, fold_scores, secs, pred, fold_weights))
    return CVReport(tuple(scores), folds, seed, len(train), time.perf_counter() - start)
