"""The Kaggle submission file: ``Id,SalePrice``, one row per test house."""

from __future__ import annotations

import os
from collections.abc import Sequence
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
        raise DataError(f"submission: {len(ids)} Ids but {len(prices)} prices. Fix: predict one price per test row.")
    if len(np.unique(ids)) != len(ids):
        raise DataError("submission: Ids repeat. Fix: pass the test table's Id column.")
    bad = ~np.isfinite(prices) | (prices <= 0)
    if bad.any():
        raise DataError(
            f"submission: {int(bad.sum())} price(s) are not finite positive numbers "
            f"(first at Id {ids[bad][0]}). Fix: check the model's predictions."
        )
    return pd.DataFrame({ID: ids.astype(np.int64), TARGET: prices})


def write_submission(
    path: str | os.PathLike[str],
    ids: np.ndarray | pd.Series,
    prices: np.ndarray,
    *,
    inputs: Sequence[str | os.PathLike[str]] = (),
    force: bool = False,
) -> Path:
    """Write ``Id,SalePrice`` to ``path`` atomically (:func:`mlplab.atomic.atomic_path`).

    Returns the path written. An interrupted write never leaves a partial file under ``path``.
    It never writes over one of ``inputs`` (the data files read), and writes over an existing
    file only when that file is a previous submission (its header is ``Id,SalePrice``) or
    ``force`` is set.
    """
    frame = submission_frame(ids, prices)
    path = Path(path)
    check_submission_path(path, inputs, force)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def check_submission_path(path: Path, inputs: Sequence[str | os.PathLike[str]] = (), force: bool = False) -> None:
    """Refuse ``path`` when writing there would destroy something (see :func:`write_submission`).

    Called before any fitting, so a bad ``--out`` costs nothing.
    """
    if str(path).strip() in ("", "."):
        raise DataError("submission: the output path is empty. Fix: name a file, e.g. runs/house/submission.csv.")
    if path.is_dir():
        raise DataError(f"submission: {path} is a folder. Fix: give a file name, e.g. {path / 'submission.csv'}.")
    for source in inputs:
        if _same_file(path, Path(source)):
            raise DataError(
                f"submission: {path} is the data file {source} it is made from; writing there "
                "would destroy it. Fix: give another --out."
            )
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        raise DataError(
            f"submission: cannot write to {existing} (read-only or no permission). "
            "Fix: give an --out in a folder you can write to."
        )
    if path.exists() and not force and not _is_submission(path):
        raise DataError(
            f"submission: {path} exists and is not a submission file (its first line is not "
            f"{ID},{TARGET}). Fix: give another --out, or add --force to replace it."
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _is_submission(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            first = handle.readline(64)
    except OSError:
        return False
    return first.strip() == f"{ID},{TARGET}".encode()
