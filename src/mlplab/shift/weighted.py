"""Importance-weighted training: minimize ``(1/n) sum_i w_i l(f(x_i), y_i)`` (d2l 4.7.3).

Both corrections end here: covariate shift weights example ``i`` by ``beta(x_i)``, label shift
by ``w_{y_i}``. Weights are rescaled to mean 1 over the training set, so the weighted loss has the
scale of the plain one and the same learning rate works; a mini-batch's loss is
``(1/B) sum_{i in batch} w_i l_i``, an unbiased estimate of the full weighted risk.

It is :func:`mlplab.train.fit` with one change, the per-example weights: the same batching
(:func:`mlplab.data.batches`, with the same batch order for a seed), optimizer
(:func:`mlplab.train.make_optimizer`) and evaluation (:func:`mlplab.train.evaluate`). With all
weights equal it trains exactly as ``fit`` does.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlplab.data.batching import Split, batches, num_batches
from mlplab.shift.inputs import ShiftInputError, as_numpy, check_weights
from mlplab.train import Callback, EpochRecord, History, TrainConfig, evaluate, make_optimizer, resolve_device


def per_example_loss(name: str):
    """Unreduced loss (B,): cross-entropy on logits, or squared error summed over outputs."""
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y, reduction="none")
    return lambda out, y: F.mse_loss(out, y.reshape(out.shape), reduction="none").reshape(len(out), -1).mean(dim=1)


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
    device = resolve_device(config.device)
    model.to(device)
    train = train.to(device)
    eval_split = eval_split.to(device) if eval_split is not None else None
    w = normalized_weights(sample_weight, len(train)).to(device)
    optimizer = make_optimizer(model, config)
    loss_fn = per_example_loss(config.loss)
    classify = config.loss == "cross_entropy"
    order = torch.Generator().manual_seed(config.seed)
    # Batches of indices: ``batches`` draws the same permutation as in ``fit``, and the index batch
    # picks the examples, labels and weights together.
    index = Split(train.X, torch.arange(len(train), device=device))
    history = History()
    n = len(train)
    for cb in callbacks:
        cb.on_train_begin(config, num_batches(n, config.batch_size), history)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for b, (X, idx) in enumerate(batches(index, config.batch_size, order)):
                y, wb = train.y.index_select(0, idx), w.index_select(0, idx)
                out = model(X)
                loss = (wb * loss_fn(out, y)).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    loss_sum += loss.detach().double() * len(y)
                    if classify:
                        correct += (out.argmax(dim=1) == y).sum()
                for cb in callbacks:
                    cb.on_batch_end(epoch, b)
            train_loss = loss_sum.item() / n
            test_loss, test_acc = (float("nan"), None) if eval_split is None else evaluate(model, eval_split, config.loss)
            record = EpochRecord(epoch, train_loss, correct.item() / n if classify else None, test_loss,
                                 test_acc, time.perf_counter() - t0)  # fmt: skip
            history.records.append(record)
            for cb in callbacks:
                cb.on_epoch_end(record)
            if not math.isfinite(train_loss):
                history.status = "diverged"
                break
    for cb in callbacks:
        cb.on_train_end(history)
    return history
