"""Figures of a sweep, made from its summary (never during training): a heatmap for a 2-D grid,
lines with confidence bands for a 1-D sweep."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import mlplab.plots  # noqa: F401  (selects the Agg backend before pyplot is imported)
from mlplab.errors import ConfigError
from mlplab.sweep.results import HIGHER_IS_BETTER, format_value, hyperparameters, varying


def _sort_key(values: Sequence[object]) -> list[object]:
    try:
        return sorted(values, key=float)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return sorted(values, key=str)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _index(values: Sequence[object], value: object) -> int:
    """Position of ``value``; NaN (a ``dropoutN`` that a shallower model lacks) matches NaN."""
    for i, v in enumerate(values):
        if v == value or (_is_nan(v) and _is_nan(value)):
            return i
    raise ValueError(f"{value!r} is not among the axis values")  # pragma: no cover (values come from the column)


def _title(metric: str, summary: pd.DataFrame, fixed: str) -> str:
    seeds = summary["n"]
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    ci = ", ± 95% CI" if seeds.min() > 1 else ""
    return "\n".join(textwrap.wrap(f"{metric}: mean over {n} seed(s){ci}. {fixed}", 60))


def _fixed(summary: pd.DataFrame, exclude: Sequence[str]) -> str:
    parts = [
        f"{c}={format_value(summary[c].iloc[0])}"
        for c in hyperparameters(summary)
        if c not in exclude and summary[c].nunique(dropna=False) == 1
    ]
    return " ".join(parts)


def heatmap(summary: pd.DataFrame, x: str, y: str, metric: str = "final_test_acc") -> Figure:
    """Mean of ``metric`` over seeds on the ``y`` (rows) x ``x`` (columns) grid, each cell annotated
    with its mean and 95% CI half-width; missing cells are blank; a cell with seeds that failed or
    diverged is framed red and says how many."""
    xs, ys = _sort_key(summary[x].unique()), _sort_key(summary[y].unique())
    mean = np.full((len(ys), len(xs)), np.nan)
    ci = np.full_like(mean, np.nan)
    bad = np.zeros(mean.shape, dtype=int)  # seeds that failed or diverged
    for _, r in summary.iterrows():
        i, j = _index(ys, r[y]), _index(xs, r[x])
        mean[i, j], ci[i, j] = r[f"{metric}_mean"], r[f"{metric}_ci"]
        bad[i, j] = int(r.get("failed", 0)) + int(r.get("diverged", 0))
    fig, ax = plt.subplots(
        figsize=(max(5.0, 1.5 + 0.75 * len(xs)), max(3.5, 1.5 + 0.6 * len(ys))), layout="constrained"
    )
    cmap = "viridis" if metric in HIGHER_IS_BETTER else "viridis_r"
    image = ax.imshow(mean, cmap=cmap, origin="lower", aspect="auto")
    fig.colorbar(image, ax=ax, label=metric)
    lo, hi = np.nanmin(mean) if np.isfinite(mean).any() else 0, np.nanmax(mean) if np.isfinite(mean).any() else 1
    for i in range(len(ys)):
        for j in range(len(xs)):
            if math.isnan(mean[i, j]):
                continue
            text = f"{mean[i, j]:.3f}" + ("" if math.isnan(ci[i, j]) else f"\n±{ci[i, j]:.3f}")
            if bad[i, j]:  # the cell's seeds learned nothing (or diverged): say so on it, and frame it red
                text += f"\n✗ {bad[i, j]} failed"
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
            bright = (mean[i, j] - lo) / (hi - lo + 1e-12)
            dark_cell = bright < 0.5 if metric in HIGHER_IS_BETTER else bright > 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark_cell else "black")
    ax.set_xticks(range(len(xs)), [format_value(v) for v in xs])
    ax.set_yticks(range(len(ys)), [format_value(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(_title(metric, summary, _fixed(summary, (x, y))), fontsize=9)
    return fig


def lines(summary: pd.DataFrame, x: str, metric: str = "final_test_acc", by: str | None = None) -> Figure:
    """Mean of ``metric`` against ``x`` with a 95% confidence band; one line per value of ``by``."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    parts = (
        [(None, summary)] if by is None else [(v, summary[summary[by] == v]) for v in _sort_key(summary[by].unique())]
    )
    numeric = pd.api.types.is_numeric_dtype(summary[x])
    for value, part in parts:
        part = part.sort_values(x) if numeric else part
        xs = part[x].to_numpy() if numeric else np.arange(len(part))
        mean, ci = part[f"{metric}_mean"].to_numpy(float), part[f"{metric}_ci"].to_numpy(float)
        label = None if by is None else f"{by}={format_value(value)}"
        (line,) = ax.plot(xs, mean, "o-", label=label)
        band = np.nan_to_num(ci, nan=0.0)
        ax.fill_between(xs, mean - band, mean + band, color=line.get_color(), alpha=0.2)
        if not numeric:
            ax.set_xticks(xs, [format_value(v) for v in part[x]])
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    if by is not None:
        ax.legend()
    ax.set_title(_title(metric, summary, _fixed(summary, (x,) + ((by,) if by else ()))), fontsize=9)
    return fig


def plot_summary(
    summary: pd.DataFrame, metric: str = "final_test_acc", x: str | None = None, y: str | None = None
) -> Figure:
    """A heatmap if two hyperparameters vary (or ``x`` and ``y`` are given), lines if one does.

    Raises ConfigError naming the varying hyperparameters when the choice is ambiguous.
    """
    if f"{metric}_mean" not in summary.columns:
        raise ConfigError(
            "metric", metric, "expected final_test_acc, final_test_loss, final_train_acc, final_train_loss or seconds"
        )
    axes = varying(summary)
    for name, value in (("x", x), ("y", y)):
        if value is not None and value not in hyperparameters(summary):
            raise ConfigError(name, value, f"not a hyperparameter of this sweep; varying: {', '.join(axes) or 'none'}")
    if x is None and y is None:
        if len(axes) == 1:
            return lines(summary, axes[0], metric)
        if len(axes) == 2:
            return heatmap(summary, axes[1], axes[0], metric)
        raise ConfigError(
            "x", None, f"{len(axes)} hyperparameters vary ({', '.join(axes) or 'none'}): choose --x (and --y)"
        )
    if y is None:
        others = [a for a in axes if a != x]
        if len(others) > 1:
            raise ConfigError("y", None, f"besides {x}, {', '.join(others)} vary: give --y for a heatmap")
        return lines(summary, x, metric, by=others[0] if others else None)
    if x is None:
        raise ConfigError("x", None, "--y needs --x")
    if x == y:
        raise ConfigError("y", y, "must differ from x: a heatmap needs two hyperparameters")
    others = [a for a in axes if a not in (x, y)]
    if others:
        raise ConfigError("x", x, f"{', '.join(others)} vary too; a heatmap shows two hyperparameters")
    return heatmap(summary, x, y, metric)
