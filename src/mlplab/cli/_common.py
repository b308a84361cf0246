"""Pieces every command shares: error reporting and the terminal console."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import typer
from rich.console import Console

from mlplab.errors import ConfigError, MlplabError

F = TypeVar("F", bound=Callable[..., object])

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def reports_errors(func: F) -> F:
    """Turn mlplab's own errors into a one-line message and exit status 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except MlplabError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def parse_csv(flag: str, text: str, kind: type, allowed: str) -> tuple:
    """Parse a comma list such as ``--hidden 256,256`` into a tuple of ``kind``.

    An empty string gives ``()``. A bad item raises ConfigError naming the flag and the item.
    """
    text = text.strip()
    if not text:
        return ()
    items = []
    for item in text.split(","):
        try:
            items.append(kind(item.strip()))
        except ValueError:
            raise ConfigError(flag, text, f"{item.strip()!r} is not valid: {allowed}") from None
    return tuple(items)
