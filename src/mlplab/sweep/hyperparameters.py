"""The hyperparameters a sweep can set: one table, read by every part that names them.

:data:`HYPERPARAMETERS` lists each one with the config field it sets, its default, what it means
and how it is written as text. Its order is the order of a trial's ``params()``, of the result
columns and of the CLI's lists. Everything that names hyperparameters reads this table: the
defaults and trial construction (:mod:`mlplab.sweep.spec`, whose reader for each value follows
its ``kind`` and whose checks are the config's own), the result columns, and the flags and help
of ``mlplab sweep run`` (generated, one per entry). Adding a hyperparameter that sets an existing
config field is one entry here; tests/test_sweep_spec.py checks that every default is
``ModelConfig()``'s or ``TrainConfig()``'s and that docs/sweep.md lists every entry.

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
    "KINDS",
    "NAMES",
    "PER_LAYER",
    "PER_LAYER_RE",
    "Hyperparameter",
    "default_text",
    "value_text",
]


# How each kind of value is written as text; mlplab.sweep.spec has one reader per kind, and
# mlplab sweep run one option type per kind, so a new entry of an existing kind needs no other code.
KINDS = ("widths", "choice", "init", "real", "int", "bool")


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of a sweep: where it goes, its default, and how it reads.

    Everything else derives from the entry: the sweep's default (``default``), how a value is
    parsed (``kind``; its bounds are the config's own checks, run on the parsed value), the
    result column and the trial's ``params()`` (``name``), the flag of ``mlplab sweep run`` that
    fixes it (``flags``, else ``--name`` with dashes) and its help (``meaning``, ``choices``,
    ``default``).
    """

    name: str  # as flags, TOML files and result columns write it
    config: str  # "model" (ModelConfig) or "train" (TrainConfig): which config it sets
    field: str  # the config's field that it sets
    default: object  # ModelConfig()'s or TrainConfig()'s value (dropout: 0.0, ModelConfig's () means none)
    kind: str  # one of KINDS: how its values are written as text
    meaning: str  # a few words, for tables and --help
    example: str  # a value as text, as flags and TOML strings write it
    choices: tuple[str, ...] = ()  # the allowed values of a categorical one (tests check the library's)
    log_scale: bool = False  # its values span decades: plots use a log axis when a sweep's do
    flags: tuple[str, ...] = ()  # the `sweep run` flag(s) that fix it; () is --name (dashes for _)
    # In Trial.key: "always"; "unless-default" for entries added after sweeps were stored (at their
    # default they stay out of the key, so stored sweeps keep their keys and resume); "no" when the
    # key holds the value already (features is the model's n_inputs)
    keyed: str = "always"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"hyperparameter {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.keyed not in ("always", "unless-default", "no"):
            raise ValueError(f"hyperparameter {self.name}: keyed {self.keyed!r} is not always, unless-default or no")
        if (self.kind == "choice") != bool(self.choices):
            raise ValueError(f"hyperparameter {self.name}: choices go with kind 'choice' and only with it")

    @property
    def flag(self) -> str:
        """The ``sweep run`` flag that names it in messages: ``--weight-decay``, ``--wd-weights-only``."""
        names = self.flags or ("--" + self.name.replace("_", "-"),)
        return names[0].split("/")[-1] if self.kind == "bool" else names[0]


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter("hidden", "model", "hidden", (256,), "widths", "widths of the hidden layers", "256-256"),
    Hyperparameter(
        "activation", "model", "activation", "relu", "choice", "activation", "relu",
        choices=("relu", "sigmoid", "tanh", "prelu"),
    ),
    Hyperparameter("init", "model", "init", "normal:0.01", "init", "weight initialization", "normal:0.01, xavier, he"),
    Hyperparameter("dropout", "model", "dropout", 0.0, "real", "dropout p after every hidden layer (dropoutN: layer N)", "0.5"),
    Hyperparameter("lr", "train", "lr", 0.1, "real", "learning rate", "0.5", log_scale=True),
    Hyperparameter(
        "weight_decay", "train", "weight_decay", 0.0, "real", "L2 penalty", "1e-4", log_scale=True,
        flags=("--weight-decay", "--wd"),
    ),
    Hyperparameter(
        "decay_biases", "train", "decay_biases", True, "bool", "decay biases too", "true, false",
        flags=("--decay-biases/--wd-weights-only",),
    ),
    Hyperparameter(
        "optimizer", "train", "optimizer", "sgd", "choice", "optimizer", "sgd", choices=("sgd", "adam", "adamw")
    ),
    Hyperparameter("batch_size", "train", "batch_size", 256, "int", "examples per step", "256"),
    Hyperparameter("epochs", "train", "epochs", 10, "int", "passes over the training data", "10"),
    Hyperparameter(
        "loss", "train", "loss", "cross_entropy", "choice", "loss (mse: regression, float targets)", "mse",
        choices=("cross_entropy", "mse"), keyed="unless-default",
    ),
    Hyperparameter("l1", "train", "l1", 0.0, "real", "L1 penalty", "1e-3", log_scale=True, keyed="unless-default"),
    Hyperparameter(
        "bias", "model", "bias", True, "bool", "layers have biases", "true, false",
        flags=("--bias/--no-bias",), keyed="unless-default",
    ),
    Hyperparameter(
        "precision", "train", "precision", "fp32", "choice",
        "fp32, or bf16: matrix products in bfloat16 (autocast), weights in float32", "bf16",
        choices=("fp32", "bf16"), keyed="unless-default",
    ),
    Hyperparameter(
        "features", "model", "n_inputs", None, "int", "inputs the model reads: the data's first N columns (default all)",
        "4", keyed="no",
    ),
)  # fmt: skip
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
