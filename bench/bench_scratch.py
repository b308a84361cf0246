"""Scratch vs concise MLP on Fashion-MNIST: seconds per epoch and final test accuracy, side by side.

Both models train through the same ``mlplab.train.fit`` with the chapter's defaults (784-256-10,
ReLU, normal:0.01, SGD lr 0.1, batch 256), from the same initial weights (equal seeds give equal
draws) and the same batch order. Runs alternate between the two implementations, seed by seed,
in one process, so that both see the same machine state. Prints a markdown table (and writes it
with ``--out``).

    flock /tmp/mlplab-bench.lock python bench/bench_scratch.py --out bench/scratch_results.md
    python bench/bench_scratch.py --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import cpu_name

from mlplab.atomic import write_text
from mlplab.data import fashion_mnist_data
from mlplab.models import ModelConfig, build_mlp
from mlplab.scratch import MLP
from mlplab.train import TrainConfig, fit

IMPLS = ("concise", "scratch")


def build(impl: str, seed: int):
    generator = torch.Generator().manual_seed(seed)
    if impl == "concise":
        return build_mlp(ModelConfig(), generator)
    return MLP([784, 256, 10], "relu", init="normal:0.01", generator=generator)


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (chapter: 10)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1, each trained with both models")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 2 seeds: a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST folder (default: the usual search)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.seeds = 2, 2
    if args.threads:
        torch.set_num_threads(args.threads)

    data = fashion_mnist_data(args.data_dir)
    for impl in IMPLS:  # warm-up: first-call costs (allocator, kernels) are not per-epoch costs
        fit(build(impl, 0), data, TrainConfig(epochs=1))

    results: dict[str, dict[str, list[float]]] = {impl: {"sec": [], "acc": [], "best": []} for impl in IMPLS}
    started = time.perf_counter()
    for seed in range(args.seeds):
        order = IMPLS if seed % 2 == 0 else IMPLS[::-1]
        for impl in order:
            history = fit(build(impl, seed), data, TrainConfig(epochs=args.epochs, seed=seed))
            seconds = statistics.median(r.seconds for r in history.records)
            results[impl]["sec"].append(seconds)
            results[impl]["acc"].append(history.final.test_acc)
            results[impl]["best"].append(max(history.column("test_acc")))
            print(
                f"seed {seed} {impl:>7}: {seconds:.3f} s/epoch (median), test acc {history.final.test_acc:.4f}",
                file=sys.stderr,
                flush=True,
            )

    ratios = [s / c for s, c in zip(results["scratch"]["sec"], results["concise"]["sec"])]
    saved = MLP([784, 256, 10]).saved_bytes_per_sample()
    lines = [
        f"## Scratch vs concise MLP, Fashion-MNIST 784-256-10 (ReLU, normal:0.01, SGD lr 0.1, batch 256, "
        f"{args.epochs} epochs, seeds 0-{args.seeds - 1})",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        f"Command: `python bench/bench_scratch.py {' '.join(sys.argv[1:])}` ({time.perf_counter() - started:.0f} s).",
        "",
        "| model | s/epoch (mean ± sd over seeds of the per-run median) | final test acc (mean ± sd) "
        "| final: median, min - max | best epoch's test acc (mean ± sd) |",
        "|---|---|---|---|---|",
    ]
    for impl in IMPLS:
        r = results[impl]
        lines.append(
            f"| {impl} | {mean_sd(r['sec'])} | {mean_sd(r['acc'])} | {statistics.median(r['acc']):.4f}, "
            f"{min(r['acc']):.4f} - {max(r['acc']):.4f} | {mean_sd(r['best'])} |"
        )
    lines += [
        "",
        f"Time ratio scratch / concise, per seed: mean {statistics.mean(ratios):.3f}, "
        f"min {min(ratios):.3f}, max {max(ratios):.3f} (target: <= 1.5).",
        f"Final test accuracy >= 0.84: concise {sum(a >= 0.84 for a in results['concise']['acc'])}/{args.seeds} seeds, "
        f"scratch {sum(a >= 0.84 for a in results['scratch']['acc'])}/{args.seeds}.",
        f"Seconds per epoch include fit's evaluation on the 10,000 test images. The scratch forward pass keeps "
        f"{saved:,} bytes per example for the backward pass ({saved * 256 / 2**20:.2f} MiB per batch of 256).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
