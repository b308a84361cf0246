"""The sweep's training step three ways, and where each spends its time (issue #15).

The dropout grid's cells (784-256-256-10, ReLU, dropout p1/p2, SGD lr 0.5, batch 256,
normal(0, 0.01), Fashion-MNIST; ``grid.sub_grid``) trained by ``train_group`` as one group,
``--epochs`` epochs, with each form of the step:

- **autograd**: forward, ``torch.autograd.grad``, the batched optimizer (CUDA's default today);
- **fused**: :mod:`mlplab.sweep.fused`, the update inside the weight-gradient products (the
  CPU's default; on CUDA its capturable form, ``train_group(fused=True)``);
- **fused + compiled**: the same with its elementwise work as ``torch.compile``'d kernels
  (``compiled=True``: Triton on CUDA, C++ on a CPU).

Each in fp32 (``--tf32`` on CUDA) and bf16, once per seed (``--seeds``, 3 by default): the first
run's extra time over the fastest is its start-up (compiling, CUDA graph capture),
stated beside it. Accuracy as the issue asks: in how many cells each form's mean final test
accuracy over the seeds lies inside the 95% t interval of the full-precision fp32 autograd step's
(TF32 off), and the form minus that baseline paired by seed (each seed's mean over the cells),
with its 95% t interval.
Then ``--profile-steps`` eager steps of each form (``cuda_graphs=False``: the same kernels, one
by one) under the torch profiler: time per step in the matrix products against everything else,
and the kernels per step. Beside it, the first layer's products as K products (what the step does)
against one product over K*h columns (the issue's "first layer as one GEMM"), in each precision.

Usage (on a GPU through ``bench/gpu.sh``; on a CPU serialize it with other benchmarks):

    PYTHONPATH=src:bench python bench/bench_step.py --device cuda --tf32 --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections import defaultdict

import torch
from bench_limit import first_layer_shapes
from bench_precision import sync, trials_of
from bench_sweep import _Profiled, machine
from grid import sub_grid

from mlplab.data import fashion_mnist_data
from mlplab.stats import mean_ci, paired
from mlplab.sweep import train_group
from mlplab.sweep.runner import tf32_matmuls

FORMS = {"autograd": dict(fused=False), "fused": dict(fused=True), "fused + compiled": dict(fused=True, compiled=True)}
# kernel names (CUDA) and operators (CPU) that are matrix products
# (cuBLAS names them sm90_xmma_gemm_*, nvjet_* on Hopper with CUDA 12.8+, *gemv*, splitKreduce_*)
GEMM = re.compile(
    r"gemm|gemv|xmma|nvjet|cutlass|cublas|splitKreduce|wgmma|\bmma|triton_(mm|bmm|tem)"
    r"|aten::(bmm|baddbmm|mm|addmm|matmul)_?$",
    re.IGNORECASE,
)


def runs_over_seeds(data, cells: int, epochs: int, device: str, precision: str, how: dict, seeds: int) -> dict:
    """Each seed's wall seconds (the first includes the start-up) and final test accuracy per (cell, seed)."""
    seconds, acc = [], {}
    for seed in range(seeds):
        trials = trials_of(cells, epochs, precision, seed)
        sync(device)
        t0 = time.perf_counter()
        results = train_group(trials, data, device, **how)
        sync(device)
        seconds.append(time.perf_counter() - t0)
        acc |= {(t.model.dropout_per_layer, seed): r.history.final.test_acc for t, r in zip(trials, results)}
    return {"seconds": seconds, "acc": acc}


def against(acc: dict, base: dict, seeds: int) -> tuple[str, str]:
    """("k of n" cells whose mean lies inside the baseline's interval, "mean ± half-width" of acc - base).

    The difference is paired by seed, each seed's mean over the cells (the cells of one seed share
    its initial weights and batch order, so they are not independent pairs).
    """
    cells = sorted({cell for cell, _ in base})
    inside = "n/a (1 seed)"
    if seeds > 1:
        ci = {c: mean_ci([base[(c, s)] for s in range(seeds)]) for c in cells}
        mean = {c: sum(acc[(c, s)] for s in range(seeds)) / seeds for c in cells}
        inside = f"{sum(abs(mean[c] - ci[c].mean) <= ci[c].half_width for c in cells)} of {len(cells)}"
    per_seed = [{s: sum(a[(c, s)] for c in cells) / len(cells) for s in range(seeds)} for a in (acc, base)]
    d = paired(*per_seed).difference
    return inside, f"{d.mean:+.4f} ± {d.half_width:.4f}" if seeds > 1 else f"{d.mean:+.4f}"


