"""Several models cross-validated over the same fold shuffles, compared fold by fold.

One fold shuffle is not evidence: the five fold scores of one shuffle move by more between
shuffles than the gap between two good models (``best`` ranges from 0.1135 to 0.1173 over
shuffles 0-9). So a :class:`CVStudy` holds one :class:`~mlplab.house.cv.CVReport` per shuffle
(seeds ``seed .. seed + shuffles - 1``), judges a model by its mean over all of them, and compares
two models *paired*: on every fold of every shuffle both were fitted on the same training rows and
scored on the same validation rows, so the difference of their fold scores,

    d_j = score_a(fold j) - score_b(fold j),   j = 1 .. shuffles * folds,

cancels what the fold itself contributes (an easy or a hard set of houses), and its mean comes with
a t interval (:func:`mlplab.stats.paired`). The folds of different shuffles reuse the same houses,
so they are not independent samples: the interval is somewhat too narrow (Nadeau and Bengio, 2003,
"Inference for the generalization error"), which is one more reason to read a difference inside a
few thousandths as a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlplab.errors import ConfigError
from mlplab.stats import Paired, paired

if TYPE_CHECKING:  # cv imports this module
    from mlplab.house.cv import CVReport

#: The models every other one is compared with, when they were run: the book's baseline and ``best``.
REFERENCES: tuple[str, ...] = ("baseline", "best")


@dataclass(frozen=True)
class CVStudy:
    """The strict cross-validation of some models over one or more fold shuffles.

    Attributes
    ----------
    runs : tuple of CVReport
        One per fold shuffle, in seed order; every run has the same models, folds and rows.
    """

    runs: tuple[CVReport, ...]

    def __post_init__(self) -> None:
        if not self.runs:
            raise ConfigError("runs", self.runs, "at least one cross-validation run")
        names = [s.name for s in self.runs[0].scores]
        for run in self.runs[1:]:
            if [s.name for s in run.scores] != names or run.folds != self.runs[0].folds:
                raise ConfigError("runs", [r.seed for r in self.runs], "runs of the same models and folds")

    # -- what was run -------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The models, in table order."""
        return tuple(s.name for s in self.runs[0].scores)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The fold shuffles' seeds."""
        return tuple(run.seed for run in self.runs)

    @property
    def folds(self) -> int:
        return self.runs[0].folds

    @property
    def n_rows(self) -> int:
        return self.runs[0].n_rows

    @property
    def seconds(self) -> float:
        """Wall time of all the runs."""
        return float(sum(run.seconds for run in self.runs))

    def references(self) -> tuple[str, ...]:
        """The :data:`REFERENCES` that were run."""
        return tuple(r for r in REFERENCES if r in self.names)

    # -- one model ----------------------------------------------------------------------------------
    def fold_scores(self, name: str) -> np.ndarray:
        """Log-RMSE of ``name`` on every fold of every shuffle; shape (shuffles, folds)."""
        self._check(name)
        return np.array([run[name].fold_scores for run in self.runs])

    def shuffle_means(self, name: str) -> np.ndarray:
        """Mean log-RMSE of ``name`` over the folds of each shuffle; shape (shuffles,)."""
        return self.fold_scores(name).mean(axis=1)

    def mean(self, name: str) -> float:
        """Mean log-RMSE over all folds of all shuffles (= the mean of :meth:`shuffle_means`)."""
        return float(self.fold_scores(name).mean())

    def std(self, name: str) -> float:
        """Standard deviation (ddof=0) of the fold scores, over all folds of all shuffles."""
        return float(self.fold_scores(name).std())

    def worst(self, name: str) -> float:
        """The highest of :meth:`shuffle_means`: the unluckiest shuffle."""
        return float(self.shuffle_means(name).max())

    def seconds_of(self, name: str) -> float:
        """Fitting time of ``name`` over all shuffles (for an ensemble: its members' too)."""
        self._check(name)
        return float(sum(run[name].seconds for run in self.runs))

    def description(self, name: str) -> str:
        self._check(name)
        return self.runs[0][name].description

    # -- two models ---------------------------------------------------------------------------------
    def versus(self, a: str, b: str, confidence: float = 0.95) -> Paired:
        """``a - b`` paired over every fold of every shuffle (lower log-RMSE is better).

        Returns
        -------
        mlplab.stats.Paired
            ``difference`` is the mean of ``score_a - score_b`` with its ``confidence`` t
            interval (NaN half-width with a single fold); ``winner`` is the model the interval
            favours, or None.
        """
        xa, xb = self.fold_scores(a).reshape(-1), self.fold_scores(b).reshape(-1)
        return paired(
            dict(enumerate(xa)),
            dict(enumerate(xb)),
            labels=(a, b),
            metric="log-RMSE",
            higher_is_better=False,
            confidence=confidence,
        )

    def sentence(self, a: str, b: str) -> str:
        """``mlp is behind best by 0.0031 ± 0.0012 log-RMSE (paired over the 5 folds of 1 shuffle)``."""
        p = self.versus(a, b)
        d = p.difference
        over = f"paired over the {d.n} folds of {len(self.runs)} shuffle{'s' if len(self.runs) > 1 else ''}"
        if np.isnan(d.half_width):
            return f"{a} - {b} = {d.mean:+.4f} log-RMSE ({over}: no interval)"
        if p.winner is None:
            return (
                f"{a} and {b} are not told apart: {a} - {b} = {d.mean:+.4f} ± {d.half_width:.4f} log-RMSE "
                f"({over}; the interval includes 0)"
            )
        verb = "beats" if p.winner == a else "is behind"
        return f"{a} {verb} {b} by {abs(d.mean):.4f} ± {d.half_width:.4f} log-RMSE ({over})"

    # -- tables -------------------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """One row per model: ``model, mean, std, worst`` (log-RMSE: over all folds of all
        shuffles; the worst shuffle's mean), for each reference ``R`` that was run the paired
        difference ``minus_R`` and its 95% half-width ``minus_R_ci`` (NaN in R's own row),
        ``seconds`` and ``what``."""
        rows = []
        for name in self.names:
            row: dict[str, object] = {
                "model": name,
                "mean": self.mean(name),
                "std": self.std(name),
                "worst": self.worst(name),
            }
            for ref in self.references():
                d = self.versus(name, ref).difference if name != ref else None
                row[f"minus_{ref}"] = np.nan if d is None else d.mean
                row[f"minus_{ref}_ci"] = np.nan if d is None else d.half_width
            row["seconds"] = self.seconds_of(name)
            row["what"] = self.description(name)
            rows.append(row)
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        """How Jupyter shows the study: its settings, then :meth:`table` (cells escaped there)."""
        from mlplab.display import table_html

        head = (
            f"<p><b>House Prices CV</b>: {self.folds}-fold, {self.shuffles_text()}, {self.n_rows} rows, "
            f"{self.seconds:.1f} s (log-RMSE: lower is better; minus_R: paired difference to R, ± 95% CI)</p>"
        )
        return f"<div>{head}{table_html(self.table())}</div>"

    def shuffles_text(self) -> str:
        """``seed 0`` for one fold shuffle, ``shuffles 0-9`` for several."""
        seeds = self.seeds
        if len(seeds) == 1:
            return f"seed {seeds[0]}"
        return f"shuffles {seeds[0]}-{seeds[-1]}"

    def _check(self, name: str) -> None:
        if name not in self.names:
            raise ConfigError("model", name, f"not in this study; it has {', '.join(self.names)}")


def shuffle_seeds(seed: int, shuffles: int) -> Sequence[int]:
    """The seeds of ``shuffles`` fold shuffles starting at ``seed``: ``seed, seed + 1, ...``."""
    return range(seed, seed + shuffles)
