"""Figures of experiment Results, drawn from their tables only (never during training)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mlplab.errors import ConfigError, MlplabError
from mlplab.experiments.base import FigureSpec, Result
from mlplab.plots import plt, save_figure


def _columns(table: pd.DataFrame, y: str) -> tuple[str, str | None]:
    """The mean column of metric ``y`` and its CI column (None without one)."""
    if f"{y}_mean" in table.columns:
        return f"{y}_mean", f"{y}_ci" if f"{y}_ci" in table.columns else None
    if y in table.columns:
        return y, None
    raise ConfigError("figure y", y, f"not a column of the table: {', '.join(map(str, table.columns))}")


def figure(spec: FigureSpec, table: pd.DataFrame):
    """The matplotlib Figure that ``spec`` describes, from ``table``."""
    mean, ci = _columns(table, spec.y)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    if spec.kind == "heatmap":
        grid = table.pivot_table(index=spec.by, columns=spec.x, values=mean, sort=True)
        image = ax.imshow(grid.to_numpy(float), origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" if isinstance(v, float) else str(v) for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" if isinstance(v, float) else str(v) for v in grid.index])
        ax.set_ylabel(spec.by)
        fig.colorbar(image, ax=ax, label=spec.y)
    elif spec.kind in ("line", "bar"):
        parts = [(None, table)] if spec.by is None else list(table.groupby(spec.by, sort=False))
        numeric = pd.api.types.is_numeric_dtype(table[spec.x])
        categories = list(dict.fromkeys(table[spec.x]))
        width = 0.8 / max(1, len(parts))
        for i, (value, part) in enumerate(parts):
            xs = (
                part[spec.x].to_numpy(float)
                if numeric
                else np.array([categories.index(v) for v in part[spec.x]], float)
            )
            order = np.argsort(xs, kind="stable")
            xs, ys = xs[order], part[mean].to_numpy(float)[order]
            band = np.nan_to_num(part[ci].to_numpy(float)[order], nan=0.0) if ci else None
            name = None if spec.by is None else f"{spec.by}={value}"
            if spec.kind == "bar":
                ax.bar(xs + (i - (len(parts) - 1) / 2) * width, ys, width, yerr=band, label=name, capsize=3)
            else:
                (line,) = ax.plot(xs, ys, "o-", label=name, markersize=3)
                if band is not None:
                    ax.fill_between(xs, ys - band, ys + band, color=line.get_color(), alpha=0.2)
        if not numeric:
            ax.set_xticks(range(len(categories)), [str(c) for c in categories])
        if spec.by is not None:
            ax.legend(fontsize=8)
        ax.set_ylabel(spec.y)
        ax.grid(True, alpha=0.3)
    else:
        raise ConfigError("figure kind", spec.kind, "expected line, heatmap or bar")
    if spec.logx:
        ax.set_xscale("log")
    if spec.logy:
        ax.set_yscale("log")
    ax.set_xlabel(spec.x)
    if spec.title:
        ax.set_title(spec.title, fontsize=10)
    return fig


DIGESTS = "figures.json"  # in a figures folder: what each PNG was drawn from (a rerun skips the unchanged)


def _digest(spec: FigureSpec, table: pd.DataFrame) -> str:
    """What a figure depends on: its spec, its table and the drawing code (this file)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode())
    h.update(table.to_csv(index=False).encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def draw(result: Result, folder: Path) -> list[Path]:
    """Draw every figure of ``result`` into ``folder/<name>.png`` (atomically).

    ``folder/figures.json`` records what each PNG was drawn from; a PNG whose spec, table and
    drawing code are unchanged is kept, not redrawn (a rerun of an experiment whose runs are all
    stored then takes a fraction of a second here instead of seconds).
    """
    from mlplab.runs import read_json, write_json

    index = folder / DIGESTS
    try:
        known = read_json(index, "figure digests") if index.exists() else {}
    except MlplabError:
        known = {}  # an unreadable index only costs a redraw
    known = known if isinstance(known, dict) else {}
    paths, digests = [], {}
    for spec in result.figures:
        if spec.table not in result.tables:
            raise ConfigError("figure table", spec.table, f"the result has tables {', '.join(result.tables)}")
        path, digest = folder / f"{spec.name}.png", _digest(spec, result.tables[spec.table])
        if known.get(spec.name) != digest or not path.is_file():
            save_figure(figure(spec, result.tables[spec.table]), path)
        paths.append(path)
        digests[spec.name] = digest
    write_json(index, digests)
    return paths
