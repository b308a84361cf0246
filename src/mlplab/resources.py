"""Will it fit? Memory estimates checked before any work, so a typo like ``--hidden 1000000000``
is refused in milliseconds with the size it would need, instead of a 3 TB allocation.
"""

from __future__ import annotations

import os

import torch

from mlplab.errors import MlplabError


class ResourceError(MlplabError):
    """A request larger than this machine (or than a sane limit): names the size and the fix."""


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Memory that a new allocation on ``device`` may use: free GPU memory, or available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**62  # unknown: do not refuse


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``3.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def mlp_training_bytes(sizes: tuple[int, ...] | list[int], batch_size: int, optimizer: str = "sgd") -> int:
    """A lower estimate of the memory one MLP with layer ``sizes`` needs while it trains.

    Parameters and their gradients (plus Adam's two moments) and, per layer, the activations of
    a batch kept for backward. Float32.
    """
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    states = 2 + (2 if optimizer in ("adam", "adamw") else 0)
    return 4 * (states * n_params + 2 * batch_size * sum(sizes[1:]))


def check_fits(what: str, needed: int, device: torch.device | str = "cpu", fix: str = "") -> None:
    """Raise :class:`ResourceError` when ``needed`` bytes exceed what ``device`` has available."""
    have = available_bytes(device)
    if needed > have:
        raise ResourceError(
            f"{what} needs at least {format_bytes(needed)} of memory; {torch.device(device)} has "
            f"{format_bytes(have)} available. Fix: {fix or 'use smaller settings'}."
        )
