"""What every experiment shares: its config, its :class:`Result`, and how it trains and stores.

An experiment is a function ``run(config) -> Result``. It trains through the sweep engine
(:func:`sweep`), so every model is stored in a SQLite store as its group completes and a rerun
trains only what is missing:

- the same experiment and config again: nothing is retrained; more ``--seeds``: only the new seeds;
- a changed config (other epochs, another grid): its models have other keys
  (:attr:`mlplab.sweep.spec.Trial.key`), so they are trained and stored *apart* in the same store,
  and only the rows of the config asked for are ever read back: never mixed;
- other data (``--quick`` takes a subset): stored in a folder of its own (``OUT/quick`` and
  ``OUT/full``); the store refuses data that differs from what it was made with.

A :class:`Result` holds tables (DataFrames), figure specs (drawn later by
:mod:`mlplab.experiments.plots`, from the tables only) and :class:`Conclusion` s computed from the
tables (a best value with its interval, a paired comparison over seeds): none is written by hand.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mlplab.atomic import prepare_dir, write_text
from mlplab.data import Data, Split
from mlplab.errors import ConfigError, check_choice, check_int
from mlplab.stats import MeanCI, Paired, mean_ci, paired
from mlplab.train import check_device

DATA_SETS = ("fashion-mnist", "synthetic")  # synthetic: small Gaussian blobs, for tests and demos
MAX_SEEDS = 100
QUICK_TRAIN, QUICK_TEST = 10_000, 5_000  # --quick trains on a fixed subset of Fashion-MNIST


@dataclass(frozen=True)
class ExperimentConfig:
    """The settings every experiment takes (each experiment's ``Config`` adds its own)."""

    seeds: int = 3  # independent runs of every configuration (seeds 0 .. seeds - 1)
    quick: bool = False  # a smaller budget (a data subset, fewer epochs): seconds, for a first look
    device: str = "cpu"  # cpu | cuda | cuda:N | mps
    out: str | None = None  # where results go; default runs/<experiment name>
    data: str = "fashion-mnist"  # or "synthetic" (tests, demos) where the experiment trains a classifier
    data_dir: str | None = None  # Fashion-MNIST's folder (default: search, then download)
    progress: bool = False  # draw progress bars while training
    # sweep callbacks (mlplab.live.LiveSweepPlot: live curves in Jupyter) handed to every sweep the
    # experiment trains; not a setting: they change no result, so they are not compared or stored
    callbacks: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "callbacks", tuple(self.callbacks))
        check_int("seeds", self.seeds, 1, MAX_SEEDS)
        check_device(self.device)
        check_choice("data", self.data, DATA_SETS)
        if self.out is not None and str(self.out) == "":
            raise ConfigError("out", "", "give a folder such as runs/mlp-hidden, or leave it out")

    def folder(self, name: str) -> Path:
        """Where this config's results go: ``OUT/quick`` or ``OUT/full`` (other data, other store)."""
        base = Path(self.out) if self.out is not None else Path("runs") / name
        return base / ("quick" if self.quick else "full") / ("synthetic" if self.data == "synthetic" else "")

    def to_dict(self) -> dict[str, Any]:
        """The settings (every field but ``callbacks``), as plain data."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "callbacks"}


@dataclass(frozen=True)
class Conclusion:
    """One finding of an experiment, as a sentence made from numbers, and the numbers."""

    text: str  # e.g. "the best width is 512: 0.8540 ± 0.0030 (3 seeds)"
    values: Mapping[str, Any] = field(default_factory=dict)  # what the sentence was made from
    key: str = ""  # names a finding that others read (the report's verdicts on the log), e.g. "log-guess"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class FigureSpec:
    """A figure drawn from one of a Result's tables (see :mod:`mlplab.experiments.plots`).

    ``kind``: ``line`` (``y`` against ``x``, one line per value of ``by``, with a CI band where the
    table has ``<y>_ci``), ``heatmap`` (``<y>_mean`` over ``x`` and ``by``), ``bar`` (categories).
    ``y`` names a metric: the table holds ``<y>_mean`` and ``<y>_ci``, or a plain column ``y``.
    """

    name: str  # file stem: figures/<name>.png
    table: str  # a key of Result.tables
    kind: str  # line | heatmap | bar
    x: str
    y: str
    by: str | None = None
    logx: bool = False
    logy: bool = False
    title: str = ""


@dataclass
class Result:
    """What an experiment returns: tables, figure specs and conclusions, all computed from runs."""

    name: str
    config: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[FigureSpec] = field(default_factory=list)
    conclusions: list[Conclusion] = field(default_factory=list)
    seconds: float = 0.0

    def finding(self, key: str) -> Conclusion | None:
        """The conclusion named ``key`` (see :attr:`Conclusion.key`), or None when it was not drawn."""
        return next((c for c in self.conclusions if c.key == key), None)

    def _repr_html_(self) -> str:
        """How Jupyter shows a Result: the conclusions, the figures (drawn from the tables), the tables."""
        from mlplab.display import result_html

        return result_html(self)

    def markdown(self) -> str:
        """The conclusions, then each table, as Markdown."""
        lines = [f"# {self.name}", ""]
        lines += [f"- {c.text}" for c in self.conclusions]
        for key, table in self.tables.items():
            lines += ["", f"## {key}", "", markdown_table(table)]
        return "\n".join(lines) + "\n"

    def save(self, folder: str | os.PathLike[str], figures: bool = True) -> Path:
        """Write ``result.json``, ``result.md``, ``tables/<name>.csv`` and ``figures/<name>.png``.

        Every file is written atomically; figures are drawn here, from the tables.
        """
        folder = prepare_dir(folder, "experiment folder")
        tables = prepare_dir(folder / "tables", "tables folder")
        for key, table in self.tables.items():
            write_text(tables / f"{key}.csv", table.to_csv(index=False))
        if figures and self.figures:
            from mlplab.experiments.plots import draw  # matplotlib only when figures are written

            draw(self, prepare_dir(folder / "figures", "figures folder"))
        summary = {
            "name": self.name,
            "config": self.config,
            "seconds": self.seconds,
            "conclusions": [
                {"text": c.text, "values": _json_safe(c.values), **({"key": c.key} if c.key else {})}
                for c in self.conclusions
            ],
            "tables": list(self.tables),
            "figures": [dataclasses.asdict(f) for f in self.figures],
        }
        write_text(folder / "result.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
        write_text(folder / "result.md", self.markdown())
        return folder


def _json_safe(value: Any) -> Any:
    """JSON without NaN: NaN and inf become None; numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_value(v: Any, digits: int = 4) -> str:
    """A table cell: floats with ``digits`` decimals (significant digits when very large or small), NaN empty."""
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else f"{v:.{digits}g}" if abs(v) >= 1e4 or 0 < abs(v) < 1e-3 else f"{v:.{digits}f}"
    return str(v)


