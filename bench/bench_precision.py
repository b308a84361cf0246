"""bf16 against fp32 (``TrainConfig.precision``): the speed and the accuracy it costs, on one machine.

1. **Speed**, side by side in one process and alternated, so that a change of load hits both:
   the dropout grid's cells (784-256-256-10, ReLU, dropout p1/p2, SGD lr 0.5, batch 256,
   normal(0, 0.01), Fashion-MNIST; ``grid.sub_grid``) trained by ``train_group`` as one
   group, seconds per model-epoch (training and the test evaluation), in fp32 (on a CPU the
   fused step, the default), fp32 with the autograd step, and bf16 (autograd under autocast);
   then ``fit`` of the chapter's MLP (784-256-10, SGD lr 0.1, batch 256) in both.
2. **Accuracy**: the same cells for ``--seeds`` seeds and ``--epochs`` epochs in fp32 and in
   bf16 (a sweep with ``precision`` as a grid axis would train the same models). Per cell, is
   bf16's mean final test accuracy inside fp32's 95% t interval over the seeds (the issue's "within
   the 3-seed CI of FP32")? And bf16 - fp32 paired by (cell, seed), with its 95% t interval.

On a CPU bf16 pays where it has AVX-512 BF16 (or AMX): oneDNN's bfloat16 products are several
times faster than float32's there, and slower than float32 where the CPU lacks it. On CUDA use
``bench/gpu.sh`` (``--device cuda``; TF32 is the fp32 baseline there).

Usage (serialize benchmarks whose numbers are reported: other processes on the cores distort them):

    flock /tmp/mlplab-bench.lock env PYTHONPATH=src python bench/bench_precision.py \\
        --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch
from grid import grid_spec, sub_grid
from machine import cpu_name

from mlplab.data import fashion_mnist_data
from mlplab.models import ModelConfig, build_mlp
from mlplab.stats import mean_ci, paired
from mlplab.sweep import train_group
from mlplab.sweep.runner import tf32_matmuls
from mlplab.train import TrainConfig, fit


def trials_of(cells: int, epochs: int, precision: str, seed: int):
    spec = grid_spec(sub_grid(cells), epochs)
    return [
        dataclasses.replace(t, train=dataclasses.replace(t.train, precision=precision, seed=seed))
        for t in spec.trials(n_inputs=784, n_outputs=10)
    ]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_speed(data, cells: int, repeats: int, device: str) -> dict[str, float]:
    """Seconds per model-epoch of one group epoch, fastest of ``repeats`` alternated runs."""
    runs = {"fp32": dict(precision="fp32"), "fp32 autograd": dict(precision="fp32", fused=False)}
    runs |= {"bf16": dict(precision="bf16"), "bf16 autograd": dict(precision="bf16", fused=False)}
    if device != "cpu":  # by default the fused step is the CPU's (bench_step.py measures it on CUDA)
        runs = {name: how for name, how in runs.items() if "fused" not in how}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats + 1):  # the first round warms up
        for name, how in runs.items():
            trials = trials_of(cells, 1, how["precision"], 0)
            sync(device)
            t0 = time.perf_counter()
            train_group(trials, data, device, fused=how.get("fused"))
            sync(device)
            seconds = (time.perf_counter() - t0) / len(trials)
            if _ > 0:
                best[name] = min(best[name], seconds)
    return best


def bench_fit(data, epochs: int, repeats: int, device: str) -> dict[str, tuple[float, float]]:
    """The chapter MLP's epochs' seconds and final test accuracy (seed 0) per precision (on CUDA
    also with its full-batch steps replayed from CUDA graphs, ``fit(cuda_graphs=True)``)."""
    variants = {"fp32": ("fp32", False), "bf16": ("bf16", False)}
    if device.startswith("cuda"):
        variants |= {"fp32, CUDA graphs": ("fp32", True), "bf16, CUDA graphs": ("bf16", True)}
    out = {}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (precision, graphs) in variants.items():
            config = TrainConfig(epochs=epochs, lr=0.1, batch_size=256, device=device, precision=precision)
            net = build_mlp(ModelConfig(hidden=(256,), init="normal:0.01"), torch.Generator().manual_seed(0))
            history = fit(net, data, config, cuda_graphs=graphs)
            times[name].append(sum(r.seconds for r in history.records))
            out[name] = (min(times[name]), history.final.test_acc)
    return out


def bench_accuracy(data, cells: int, seeds: int, epochs: int, device: str) -> dict:
    """Final test accuracy per (cell, seed) in both precisions, and the wall seconds of each."""
    acc: dict[str, dict[tuple, float]] = {"fp32": {}, "bf16": {}}
    seconds: dict[str, list[float]] = {precision: [] for precision in acc}  # one entry per seed
    for seed in range(seeds):
        for precision in acc:
            trials = trials_of(cells, epochs, precision, seed)
            t0 = time.perf_counter()
            results = train_group(trials, data, device)
            sync(device)
            seconds[precision].append(time.perf_counter() - t0)
            for t, r in zip(trials, results):
                acc[precision][(t.model.dropout_per_layer, seed)] = r.history.final.test_acc
    return {"acc": acc, "seconds": seconds}


def report_accuracy(a: dict, seeds: int, epochs: int) -> None:
    acc = a["acc"]
    cells = sorted({cell for cell, _ in acc["fp32"]})
    print(f"### Accuracy: {len(cells)} cells x {seeds} seeds x {epochs} epochs, final test accuracy\n")
    print("| cell (p1, p2) | fp32 mean ± 95% CI | bf16 mean | bf16 inside fp32's CI |")
    print("|---|---|---|---|")
    inside = 0
    for cell in cells:
        f = mean_ci([acc["fp32"][(cell, s)] for s in range(seeds)])
        b = mean_ci([acc["bf16"][(cell, s)] for s in range(seeds)])
        ok = abs(b.mean - f.mean) <= f.half_width
        inside += ok
        print(
            f"| {cell[0]:.1f}, {cell[1]:.1f} | {f.mean:.4f} ± {f.half_width:.4f} | {b.mean:.4f} | {'yes' if ok else 'no'} |"
        )
    pairs = sorted(acc["fp32"])
    index = {key: i for i, key in enumerate(pairs)}
    versus = paired(
        {index[k]: acc["bf16"][k] for k in pairs},
        {index[k]: acc["fp32"][k] for k in pairs},
        labels=("bf16", "fp32"),
        metric="test accuracy",
    )
    d = versus.difference
    print(
        f"\nbf16 inside fp32's {seeds}-seed 95% interval in {inside} of {len(cells)} cells; "
        f"bf16 - fp32 {d.mean:+.4f} ± {d.half_width:.4f} (95% t interval, paired by cell and seed, n = {d.n})"
    )
    s = {precision: sum(runs) for precision, runs in a["seconds"].items()}
    fastest = {precision: min(runs) for precision, runs in a["seconds"].items()}
    print(
        f"\nwall time of the accuracy runs: fp32 {s['fp32']:.1f} s, bf16 {s['bf16']:.1f} s ({s['fp32'] / s['bf16']:.2f}x); "
        f"one run of the {len(cells)} cells x {epochs} epochs (training and test evaluation, fastest seed): "
        f"fp32 {fastest['fp32']:.2f} s, bf16 {fastest['bf16']:.2f} s\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files (default: search)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tf32", action="store_true", help="CUDA: fp32 products in TF32 (the GPU's fp32 baseline)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--cells", type=int, default=20, help="dropout-grid cells per group")
    parser.add_argument("--repeats", type=int, default=2, help="alternated timed repeats (the fastest is kept)")
    parser.add_argument("--fit-epochs", type=int, default=10, help="epochs of the chapter MLP (0 to skip)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the accuracy comparison (0 to skip it)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the accuracy comparison")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = fashion_mnist_data(args.data_dir, download=False, device=args.device)
    where = (
        f"{cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads"
        if args.device == "cpu"
        else f"{torch.cuda.get_device_name()}; torch {torch.__version__}{', TF32' if args.tf32 else ''}"
    )
    print("## bf16 against fp32 (`TrainConfig.precision`)\n")
    print(f"machine: {where}\n")
    with tf32_matmuls(args.tf32, torch.device(args.device)):
        speed = bench_speed(data, args.cells, args.repeats, args.device)
        print(f"### Speed: {args.cells} dropout-grid cells as one group, 1 epoch, fastest of {args.repeats}\n")
        print("| | s per model-epoch | relative to fp32 |")
        print("|---|---|---|")
        for name, seconds in speed.items():
            print(f"| {name} | {seconds:.3f} | {seconds / speed['fp32']:.2f}x |")
        if args.fit_epochs:
            f = bench_fit(data, args.fit_epochs, args.repeats, args.device)
            print(
                f"\n### The chapter's MLP (784-256-10, SGD lr 0.1), {args.fit_epochs} epochs, fastest of {args.repeats}\n"
            )
            print("| | its epochs' seconds | relative to fp32 | final test accuracy (seed 0) |")
            print("|---|---|---|---|")
            for name, (seconds, acc) in f.items():
                print(f"| fit, {name} | {seconds:.2f} | {seconds / f['fp32'][0]:.2f}x | {acc:.4f} |")
        print()
        if args.seeds:
            report_accuracy(
                bench_accuracy(data, args.cells, args.seeds, args.epochs, args.device), args.seeds, args.epochs
            )


if __name__ == "__main__":
    main()
