"""Activation functions, each beside its derivative (d2l "Multilayer Perceptrons", "Activation Functions").

Every derivative is written as a function of what the forward pass already has, so the backward
pass of :class:`mlplab.scratch.MLP` needs no extra forward work:

- ReLU, sigmoid and tanh derivatives read the activation's *output* ``h = f(z)``;
- pReLU's derivatives read its *input* ``z`` (with a learnable slope, ``sign(h)`` need not be
  ``sign(z)``).

All functions take and return plain tensors of any shape (elementwise) and never build an
autograd graph.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

PRELU_INIT = 0.25  # nn.PReLU's default slope (He et al. 2015, "Delving Deep into Rectifiers")


def relu(z: Tensor) -> Tensor:
    """``ReLU(z) = max(z, 0)``."""
    return torch.clamp_min(z, 0.0)


def relu_grad(h: Tensor) -> Tensor:
    """``ReLU'(z) = 1 if z > 0 else 0``, read from the output ``h = ReLU(z)`` (``h > 0`` iff ``z > 0``).

    At ``z = 0`` the derivative is taken to be 0, as in d2l "Activation Functions" and ``torch.relu``'s backward.
    Returns a boolean tensor (1 byte per element); multiplying by it is the chain rule's factor.
    """
    return h > 0


def sigmoid(z: Tensor) -> Tensor:
    """``sigmoid(z) = 1 / (1 + exp(-z))``, saturating to exactly 0 or 1 without overflow."""
    return torch.sigmoid(z)


def sigmoid_grad(h: Tensor) -> Tensor:
    """``sigmoid'(z) = sigmoid(z) (1 - sigmoid(z)) = h (1 - h)`` with ``h = sigmoid(z)``."""
    return h * (1.0 - h)


def tanh(z: Tensor) -> Tensor:
    """``tanh(z) = (1 - exp(-2z)) / (1 + exp(-2z))`` (equivalently ``2 sigmoid(2z) - 1``)."""
    return torch.tanh(z)


def tanh_grad(h: Tensor) -> Tensor:
    """``tanh'(z) = 1 - tanh(z)^2 = 1 - h^2`` with ``h = tanh(z)``."""
    return 1.0 - h * h


def prelu(z: Tensor, alpha: Tensor) -> Tensor:
    """``pReLU(z) = max(0, z) + alpha * min(0, z)`` (He et al. 2015; d2l "Activation Functions").

    ``alpha`` is a learnable slope: a tensor of shape (1,) broadcast over ``z``.
    """
    return torch.where(z > 0, z, alpha * z)


def prelu_grad(z: Tensor, alpha: Tensor) -> Tensor:
    """``d pReLU(z) / dz = 1 if z > 0 else alpha`` (``alpha`` at ``z = 0``, as ``torch``'s prelu)."""
    return torch.where(z > 0, torch.ones_like(z), alpha.expand_as(z))


def prelu_grad_alpha(z: Tensor) -> Tensor:
    """``d pReLU(z) / d alpha = min(0, z)``: the slope only acts on the negative part."""
    return torch.clamp_max(z, 0.0)


# name -> (f, f') for the parameter-free activations; f' reads the output h = f(z). pReLU, which
# has a parameter and a second derivative (by alpha), is used through its own functions above.
OUTPUT_DERIVATIVES: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "relu": (relu, relu_grad),
    "sigmoid": (sigmoid, sigmoid_grad),
    "tanh": (tanh, tanh_grad),
}
NAMES = ("relu", "sigmoid", "tanh", "prelu")