def markdown_table(table: pd.DataFrame, digits: int = 4) -> str:
    """``table`` as a Markdown pipe table (cells by :func:`format_value`; a ``|`` inside a cell is escaped)."""
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = [
        "| " + " | ".join(format_value(v, digits).replace("|", "\\|") for v in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([head, rule, *rows])


# ---- data -------------------------------------------------------------------------------------


def subset(data: Data, n_train: int, n_test: int, seed: int = 0) -> Data:
    """A fixed random subset of each split (``randperm`` from ``Generator().manual_seed(seed)``)."""
    g = torch.Generator().manual_seed(seed)

    def take(split: Split, n: int) -> Split:
        if n >= len(split):
            return split
        idx = torch.randperm(len(split), generator=g)[:n].to(split.X.device)
        return Split(split.X.index_select(0, idx), split.y.index_select(0, idx))

    return Data(take(data.train, n_train), take(data.test, n_test))


def classification_data(config: ExperimentConfig) -> Data:
    """Fashion-MNIST (a fixed 10k/5k subset with ``--quick``), or the synthetic blobs."""
    from mlplab.sweep.runner import sweep_data

    data = sweep_data(config.data, config.data_dir)
    return subset(data, QUICK_TRAIN, QUICK_TEST) if config.quick and config.data == "fashion-mnist" else data


# ---- training through the sweep engine --------------------------------------------------------


@dataclass
class Runs:
    """The stored models of one sweep of an experiment: one row per (configuration, seed)."""

    results: pd.DataFrame  # mlplab.sweep.results.load_results columns
    histories: pd.DataFrame  # mlplab.sweep.results.load_histories columns (one row per epoch)


def sweep(
    spec: Any,
    data: Data,
    folder: Path,
    config: ExperimentConfig,
    *,
    histories: bool = False,
    max_models: int | None = None,
) -> Runs:
    """Train what of ``spec`` is not yet stored in ``folder`` and return exactly ``spec``'s rows.

    Parameters
    ----------
    spec : mlplab.sweep.spec.SweepSpec
    data : Data
    folder : Path
        The store's folder (one per data set and sweep of an experiment).
    histories : bool
        Also read the per-epoch metrics (for curves).
    """
    from mlplab.sweep.results import load_histories, load_results
    from mlplab.sweep.runner import run_sweep

    run_sweep(
        spec,
        data,
        folder,
        device=config.device,
        progress=config.progress,
        max_models=max_models,
        callbacks=config.callbacks,
    )
    keys = {t.key for t in spec.trials(n_inputs=data.train.X.shape[1], n_outputs=data.n_outputs)}
    results = load_results(folder)
    results = results[results["key"].isin(keys)].reset_index(drop=True)
    curves = pd.DataFrame()
    if histories:
        curves = load_histories(folder)
        curves = curves[curves["key"].isin(keys)].reset_index(drop=True)
    return Runs(results, curves)


# ---- results trained outside the sweep engine: one JSON file per finished part ---------------


class StoredParts:
    """Finished parts of an experiment, one JSON file each, stored with the settings they came from.

    The mechanism for work that the sweep store does not hold (the distribution-shift study's
    parts): :meth:`load` returns a stored part only when its settings equal the ones asked for, and
    refuses a part made with other settings (it names the file and the settings that differ), so a
    rerun reuses what is finished and never mixes configurations; :meth:`save` writes a part
    atomically as soon as it finishes. ``settings_key`` is the entry of a part that holds its settings.
    """

    def __init__(self, folder: str | os.PathLike[str], settings_key: str = "config") -> None:
        self.folder, self.settings_key = Path(folder), settings_key

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def load(self, name: str, settings: Mapping[str, Any]) -> dict | None:
        """The stored part ``name``, None when there is none; an MlplabError when its settings differ."""
        from mlplab.errors import MlplabError
        from mlplab.runs import differences, read_json

        path = self.path(name)
        if not path.exists():
            return None
        stored = read_json(path, f"stored {name} results")
        if not isinstance(stored, dict) or not isinstance(stored.get(self.settings_key), dict):
            raise MlplabError(f"{path} is not a stored result (no {self.settings_key!r}). Fix: delete it to redo it.")
        differ = differences(stored[self.settings_key], dict(settings), word="asked")
        if differ:
            raise MlplabError(
                f"cannot resume: {path} was made with other settings ({', '.join(differ)}). Fix: use the "
                "original settings, or another --out to start over."
            )
        return stored

    def save(self, name: str, part: Mapping[str, Any]) -> Path:
        from mlplab.runs import write_json

        prepare_dir(self.folder, "results folder")
        write_json(self.path(name), dict(part))
        return self.path(name)


# ---- conclusions ------------------------------------------------------------------------------


def per_seed(results: pd.DataFrame, column: str, value: Any, metric: str) -> dict[int, float]:
    """``{seed: metric}`` of the rows where ``column == value``."""
    rows = results[results[column] == value]
    return {int(s): float(m) for s, m in zip(rows["seed"], rows[metric])}


def label(column: str, value: Any) -> str:
    from mlplab.sweep.hyperparameters import value_text

    return f"{column}={value_text(value)}"


def compare(
    results: pd.DataFrame, column: str, a: Any, b: Any, metric: str = "final_test_acc", higher_is_better: bool = True
) -> Paired:
    """Paired comparison over seeds of the rows with ``column == a`` against ``column == b``."""
    return paired(
        per_seed(results, column, a, metric),
        per_seed(results, column, b, metric),
        labels=(label(column, a), label(column, b)),
        metric=metric,
        higher_is_better=higher_is_better,
    )


def comparison(p: Paired) -> Conclusion:
    """A paired comparison as a Conclusion."""
    d = p.difference
    return Conclusion(
        p.sentence(),
        {"a": p.a, "b": p.b, "metric": p.metric, "a_mean": p.a_mean, "b_mean": p.b_mean,
         "difference": d.mean, "ci": d.half_width, "n": d.n, "winner": p.winner},
    )  # fmt: skip


def best(
    results: pd.DataFrame, column: str, metric: str = "final_test_acc", higher_is_better: bool = True
) -> Conclusion:
    """The value of ``column`` with the best mean ``metric`` over seeds, and which others it does not beat.

    Each other value is compared with the best by a paired comparison over seeds; the ones whose
    interval includes 0 are "not told apart" from it: the data does not single out one best value then.
    """
    # a value with a NaN run (a diverged seed) has a NaN mean and cannot be the best: never skipped
    means = results.groupby(column, sort=False)[metric].agg(lambda x: x.mean(skipna=False))
    winner = means.idxmax() if higher_is_better else means.idxmin()
    ci: MeanCI = mean_ci(results.loc[results[column] == winner, metric])
    tied = []
    for other in means.index:
        if other == winner or math.isnan(means[other]):  # a diverged value is worse, not tied
            continue
        p = compare(results, column, winner, other, metric, higher_is_better)
        if p.winner is None:
            tied.append(other)
    from mlplab.sweep.hyperparameters import value_text

    text = f"best {column}: {value_text(winner)}, {metric} {ci.format()} ({ci.n} seeds)"
    if len(means) == 1:
        text += "; the only value tried"
    elif tied:
        text += f"; not told apart from it (paired 95% CI includes 0): {', '.join(map(value_text, tied))}"
    else:
        text += "; it beats every other value (paired 95% CIs)"
    return Conclusion(text, {"column": column, "best": winner, "mean": ci.mean, "ci": ci.half_width, "n": ci.n,
                             "tied": tied, "metric": metric})  # fmt: skip


def timed(name: str, config: ExperimentConfig) -> tuple[float, dict[str, Any]]:
    """The start time and the JSON form of ``config``, for a Result."""
    return time.perf_counter(), {"experiment": name, **config.to_dict()}


def summary_table(results: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean and 95% CI over seeds of ``metrics`` per value of ``by`` (``mlplab.stats.aggregate``)."""
    from mlplab.stats import aggregate

    return aggregate(results, list(by), list(metrics))


# ---- an experiment's own settings, from text (``mlplab run NAME --set FIELD=VALUE``) -------------


@dataclass(frozen=True)
class Setting:
    """One field of an experiment's ``Config`` that text can set."""

    name: str
    kind: str  # int, float, str, bool, "int or none", or "comma list of int|float|str" (optionally with a length)
    default: Any
    comment: str  # the field's comment in the source, the setting's meaning

    @property
    def default_text(self) -> str:
        """The default as ``--set`` takes it (a list comma-separated)."""
        return ",".join(map(str, self.default)) if isinstance(self.default, tuple) else str(self.default)

    def parse(self, text: str) -> Any:
        """The value of ``text`` for this field; a ConfigError names ``--set NAME`` and the fix."""
        flag = f"--set {self.name}"
        item, _, length = self.kind.removeprefix("comma list of ").partition(" x ")
        if self.kind.startswith("comma list of "):
            values = tuple(_scalar(flag, part.strip(), item) for part in text.split(",") if part.strip())
            if length and len(values) != int(length):
                raise ConfigError(flag, text, f"give {length} comma-separated values of {item}")
            return values
        if self.kind == "int or none":
            return None if text.strip().lower() in ("", "none") else _scalar(flag, text, "int")
        return _scalar(flag, text, self.kind)


def _scalar(flag: str, text: str, kind: str) -> Any:
    text = text.strip()
    if kind == "str":
        return text
    if kind == "bool":
        if text.lower() in ("true", "1", "yes", "false", "0", "no"):
            return text.lower() in ("true", "1", "yes")
        raise ConfigError(flag, text, "expected true or false")
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ConfigError(flag, text, f"expected {'an integer' if kind == 'int' else 'a number'}") from None


_SCALARS = {int: "int", float: "float", str: "str", bool: "bool"}


def _kind(hint: Any) -> str | None:
    """The text kind of a type hint, or None when text cannot set it (nested tuples, dicts)."""
    import types
    import typing

    if hint in _SCALARS:
        return _SCALARS[hint]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and set(args) == {int, type(None)}:
        return "int or none"
    if typing.get_origin(hint) is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
            return f"comma list of {_SCALARS[args[0]]}"
        if all(a is args[0] for a in args) and args[0] in _SCALARS:
            return f"comma list of {_SCALARS[args[0]]} x {len(args)}"
    return None


def settings(config_class: type) -> list[Setting]:
    """The fields an experiment's ``Config`` adds to :class:`ExperimentConfig` that text can set."""
    import inspect
    import re
    import typing

    common = {f.name for f in dataclasses.fields(ExperimentConfig)}
    hints = typing.get_type_hints(config_class)
    comments = dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.*)$", inspect.getsource(config_class), re.M))
    out = []
    for f in dataclasses.fields(config_class):
        kind = _kind(hints[f.name])
        if f.name in common or kind is None or not f.compare:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append(Setting(f.name, kind, default, comments.get(f.name, "")))
    return out


def parse_settings(config_class: type, pairs: Sequence[str]) -> dict[str, Any]:
    """``{"candidates": ("a", "b"), ...}`` from ``["candidates=a,b", ...]`` (``--set`` flags)."""
    known = {s.name: s for s in settings(config_class)}
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise ConfigError(
                "--set", pair, f"give FIELD=VALUE with FIELD one of {', '.join(known) or '(none)'} (see --settings)"
            )
        out[name] = known[name].parse(text)
    return out
