"""Importance-weighted training: minimize ``(1/n) sum_i w_i l(f(x_i), y_i)`` (d2l 4.9.3).

Both corrections end here: covariate shift weights example ``i`` by ``beta(x_i)``, label shift
by ``w_{y_i}``. Weights are rescaled to mean 1 over the training set, so the weighted loss has the
scale of the plain one and the same learning rate works; a mini-batch's loss is
``(1/B) sum_{i in batch} w_i l_i``, an unbiased estimate of the full weighted risk.

It is :func:`mlplab.train.fit` with ``sample_weight``: the same batching (the same batch order
for a seed), optimizer and evaluation. With all weights equal it trains exactly as ``fit`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mlplab.data.batching import Data, Split
from mlplab.shift.inputs import ShiftInputError, as_numpy, check_weights
from mlplab.train import Callback, History, TrainConfig, fit


def normalized_weights(weights: object, n: int) -> torch.Tensor:
    """``weights`` (n,) as float32, checked and rescaled to mean 1."""
    w = as_numpy(weights).astype(np.float64).ravel()
    if len(w) != n:
        raise ShiftInputError(f"sample_weight has {len(w)} entries but the training split has {n} examples")
    w = check_weights("sample_weight", w)
    return torch.from_numpy(w / w.mean()).float()


def fit_weighted(
    model: nn.Module,
    train: Split,
    sample_weight: object,
    config: TrainConfig,
    *,
    eval_split: Split | None = None,
    callbacks: Sequence[Callback] = (),
) -> History:
    """Train ``model`` on ``train`` with per-example loss weights; evaluate on ``eval_split`` each epoch.

    Parameters
    ----------
    model : nn.Module
        Maps (B, d) to (B, k); trained in place.
    train : Split
        Source examples ``X`` (n, d), ``y`` (n,).
    sample_weight : array (n,)
        Non-negative loss weight of each example (rescaled to mean 1).
    config : TrainConfig
        As for :func:`mlplab.train.fit`; ``seed`` fixes the batch order and dropout masks.
    eval_split : Split, optional
        Evaluated (unweighted) after every epoch into ``test_loss``/``test_acc``; typically
        labeled target data. Without it those fields are NaN / None.

    Returns
    -------
    History
        ``train_loss`` is the weighted loss that was minimized; ``train_acc`` plain accuracy.
    """
    w = normalized_weights(sample_weight, len(train))
    evaluated = eval_split if eval_split is not None else Split(train.X[:0], train.y[:0])  # empty: NaN metrics
    return fit(model, Data(train, evaluated), config, callbacks=callbacks, sample_weight=w)
