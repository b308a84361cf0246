"""The chapter's experiments and exercises, each answered by data: ``mlplab run NAME``.

One module per section of d2l's "Multilayer Perceptrons" chapter; each has a ``Config``
(:class:`mlplab.experiments.base.ExperimentConfig` plus its own settings) and
``run(config) -> Result``; the registry below says in one line what each answers. Results hold
tables, figure specs and conclusions computed from the stored runs (means over seeds with 95%
CIs, paired comparisons).

>>> from mlplab import experiments
>>> "mlp-hidden" in experiments.names()
True

Modules are imported when an experiment is asked for, so listing them loads no torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from mlplab.errors import ConfigError

# name -> (module of mlplab.experiments, what it answers), in the chapter's order
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "mlp-hidden": (
        "mlp_hidden",
        "d2l 4.2/4.3: test accuracy against the hidden width 8 .. 1024; best width; 256 vs 1024",
    ),
    "mlp-depth": ("mlp_depth", "d2l 4.2/4.3: 1 to 4 hidden layers, 10 and 30 epochs; accuracy-vs-epoch curves"),
    "mlp-lr": ("mlp_lr", "d2l 4.2/4.3: learning rates on a log grid; the best lr with its CI"),
    "activations": ("activations", "d2l 4.1: relu, sigmoid, tanh and prelu on the same budget"),
    "poly-fit": ("poly_fit", "d2l 4.4: polynomial under- and overfitting; the exact least-squares solution"),
    "weight-decay": ("weight_decay", "d2l 4.5: L2 on the 200-feature linear regression; scratch = concise; L1 vs L2"),
    "dropout": ("dropout", "d2l 4.6: scratch vs concise; the 10x10 p1 x p2 grid; dropout with weight decay"),
    "stability": ("stability", "d2l 4.8: vanishing and exploding gradients, symmetry, normal/Xavier/He on a deep MLP"),
    "best-mlp": ("best_mlp", "the best plain MLP: recipes chosen on a validation split, the test set used once"),
}


def _known(name: str) -> str:
    if name not in EXPERIMENTS:
        raise ConfigError("experiment", name, f"expected one of {', '.join(EXPERIMENTS)} (see mlplab run --list)")
    return name


def names() -> list[str]:
    """The experiments, in the chapter's order."""
    return list(EXPERIMENTS)


def summary(name: str) -> str:
    """What experiment ``name`` answers, in one line."""
    return EXPERIMENTS[_known(name)][1]


def module(name: str) -> ModuleType:
    """The module of experiment ``name`` (with ``Config`` and ``run``)."""
    return importlib.import_module(f"mlplab.experiments.{EXPERIMENTS[_known(name)][0]}")


def run(name: str, **settings: Any):
    """Run experiment ``name`` with ``settings`` (fields of its ``Config``) and return its Result.

    >>> result = run("mlp-hidden", quick=True, data="synthetic")  # doctest: +SKIP
    """
    mod = module(name)
    return mod.run(mod.Config(**settings))
