"""The Ray backend against the local one on this machine (issue #14): overhead per task, the 10 x 10 grid.

1. Start-up: one ``run_sweep(..., backend="ray")`` of a 2-group sweep with no Ray running (it
   starts a local instance, plans on a worker, trains, shuts down), against the same sweep local.
2. Overhead per task: ``--tasks`` tiny groups (one 32-8-10 model each, 1 epoch of the synthetic
   blobs, ``max_models=1``), one torch thread everywhere: local, on a 1-CPU Ray instance (tasks
   one at a time: ``(ray seconds - local seconds) / tasks`` is the cost of a task) and on one sized
   to the machine (tasks in parallel), workers warmed by an untimed run; and the round trip of a
   task that does nothing, one after another.
3. The 10 x 10 dropout grid of d2l 4.6 (``grid.grid_spec``: 784-256-256-10, SGD lr 0.5,
   batch 256, normal(0, 0.01), 100 models) for 1 epoch on Fashion-MNIST, local (1 torch thread and
   all CPUs' worth) and on Ray with ``cpus_per_task`` 1 (tasks in parallel, one thread each) and
   ``cpus_per_task`` = all CPUs (one task at a time, all threads), each into a fresh folder, so
   SQLite writes and the ray.put of the data are included; Ray's start-up and worker start are not.

Usage: ``python bench/bench_ray.py [--data-dir DIR] [--tasks 40] [--out bench/results/ray.txt]``
(``PYTHONPATH=src`` or an installed mlplab with the ``ray`` extra). Run it under
``flock /tmp/mlplab-bench.lock``; the report is printed and written to ``--out``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout

import ray
import torch
from grid import GRID, grid_spec
from machine import cpu_name

from mlplab.data import fashion_mnist_data
from mlplab.sweep import SweepSpec, load_results, run_sweep, synthetic_data


def timed_sweep(spec: SweepSpec, data, **kwargs) -> tuple[float, object, float]:
    """(seconds, report, mean final test accuracy) of one run_sweep into a fresh folder."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        report = run_sweep(spec, data, out, **kwargs)
        seconds = time.perf_counter() - t0
        acc = float(load_results(out)["final_test_acc"].mean())
    return seconds, report, acc


