"""L2 and L1 weight penalties and their (sub)gradients (d2l "Weight Decay").

    L2:  P(w) = lam / 2 * ||w||_2^2 = lam / 2 * sum_i w_i^2      dP/dw = lam * w
    L1:  P(w) = lam * ||w||_1 = lam * sum_i |w_i|                 dP/dw = lam * sign(w)

The ``1/2`` makes the L2 gradient ``lam * w``: adding it to the loss gradient is exactly SGD's
``weight_decay = lam`` (see :class:`mlplab.scratch.SGD`). ``|w|`` has no derivative at 0; the
subgradient used there is 0 (``sign(0) = 0``), which lies in ``[-lam, lam]`` as it must.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def l2_penalty(weights: Iterable[Tensor], lam: float) -> Tensor:
    """``lam / 2 * sum_W ||W||_2^2`` over the given tensors (0-dim tensor)."""
    return lam / 2.0 * sum(w.square().sum() for w in weights)  # type: ignore[return-value]


def l2_grad(w: Tensor, lam: float) -> Tensor:
    """``d/dw (lam / 2 * ||w||^2) = lam * w``, the shape of ``w``."""
    return lam * w


def l1_penalty(weights: Iterable[Tensor], lam: float) -> Tensor:
    """``lam * sum_W ||W||_1`` over the given tensors (0-dim tensor)."""
    return lam * sum(w.abs().sum() for w in weights)  # type: ignore[return-value]


def l1_subgrad(w: Tensor, lam: float) -> Tensor:
    """A subgradient of ``lam * ||w||_1``: ``lam * sign(w)``, with 0 at ``w = 0``."""
    return lam * torch.sign(w)
