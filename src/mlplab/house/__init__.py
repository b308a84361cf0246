"""Kaggle House Prices: the book's baseline, then a leak-free pipeline that competes.

Public API (stable):

* :func:`load` -- find, verify (SHA-256) or download the competition's train and test CSVs.
* :func:`cv` -- your own model (a scikit-learn-style regressor or an ``nn.Module`` factory) next to
  the book's baseline and ``best``, over one or more fold shuffles, compared fold by fold
  (``mlplab.house.cv`` is also the module of the protocol: it is callable).
* :func:`fit_predict` -- fit a model (registered or yours) on a training table, predict prices.
* :func:`cross_validate` -- the strict shuffled K-fold protocol, one score row per model.
* :func:`book_protocol_cv` -- the book's own protocol (contiguous folds), for the baseline.
* :data:`MODELS` -- the models by name: ``baseline``, ``ridge``, ``lasso``, ``svr``, ``gbm``,
  ``mlp``, ``best`` (the fixed-weight ensemble of lasso, svr, an SVR on clipped features, mlp and
  gbm, which counts twice) and ``stack`` (lasso, svr, gbm and mlp, weights fitted by an inner
  cross-validation).

Example
-------
>>> from mlplab.house import cv, load, fit_predict
>>> data = load()                                   # doctest: +SKIP
>>> prices = fit_predict(data.train, data.test)     # doctest: +SKIP
>>> from sklearn.linear_model import Ridge
>>> cv(Ridge(alpha=30.0), data.train).table()       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from mlplab.errors import check_seed
from mlplab.house import cv
from mlplab.house.baseline import (
    BookConfig,
    BookCVResult,
    book_log_rmse,
    book_protocol_cv,
)
from mlplab.house.cv import DEFAULT_MODELS, HOUSE_MAX_SEED, CVReport, ModelScore, cross_validate
from mlplab.house.data import HouseData, check_schema, load
from mlplab.house.features import (
    BookPreprocessor,
    FeatureConfig,
    HousePreprocessor,
    OutlierRule,
)
from mlplab.house.models import MODELS, Ensemble, MLPConfig, MLPRegressor, get_model
from mlplab.house.own import OwnModel, OwnModelError, as_model
from mlplab.house.study import CVStudy
from mlplab.house.submission import submission_frame, write_submission
from mlplab.house.torch_regressor import TorchRegressor

__all__ = [
    "DEFAULT_MODELS",
    "MODELS",
    "BookCVResult",
    "BookConfig",
    "BookPreprocessor",
    "CVReport",
    "CVStudy",
    "FeatureConfig",
    "HouseData",
    "HousePreprocessor",
    "MLPConfig",
    "MLPRegressor",
    "ModelScore",
    "OutlierRule",
    "OwnModel",
    "OwnModelError",
    "TorchRegressor",
    "as_model",
    "book_log_rmse",
    "book_protocol_cv",
    "check_schema",
    "cross_validate",
    "cv",
    "fit_predict",
    "get_model",
    "load",
    "submission_frame",
    "write_submission",
]


def fit_predict(
    train_df: pd.DataFrame,
    test_df: pd.DataFrame,
    model: object = "best",
    seed: int = 0,
    progress: Callable[[int, int, str], None] | bool | None = None,
    *,
    preprocess: object | None = None,
) -> np.ndarray:
    """Fit ``model`` on ``train_df`` only and predict a sale price for every row of ``test_df``.

    Parameters
    ----------
    train_df : DataFrame, shape (n_train, 81)
        Kaggle schema: ``Id``, the 79 features and ``SalePrice`` (numeric, positive).
    test_df : DataFrame, shape (n_test, 80)
        Kaggle schema without ``SalePrice`` (a ``SalePrice`` column, if any, is ignored).
    model : str or object
        ``"best"`` (the fixed-weight ensemble), ``"mlp"``, ``"baseline"`` (the book's linear net),
        any other name in :data:`MODELS`, or your own model as :func:`cv` takes it (a
        scikit-learn-style regressor, an ``nn.Module`` factory, ``"MODULE:NAME"``).
    seed : int
        Seeds every random choice of the model (initialization, dropout, subsampling).
    progress : callable or bool, optional
        ``progress(done, total, label)`` before each model is fitted (an ensemble fits
        several) and once at the end; ``True`` shows a progress bar.
    preprocess : object, optional
        Your own preprocessing for your own ``model`` (see :func:`cv`).

    Returns
    -------
    ndarray, shape (n_test,)
        Predicted prices in dollars, in the row order of ``test_df``.

    Raises
    ------
    DataError
        A table does not have the Kaggle schema (the message names the column and the fix).
    ConfigError
        ``model`` is not a known model name, nor a model of your own.
    OwnModelError
        Your model failed or predicted something unusable (the message says what).
    """
    chosen = as_model(model, preprocess=preprocess)
    if progress is True:
        from mlplab.progress import step_progress

        with step_progress(f"fitting {chosen.name}") as bar:
            return fit_predict(train_df, test_df, chosen, seed, bar)
    progress = progress or None
    check_seed("seed", seed, HOUSE_MAX_SEED)
    train = check_schema(train_df, "train", source="train_df")
    test = check_schema(test_df, "test", source="test_df")
    if isinstance(chosen, Ensemble):
        return np.exp(chosen.fit_predict_log(train, test, seed, progress))
    if progress is not None:
        progress(0, 1, f"fitting {chosen.name}")
    logs = chosen.fit_predict_log(train, test, seed)
    if progress is not None:
        progress(1, 1, "done")
    return np.exp(logs)