def tiny_spec(n: int) -> SweepSpec:
    """``n`` one-model groups of a few milliseconds each: ``n`` learning rates, one seed."""
    return SweepSpec(
        base={"hidden": (8,), "epochs": 1, "batch_size": 512, "lr": 0.1},
        grid={"lr": tuple(round(0.01 * (i + 1), 4) for i in range(n))},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files (default: search)")
    parser.add_argument("--tasks", type=int, default=40, help="tiny groups for the per-task overhead")
    parser.add_argument("--no-grid", action="store_true", help="skip the 10 x 10 Fashion-MNIST grid")
    parser.add_argument("--out", default="bench/results/ray.txt", help="where the report is written too")
    args = parser.parse_args()

    cpus = os.cpu_count() or 1
    lines = io.StringIO()

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.write(text + "\n")

    say("# bench_ray: the Ray backend vs the local backend (issue #14)")
    say()
    say(
        f"machine: {cpu_name()}, {cpus} CPUs, no GPU; Python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"ray {ray.__version__}; load average at the start {os.getloadavg()[0]:.2f} (a shared machine)"
    )
    say(f"command: {' '.join(['python', *sys.argv])}")
    say()
    synthetic = synthetic_data()

    torch.set_num_threads(1)  # sections 1 and 2; Ray's tasks have 1 CPU each by default
    # 1. cold start: the library starts (and stops) its own local Ray instance
    two = tiny_spec(2)
    timed_sweep(two, synthetic, max_models=1)  # warm-up of this process (torch's first calls)
    local_s, _, _ = timed_sweep(two, synthetic, max_models=1)
    cold_s, _, _ = timed_sweep(two, synthetic, max_models=1, backend="ray")
    say("## 1. Start-up: a 2-group sweep with no Ray running (run_sweep starts and stops a local instance)")
    say()
    say("| backend | seconds |")
    say("|---|---|")
    say(f"| local | {local_s:.2f} |")
    say(f"| ray (local instance started by run_sweep; workers import torch) | {cold_s:.2f} |")
    say()

    # 2. per-task overhead, one thread everywhere (2 threads in a process that shares its 2 cores
    # with other work can run tiny steps 10-80x slower: see BENCHMARKS.md): local, a 1-CPU Ray
    # instance, so that its tasks run one at a time; a machine-sized one, tasks in parallel
    spec = tiny_spec(args.tasks)

    def five(**kwargs) -> list[float]:
        timed_sweep(spec, synthetic, max_models=1, **kwargs)  # warm-up: worker processes start, import torch
        return [timed_sweep(spec, synthetic, max_models=1, **kwargs)[0] for _ in range(5)]

    runs = {"local": five()}
    ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.WARNING)
    runs["serial"] = five(backend="ray")

    @ray.remote
    def nothing() -> None:
        return None

    ray.get(nothing.remote())
    t0 = time.perf_counter()
    for _ in range(50):
        ray.get(nothing.remote())
    round_trip_ms = (time.perf_counter() - t0) / 50 * 1000
    ray.shutdown()
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level=logging.WARNING)  # sized to the machine; kept for section 3
    init_s = time.perf_counter() - t0
    runs["parallel"] = five(backend="ray")
    median = {k: statistics.median(v) for k, v in runs.items()}
    say(f"## 2. Overhead per task: {args.tasks} one-model groups of the synthetic blobs, 1 epoch, 1 thread each")
    say()
    say(f"median of 5 runs after a warm-up run; ray.init of a local instance: {init_s:.2f} s (not counted)")
    say()
    say("| backend | seconds (median) | runs | per group | (ray - local) / tasks |")
    say("|---|---|---|---|---|")
    names = {
        "local": "local, 1 torch thread",
        "serial": "ray, a 1-CPU instance (one task at a time)",
        "parallel": f"ray, a {cpus}-CPU instance, cpus_per_task 1 ({cpus} tasks at a time)",
    }
    for key, name in names.items():
        per = (median[key] - median["local"]) / args.tasks * 1000
        say(
            f"| {name} | {median[key]:.3f} | {', '.join(f'{x:.2f}' for x in runs[key])} | "
            f"{median[key] / args.tasks * 1000:.1f} ms | {'' if key == 'local' else f'{per:+.1f} ms'} |"
        )
    say()
    say(f"the round trip of an empty Ray task, one after another: {round_trip_ms:.2f} ms")
    say()

    # 3. the 10 x 10 dropout grid, 1 epoch, Fashion-MNIST
    if not args.no_grid:
        with redirect_stdout(io.StringIO()):
            data = fashion_mnist_data(args.data_dir)
        grid = grid_spec(GRID, 1)
        rows = []
        for name, kwargs in (
            ("local, 1 torch thread", {"threads": 1}),
            (f"local, {cpus} torch threads", {"threads": cpus}),
            (f"ray, cpus_per_task 1 ({cpus} tasks at a time, 1 thread each)", {"backend": "ray", "cpus_per_task": 1}),
            (
                f"ray, cpus_per_task {cpus} (1 task at a time, {cpus} threads)",
                {"backend": "ray", "cpus_per_task": cpus},
            ),
        ):
            if "threads" in kwargs:
                torch.set_num_threads(kwargs.pop("threads"))
            else:  # warm workers of this shape first (their start is in section 1)
                timed_sweep(two, synthetic, max_models=1, **kwargs)
            seconds, report, acc = timed_sweep(grid, data, **kwargs)
            rows.append((name, seconds, report, acc))
            print(f"  {name}: {seconds:.1f} s", flush=True)
        say("## 3. The 10 x 10 dropout grid (784-256-256-10, 100 models), 1 epoch, Fashion-MNIST")
        say()
        say("| backend | groups x models | seconds | s per model-epoch | vs local | mean test acc |")
        say("|---|---|---|---|---|---|")
        base = rows[0][1]
        for name, seconds, report, acc in rows:
            say(
                f"| {name} | {report.groups} x <= {report.max_models} | {seconds:.1f} | {seconds / 100:.3f} | "
                f"{seconds / base:.2f}x | {acc:.4f} |"
            )
        say()
    ray.shutdown()
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(lines.getvalue())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
