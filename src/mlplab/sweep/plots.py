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
from mlplab.sweep.hyperparameters import BY_NAME
from mlplab.sweep.results import HIGHER_IS_BETTER, MIN_SEEDS, fixed_value, format_value, hyperparameters, varying

# A numeric axis of a hyperparameter marked log_scale in the table (lr, weight_decay) is drawn
# logarithmic when its positive values span more than this factor (0.001..0.1 yes, 0.1..0.5 no).
LOG_SPAN = 20.0


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _widths(text: object) -> tuple[int, ...]:
    """``"256-256"`` -> (256, 256); ``"none"`` -> ()."""
    return () if str(text) in ("none", "") else tuple(int(w) for w in str(text).split("-"))


def axis_values(name: str, values: Sequence[object]) -> list[object]:
    """The distinct ``values`` of axis ``name`` in the order they are drawn.

    Numbers ascending; ``hidden`` by depth, then by widths (``64, 256, 256-256, 256-256-256``);
    other text alphabetically. NaN (a ``dropoutN`` that does not apply) comes first.
    """
    distinct = list(dict.fromkeys(v for v in values if not _is_nan(v)))
    nan: list[object] = [math.nan] if any(_is_nan(v) for v in values) else []
    if name == "hidden":
        try:
            return nan + sorted(distinct, key=lambda v: (len(_widths(v)), _widths(v)))
        except ValueError:  # not widths joined by '-' (an edited store): fall back to text order
            pass
    try:
        return nan + sorted(distinct, key=float)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return nan + sorted(distinct, key=str)


def _index(values: Sequence[object], value: object) -> int:
    """Position of ``value``; NaN (a ``dropoutN`` that a shallower model lacks) matches NaN."""
    for i, v in enumerate(values):
        if v == value or (_is_nan(v) and _is_nan(value)):
            return i
    raise ValueError(f"{value!r} is not among the axis values")  # pragma: no cover (values come from the column)


def _rows_with(summary: pd.DataFrame, column: str, value: object) -> pd.DataFrame:
    return summary[summary[column].isna() if _is_nan(value) else summary[column] == value]


def x_scale(name: str, values: Sequence[float], logx: bool | None = None) -> str:
    """How to draw a numeric x axis: ``"log"``, ``"symlog"`` or ``"linear"``.

    ``logx=None`` (auto) draws ``lr`` and ``weight_decay`` (``log_scale`` in
    :mod:`mlplab.sweep.hyperparameters`) on a log axis when their positive values span more than
    :data:`LOG_SPAN`; ``True`` and ``False`` force it. A log axis that must show 0 (weight decay
    0, the usual baseline) is ``symlog``: linear from 0 to the smallest positive value, logarithmic
    above, so 0 keeps its own place left of the decades instead of being dropped.
    """
    finite = [float(v) for v in values if not math.isnan(float(v))]
    positive = [v for v in finite if v > 0]
    if logx is None:
        h = BY_NAME.get(name)
        logx = bool(
            h is not None and h.log_scale and positive and min(finite) >= 0 and max(positive) / min(positive) > LOG_SPAN
        )
    if not logx:
        return "linear"
    return "log" if finite and min(finite) > 0 else "symlog"


def seed_note(summary: pd.DataFrame) -> str | None:
    """``n=2 seeds: CI unreliable`` when some intervals come from fewer than ``MIN_SEEDS`` seeds."""
    seeds = summary["n"]
    if (seeds == 2).any():
        return f"n=2 seeds: CI unreliable (use >= {MIN_SEEDS})"
    if (seeds == 1).any() and (seeds > 1).any():
        return f"n=1 seed: no CI (use >= {MIN_SEEDS})"
    return None


def _title(metric: str, summary: pd.DataFrame, fixed: str) -> str:
    seeds = summary["n"]
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    ci = ", ± 95% CI" if seeds.max() > 1 else ""
    note = seed_note(summary)
    return "\n".join([*textwrap.wrap(f"{metric}: mean over {n} seed(s){ci}. {fixed}", 60), *([note] if note else [])])


def _fixed(summary: pd.DataFrame, exclude: Sequence[str]) -> str:
    parts = [
        f"{c}={format_value(fixed_value(summary, c))}"
        for c in hyperparameters(summary)
        if c not in exclude and summary[c].nunique(dropna=True) <= 1
    ]
    return " ".join(parts)


