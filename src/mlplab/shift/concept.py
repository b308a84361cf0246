"""Concept shift: fine-tune the source model or retrain from scratch? (d2l 4.9.1.3, 4.9.3.4)

When ``p(y|x)`` itself changes (here: classes are relabeled, :func:`mlplab.shift.relabel`), no
reweighting helps: the old labels are wrong. The book's remedy is to update the network with
labeled data from the new concept, starting from the existing weights rather than from scratch.
:func:`concept_learning_curves` measures that advice: from the same relabeled examples and the
same training budget, the test accuracy after every epoch (epoch 0 = before any update) of

- ``finetune``: the source model, all layers updated (its features still separate the images;
  only which output means which class has changed);
- ``scratch``: a freshly initialized model of the same architecture.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from mlplab.data.batching import Data, Split
from mlplab.errors import ConfigError
from mlplab.models import ModelConfig, build_mlp
from mlplab.train import TrainConfig, evaluate, fit

CONCEPT_MODES = ("finetune", "scratch")


@dataclass(frozen=True)
class LearningCurve:
    """Test metrics after each epoch; index 0 is before training."""

    mode: str  # finetune | scratch
    n_train: int  # relabeled training examples
    seed: int
    test_acc: tuple[float, ...]  # (epochs + 1,)
    test_loss: tuple[float, ...]  # (epochs + 1,)
    seconds: float  # training time

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "n_train": self.n_train,
            "seed": self.seed,
            "test_acc": list(self.test_acc),
            "test_loss": list(self.test_loss),
            "seconds": self.seconds,
        }


def concept_learning_curves(
    source_model: nn.Module,
    model_config: ModelConfig,
    train: Split,
    test: Split,
    config: TrainConfig,
    modes: tuple[str, ...] = CONCEPT_MODES,
) -> list[LearningCurve]:
    """One learning curve per mode, each trained on ``train`` and measured on ``test``.

    Parameters
    ----------
    source_model : nn.Module
        Trained on the old concept; copied, never modified.
    model_config : ModelConfig
        Architecture of the ``scratch`` model (initialized from ``config.seed``).
    train, test : Split
        Relabeled examples: ``X`` (n, d), ``y`` (n,) under the new concept.
    config : TrainConfig
        The same for every mode: same epochs, optimizer, learning rate and batch order.
    """
    for m in modes:
        if m not in CONCEPT_MODES:
            raise ConfigError("mode", m, f"expected one of {', '.join(CONCEPT_MODES)}")
    curves = []
    for mode in modes:
        if mode == "finetune":
            net = copy.deepcopy(source_model)
        else:
            net = build_mlp(model_config, torch.Generator().manual_seed(config.seed))
        loss0, acc0 = evaluate(net.to(config.device), test.to(config.device))
        history = fit(net, Data(train, test), config)
        curves.append(
            LearningCurve(
                mode,
                len(train),
                config.seed,
                (acc0, *history.column("test_acc")),
                (loss0, *history.column("test_loss")),
                sum(r.seconds for r in history.records),
            )
        )
    return curves
