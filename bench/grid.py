"""The study log's 10 x 10 dropout grid (d2l 4.6, exercise 1) as sweep specs, for the benchmarks.

A module of its own, importing only ``mlplab.sweep``'s spec, so that ``bench_first_step.py``'s
child process pays no import beyond what a sweep itself needs (``bench_sweep`` pulls in pandas
and scipy, about a second at start-up).
"""

from __future__ import annotations

from mlplab.sweep.spec import SweepSpec

GRID = [(round(0.1 * i, 1), round(0.1 * j, 1)) for i in range(10) for j in range(10)]  # (p1, p2)


def grid_spec(cells, epochs: int) -> SweepSpec:
    """The study log's dropout-grid cells ``(p1, p2)`` as a sweep (the rows and columns they span)."""
    return SweepSpec(
        base={
            "hidden": (256, 256),
            "epochs": epochs,
            "lr": 0.5,
            "batch_size": 256,
            "optimizer": "sgd",
            "init": "normal:0.01",
        },
        grid={"dropout1": sorted({c[0] for c in cells}), "dropout2": sorted({c[1] for c in cells})},
    )


def sub_grid(n: int) -> list[tuple[float, float]]:
    """About ``n`` cells of the 10x10 grid: whole rows (p2 takes all 10 values), rows spread over p1."""
    k = min(10, max(1, n // 10))
    rows = {round(9 * i / (k - 1)) if k > 1 else 0 for i in range(k)}  # numpy.linspace(0, 9, k).round()
    return [c for c in GRID if round(c[0] * 10) in rows]
