"""Vectorized hyperparameter sweeps: whole grids trained at once, stored, resumable.

>>> from mlplab.sweep import SweepSpec, run_sweep, load_results, summarize, synthetic_data
>>> spec = SweepSpec(base={"hidden": (16,), "epochs": 2, "lr": 0.5},
...                  grid={"dropout1": (0.0, 0.5)}, seeds=(0, 1, 2))
>>> report = run_sweep(spec, synthetic_data(), "runs/demo")   # doctest: +SKIP
>>> summarize(load_results("runs/demo"))                       # doctest: +SKIP

Modules: :mod:`~mlplab.sweep.hyperparameters` (the table of what a sweep can set),
:mod:`~mlplab.sweep.spec` (what to train), :mod:`~mlplab.sweep.planner` (which trials
share a batched model), :mod:`~mlplab.sweep.batched` and :mod:`~mlplab.sweep.optim` (training K
models as one), :mod:`~mlplab.sweep.store` (SQLite), :mod:`~mlplab.sweep.runner` (all of it,
resumable), :mod:`~mlplab.sweep.ray_backend` (the same, one Ray task per group: ``backend="ray"``),
:mod:`~mlplab.sweep.results` and :mod:`~mlplab.sweep.plots` (reading it back).

The names below are imported from their modules on first use (PEP 562), so that importing a light
submodule such as :mod:`mlplab.sweep.hyperparameters` (the CLI's help does) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# each name of __all__ -> the submodule that defines it (tests/test_sweep_spec.py checks both lists agree)
_EXPORTS = {
    "BatchedMLP": "batched",
    "DropoutStreams": "batched",
    "TrialResult": "batched",
    "dropout_seed": "batched",
    "train_group": "batched",
    "Group": "planner",
    "plan": "planner",
    "load_histories": "results",
    "load_results": "results",
    "markdown_table": "results",
    "sort_summary": "results",
    "summarize": "results",
    "SweepCallback": "runner",
    "SweepReport": "runner",
    "run_sweep": "runner",
    "sweep_data": "runner",
    "synthetic_data": "runner",
    "Distribution": "spec",
    "SweepSpec": "spec",
    "Trial": "spec",
    "load_toml": "spec",
    "make_trial": "spec",
    "parse_axis": "spec",
    "parse_random_axis": "spec",
}

__all__ = [
    "BatchedMLP", "Distribution", "DropoutStreams", "Group", "SweepCallback", "SweepReport", "SweepSpec",
    "Trial", "TrialResult", "dropout_seed", "load_histories", "load_results", "load_toml", "make_trial",
    "markdown_table", "parse_axis", "parse_random_axis", "plan", "run_sweep", "sort_summary", "summarize",
    "sweep_data", "synthetic_data", "train_group",
]  # fmt: skip

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports them
    from mlplab.sweep.batched import BatchedMLP, DropoutStreams, TrialResult, dropout_seed, train_group
    from mlplab.sweep.planner import Group, plan
    from mlplab.sweep.results import load_histories, load_results, markdown_table, sort_summary, summarize
    from mlplab.sweep.runner import SweepCallback, SweepReport, run_sweep, sweep_data, synthetic_data
    from mlplab.sweep.spec import Distribution, SweepSpec, Trial, load_toml, make_trial, parse_axis, parse_random_axis


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
