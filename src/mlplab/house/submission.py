"""The Kaggle submission file: ``Id,SalePrice``, one row per test house."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from mlplab.atomic import atomic_path
from mlplab.errors import DataError
from mlplab.house.data import ID, TARGET


def submission_frame(ids: np.ndarray | pd.Series, prices: np.ndarray) -> pd.DataFrame:
    """The submission table: ``Id`` (int) and ``SalePrice`` (float), shape (n, 2).

    Raises
    ------
    DataError
        ``ids`` and ``prices`` differ in length, an ``Id`` repeats, or a price is not a finite
        positive number.
    """
    ids = np.asarray(ids)
    prices = np.asarray(prices, dtype=np.float64).reshape(-1)
    if len(ids) != len(prices):
        raise DataError(f"submission: {len(ids)} Ids but {len(prices)} prices. Fix: predict "
                        "one price per test row.")
    if len(np.unique(ids)) != len(ids):
        raise DataError("submission: Ids repeat. Fix: pass the test table's Id column.")
    bad = ~np.isfinite(prices) | (prices <= 0)
    if bad.any():
        raise DataError(f"submission: {int(bad.sum())} price(s) are not finite positive numbers "
                        f"(first at Id {ids[bad][0]}). Fix: check the model's predictions.")
    return pd.DataFrame({ID: ids.astype(np.int64), TARGET: prices})


def write_submission(
    path: str | os.PathLike[str], ids: np.ndarray | pd.Series, prices: np.ndarray
) -> Path:
    """Write ``Id,SalePrice`` to ``path`` atomically (:func:`mlplab.atomic.atomic_path`).

    Returns the path written. An interrupted write never leaves a partial file under ``path``.
    """
    frame = submission_frame(ids, prices)
    path = Path(path)
    if path.is_dir():
        raise DataError(f"submission: {path} is a folder. Fix: give a file name, e.g. "
                        f"{path / 'submission.csv'}.")
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path
