"""Exceptions that mlplab raises for bad input, and the checks that raise them.

Every message names the thing that is wrong, the value it had and how to fix it, so the CLI can
print it as is (without a traceback). Configs validate their fields with the ``check_*``
functions below, so one kind of value is checked, and described, the same way everywhere.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

#: Largest finite float32: a learning rate or penalty above it cannot even be stored in a weight's dtype.
FLOAT32_MAX = 3.4028234663852886e38
#: Seeds are 63-bit: torch generators take them, and they survive a round trip through SQLite/JSON.
MAX_SEED = 2**63 - 1


class MlplabError(Exception):
    """Base class of mlplab's own errors: the CLI prints these without a traceback."""


class ConfigError(MlplabError, ValueError):
    """An invalid configuration value (a hyperparameter, a flag, a spec)."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field} = {value!r} is invalid: {allowed}")


class DataError(MlplabError):
    """A data file or folder that is missing, corrupt or does not match what was expected."""


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer (not a bool) in ``[minimum, maximum]``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        upper = "" if maximum is None else f" and <= {maximum:,}"
        raise ConfigError(name, value, f"must be an integer >= {minimum}{upper}")


def check_seed(name: str, value: object, maximum: int = MAX_SEED) -> None:
    """A seed: an integer in ``[0, maximum]`` (default ``2**63 - 1``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= maximum:
        raise ConfigError(name, value, f"a seed must be an integer >= 0 and <= {maximum}")


def check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = FLOAT32_MAX,
    *,
    low_open: bool = False,
    high_open: bool = False,
    what: str = "",
) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite real number within the bounds.

    ``low``/``high`` are closed ends unless ``low_open``/``high_open``; ``None`` leaves that end
    free. The upper end defaults to the largest float32, so a value that training cannot even
    represent is refused up front. ``what`` names the quantity in the message ("the learning rate").
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ConfigError(name, value, f"{what or 'it'} must be {describe_range(low, high, low_open, high_open)}")


def describe_range(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    """``"a finite number > 0"``, ``"a number in [0, 1)"``: how :func:`check_real` words its bounds."""
    if low is not None and high is not None and high != FLOAT32_MAX:
        return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return "a finite number" + (" " + " and ".join(parts) if parts else "")


def check_probability(name: str, value: object, *, one: bool = False) -> None:
    """A probability in ``[0, 1)`` (dropout: p = 1 would drop everything), or ``[0, 1]`` with ``one``."""
    check_real(name, value, 0.0, 1.0, high_open=not one, what="a probability")


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(name, value, f"expected one of {', '.join(choices)}")
