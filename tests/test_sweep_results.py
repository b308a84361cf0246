"""Reading a sweep back: the seed counts behind an interval, and what docs/sweep.md says they buy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from scipy import optimize, stats

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sweep.md"


def power(difference: float, n: int) -> float:
    """Chance that a two-sample t-test (5%, n seeds each, sigma = 1) finds a true ``difference``."""
    dof = 2 * n - 2
    critical = stats.t.ppf(0.975, dof)
    return float(stats.nct.sf(critical, dof, difference / math.sqrt(2 / n)))


def test_the_docs_seed_table_is_what_the_t_distribution_gives():
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    start = lines.index(
        "| seeds `n` | t factor | 95% half-width | a difference found 80% of the time | a difference of 2.5σ found |"
    )
    rows = [[c.strip(" `σ%>") for c in line.split("|")[1:-1]] for line in lines[start + 2 : lines.index("", start)]]
    assert [int(r[0]) for r in rows] == [2, 3, 4, 5, 10]
    for n, t, half, found80, found25 in ((int(r[0]), *map(float, r[1:])) for r in rows):
        assert stats.t.ppf(0.975, n - 1) == pytest.approx(t, abs=0.005)
        assert stats.t.ppf(0.975, n - 1) / math.sqrt(n) == pytest.approx(half, abs=0.05)
        assert optimize.brentq(lambda d, n=n: power(d, n) - 0.8, 0.1, 8) == pytest.approx(found80, abs=0.05)
        assert 100 * power(2.5, n) == pytest.approx(found25, abs=1.5 if found25 < 99 else 1)
    half3 = stats.t.ppf(0.975, 2) / math.sqrt(3)  # "about the half-width a 3-seed interval shows"
    assert power(half3, 5) == pytest.approx(0.93, abs=0.005) and power(half3, 3) == pytest.approx(0.63, abs=0.005)
    assert power(stats.t.ppf(0.975, 4) / math.sqrt(5), 5) == pytest.approx(0.41, abs=0.005)
    assert all(power(stats.t.ppf(0.975, n - 1) / math.sqrt(n), n) < 0.5 for n in range(4, 30))


def test_seed_caution_counts_configurations_and_says_why():
    import pandas as pd

    from mlplab.sweep.results import MIN_SEEDS, seed_caution

    assert MIN_SEEDS == 3
    assert seed_caution(pd.DataFrame({"n": [3, 5, 10]})) is None
    two = seed_caution(pd.DataFrame({"n": [2, 3, 2]}))
    assert two.startswith("caution: 2 of 3 configuration(s) have fewer than 3 seeds")
    assert "2 seeds is very wide and unreliable" in two and "12.71" in two and "4.30" in two and "--seeds 3" in two
    one = seed_caution(pd.DataFrame({"n": [1, 1]}))
    assert "1 seed gives no interval" in one and "12.71" not in one


def test_the_plot_note_names_the_seed_count():
    import pandas as pd

    from mlplab.sweep.plots import seed_note

    assert seed_note(pd.DataFrame({"n": [2, 3]})).startswith("n=2 seeds: CI unreliable")
    assert seed_note(pd.DataFrame({"n": [1, 3]})).startswith("n=1 seed: no CI")
    assert seed_note(pd.DataFrame({"n": [1, 1]})) is None  # no interval drawn at all: the title says 1 seed
    assert seed_note(pd.DataFrame({"n": [3, 4]})) is None