def profile_step(data, cells: int, steps: int, device: str, precision: str, how: dict) -> dict:
    """Per eager step: milliseconds in matrix products, in everything else, kernels launched, top others."""
    from torch.profiler import ProfilerActivity, profile, schedule

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    trials = trials_of(cells, 1, precision, 0)
    with profile(activities=activities, schedule=schedule(wait=5, warmup=5, active=steps, repeat=1)) as prof:
        train_group(trials, data, device, [_Profiled(prof)], cuda_graphs=False, **how)
    per_name: dict[str, float] = defaultdict(float)
    kernels = 0
    if cuda:  # the kernels themselves, by their device time
        for e in prof.events():  # not the GPU-side spans of the profiler's own step annotations
            user = getattr(e, "is_user_annotation", False) or e.name.startswith("ProfilerStep")
            if e.device_type == torch.autograd.DeviceType.CUDA and not user:
                per_name[e.name] += e.time_range.elapsed_us()
                kernels += 1
    else:  # a CPU runs the operators: their own time, without their children's
        for avg in prof.key_averages():
            # the compiled kernels run inside "## Call CompiledFxGraph ... ##", whose own time they are
            if avg.key.startswith(("aten::", "## Call CompiledFxGraph", "cpp_fused", "Torch-Compiled")):
                per_name[avg.key] += avg.self_cpu_time_total
                kernels += avg.count
    gemm = sum(t for name, t in per_name.items() if GEMM.search(name)) / steps / 1e3
    other = sum(t for name, t in per_name.items() if not GEMM.search(name)) / steps / 1e3
    top = sorted(((t, name) for name, t in per_name.items() if not GEMM.search(name)), reverse=True)[:6]
    return {"gemm": gemm, "other": other, "kernels": kernels / steps, "top": [(t / steps / 1e3, n) for t, n in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("MLPLAB_FASHION_MNIST"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cells", type=int, default=None, help="grid cells in the group (default 100 on CUDA, 20)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tf32", action="store_true", help="TF32 matrix products on CUDA (the fp32 baseline there)")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument(
        "--seeds", type=int, default=3, help="runs per form, one seed each (the first times the start-up)"
    )
    parser.add_argument("--forms", default=",".join(FORMS), help=f"comma-separated, of: {', '.join(FORMS)}")
    parser.add_argument("--profile-steps", type=int, default=20, help="eager steps profiled per form (0: none)")
    args = parser.parse_args()
    cells = len(sub_grid(args.cells or (100 if args.device.startswith("cuda") else 20)))  # whole rows of the grid
    forms = {name: FORMS[name] for name in args.forms.split(",")}
    data = fashion_mnist_data(args.data_dir)
    train_group(trials_of(2, 1, "fp32", 0), data, args.device)  # untimed: CUDA context, cuBLAS handles
    baseline = runs_over_seeds(data, cells, args.epochs, args.device, "fp32", FORMS["autograd"], args.seeds)
    with tf32_matmuls(args.tf32, torch.device(args.device)):
        print(
            f"## The sweep's step three ways: {cells} cells x {args.epochs} epochs as one group, {args.seeds} seed(s)\n"
        )
        print(
            f"machine: {machine(args.device)}; torch {torch.__version__}; device {args.device}{', TF32' if args.tf32 else ''}\n"
        )
        print("| precision | step | 1st run s | fastest run s | start-up s | per model-epoch | mean test acc | "
              "cells inside fp32's CI | minus fp32, paired by seed |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        rows = [("fp32, TF32 off", "autograd", baseline)] if args.tf32 else []  # the baseline, measured above
        for precision in args.precisions.split(","):
            for name, how in forms.items():
                same = precision == "fp32" and name == "autograd" and not args.tf32  # the baseline itself
                r = baseline if same else runs_over_seeds(data, cells, args.epochs, args.device, precision, how, args.seeds)  # fmt: skip
                rows.append((precision + (", TF32" if args.tf32 and precision == "fp32" else ""), name, r))
        if not any(r is baseline for _, _, r in rows):  # autograd fp32 not among --forms / --precisions
            rows.insert(0, ("fp32", "autograd", baseline))
        for label, name, r in rows:
            first, fastest = r["seconds"][0], min(r["seconds"])
            inside, diff = ("(the baseline)", "") if r is baseline else against(r["acc"], baseline["acc"], args.seeds)
            print(f"| {label} | {name} | {first:.2f} | {fastest:.2f} | {max(0.0, first - fastest):.2f} | "
                  f"{fastest / (cells * args.epochs) * 1e3:.2f} ms | {sum(r['acc'].values()) / len(r['acc']):.4f} | "
                  f"{inside} | {diff} |", flush=True)  # fmt: skip
        print(f"\n### The first layer (K = {cells}, 784 -> 256, batch 256): forward and weight gradient\n")
        print(
            "| dtype | as K products (`baddbmm`, `bmm`: what the step does) ms | as one (`addmm`, `mm`) ms | one / K |"
        )
        print("|---|---|---|---|")
        for precision in args.precisions.split(","):
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            shapes = first_layer_shapes(cells, 256, 784, 256, 3, args.device, dtype)
            label = precision + (" (TF32)" if args.tf32 and precision == "fp32" else "")
            print(
                f"| {label} | {shapes['K'] * 1e3:.3f} | {shapes['one'] * 1e3:.3f} | {shapes['one'] / shapes['K']:.2f}x |"
            )
        if args.profile_steps:
            print(f"\n### Per eager step ({args.profile_steps} profiled, {cells} models): products against the rest\n")
            print("| precision | step | products ms | everything else ms | kernels per step | largest others (ms) |")
            print("|---|---|---|---|---|---|")
            for precision in args.precisions.split(","):
                for name, how in forms.items():
                    p = profile_step(data, cells, args.profile_steps, args.device, precision, how)
                    top = "; ".join(f"{n[:40]} {t:.3f}" for t, n in p["top"][:4])
                    print(f"| {precision} | {name} | {p['gemm']:.3f} | {p['other']:.3f} | {p['kernels']:.0f} | "
                          f"{top} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
