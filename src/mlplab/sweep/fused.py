"""A batched ReLU MLP's SGD step by hand: backward and update fused, for the CPU.

On a CPU a batched step's matrix products are compute-bound and fast, and what else the step does
is bound by memory traffic: every pass over a (K, B, H) activation or a (K, n_in, n_out) weight
tensor reads and writes megabytes. Autograd plus a separate optimizer makes several such passes
that this step does not:

- **The SGD update inside the weight-gradient product.** ``W <- W - lr * A^T dZ`` is one
  ``baddbmm_`` into ``W`` (``beta = 1``, ``alpha = -1``) once ``dZ`` carries the learning rate, so
  no gradient tensor is written and read back, and there is no separate update pass. The learning
  rate ``lr_k / B`` (and the mean's ``1 / B``) multiplies the output layer's gradient, a
  (K, B, n_outputs) tensor: backpropagation is linear, so every gradient below it carries the
  factor too. Weight decay is ``W <- W (1 - lr_k wd_k)`` before the update, the same
  ``W - lr (g + wd W)``.
- **Dropout and ReLU backward in one pass.** With ``A = relu(Z) * gate`` (a kept unit's gate is
  ``s_k = 1 / (1 - p_k) >= 1``), ``dZ = dA * s_k * 1[A > 0]``: ``threshold_backward`` of ``A``
  and, when the layer above is narrower (the output layer), ``s_k`` folded into the small
  gradient that ``dA`` is computed from rather than multiplied into ``dA``.
- **Forward in place.** ``Z`` is turned into ``A`` where it lies.

The update order is the optimizer's: each layer's input gradient ``dA = dZ W^T`` is taken before
that layer's weights move, so every gradient is the one at the step's starting weights.

This is :class:`mlplab.sweep.optim.BatchedSGD`'s update for ReLU networks without L1 and with one
input width (the padded rows of mixed widths would need their gradient masked before the update),
on live models: a step whose loss is non-finite for some model is not taken here, and the
caller's autograd step (which freezes that model) runs it instead. The same numbers as that step
up to float rounding (``p - lr g`` against ``p - (lr g)`` summed in another order); tested
against it in ``tests/test_sweep_fused.py``.

In ``precision="bf16"`` the products read bfloat16 operands as autocast's would: the batch, the
activations and gradients in bfloat16, the weights as bfloat16 copies refreshed from the float32
weights at every step; the losses are float32, and each weight gradient ``A^T dZ`` (bfloat16,
summed in float32 by the product) is subtracted from the float32 weights, so the update cannot be
folded into the product there. Tested against the autograd step under autocast in
``tests/test_precision.py``. On CUDA the autograd step runs (it is captured in a
CUDA graph, and checking the losses on the host would wait for the GPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mlplab.sweep.optim import BatchedOptimizer, BatchedSGD
from mlplab.train import widened

LOSSES = ("cross_entropy", "mse")


def supports(model, optimizer: BatchedOptimizer, loss: str) -> bool:
    """Whether :class:`FusedReluSGD` can take this group's steps (else the autograd step does)."""
    return (
        type(optimizer) is BatchedSGD
        and not any(optimizer.has_l1)
        and model.activation == "relu"
        and model.input_mask is None
        and loss in LOSSES
    )


