"""The hyperparameters a sweep can set: one table, read by every part that names them.

:data:`HYPERPARAMETERS` lists each one with the config field it sets, its default, what it means
and how it is written as text. Its order is the order of a trial's ``params()``, of the result
columns and of the CLI's lists. :mod:`mlplab.sweep.spec` adds how each is parsed and checked (a
table keyed by the same names; tests/test_sweep_spec.py checks that both have the same names and
that every default here is ``ModelConfig()``'s or ``TrainConfig()``'s).

This module imports nothing heavy: ``mlplab sweep run --help`` builds its help text from it
without loading torch.

Names may be written with ``-`` or ``_`` (``weight-decay``); :data:`ALIASES` are accepted too.
``dropout`` sets every hidden layer; ``dropoutN`` (N = 1, 2, ...) sets hidden layer N and
overrides ``dropout`` there. A trial stores one ``dropoutN`` per hidden layer, never ``dropout``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ALIASES",
    "AXIS_NAMES",
    "BY_NAME",
    "HYPERPARAMETERS",
    "NAMES",
    "PER_LAYER",
    "PER_LAYER_RE",
    "Hyperparameter",
    "default_text",
    "value_text",
]


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of a sweep: where it goes, its default, and how it reads."""

    name: str  # as flags, TOML files and result columns write it
    config: str  # "model" (ModelConfig) or "train" (TrainConfig): which config it sets
    field: str  # the config's field that it sets
    default: object  # ModelConfig()'s or TrainConfig()'s value (dropout: 0.0, ModelConfig's () means none)
    meaning: str  # a few words, for tables and --help
    example: str  # a value as text, as flags and TOML strings write it
    choices: tuple[str, ...] = ()  # the allowed values of a categorical one (tests check the library's)
    log_scale: bool = False  # its values span decades: plots use a log axis when a sweep's do


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter("hidden", "model", "hidden", (256,), "widths of the hidden layers", "256-256"),
    Hyperparameter(
        "activation", "model", "activation", "relu", "activation", "relu", ("relu", "sigmoid", "tanh", "prelu")
    ),
    Hyperparameter("init", "model", "init", "normal:0.01", "weight initialization", "normal:0.01, xavier, he"),
    Hyperparameter("dropout", "model", "dropout", 0.0, "p after every hidden layer (dropoutN: layer N)", "0.5"),
    Hyperparameter("lr", "train", "lr", 0.1, "learning rate", "0.5", log_scale=True),
    Hyperparameter("weight_decay", "train", "weight_decay", 0.0, "L2 penalty", "1e-4", log_scale=True),
    Hyperparameter("decay_biases", "train", "decay_biases", True, "decay biases too", "true, false"),
    Hyperparameter("optimizer", "train", "optimizer", "sgd", "optimizer", "sgd", ("sgd", "adam", "adamw")),
    Hyperparameter("batch_size", "train", "batch_size", 256, "examples per step", "256"),
    Hyperparameter("epochs", "train", "epochs", 10, "passes over the training data", "10"),
)
BY_NAME: dict[str, Hyperparameter] = {h.name: h for h in HYPERPARAMETERS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
PER_LAYER = "dropout"  # the one hyperparameter also set per hidden layer, as dropout1, dropout2, ...
PER_LAYER_RE = re.compile(r"^dropout([1-9][0-9]*)$")
# every name an axis or a fixed value may use, in table order
AXIS_NAMES: tuple[str, ...] = tuple(n for name in NAMES for n in ((name, "dropoutN") if name == PER_LAYER else (name,)))
ALIASES = {"wd": "weight_decay", "optim": "optimizer", "bs": "batch_size"}


def value_text(value: object) -> str:
    """A value as flags and labels write it: ``256-256``, ``none`` (no hidden layer), ``0.1``, ``true``."""
    if isinstance(value, tuple):
        return "-".join(map(str, value)) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def default_text(name: str) -> str:
    """The default of ``name`` as text, for help messages: ``default_text("lr") == "0.1"``."""
    return value_text(BY_NAME[name].default)
