"""Softmax cross-entropy and its gradient, numerically stable (d2l "Softmax Regression" and
"Concise Implementation of Softmax Regression").

For logits ``o`` of one example and its label ``y``:

    loss(o, y) = -log softmax(o)_y = log sum_k exp(o_k) - o_y
    d loss / d o = softmax(o) - onehot(y)

Subtracting ``m = max_k o_k`` first changes nothing mathematically (``softmax(o - m) =
softmax(o)``) but keeps every ``exp`` in ``(0, 1]``, so logits of 1000 neither overflow nor turn
the loss into ``inf - inf``: this is the "LogSumExp trick" of the concise softmax regression section.
"""

from __future__ import annotations

import torch
from torch import Tensor


def log_softmax(logits: Tensor) -> Tensor:
    """``log softmax(o)_j = (o_j - m) - log sum_k exp(o_k - m)``, ``m = max_k o_k``, row by row.

    Parameters
    ----------
    logits : Tensor of shape (B, k)

    Returns
    -------
    Tensor of shape (B, k)
    """
    shifted = logits - logits.amax(dim=1, keepdim=True)  # (B, k), every entry <= 0
    return shifted - shifted.exp().sum(dim=1, keepdim=True).log()


def softmax_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean over the batch of ``-log softmax(o_i)_{y_i}``: a 0-dim tensor.

    Parameters
    ----------
    logits : Tensor of shape (B, k)
    y : Tensor of shape (B,), int64 class indices in ``[0, k)``
    """
    return -log_softmax(logits).gather(1, y.unsqueeze(1)).mean()


def softmax_cross_entropy_grad(logits: Tensor, y: Tensor) -> Tensor:
    """Gradient of the *mean* loss by the logits: ``(softmax(o_i) - onehot(y_i)) / B``, shape (B, k)."""
    return softmax_cross_entropy_and_grad(logits, y)[1]


def softmax_cross_entropy_and_grad(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The mean loss and its gradient by the logits, sharing one softmax.

    Parameters
    ----------
    logits : Tensor of shape (B, k)
    y : Tensor of shape (B,), int64

    Returns
    -------
    loss : 0-dim Tensor
        ``mean_i (log sum_k exp(o_ik - m_i) - (o_{i,y_i} - m_i))``
    grad : Tensor of shape (B, k)
        ``(softmax(o_i) - onehot(y_i)) / B``
    """
    B = logits.shape[0]
    shifted = logits - logits.amax(dim=1, keepdim=True)  # (B, k)
    exp = shifted.exp()  # (B, k), in (0, 1]
    total = exp.sum(dim=1, keepdim=True)  # (B, 1), in [1, k]
    loss = (total.log() - shifted.gather(1, y.unsqueeze(1))).mean()
    grad = exp.div_(total)  # (B, k): softmax, in place of exp (no longer needed)
    grad[torch.arange(B, device=y.device), y] -= 1.0
    return loss, grad.div_(B)
