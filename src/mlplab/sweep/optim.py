"""Optimizers for stacked parameters: one learning rate, weight decay and L1 penalty per model.

Every parameter tensor has the models on its first axis, ``(K, ...)``; hyperparameters are
``(K, 1, 1)`` tensors that broadcast over it. The updates are those of ``torch.optim`` (so a
batched model trains as ``mlplab.train.fit`` would train each model), written once for all K:

- L1 (``TrainConfig.l1``, a term ``l1 * sum |w|`` of the loss in ``fit``): first of all,
  ``g <- g + l1 * sign(w)``, the gradient autograd gives that term (``sign(0) = 0``), for every
  optimizer; skipped for a parameter that no model penalizes.
- SGD (d2l 3.4; ``torch.optim.SGD``, no momentum): ``g <- g + wd * w``, ``w <- w - lr * g``.
- Adam (Kingma & Ba 2015; d2l 12.10): with L2 ``g <- g + wd * w``;
  ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
  ``w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
- AdamW (Loshchilov & Hutter 2019): Adam without the L2 term and ``w <- w (1 - lr * wd)`` first.

A parameter entry whose gradient is zero and whose value is zero never moves under any of these
updates (``wd * 0 = 0``, ``sign(0) = 0``, Adam's moments stay 0): the zero-padded input rows of
a batched model (``mlplab.sweep.batched``) rely on it.

A model marked dead (its loss became non-finite) is frozen: its gradients are replaced by zeros
(``masked_fill``, because ``0 * nan`` is nan) and its learning rate is zero, so its parameters
never move again, whatever values they hold, and nothing of it reaches the other models. A
caller that knows every model is alive says so (``all_alive=True``) and skips that mask: a pass
over every gradient per step, about a tenth of a batched CPU step's non-GEMM time. On a CPU
reading ``alive`` costs nothing; on CUDA it would wait for the GPU, so there the mask stays.

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
    """Updates stacked parameters in place; ``lr`` is (K,), ``weight_decay`` and ``l1`` (K,) per parameter.

    Parameters
    ----------
    params : list of Tensor, each of shape (K, ...)
    lr : Tensor of shape (K,)
    weight_decay : list of Tensor of shape (K,), one per parameter
        (0 for biases when ``decay_biases`` is False, as ``make_optimizer`` does).
    l1 : list of Tensor of shape (K,), one per parameter, optional
        The L1 penalty of each model on that parameter (0 for biases when ``decay_biases`` is
        False, as ``mlplab.train.penalized`` says); default none.
    """

    def __init__(
        self, params: Sequence[Tensor], lr: Tensor, weight_decay: Sequence[Tensor], l1: Sequence[Tensor] | None = None
    ) -> None:
        self.params = list(params)
        k = lr.shape[0]
        self.lr = lr.view(k, 1, 1)  # (K, 1, 1); all parameters are 3-d (K, a, b)
        self.weight_decay = [wd.view(k, 1, 1) for wd in weight_decay]
        self.has_decay = [bool((wd != 0).any()) for wd in weight_decay]
        l1 = [torch.zeros_like(lr)] * len(self.params) if l1 is None else list(l1)
        self.l1 = [c.view(k, 1, 1) for c in l1]
        self.has_l1 = [bool((c != 0).any()) for c in l1]

    def add_l1(self, p: Tensor, g: Tensor, l1: Tensor) -> None:
        """``g <- g + l1 * sign(p)``: the gradient of the loss term ``l1 * sum |p|``, as autograd gives it."""
        g.add_(torch.sign(p).mul_(l1))

    def step(self, grads: Sequence[Tensor], alive: Tensor, all_alive: bool = False) -> None:
        """One update of every live model; ``grads`` match ``params``; ``alive`` is (K,) bool.

        ``all_alive=True`` promises that ``alive`` is all True: the frozen-model mask is skipped.
        """
        raise NotImplementedError

    def _frozen(self, alive: Tensor, all_alive: bool) -> tuple[Tensor | None, Tensor]:
        """``(dead (K, 1, 1) or None when all alive, lr (K, 1, 1) zero for dead models)``."""
        if all_alive:
            return None, self.lr
        return ~alive.view(-1, 1, 1), self.lr * alive.view(-1, 1, 1)


class BatchedSGD(BatchedOptimizer):
    """Plain SGD with per-model learning rate and (coupled, L2) weight decay."""

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], alive: Tensor, all_alive: bool = False) -> None:
        dead, lr = self._frozen(alive, all_alive)  # (K, 1, 1): lr 0 for frozen models
        for p, g, wd, decay, l1, has_l1 in zip(
            self.params, grads, self.weight_decay, self.has_decay, self.l1, self.has_l1
        ):
            if has_l1:
                self.add_l1(p, g, l1)
            if decay:
                g.addcmul_(p, wd)
            if dead is not None:
                g.masked_fill_(dead, 0.0)
            p.addcmul_(g, lr, value=-1.0)


class BatchedAdam(BatchedOptimizer):
    """Adam (``decoupled=False``, L2 in the gradient) or AdamW (``decoupled=True``)."""

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: Tensor,
        weight_decay: Sequence[Tensor],
        decoupled: bool,
        l1: Sequence[Tensor] | None = None,
    ) -> None:
        super().__init__(params, lr, weight_decay, l1)
        self.decoupled = decoupled
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros((), dtype=torch.float64, device=lr.device)  # steps taken, on the device

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], alive: Tensor, all_alive: bool = False) -> None:
        b1, b2 = BETAS
        dead, lr = self._frozen(alive, all_alive)  # (K, 1, 1)
        self.t += 1
        bc1, sqrt_bc2 = 1 - b1**self.t, (1 - b2**self.t).sqrt()  # 0-d tensors
        for p, g, m, v, wd, decay, l1, has_l1 in zip(
            self.params, grads, self.m, self.v, self.weight_decay, self.has_decay, self.l1, self.has_l1
        ):
            if has_l1:  # before the decoupled decay: sign(w) of the weights the gradient was taken at
                self.add_l1(p, g, l1)
            if decay and self.decoupled:
                p.mul_(1 - lr * wd)
            elif decay:
                g.addcmul_(p, wd)
            if dead is not None:
                g.masked_fill_(dead, 0.0)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / sqrt_bc2).add_(EPS)
            p.addcdiv_(m * (lr / bc1), denom, value=-1.0)


def make_batched_optimizer(
    name: str,
    params: Sequence[Tensor],
    lr: Tensor,
    weight_decay: Sequence[Tensor],
    l1: Sequence[Tensor] | None = None,
) -> BatchedOptimizer:
    """The batched counterpart of ``mlplab.train.make_optimizer`` for ``sgd``, ``adam``, ``adamw``."""
    if name == "sgd":
        return BatchedSGD(params, lr, weight_decay, l1)
    return BatchedAdam(params, lr, weight_decay, decoupled=(name == "adamw"), l1=l1)
