"""A stored sweep as pandas DataFrames: one row per (configuration, seed), or aggregated over seeds."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlplab.errors import ConfigError
from mlplab.stats import MeanCI, aggregate, t_critical
from mlplab.sweep.hyperparameters import NAMES, PER_LAYER, PER_LAYER_RE
from mlplab.sweep.store import SweepStore, damaged

METRICS = ("final_test_acc", "final_test_loss", "final_train_acc", "final_train_loss")
# Metrics where larger is better; the others (losses, seconds) sort ascending by default.
HIGHER_IS_BETTER = ("final_test_acc", "final_train_acc")
# Fewer seeds per configuration give no interval (1) or one too wide to trust (2: the 95% t factor
# is 12.71, against 4.30 with 3 seeds, and s is estimated from a single difference); docs/sweep.md.
MIN_SEEDS = 3


def _ordered(columns: Sequence[str]) -> list[str]:
    """Hyperparameter columns in table order, ``dropout1, dropout2, ...`` where ``dropout`` stands."""
    per_layer = sorted((c for c in columns if PER_LAYER_RE.match(c)), key=lambda c: int(PER_LAYER_RE.match(c)[1]))
    out: list[str] = []
    for name in NAMES:
        if name == PER_LAYER:
            out += per_layer
        elif name in columns:
            out.append(name)
    return out


def _json(store: SweepStore, text: str, what: str) -> object:
    """A JSON column of a stored row; text that is not JSON means the file was damaged or edited."""
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise damaged(store.path, f"a row's {what} is not JSON: {exc}") from None


def load_results(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """Every stored model of the sweep in ``directory``, one row per (configuration, seed).

    Columns: one per hyperparameter (``hidden`` as text like ``256-256``; ``dropoutN`` per hidden
    layer, NaN where a model has fewer layers), ``seed``, the final metrics
    (``final_test_acc``, ``final_test_loss``, ``final_train_acc``, ``final_train_loss``; NaN for a
    non-finite value), ``status`` (``mlplab.train.STATUSES``), ``epochs_run``, ``seconds`` (the model's share of
    its group's wall time) and ``key``.
    """
    with SweepStore(directory, create=False) as store:
        rows = store.rows()
        configs = [_json(store, r["config"], "config") for r in rows]
    if not all(isinstance(c, dict) for c in configs):
        raise damaged(store.path, "a row's config is not a JSON object")
    hyper = _ordered(sorted({name for c in configs for name in c}))
    records = []
    for r, c in zip(rows, configs):
        rec = {name: c.get(name, np.nan) for name in hyper}
        rec["seed"] = r["seed"]
        for m in METRICS:
            rec[m] = np.nan if r[m] is None else r[m]
        rec.update(status=r["status"], epochs_run=r["epochs"], seconds=r["seconds"], key=r["key"])
        records.append(rec)
    columns = [*hyper, "seed", *METRICS, "status", "epochs_run", "seconds", "key"]
    return pd.DataFrame(records, columns=columns)


def load_histories(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """Per-epoch metrics of every stored model: one row per (configuration, seed, epoch).

    Columns: the hyperparameters, ``seed``, ``epoch``, ``train_loss``, ``train_acc``,
    ``test_loss``, ``test_acc``, ``seconds``, ``key``.
    """
    with SweepStore(directory, create=False) as store:
        rows = store.rows()
        decoded = [(_json(store, r["config"], "config"), _json(store, r["history"], "history")) for r in rows]
    records = []
    for r, (config, history) in zip(rows, decoded):
        for epoch in history:
            records.append(
                {
                    **config,
                    "seed": r["seed"],
                    **{k: (np.nan if v is None else v) for k, v in epoch.items()},
                    "key": r["key"],
                }
            )
    return pd.DataFrame(records)


def hyperparameters(results: pd.DataFrame) -> list[str]:
    """The hyperparameter columns of a ``load_results`` frame."""
    return [c for c in results.columns if c in NAMES or PER_LAYER_RE.match(c)]


def varying(results: pd.DataFrame) -> list[str]:
    """Hyperparameter columns that take more than one value where they apply.

    NaN (a ``dropoutN`` that a model with fewer hidden layers does not have) is not a value: in a
    depth sweep ``hidden=64,256-256`` without dropout, ``dropout2`` is 0 or does not apply, so
    only ``hidden`` varies.
    """
    return [c for c in hyperparameters(results) if results[c].nunique(dropna=True) > 1]


def fixed_value(results: pd.DataFrame, column: str) -> object:
    """The value of a column that does not vary, taken where it applies (NaN where it never does)."""
    present = results[column].dropna()
    return present.iloc[0] if len(present) else math.nan


def summarize(results: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Mean and confidence half-width over seeds of every metric, one row per configuration.

    Returns
    -------
    DataFrame
        The hyperparameter columns, ``n`` (seeds), ``diverged`` (seeds that diverged), ``failed``
        (seeds that trained to the end but learned nothing: ``failed: at chance`` or ``failed: loss
        rose``, see :func:`mlplab.train.outcome`), and for each
        of the metrics and ``seconds`` the columns ``<metric>_mean`` and ``<metric>_ci``
        (t-based half-width, NaN with one seed; see :mod:`mlplab.stats`).
    """
    by = hyperparameters(results)
    flagged = results.assign(
        diverged=results["status"].eq("diverged").astype(float),
        failed=results["status"].str.startswith("failed").astype(float),
    )
    summary = aggregate(flagged, by, [*METRICS, "seconds", "diverged", "failed"], confidence)
    for i, name in enumerate(("diverged", "failed")):
        count = (summary.pop(f"{name}_mean") * summary["n"]).round().astype(int)
        summary = summary.drop(columns=f"{name}_ci")
        summary.insert(len(by) + 1 + i, name, count)
    return summary


STATUS_FILTERS = ("all", "ok", "failed", "diverged")


def filter_status(results: pd.DataFrame, which: str) -> pd.DataFrame:
    """The results whose status is ``which``: ``ok``, ``failed`` (any ``failed: ...``), ``diverged`` or ``all``."""
    if which not in STATUS_FILTERS:
        raise ConfigError("status", which, f"expected one of {', '.join(STATUS_FILTERS)}")
    if which == "all":
        return results
    keep = results["status"].str.startswith("failed") if which == "failed" else results["status"].eq(which)
    return results[keep].reset_index(drop=True)


def sort_summary(summary: pd.DataFrame, metric: str, ascending: bool | None = None) -> pd.DataFrame:
    """Sort by ``metric`` (mean over seeds); best first unless ``ascending`` says otherwise."""
    column = f"{metric}_mean"
    if column not in summary.columns:
        allowed = ", ".join([*METRICS, "seconds"])
        raise ConfigError("sort", metric, f"expected one of {allowed}")
    if ascending is None:
        ascending = metric not in HIGHER_IS_BETTER
    return summary.sort_values(column, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)


def format_value(value: object) -> str:
    """A hyperparameter value as the table shows it."""
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:g}"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    return str(value)


