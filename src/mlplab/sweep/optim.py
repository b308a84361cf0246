"""Optimizers for stacked parameters: one learning rate and weight decay per model.

Every parameter tensor has the models on its first axis, ``(K, ...)``; hyperparameters are
``(K, 1, 1)`` tensors that broadcast over it. The updates are those of ``torch.optim`` (so a
batched model trains as ``mlplab.train.fit`` would train each model), written once for all K:

- SGD (d2l 3.4; ``torch.optim.SGD``, no momentum): ``g <- g + wd * w``, ``w <- w - lr * g``.
- Adam (Kingma & Ba 2015; d2l 12.10): with L2 ``g <- g + wd * w``;
  ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
  ``w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
- AdamW (Loshchilov & Hutter 2019): Adam without the L2 term and ``w <- w (1 - lr * wd)`` first.

A model marked dead (its loss became non-finite) is frozen: its gradients are replaced by zeros
(``masked_fill``, because ``0 * nan`` is nan) and its learning rate is zero, so its parameters
never move again, whatever values they hold, and nothing of it reaches the other models.

Every step is a fixed sequence of tensor operations with no value read back to the host, so a
step can be captured in a CUDA graph; that is why Adam keeps its step count on the device, as
``torch.optim.Adam(capturable=True)`` does: a Python counter would be frozen into the graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which mlplab.train.fit uses
EPS = 1e-8


class BatchedOptimizer:
    """Updates stacked parameters in place; ``lr`` and ``weight_decay`` are (K,) per parameter.

    Parameters
    ----------
    params : list of Tensor, each of shape (K, ...)
    lr : Tensor of shape (K,)
    weight_decay : list of Tensor of shape (K,), one per parameter
        (0 for biases when ``decay_biases`` is False, as ``make_optimizer`` does).
    """

    def __init__(self, params: Sequence[Tensor], lr: Tensor, weight_decay: Sequence[Tensor]) -> None:
        self.params = list(params)
        k = lr.shape[0]
        self.lr = lr.view(k, 1, 1)  # (K, 1, 1); all parameters are 3-d (K, a, b)
        self.weight_decay = [wd.view(k, 1, 1) for wd in weight_decay]
        self.has_decay = [bool((wd != 0).any()) for wd in weight_decay]

    def step(self, grads: Sequence[Tensor], alive: Tensor) -> None:
        """One update of every live model; ``grads`` match ``params``; ``alive`` is (K,) bool."""
        raise NotImplementedError


class BatchedSGD(BatchedOptimizer):
    """Plain SGD with per-model learning rate and (coupled, L2) weight decay."""

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], alive: Tensor) -> None:
        dead = ~alive.view(-1, 1, 1)  # (K, 1, 1)
        lr = self.lr * alive.view(-1, 1, 1)  # (K, 1, 1), 0 for frozen models
        for p, g, wd, decay in zip(self.params, grads, self.weight_decay, self.has_decay):
            if decay:
                g.addcmul_(p, wd)
            g.masked_fill_(dead, 0.0)
            p.addcmul_(g, lr, value=-1.0)


class BatchedAdam(BatchedOptimizer):
    """Adam (``decoupled=False``, L2 in the gradient) or AdamW (``decoupled=True``)."""

    def __init__(self, params: Sequence[Tensor], lr: Tensor, weight_decay: Sequence[Tensor], decoupled: bool) -> None:
        super().__init__(params, lr, weight_decay)
        self.decoupled = decoupled
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros((), dtype=torch.float64, device=lr.device)  # steps taken, on the device

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], alive: Tensor) -> None:
        b1, b2 = BETAS
        dead = ~alive.view(-1, 1, 1)  # (K, 1, 1)
        lr = self.lr * alive.view(-1, 1, 1)  # (K, 1, 1)
        self.t += 1
        bc1, sqrt_bc2 = 1 - b1**self.t, (1 - b2**self.t).sqrt()  # 0-d tensors
        for p, g, m, v, wd, decay in zip(self.params, grads, self.m, self.v, self.weight_decay, self.has_decay):
            if decay and self.decoupled:
                p.mul_(1 - lr * wd)
            elif decay:
                g.addcmul_(p, wd)
            g.masked_fill_(dead, 0.0)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / sqrt_bc2).add_(EPS)
            p.addcdiv_(m * (lr / bc1), denom, value=-1.0)


def make_batched_optimizer(
    name: str, params: Sequence[Tensor], lr: Tensor, weight_decay: Sequence[Tensor]
) -> BatchedOptimizer:
    """The batched counterpart of ``mlplab.train.make_optimizer`` for ``sgd``, ``adam``, ``adamw``."""
    if name == "sgd":
        return BatchedSGD(params, lr, weight_decay)
    return BatchedAdam(params, lr, weight_decay, decoupled=(name == "adamw"))
