"""Vectorized hyperparameter sweeps: whole grids trained at once, stored, resumable.

>>> from mlplab.sweep import SweepSpec, run_sweep, load_results, summarize, synthetic_data
>>> spec = SweepSpec(base={"hidden": (16,), "epochs": 2, "lr": 0.5},
...                  grid={"dropout1": (0.0, 0.5)}, seeds=(0, 1, 2))
>>> report = run_sweep(spec, synthetic_data(), "runs/demo")   # doctest: +SKIP
>>> summarize(load_results("runs/demo"))                       # doctest: +SKIP

Modules: :mod:`~mlplab.sweep.spec` (what to train), :mod:`~mlplab.sweep.planner` (which trials
share a batched model), :mod:`~mlplab.sweep.batched` and :mod:`~mlplab.sweep.optim` (training K
models as one), :mod:`~mlplab.sweep.store` (SQLite), :mod:`~mlplab.sweep.runner` (all of it,
resumable), :mod:`~mlplab.sweep.results` and :mod:`~mlplab.sweep.plots` (reading it back).
"""

from mlplab.sweep.batched import BatchedMLP, DropoutStreams, TrialResult, dropout_seed, train_group
from mlplab.sweep.planner import Group, plan
from mlplab.sweep.results import load_histories, load_results, markdown_table, sort_summary, summarize
from mlplab.sweep.runner import SweepCallback, SweepReport, run_sweep, sweep_data, synthetic_data
from mlplab.sweep.spec import Distribution, SweepSpec, Trial, load_toml, make_trial, parse_axis, parse_random_axis

__all__ = [
    "BatchedMLP",
    "Distribution",
    "DropoutStreams",
    "Group",
    "SweepCallback",
    "SweepReport",
    "SweepSpec",
    "Trial",
    "TrialResult",
    "dropout_seed",
    "load_histories",
    "load_results",
    "load_toml",
    "make_trial",
    "markdown_table",
    "parse_axis",
    "parse_random_axis",
    "plan",
    "run_sweep",
    "sort_summary",
    "summarize",
    "sweep_data",
    "synthetic_data",
    "train_group",
]
