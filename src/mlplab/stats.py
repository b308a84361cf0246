"""Statistics over repeated runs: means and t-based confidence intervals across seeds.

A number measured once on one seed says little about a hyperparameter (single runs, one
per setting, move by several points between neighbouring grid
cells). Here every reported metric is a mean over ``n`` seeds with the half-width of its
two-sided confidence interval from Student's t distribution:

    mean = (1/n) sum_i x_i,   s^2 = 1/(n-1) sum_i (x_i - mean)^2,
    half_width = t_{(1+c)/2, n-1} * s / sqrt(n)

which covers the true mean with probability ``c`` when the per-seed results are i.i.d. normal
(any textbook; e.g. Wasserman, *All of Statistics*, 6.3.2). With one seed there is no interval
(NaN), never a made-up one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats  # scipy ships with scikit-learn, a dependency of mlplab

from mlplab.errors import ConfigError


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ConfigError("confidence", confidence, "a confidence level must be in (0, 1), e.g. 0.95")


@functools.lru_cache(maxsize=256)  # a sweep summary asks for the same few values thousands of times
def t_critical(dof: int, confidence: float = 0.95) -> float:
    """The two-sided critical value ``t_{(1+c)/2, dof}`` of Student's t distribution.

    >>> round(t_critical(2), 3)  # three seeds
    4.303
    """
    _check_confidence(confidence)
    if dof < 1:
        raise ConfigError("dof", dof, "degrees of freedom must be >= 1 (at least two samples)")
    return float(_scipy_stats.t.ppf(0.5 + confidence / 2.0, dof))


@dataclass(frozen=True)
class MeanCI:
    """A sample mean with the half-width of its confidence interval (NaN when ``n < 2``)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def format(self, digits: int = 4) -> str:
        """``0.8512 ± 0.0031``, or just the mean when there is no interval."""
        if math.isnan(self.mean):
            return "nan"
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> MeanCI:
    """Mean and t-based confidence half-width of ``values`` (one value per seed).

    NaN values (e.g. the loss of a diverged run) are kept: the mean of a set that contains one is
    NaN, because dropping them would hide the divergence.

    Parameters
    ----------
    values : iterable of float, length n
    confidence : float in (0, 1)

    Returns
    -------
    MeanCI
        ``half_width`` is NaN when ``n < 2``; 0 when all values are equal.
    """
    _check_confidence(confidence)
    x = np.asarray(list(values), dtype=np.float64)
    n = len(x)
    if n == 0:
        return MeanCI(math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2 or not np.isfinite(x).all():
        return MeanCI(mean, math.nan, n)
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    return MeanCI(mean, t_critical(n - 1, confidence) * sem, n)


def aggregate(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], confidence: float = 0.95) -> pd.DataFrame:
    """Mean and CI half-width of each metric for every distinct combination of ``by``.

    Parameters
    ----------
    frame : DataFrame
        One row per run (e.g. per configuration and seed).
    by : column names
        The columns that identify a configuration (missing values form their own group).
    metrics : column names
        Numeric columns to aggregate.

    Returns
    -------
    DataFrame
        One row per group with the ``by`` columns, ``n`` (rows in the group), and for each metric
        ``<metric>_mean`` and ``<metric>_ci`` (half-width; NaN for ``n < 2``). Groups keep the
        order of their first appearance in ``frame``.
    """
    missing = [c for c in (*by, *metrics) if c not in frame.columns]
    if missing:
        raise ConfigError("columns", missing, f"not in the table; available: {', '.join(map(str, frame.columns))}")
    rows = []
    grouped = frame.groupby(list(by), dropna=False, sort=False) if by else [((), frame)]
    for key, part in grouped:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["n"] = len(part)
        for m in metrics:
            ci = mean_ci(part[m].astype(float), confidence)
            row[f"{m}_mean"], row[f"{m}_ci"] = ci.mean, ci.half_width
        rows.append(row)
    columns = [*by, "n", *(f"{m}_{s}" for m in metrics for s in ("mean", "ci"))]
    return pd.DataFrame(rows, columns=columns)
