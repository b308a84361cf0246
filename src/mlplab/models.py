"""Concise MLPs built from ``torch.nn`` (d2l 5.2 "Concise Implementation of Multilayer Perceptrons").

A model is described by a :class:`ModelConfig` (validated once) and built by :func:`build_mlp`:
``Flatten -> [Linear -> activation -> Dropout?] * len(hidden) -> Linear``. Weights are drawn from
an explicit ``torch.Generator``; biases start at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from mlplab.errors import ConfigError, check_int

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "prelu": nn.PReLU,  # one learnable slope per layer, initialised to 0.25 (He et al. 2015)
}
INIT_FORMS = "normal:STD (e.g. normal:0.01), xavier, xavier_normal, he"


@dataclass(frozen=True)
class InitSpec:
    """A weight initialization: ``kind`` in normal / xavier / xavier_normal / he.

    - ``normal:STD``: ``W ~ N(0, STD^2)`` (the chapter's default, ``normal:0.01``).
    - ``xavier``: ``W ~ U(-a, a)``, ``a = sqrt(6 / (n_in + n_out))`` (Glorot & Bengio 2010; d2l 5.4.2).
    - ``xavier_normal``: ``W ~ N(0, 2 / (n_in + n_out))``.
    - ``he``: ``W ~ N(0, 2 / n_in)`` (He et al. 2015), for ReLU networks.
    """

    kind: str
    std: float | None = None

    def __str__(self) -> str:
        return f"normal:{self.std:g}" if self.kind == "normal" else self.kind

    def std_for(self, n_in: int, n_out: int) -> float:
        """Standard deviation of the weights this spec draws for a layer of the given fan-in/out."""
        if self.kind == "normal":
            return float(self.std)  # type: ignore[arg-type]
        if self.kind in ("xavier", "xavier_normal"):
            return math.sqrt(2.0 / (n_in + n_out))
        return math.sqrt(2.0 / n_in)

    def init_(self, weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Fill ``weight`` (shape ``(n_out, n_in)`` as in ``nn.Linear``) in place."""
        n_out, n_in = weight.shape
        std = self.std_for(n_in, n_out)
        with torch.no_grad():
            if self.kind == "xavier":
                bound = math.sqrt(3.0) * std  # U(-a, a) has variance a^2 / 3
                return weight.uniform_(-bound, bound, generator=generator)
            return weight.normal_(0.0, std, generator=generator)


def parse_init(text: str | InitSpec, field_name: str = "init") -> InitSpec:
    """Parse ``normal:0.01``, ``xavier``, ``xavier_normal`` or ``he`` into an :class:`InitSpec`."""
    if isinstance(text, InitSpec):
        return text
    kind, _, arg = str(text).strip().lower().partition(":")
    if kind == "normal":
        try:
            std = float(arg)
        except ValueError:
            raise ConfigError(field_name, text, f"normal needs a standard deviation: {INIT_FORMS}") from None
        if not math.isfinite(std) or std <= 0:
            raise ConfigError(field_name, text, "the standard deviation must be a finite number > 0")
        return InitSpec("normal", std)
    if kind in ("xavier", "xavier_normal", "he") and not arg:
        return InitSpec(kind)
    raise ConfigError(field_name, text, f"expected one of {INIT_FORMS}")


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
    n_outputs: int = 10  # classes

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "dropout", _as_tuple(self.dropout))
        for i, width in enumerate(self.hidden):
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise ConfigError(f"hidden[{i}]", width, "layer widths must be integers >= 1")
        for name in ("n_inputs", "n_outputs"):
            check_int(name, getattr(self, name), 1)
        if self.activation not in ACTIVATIONS:
            raise ConfigError("activation", self.activation, f"expected one of {', '.join(ACTIVATIONS)}")
        if self.dropout and not self.hidden:
            raise ConfigError("dropout", self.dropout, "dropout needs at least one hidden layer")
        if len(self.dropout) not in (0, 1, len(self.hidden)):
            raise ConfigError(
                "dropout", self.dropout,
                f"give one probability for all hidden layers or one per hidden layer ({len(self.hidden)})",
            )  # fmt: skip
        for i, p in enumerate(self.dropout):
            if not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
                raise ConfigError(f"dropout[{i}]", p, "a dropout probability must be in [0, 1)")
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


def build_mlp(config: ModelConfig, generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> nn.Sequential:
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
        layers.append(nn.Linear(n_in, n_out, device="meta"))
        if i < len(config.hidden):
            layers.append(ACTIVATIONS[config.activation]())
            p = config.dropout_per_layer[i]
            if p > 0:
                layers.append(nn.Dropout(p))
    net = nn.Sequential(*layers).to_empty(device=device)
    for module in net:
        if isinstance(module, nn.Linear):
            init.init_(module.weight, generator)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.PReLU):
            nn.init.constant_(module.weight, 0.25)
    return net
