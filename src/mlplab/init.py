"""Weight initialization specs shared by the concise and the scratch MLP (d2l 4.8 "Numerical
Stability and Initialization").

An :class:`InitSpec` holds the formula; ``mlplab.models`` applies it to ``nn.Linear`` weights and
``mlplab.scratch.init`` to scratch ones, so both implementations start from the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mlplab.errors import ConfigError, check_real

INIT_FORMS = "normal:STD (e.g. normal:0.01), xavier, xavier_normal, he"


@dataclass(frozen=True)
class InitSpec:
    """A weight initialization: ``kind`` in normal / xavier / xavier_normal / he.

    - ``normal:STD``: ``W ~ N(0, STD^2)`` (the chapter's default, ``normal:0.01``).
    - ``xavier``: ``W ~ U(-a, a)``, ``a = sqrt(6 / (n_in + n_out))`` (Glorot & Bengio 2010; d2l 4.8.2).
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
        check_real(field_name, std, 0.0, low_open=True, what="the standard deviation of normal:STD")
        return InitSpec("normal", std)
    if kind in ("xavier", "xavier_normal", "he") and not arg:
        return InitSpec(kind)
    raise ConfigError(field_name, text, f"expected one of {INIT_FORMS}")
