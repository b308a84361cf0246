"""Weight initializers for scratch weights of shape ``(n_in, n_out)`` (d2l "Numerical Stability and Initialization").

    normal(std):    W_ij ~ N(0, std^2)                                   (the chapter's normal:0.01)
    xavier_uniform: W_ij ~ U(-a, a),  a = sqrt(6 / (n_in + n_out))       (Glorot & Bengio 2010)
    xavier_normal:  W_ij ~ N(0, 2 / (n_in + n_out))
    he:             W_ij ~ N(0, 2 / n_in)                                (He et al. 2015)

Xavier's variance ``2 / (n_in + n_out)`` is the compromise between ``n_in sigma^2 = 1`` (the
forward pass keeps the variance of the activations) and ``n_out sigma^2 = 1`` (the backward pass
keeps the variance of the gradients); ``U(-a, a)`` has variance ``a^2 / 3``, the same number.

The formulas live in one place, :class:`mlplab.init.InitSpec`, shared with the concise models.
The draws are made in ``nn.Linear``'s ``(n_out, n_in)`` order and transposed, so that a scratch
MLP and a concise one built from equally seeded generators start from the same weights:
``scratch W == linear.weight.T``. That makes the two implementations comparable number for number.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlplab.init import InitSpec, parse_init


def init_weight(
    spec: str | InitSpec,
    n_in: int,
    n_out: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """A new weight matrix of shape ``(n_in, n_out)`` drawn as ``spec`` says (see the module doc).

    Parameters
    ----------
    spec : str or InitSpec
        ``"normal:STD"``, ``"xavier"``, ``"xavier_normal"`` or ``"he"``.
    n_in, n_out : int
        Fan-in (inputs of the layer) and fan-out (its outputs).
    generator : torch.Generator, optional
        Source of the draws (the global generator when None).
    dtype : torch.dtype
        Of the result; the draws themselves are float32, so every dtype starts from the same numbers.

    Returns
    -------
    Tensor of shape (n_in, n_out), contiguous
    """
    # Drawn in nn.Linear's float32 (n_out, n_in) layout: the same numbers in the same order.
    drawn = torch.empty(n_out, n_in, dtype=torch.float32)
    parse_init(spec).init_(drawn, generator)
    return drawn.T.to(dtype).contiguous()


def normal(n_in: int, n_out: int, std: float, generator: torch.Generator | None = None) -> Tensor:
    """``W ~ N(0, std^2)``, shape ``(n_in, n_out)``."""
    return init_weight(InitSpec("normal", float(std)), n_in, n_out, generator)


def xavier_uniform(n_in: int, n_out: int, generator: torch.Generator | None = None) -> Tensor:
    """``W ~ U(-a, a)`` with ``a = sqrt(6 / (n_in + n_out))`` (variance ``2 / (n_in + n_out)``)."""
    return init_weight(InitSpec("xavier"), n_in, n_out, generator)


def xavier_normal(n_in: int, n_out: int, generator: torch.Generator | None = None) -> Tensor:
    """``W ~ N(0, 2 / (n_in + n_out))``, shape ``(n_in, n_out)``."""
    return init_weight(InitSpec("xavier_normal"), n_in, n_out, generator)


def he(n_in: int, n_out: int, generator: torch.Generator | None = None) -> Tensor:
    """``W ~ N(0, 2 / n_in)``, shape ``(n_in, n_out)``: keeps the variance through ReLU layers."""
    return init_weight(InitSpec("he"), n_in, n_out, generator)
