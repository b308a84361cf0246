"""mlplab.stats against printed t-tables, hand arithmetic and a coverage simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlplab.errors import ConfigError
from mlplab.stats import aggregate, mean_ci, t_critical


@pytest.mark.parametrize(
    ("dof", "expected"),
    [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045)],  # two-sided 95%, any t-table
)
def test_t_critical_matches_printed_tables(dof, expected):
    assert t_critical(dof) == pytest.approx(expected, abs=5e-4)


def test_t_critical_at_other_levels_matches_tables():
    assert t_critical(4, 0.99) == pytest.approx(4.604, abs=5e-4)
    assert t_critical(10, 0.90) == pytest.approx(1.812, abs=5e-4)


def test_mean_ci_by_hand():
    # values 1, 2, 3: mean 2, sample sd 1, sem 1/sqrt(3), half-width 4.303/sqrt(3)
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci.mean == 2.0 and ci.n == 3
    assert ci.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert (ci.low, ci.high) == pytest.approx((2 - ci.half_width, 2 + ci.half_width))


def test_one_value_has_no_interval_and_equal_values_have_zero_width():
    assert math.isnan(mean_ci([0.8]).half_width)
    assert mean_ci([0.8]).format() == "0.8000"
    assert mean_ci([0.5, 0.5, 0.5]).half_width == 0.0
    assert math.isnan(mean_ci([]).mean)


def test_nan_is_not_dropped():
    ci = mean_ci([0.1, float("nan"), 0.3])
    assert math.isnan(ci.mean) and math.isnan(ci.half_width)


def test_coverage_is_close_to_the_nominal_level():
    rng = np.random.default_rng(0)
    trials, n, hits = 4000, 4, 0
    for _ in range(trials):
        ci = mean_ci(rng.normal(1.0, 2.0, size=n))
        hits += ci.low <= 1.0 <= ci.high
    # binomial sd of the coverage estimate: sqrt(.95 * .05 / 4000) = 0.0034
    assert abs(hits / trials - 0.95) < 0.012


def test_bad_confidence_names_the_field():
    with pytest.raises(ConfigError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ConfigError, match="dof"):
        t_critical(0)


def test_aggregate_groups_in_order_of_appearance_and_keeps_missing_keys():
    frame = pd.DataFrame(
        {
            "p": [0.5, 0.1, 0.5, 0.1, np.nan, np.nan],
            "acc": [0.80, 0.90, 0.82, 0.92, 0.70, 0.74],
        }
    )
    out = aggregate(frame, ["p"], ["acc"])
    assert list(out["n"]) == [2, 2, 2]
    assert out["p"].iloc[0] == 0.5 and out["p"].iloc[1] == 0.1 and math.isnan(out["p"].iloc[2])
    # two values a, b: sd = |a - b| / sqrt(2), sem = |a - b| / 2, half-width = t_{0.975,1} |a - b| / 2
    assert out["acc_mean"].tolist() == pytest.approx([0.81, 0.91, 0.72])
    assert out["acc_ci"].tolist() == pytest.approx([12.7062 * 0.01, 12.7062 * 0.01, 12.7062 * 0.02], rel=1e-4)


def test_aggregate_rejects_unknown_columns():
    with pytest.raises(ConfigError, match="columns"):
        aggregate(pd.DataFrame({"a": [1]}), ["b"], ["a"])