def heatmap(summary: pd.DataFrame, x: str, y: str, metric: str = "final_test_acc") -> Figure:
    """Mean of ``metric`` over seeds on the ``y`` (rows) x ``x`` (columns) grid, each cell annotated
    with its mean and 95% CI half-width; missing cells are blank; a cell with seeds that failed or
    diverged is framed red and says how many."""
    xs, ys = axis_values(x, summary[x].unique()), axis_values(y, summary[y].unique())
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


def lines(
    summary: pd.DataFrame, x: str, metric: str = "final_test_acc", by: str | None = None, logx: bool | None = None
) -> Figure:
    """Mean of ``metric`` against ``x`` with a 95% confidence band; one line per value of ``by``.

    A numeric ``x`` is drawn at its values, on the scale :func:`x_scale` chooses (``logx``: None
    chooses, True or False forces); a text ``x`` (``hidden``, ``activation``) as evenly spaced
    categories in :func:`axis_values` order.
    """
    numeric = pd.api.types.is_numeric_dtype(summary[x])
    if not numeric and logx:
        raise ConfigError("logx", True, f"{x} is not numeric ({x} values are categories); leave --logx out")
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    categories = axis_values(x, summary[x].unique())
    parts = (
        [(None, summary)]
        if by is None
        else [(v, _rows_with(summary, by, v)) for v in axis_values(by, summary[by].unique())]
    )
    for value, part in parts:
        if numeric:
            part = part.sort_values(x)
            xs = part[x].to_numpy(float)
        else:
            xs = np.array([_index(categories, v) for v in part[x]])
            part, xs = part.iloc[np.argsort(xs, kind="stable")], np.sort(xs)
        mean, ci = part[f"{metric}_mean"].to_numpy(float), part[f"{metric}_ci"].to_numpy(float)
        label = None if by is None else f"{by}={format_value(value)}"
        (line,) = ax.plot(xs, mean, "o-", label=label)
        band = np.nan_to_num(ci, nan=0.0)
        ax.fill_between(xs, mean - band, mean + band, color=line.get_color(), alpha=0.2)
    if numeric:
        scale = x_scale(x, summary[x].to_numpy(float), logx)
        if scale == "symlog":  # linear below the smallest positive value, so 0 keeps a place
            positive = summary[x][summary[x] > 0]
            ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
        else:
            ax.set_xscale(scale)
    else:
        ax.set_xticks(range(len(categories)), [format_value(v) for v in categories])
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    if by is not None:
        ax.legend()
    ax.set_title(_title(metric, summary, _fixed(summary, (x,) + ((by,) if by else ()))), fontsize=9)
    return fig


def plot_summary(
    summary: pd.DataFrame,
    metric: str = "final_test_acc",
    x: str | None = None,
    y: str | None = None,
    logx: bool | None = None,
) -> Figure:
    """A heatmap if two hyperparameters vary (or ``x`` and ``y`` are given), lines if one does.

    Hyperparameters that do not apply to some configurations (``dropout2`` of a one-layer model)
    vary only if they take two values where they apply (see :func:`~mlplab.sweep.results.varying`),
    so a depth sweep ``hidden=64,256,256-256`` draws lines over ``hidden``. ``logx``: the x scale
    of a line plot (None: :func:`x_scale` decides; a heatmap's cells are categories and take none).

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
            return lines(summary, axes[0], metric, logx=logx)
        if len(axes) == 2:
            x, y = axes[1], axes[0]
        else:
            raise ConfigError(
                "x", None, f"{len(axes)} hyperparameters vary ({', '.join(axes) or 'none'}): choose --x (and --y)"
            )
    elif y is None:
        others = [a for a in axes if a != x]
        if len(others) > 1:
            raise ConfigError("y", None, f"besides {x}, {', '.join(others)} vary: give --y for a heatmap")
        return lines(summary, x, metric, by=others[0] if others else None, logx=logx)
    elif x is None:
        raise ConfigError("x", None, "--y needs --x")
    elif x == y:
        raise ConfigError("y", y, "must differ from x: a heatmap needs two hyperparameters")
    else:
        others = [a for a in axes if a not in (x, y)]
        if others:
            raise ConfigError("x", x, f"{', '.join(others)} vary too; a heatmap shows two hyperparameters")
    if logx:
        raise ConfigError("logx", True, "a heatmap's cells are evenly spaced categories; --logx applies to lines")
    return heatmap(summary, x, y, metric)
