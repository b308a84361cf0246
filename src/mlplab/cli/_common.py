"""Pieces every command shares: error reporting and the terminal console."""

from __future__ import annotations

import datetime as _dt
import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from mlplab.atomic import describe_os_error
from mlplab.errors import ConfigError, MlplabError

F = TypeVar("F", bound=Callable[..., object])

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

DEBUG_ENV = "MLPLAB_DEBUG"  # set it (or pass `mlplab --debug`) to see full tracebacks
_debug = {"on": False}  # set by the root command on every invocation


_interrupt_hint: dict[str, Callable[[], str] | None] = {"hint": None}


def on_interrupt(hint: Callable[[], str] | None) -> None:
    """What a Ctrl-C during the rest of the command should say (what is saved, how to resume)."""
    _interrupt_hint["hint"] = hint


def set_debug(on: bool) -> None:
    _debug["on"] = on


def debug_enabled() -> bool:
    return _debug["on"] or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def crash_dir() -> Path:
    """Where the full traceback of an unexpected error is written (the user's log folder)."""
    import platformdirs

    return Path(platformdirs.user_log_dir("mlplab"))


def _error(message: str) -> None:
    # the message is plain text: brackets in it (pip install "mlplab[ray]") are not rich markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True, highlight=False)


def _write_crash_report(command: str) -> Path | None:
    """Write the current exception's traceback to a new file; None when nowhere is writable."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"mlplab {command} failed at {stamp}\nargv: {sys.argv!r}\n\n{traceback.format_exc()}"
    for folder in (crash_dir(), Path(os.environ.get("TMPDIR", "/tmp"))):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"mlplab-crash-{stamp}-{os.getpid()}.txt"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def reports_errors(func: F) -> F:
    """Turn every failure of a command into one line on stderr and a non-zero exit, no traceback.

    - mlplab's own errors (bad input: they name the thing, the value and the fix): exit 2.
    - An ``OSError`` that names a file (disk full, permission denied, read-only disk): the path
      and the cause, exit 2.
    - Ctrl-C: one line saying what was saved and how to resume (see :func:`on_interrupt`), exit 130.
    - Anything else is a bug: one line saying what failed and where the full traceback was
      written, exit 1. ``mlplab --debug`` (or ``MLPLAB_DEBUG=1``) lets the traceback through.
    """

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        on_interrupt(None)
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            hint = _interrupt_hint["hint"]
            err_console.print(
                f"[bold yellow]interrupted[/]: {hint() if hint else 'nothing was saved'}",
                soft_wrap=True,
                highlight=False,
            )
            raise typer.Exit(130) from None
        except MlplabError as exc:
            _error(str(exc))
            raise typer.Exit(2) from None
        except OSError as exc:
            if debug_enabled():
                raise
            if not exc.filename:  # an OSError that names no file is not the user's to fix
                return _unexpected(func, exc)
            _error(
                f"{exc.filename}: {describe_os_error(exc)}. Fix: check the path and its permissions "
                "and free space, then run the command again."
            )
            raise typer.Exit(2) from None
        except Exception as exc:
            if debug_enabled() or _is_cli_control(exc):
                raise
            return _unexpected(func, exc)

    return wrapper  # type: ignore[return-value]


def _is_cli_control(exc: BaseException) -> bool:
    """typer's and click's own exits and usage errors (typer may vendor click: match by module)."""
    return type(exc).__module__.split(".")[0] in ("typer", "click")


def _unexpected(func: Callable, exc: BaseException) -> None:
    command = func.__name__.replace("_", " ")
    report = _write_crash_report(command)
    where = f"the full traceback is in {report}" if report else "no traceback file could be written"
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    _error(
        f"unexpected {type(exc).__name__} in `mlplab {command}`: {first}. This is a bug in mlplab; "
        f"{where} (please report it). Run with `mlplab --debug ...` to see it here."
    )
    raise typer.Exit(1) from None


def path_option(flag: str, text: str | None) -> Path | None:
    """A path flag's value; an empty one is refused (``Path("")`` would silently mean the cwd)."""
    if text is None:
        return None
    if not text.strip():
        raise ConfigError(flag, text, "an empty path would mean the current folder: name one, e.g. runs/name")
    return Path(text)


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
        except (ValueError, OverflowError):
            raise ConfigError(flag, text, f"{item.strip()!r} is not valid: {allowed}") from None
    return tuple(items)