class FusedReluSGD:
    """Forward, loss, backward and SGD update of a :class:`~mlplab.sweep.batched.BatchedMLP`, by hand.

    Parameters
    ----------
    model : BatchedMLP
        ReLU activations, one input width (:func:`supports`).
    optimizer : BatchedSGD
        Its per-model learning rates and weight decays are used; its ``step`` is not called.
    loss : str
        ``cross_entropy`` (integer labels) or ``mse`` (float targets (B,) or (B, k)).
    precision : str
        ``fp32``, or ``bf16``: the products in bfloat16, the weights and the update in float32.
    """

    def __init__(self, model, optimizer: BatchedSGD, loss: str, precision: str = "fp32") -> None:
        if not supports(model, optimizer, loss):
            raise ValueError("FusedReluSGD needs a ReLU model without input padding, BatchedSGD without L1")
        self.model, self.loss = model, loss
        self.bf16 = precision == "bf16"
        if self.bf16:  # the products' operands: bfloat16 copies of the float32 weights, refreshed each step
            self.weight_copies = [W.to(torch.bfloat16) for W in model.weights]
            self.bias_copies = [b.to(torch.bfloat16) for b in model.biases]
            self.grads = [torch.empty_like(W, dtype=torch.bfloat16) for W in model.weights]  # A^T dZ
        n_weights = len(model.weights)
        self.lr = optimizer.lr  # (K, 1, 1)
        # per parameter 1 - lr wd (K, 1, 1), or None where no model decays it (weights, then biases)
        shrink = [1 - optimizer.lr * wd if decay else None
                  for wd, decay in zip(optimizer.weight_decay, optimizer.has_decay)]  # fmt: skip
        self.weight_shrink, self.bias_shrink = shrink[:n_weights], shrink[n_weights:]

    def forward(self, X: Tensor, gates: Sequence[Tensor | None]) -> list[Tensor]:
        """Every layer's input and the output: ``[X expanded, A_1, ..., A_L-1, output]``, no autograd."""
        m = self.model
        weights, biases = self.operands()
        if self.bf16:
            X = X.to(torch.bfloat16)
        A = X.expand(m.n_models, *X.shape)  # (K, B, d), a view
        acts = [A]
        for layer, W in enumerate(weights):
            Z = torch.baddbmm(biases[layer], A, W) if biases else torch.bmm(A, W)  # (K, B, n_out)
            if layer < len(m.weights) - 1:
                gate = gates[layer] if layer < len(gates) else None
                A = Z.clamp_min_(0.0) if gate is None else Z.clamp_min_(0.0).mul_(gate)
                Z = A
            acts.append(Z)
        return acts

    def operands(self) -> tuple[list[Tensor], list[Tensor]]:
        """The weights and biases the products read: the model's, or in bf16 their refreshed bfloat16 copies."""
        m = self.model
        if not self.bf16:
            return m.weights, m.biases
        for copy, p in zip((*self.weight_copies, *self.bias_copies), (*m.weights, *m.biases)):
            copy.copy_(p)
        return self.weight_copies, self.bias_copies

    def losses(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(per-model mean losses (K,), their gradient wrt out times lr_k)``, as ``F.cross_entropy`` / ``F.mse_loss``."""
        K, B = out.shape[:2]
        out = widened(out)  # the loss in float32 (bf16: from the bfloat16 outputs)
        if self.loss == "cross_entropy":
            logp = torch.log_softmax(out, dim=-1)  # (K, B, C)
            index = y.view(1, B, 1).expand(K, B, 1)
            losses = -logp.gather(2, index).squeeze(2).mean(1)
            grad = logp.exp_().scatter_add_(2, index, torch.full((K, B, 1), -1.0, device=out.device))
            return losses, grad.mul_(self.lr / B)  # (softmax - onehot) / B, times lr
        diff = out - y.reshape(out.shape[1:])  # (K, B, k)
        losses = diff.square().flatten(1).mean(1)
        return losses, diff.mul_(self.lr * (2.0 / diff[0].numel()))

    def backward_update(self, acts: list[Tensor], grad_out: Tensor, gates: Sequence[Tensor | None], scales) -> None:
        """Backpropagate ``grad_out`` (it carries lr) and update every layer in place, top layer first."""
        m = self.model
        dZ = grad_out.to(acts[-1].dtype)
        for layer in reversed(range(len(m.weights))):
            W, A = m.weights[layer], acts[layer]
            Wp = self.weight_copies[layer] if self.bf16 else W  # the weights the forward pass multiplied by
            dA = None
            if layer:  # the input gradient at the starting weights, before W moves
                gate, s = (gates[layer - 1] if layer - 1 < len(gates) else None), scales[layer - 1]
                fold = gate is not None and dZ.shape[-1] < A.shape[-1]  # scale the smaller tensor
                dA = torch.bmm((dZ * s).to(dZ.dtype) if fold else dZ, Wp.transpose(1, 2))  # (K, B, n_in)
                dA = torch.ops.aten.threshold_backward(dA, A, 0.0)  # relu's and dropout's zeros
                if gate is not None and not fold:
                    dA.mul_(s)
            if self.weight_shrink[layer] is not None:
                W.mul_(self.weight_shrink[layer])
            if self.bf16:  # the product in bfloat16 (float32 accumulation), the update in float32
                W.sub_(torch.bmm(A.transpose(1, 2), dZ, out=self.grads[layer]))
            else:
                W.baddbmm_(A.transpose(1, 2), dZ, alpha=-1.0)  # W - lr * A^T dZ
            if m.biases:
                b = m.biases[layer]
                if self.bias_shrink[layer] is not None:
                    b.mul_(self.bias_shrink[layer])
                b.sub_(dZ.sum(1, keepdim=True, dtype=b.dtype))
            dZ = dA

    @torch.no_grad()
    def __call__(self, X: Tensor, y: Tensor, gates: Sequence[Tensor | None], scales) -> tuple[Tensor, Tensor] | None:
        """One step: ``(losses (K,), outputs (K, B, n_out))``, or None, untouched, if a loss is not finite.

        ``scales`` holds per hidden layer the (K, 1, 1) dropout scale ``1 / (1 - p_k)`` of ``gates``.
        """
        acts = self.forward(X, gates)
        losses, grad_out = self.losses(acts[-1], y)
        if not bool(torch.isfinite(losses).all()):  # the autograd step freezes the model instead
            return None
        self.backward_update(acts, grad_out, gates, scales)
        return losses, acts[-1]
