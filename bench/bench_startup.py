"""Start-up time of the CLI: ``mlplab --help`` and ``mlplab --version``, for one or more source trees.

Compares trees side by side in one run (alternating, median of N), e.g. the current tree against
an older commit checked out with ``git worktree add /tmp/old REV``::

    python bench/bench_startup.py --src src --src /tmp/old/src --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from machine import cpu_name


def seconds(src: str, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    code = "import sys; from mlplab.cli import main; sys.argv = ['mlplab', *sys.argv[1:]]; main()"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, check=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", required=True, help="a source folder holding mlplab/ (repeatable)")
    parser.add_argument("--repeats", type=int, default=7, help="runs per tree and command (median reported)")
    opts = parser.parse_args()
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(opts.repeats):  # alternate trees, so a busy moment hits both alike
        for src in opts.src:
            for command in ("--help", "--version"):
                times.setdefault((src, command), []).append(seconds(src, [command]))
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; median of {opts.repeats}")
    print("| tree | `mlplab --help` | `mlplab --version` |\n|---|---|---|")
    for src in opts.src:
        row = [f"{statistics.median(times[(src, c)]):.2f} s" for c in ("--help", "--version")]
        print(f"| {src} | {' | '.join(row)} |")


if __name__ == "__main__":
    main()
