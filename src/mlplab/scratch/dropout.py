"""Inverted dropout and its gradient (Srivastava et al. 2014; d2l "Dropout").

In training, each unit is kept with probability ``1 - p`` and the kept ones are scaled by
``1 / (1 - p)``, so the expected value of every unit is unchanged:

    h' = m * h / (1 - p),   m ~ Bernoulli(1 - p)   =>   E[h'] = h
    d h' / d h = m / (1 - p)

In evaluation dropout is the identity. ``p = 0`` draws nothing and returns the input; ``p = 1``
drops every unit (output and gradient are exactly 0, never 0/0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlplab import errors


def _probability(p: float, field: str = "dropout") -> float:
    """``p`` as a float, or a ConfigError if it is not a number in [0, 1].

    The function itself takes ``p = 1`` (the book's ``dropout_layer`` does: every unit dropped);
    a model does not (:func:`mlplab.errors.check_probability`: [0, 1) in every model config).
    """
    errors.check_probability(field, p, one=True)
    return float(p)


def keep_mask(
    shape: torch.Size | tuple[int, ...],
    p: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """A boolean mask, True (keep) with probability ``1 - p``: ``u >= p`` for ``u ~ U[0, 1)``."""
    return torch.rand(shape, generator=generator, device=device) >= p


def dropout(
    h: Tensor, p: float, training: bool = True, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor | None]:
    """Inverted dropout: ``h' = m * h / (1 - p)`` with ``m ~ Bernoulli(1 - p)``.

    Parameters
    ----------
    h : Tensor of any shape
    p : float in [0, 1]
        Probability of dropping a unit.
    training : bool
        False: the identity (no mask drawn).
    generator : torch.Generator, optional
        Source of the mask; the global generator when None.

    Returns
    -------
    out : Tensor, the shape of ``h``
    mask : bool Tensor the shape of ``h``, or None when nothing was dropped (evaluation, ``p = 0``)
    """
    p = _probability(p)
    if not training or p == 0.0:
        return h, None
    if p == 1.0:  # every unit dropped; 1 / (1 - p) would be inf and 0 * inf is nan
        return torch.zeros_like(h), torch.zeros(h.shape, dtype=torch.bool, device=h.device)
    mask = keep_mask(h.shape, p, generator, h.device)
    return h.mul(mask).div_(1.0 - p), mask


def dropout_grad(grad_out: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """``dL/dh = dL/dh' * m / (1 - p)``; ``grad_out`` itself when no mask was drawn; 0 for ``p = 1``."""
    if mask is None:
        return grad_out
    if p == 1.0:
        return torch.zeros_like(grad_out)
    return grad_out.mul(mask).div_(1.0 - p)
