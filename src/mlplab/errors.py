"""Exceptions that mlplab raises for bad input.

Every message names the thing that is wrong, the value it had and how to fix it, so the CLI can
print it as is (without a traceback).
"""

from __future__ import annotations


class MlplabError(Exception):
    """Base class of mlplab's own errors: the CLI prints these without a traceback."""


class ConfigError(MlplabError, ValueError):
    """An invalid configuration value (a hyperparameter, a flag, a spec)."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field} = {value!r} is invalid: {allowed}")


def check_int(name: str, value: object, minimum: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, value, f"must be an integer >= {minimum}")


class DataError(MlplabError):
    """A data file or folder that is missing, corrupt or does not match what was expected."""
