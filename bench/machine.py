"""The machine a benchmark ran on, as its report names it."""

from __future__ import annotations

import platform
import subprocess


def cpu_name() -> str:
    """The CPU's model name from ``lscpu`` (e.g. ``AMD EPYC``), else what ``platform`` knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"
