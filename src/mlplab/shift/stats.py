"""Mean and Student-t confidence interval over seeds.

Lives here until the project has a shared ``mlplab.stats``; it has no shift-specific code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy.stats import t as student_t


@dataclass(frozen=True)
class MeanCI:
    """``mean ± half_width`` is a ``level`` confidence interval for the mean of ``n`` values."""

    mean: float
    half_width: float  # NaN for n < 2: one seed says nothing about the spread
    n: int
    level: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def format(self, digits: int = 4) -> str:
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"

    def to_dict(self) -> dict:
        hw = None if math.isnan(self.half_width) else self.half_width
        return {"mean": self.mean, "half_width": hw, "n": self.n, "level": self.level}


def mean_ci(values: Iterable[float], level: float = 0.95) -> MeanCI:
    """Sample mean and t-based CI: ``mean ± t_{(1+level)/2, n-1} * s / sqrt(n)``.

    ``s`` is the sample standard deviation (ddof = 1). Assumes the values are independent draws
    (one per seed) of a roughly normal quantity; with 5 seeds ``t = 2.776``.
    """
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level = {level!r} is invalid: a confidence level lies in (0, 1)")
    n = x.size
    if n < 2:
        return MeanCI(float(x[0]), float("nan"), 1, level)
    half = float(student_t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return MeanCI(float(x.mean()), half, n, level)