def format_metric(mean: float, ci: float, digits: int = 4) -> str:
    """``0.8512 ± 0.0031``; the mean alone when there is no interval; ``nan`` when undefined."""
    return MeanCI(mean, ci, 0).format(digits)


def table_rows(summary: pd.DataFrame, columns: Sequence[str], metrics: Sequence[str]) -> list[list[str]]:
    """Text cells of a summary: the given hyperparameter columns, seeds, diverged, failed, the metrics."""
    rows = []
    for _, r in summary.iterrows():
        cells = [format_value(r[c]) for c in columns]
        cells += [str(int(r["n"])), str(int(r["diverged"])), str(int(r["failed"]))]
        cells += [format_metric(r[f"{m}_mean"], r[f"{m}_ci"], 2 if m == "seconds" else 4) for m in metrics]
        rows.append(cells)
    return rows


def seed_caution(summary: pd.DataFrame, confidence: float = 0.95) -> str | None:
    """A caution when configurations of ``summary`` have fewer than :data:`MIN_SEEDS` seeds; None if none do.

    >>> seed_caution(pd.DataFrame({"n": [2, 2, 3]}))  # doctest: +NORMALIZE_WHITESPACE
    'caution: 2 of 3 configuration(s) have fewer than 3 seeds: a t interval from 2 seeds is very wide and
    unreliable (95% t factor 12.71, against 4.30 with 3 seeds); train 3 or more seeds (--seeds 3)'
    """
    n = summary["n"]
    few = n[n < MIN_SEEDS]
    if few.empty:
        return None
    why = []
    if (few == 2).any():
        why.append(
            f"a t interval from 2 seeds is very wide and unreliable ({confidence:.0%} t factor "
            f"{t_critical(1, confidence):.2f}, against {t_critical(MIN_SEEDS - 1, confidence):.2f} with {MIN_SEEDS} seeds)"
        )
    if (few == 1).any():
        why.append("1 seed gives no interval at all")
    return (
        f"caution: {len(few)} of {len(n)} configuration(s) have fewer than {MIN_SEEDS} seeds: "
        f"{'; '.join(why)}; train {MIN_SEEDS} or more seeds (--seeds {MIN_SEEDS})"
    )


def markdown_table(summary: pd.DataFrame, metrics: Sequence[str] = ("final_test_acc", "final_train_loss")) -> str:
    """The summary as a markdown table (varying hyperparameters, seeds, metrics with 95% CI).

    Configurations with fewer than :data:`MIN_SEEDS` seeds are marked † in the seeds column, and a
    footnote under the table says why their intervals are not to be trusted (:func:`seed_caution`).
    """
    columns = varying(summary)
    header = [*columns, "seeds", "diverged", "failed", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (_, r), cells in zip(summary.iterrows(), table_rows(summary, columns, metrics)):
        if r["n"] < MIN_SEEDS:
            cells[len(columns)] += " †"
        lines.append("| " + " | ".join(cells) + " |")
    caution = seed_caution(summary)
    if caution is not None:
        lines += ["", f"† {caution}."]
    return "\n".join(lines) + "\n"
