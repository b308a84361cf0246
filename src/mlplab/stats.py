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
from collections.abc import Iterable, Mapping, Sequence
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


@dataclass(frozen=True)
class Paired:
    """A paired comparison of A and B over the seeds both were run with.

    ``difference`` is the mean of the per-seed differences ``a_s - b_s`` with its t interval:
    pairing on the seed removes what the two share (the initial weights, the batch order), so
    it is tighter than comparing two independent means. A is *better* than B when the whole
    interval lies on A's side of zero; otherwise the data does not tell them apart.
    """

    a: str  # labels, e.g. "hidden=256"
    b: str
    metric: str
    a_mean: float
    b_mean: float
    difference: MeanCI  # of a - b
    higher_is_better: bool = True

    @property
    def winner(self) -> str | None:
        """``a`` or ``b`` when the interval excludes 0 (in the better direction), else None."""
        d = self.difference
        if math.isnan(d.half_width):
            return None
        if d.low > 0:
            return self.a if self.higher_is_better else self.b
        if d.high < 0:
            return self.b if self.higher_is_better else self.a
        return None

    def sentence(self, digits: int = 4) -> str:
        """``hidden=256 beats hidden=1024 on final_test_acc by 0.0040 ± 0.0031 (paired over 3 seeds)``.

        The difference is written as the better minus the other, so it is positive for a higher
        accuracy and negative for a lower loss.
        """
        d, n = self.difference, self.difference.n
        if math.isnan(d.half_width):
            return (
                f"{self.a} vs {self.b} on {self.metric}: {d.mean:+.{digits}f} from {n} seed(s), no interval (need >= 2)"
            )
        if self.winner is None:
            return (
                f"{self.a} and {self.b} are not told apart on {self.metric}: {self.a} - {self.b} = "
                f"{d.mean:+.{digits}f} ± {d.half_width:.{digits}f} (paired over {n} seeds; the interval includes 0)"
            )
        loser, diff = (self.b, d.mean) if self.winner == self.a else (self.a, -d.mean)
        return f"{self.winner} beats {loser} on {self.metric} by {diff:+.{digits}f} ± {d.half_width:.{digits}f} (paired over {n} seeds)"


def paired(
    a: Mapping[int, float],
    b: Mapping[int, float],
    *,
    labels: tuple[str, str] = ("A", "B"),
    metric: str = "metric",
    higher_is_better: bool = True,
    confidence: float = 0.95,
) -> Paired:
    """Compare per-seed results ``a`` and ``b`` (seed -> value) on the seeds they share.

    >>> p = paired({0: 0.85, 1: 0.86, 2: 0.84}, {0: 0.83, 1: 0.85, 2: 0.82}, labels=("lr=0.1", "lr=0.03"))
    >>> p.winner
    'lr=0.1'
    """
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ConfigError("seeds", f"{sorted(a)} and {sorted(b)}", "a paired comparison needs seeds run for both")
    xa = np.array([a[s] for s in shared], dtype=np.float64)
    xb = np.array([b[s] for s in shared], dtype=np.float64)
    return Paired(
        labels[0],
        labels[1],
        metric,
        float(xa.mean()),
        float(xb.mean()),
        mean_ci(xa - xb, confidence),
        higher_is_better,
    )
