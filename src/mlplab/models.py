"""Concise MLPs built from ``torch.nn`` (d2l 4.3 "多层感知机的简洁实现", concise implementation).

A model is described by a :class:`ModelConfig` (validated once) and built by :func:`build_mlp`:
``Flatten -> [Linear -> activation -> Dropout?] * len(hidden) -> Linear``. Weights are drawn from
an explicit ``torch.Generator``; biases start at zero (``bias=False``: no Linear has one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mlplab.errors import ConfigError, check_choice, check_int, check_probability
from mlplab.init import INIT_FORMS, InitSpec, parse_init

__all__ = ["ACTIVATIONS", "INIT_FORMS", "InitSpec", "ModelConfig", "build_mlp", "parse_init"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "prelu": nn.PReLU,  # one learnable slope per layer, initialised to 0.25 (He et al. 2015)
}


def _as_tuple(values: Sequence[float] | float | None) -> tuple[float, ...]:
    if values is None:
        return ()
    if isinstance(values, (int, float)):
        return (float(values),)
    return tuple(values)


@dataclass(frozen=True)
class ModelConfig:
    """An MLP: sizes, activation, dropout and initialization. Validated on construction."""

    hidden: tuple[int, ...] = (256,)  # widths of the hidden layers; () is softmax regression
    activation: str = "relu"  # one of ACTIVATIONS
    dropout: tuple[float, ...] = ()  # p after each hidden layer; one value applies to all; () none
    init: str = "normal:0.01"  # see InitSpec; the chapter's from-scratch default
    n_inputs: int = 784  # 28 x 28 Fashion-MNIST pixels
    n_outputs: int = 10  # classes, or the width of a regression target
    bias: bool = True  # False: no Linear has a bias (the book's polynomial net, nn.Linear(d, 1, bias=False), 4.4)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "dropout", _as_tuple(self.dropout))
        for i, width in enumerate(self.hidden):
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise ConfigError(f"hidden[{i}]", width, "layer widths must be integers >= 1")
        for name in ("n_inputs", "n_outputs"):
            check_int(name, getattr(self, name), 1)
        check_choice("activation", self.activation, ACTIVATIONS)
        if not isinstance(self.bias, bool):
            raise ConfigError("bias", self.bias, "must be true or false (false: Linear layers without a bias)")
        if self.dropout and not self.hidden:
            raise ConfigError("dropout", self.dropout, "dropout needs at least one hidden layer")
        if len(self.dropout) not in (0, 1, len(self.hidden)):
            raise ConfigError(
                "dropout",
                self.dropout,
                f"give one probability for all hidden layers or one per hidden layer ({len(self.hidden)})",
            )
        for i, p in enumerate(self.dropout):
            check_probability(f"dropout[{i}]", p)
        parse_init(self.init)

    @property
    def sizes(self) -> list[int]:
        """All layer widths, input to output, e.g. ``[784, 256, 10]``."""
        return [self.n_inputs, *self.hidden, self.n_outputs]

    @property
    def dropout_per_layer(self) -> tuple[float, ...]:
        """The dropout probability after each hidden layer (zeros when none)."""
        if not self.dropout:
            return (0.0,) * len(self.hidden)
        return self.dropout * len(self.hidden) if len(self.dropout) == 1 else self.dropout


def build_mlp(
    config: ModelConfig, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
) -> nn.Sequential:
    """Build the MLP that ``config`` describes, weights drawn from ``generator``.

    Example
    -------
    >>> net = build_mlp(ModelConfig(hidden=(256,)), torch.Generator().manual_seed(0))
    >>> net(torch.zeros(2, 784)).shape
    torch.Size([2, 10])
    """
    init = parse_init(config.init)
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = config.sizes
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        # built on the meta device: no memory, and no draw from the global RNG for a default init
        layers.append(nn.Linear(n_in, n_out, bias=config.bias, device="meta"))
        if i < len(config.hidden):
            layers.append(ACTIVATIONS[config.activation]())
            p = config.dropout_per_layer[i]
            if p > 0:
                layers.append(nn.Dropout(p))
    net = _materialize(nn.Sequential(*layers), device)
    for module in net:
        if isinstance(module, nn.Linear):
            init.init_(module.weight, generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.PReLU):
            nn.init.constant_(module.weight, 0.25)
    return net


def _materialize(net: nn.Module, device: str | torch.device) -> nn.Module:
    """``net.to_empty(device=device)``: every parameter replaced by uninitialized memory on ``device``.

    Written out because ``to_empty`` calls ``empty_like`` on the meta tensors, whose Python
    reference implementation imports sympy: 0.4 s of a CPU process's start-up to its first step.
    """
    for module in net.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            empty = torch.empty(p.shape, dtype=p.dtype, device=device)
            setattr(module, name, nn.Parameter(empty, requires_grad=p.requires_grad))
    return net
