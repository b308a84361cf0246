"""The study log's dropout grid: mlplab's batched sweep vs the book-style one-model-at-a-time loop.

Model of every cell: 784-256-256-10, ReLU, dropout p1 after hidden layer 1 and p2 after hidden
layer 2 (p1, p2 in {0, 0.1, ..., 0.9}), normal(0, 0.01) init, SGD lr 0.5, batch 256, Fashion-MNIST.
Measured side by side in one process, on the same machine and threads, per model-epoch
(training plus the per-epoch test evaluation both loops do):

1. book-style: a per-item Dataset turning one uint8 image at a time into a float tensor (what
   torchvision's ``ToTensor`` does), ``DataLoader(batch_size=256, shuffle=True, num_workers=4)``,
   ``nn.Sequential`` with ``nn.Dropout``, ``torch.optim.SGD``, the book's ``train_ch3`` metric
   accumulation, test accuracy over a DataLoader every epoch; a few cells, one model at a time;
2. ``mlplab.train.fit``: one model at a time, device-resident data (what batching alone adds);
3. ``mlplab.sweep``: a sub-grid of cells as batched groups (``run_sweep`` into a temporary folder,
   so SQLite writes are included).

A second table times one training step of K models three ways on one fixed batch: mlplab's
stacked ``baddbmm`` model (autograd backward), ``torch.func.vmap`` over ``functional_call`` of K
stacked ``nn.Sequential`` models, and a Python loop over K models.

Usage: ``python bench/bench_sweep.py [--data-dir DIR] [--quick] [--device cuda] [--full-grid]``.
Run benchmarks whose numbers you report under ``flock /tmp/mlplab-bench.lock``.

``--report DIR`` instead writes DIR/table.md and DIR/heatmap.png for a stored sweep of the grid
(``mlplab sweep run ... --out DIR``), with the study log's single-run accuracies beside the
means and confidence intervals (``--study-log``, default ``../shared/seed/d2l-ch4-mlp-study-log.md``).
"""

from __future__ import annotations

import argparse
import copy
import math
import re
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from booklike import book_mlp, train_book_style
from grid import GRID, grid_spec, sub_grid
from machine import cpu_name

from mlplab.data import fashion_mnist, fashion_mnist_data
from mlplab.models import ModelConfig, build_mlp
from mlplab.sweep import BatchedMLP, DropoutStreams, SweepSpec, load_results, run_sweep, summarize, train_group
from mlplab.sweep.batched import GroupCallback, per_model_cross_entropy
from mlplab.sweep.optim import BatchedSGD
from mlplab.train import TrainConfig, fit


def book_style(raw, p1: float, p2: float, epochs: int, device: str, seed: int = 0) -> tuple[float, float]:
    """The study log's ``dropout_test`` (d2l 5.6 exercise 1) on the book's pipeline: (seconds, test acc)."""
    torch.manual_seed(seed)
    return train_book_style(raw, book_mlp((256, 256), (p1, p2)), 0.5, epochs, device, seed)


def fit_one(data, p1: float, p2: float, epochs: int, device: str, seed: int = 0) -> tuple[float, float]:
    """The same cell with ``mlplab.train.fit`` (device-resident data, one model)."""
    config = ModelConfig(hidden=(256, 256), dropout=(p1, p2), init="normal:0.01")
    net = build_mlp(config, torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    history = fit(net, data, TrainConfig(epochs=epochs, lr=0.5, batch_size=256, seed=seed, device=device))
    return time.perf_counter() - t0, history.final.test_acc


def sweep_cells(
    data, cells, epochs: int, device: str, max_models: int | None, tf32: bool = False, cuda_graphs: bool | None = None
) -> tuple[float, float, int]:
    """``cells`` trained by ``run_sweep``: (seconds, mean test acc, models per group)."""
    spec = grid_spec(cells, epochs)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        report = run_sweep(spec, data, out, device=device, max_models=max_models, tf32=tf32, cuda_graphs=cuda_graphs)
        seconds = time.perf_counter() - t0
        acc = float(load_results(out)["final_test_acc"].mean())
    return seconds, acc, report.max_models


def _timed(step, steps: int, device: str) -> float:
    """Seconds per call of ``step`` after two warm-up calls."""
    for _ in range(2):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def kernel_step_times(K: int, steps: int, device: str) -> dict[str, float]:
    """Seconds per SGD step of K 784-256-256-10 dropout models on one batch of 256, three ways."""
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(256, 784, generator=gen).to(device)
    y = torch.randint(10, (256,), generator=gen).to(device)
    spec = SweepSpec(
        base={"hidden": (256, 256), "lr": 0.5, "dropout2": 0.5},
        grid={"dropout1": tuple(round(0.9 * i / max(K - 1, 1), 4) for i in range(K))},
    )
    trials = spec.trials()

    model = BatchedMLP.from_trials(trials, device)
    params = model.parameters()
    opt = BatchedSGD(params, torch.full((K,), 0.5, device=device), [torch.zeros(K, device=device)] * len(params))
    streams = DropoutStreams(0, torch.tensor([t.model.dropout_per_layer for t in trials]), torch.device(device))
    alive = torch.ones(K, dtype=torch.bool, device=device)

    def stacked() -> None:
        logits = model.forward(X, streams.gates(256, [256, 256]))
        losses = per_model_cross_entropy(logits, y).mean(1)
        opt.step(torch.autograd.grad(losses.sum(), params), alive)

    nets = [build_mlp(t.model, torch.Generator().manual_seed(0)).to(device) for t in trials]
    same_shape = [build_mlp(ModelConfig(hidden=(256, 256), dropout=(0.5, 0.5))).to(device) for _ in range(K)]
    weights, buffers = torch.func.stack_module_state(same_shape)  # vmap needs one architecture: p = 0.5 for all
    base = copy.deepcopy(same_shape[0]).to("meta")

    def call(w, b, x):
        return torch.func.functional_call(base, (w, b), (x,))

    def vmapped() -> None:
        logits = torch.func.vmap(call, in_dims=(0, 0, None), randomness="different")(weights, buffers, X)
        losses = per_model_cross_entropy(logits, y).mean(1)
        grads = torch.autograd.grad(losses.sum(), list(weights.values()))
        with torch.no_grad():
            for w, g in zip(weights.values(), grads):
                w.sub_(0.5 * g)

    opts = [torch.optim.SGD(net.parameters(), lr=0.5) for net in nets]

    def loop() -> None:
        for net, o in zip(nets, opts):
            loss = F.cross_entropy(net(X), y)
            o.zero_grad()
            loss.backward()
            o.step()

    return {
        name: _timed(fn, steps, device)
        for name, fn in (
            ("stacked baddbmm (mlplab)", stacked),
            ("torch.func.vmap", vmapped),
            ("loop over K models", loop),
        )
    }


class _Profiled(GroupCallback):
    """Steps a torch profiler after every batch (its schedule decides which steps it records)."""

    def __init__(self, prof) -> None:
        self.prof = prof

    def on_batch_end(self, epoch: int, batch: int) -> None:
        self.prof.step()


def profile_group(data, cells, steps: int, device: str, tf32: bool) -> None:
    """Where one training step of the grid's group spends its time (torch profiler, 1 epoch)."""
    from torch.profiler import ProfilerActivity, profile, schedule

    from mlplab.sweep.runner import tf32_matmuls

    trials = grid_spec(cells, 1).trials(n_inputs=data.train.X.shape[1], n_outputs=10)
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with (
        tf32_matmuls(tf32, torch.device(device)),
        profile(activities=activities, schedule=schedule(wait=5, warmup=5, active=steps, repeat=1)) as prof,
    ):
        train_group(trials, data, device, [_Profiled(prof)], cuda_graphs=False)  # eager: the kernels one by one
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(f"\n### Profile: {steps} eager training steps of one group of {len(trials)} models (sorted by {key})\n")
    print("```")
    print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=48))
    print("```")


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_name()}, {torch.get_num_threads()} torch threads"


LOG_LINE = re.compile(r"^dropout1: ([0-9.]+), dropout2: ([0-9.]+), accuracy: ([0-9.]+)$")


def study_log_grid(path: str) -> dict[tuple[float, float], float]:
    """The first 10x10 block of ``dropout1: a, dropout2: b, accuracy: c`` lines (exercise 1)."""
    cells: dict[tuple[float, float], float] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            m = LOG_LINE.match(line.strip())
            if m and len(cells) < 100:
                cells[(round(float(m.group(1)), 1), round(float(m.group(2)), 1))] = float(m.group(3))
    return cells


def report(directory: str, study_log: str | None) -> None:
    """DIR/table.md (mean ± 95% CI per cell, the study log's single run beside it) and DIR/heatmap.png."""
    from pathlib import Path

    from mlplab.atomic import write_text
    from mlplab.plots import save_figure
    from mlplab.sweep.plots import heatmap
    from mlplab.sweep.results import format_metric

    results = load_results(directory)
    summary = summarize(results).sort_values(["dropout1", "dropout2"]).reset_index(drop=True)
    log = study_log_grid(study_log) if study_log and Path(study_log).exists() else {}
    seeds = sorted(results["seed"].unique())
    epochs = sorted(results["epochs"].unique())
    lines = [
        f"## The study log's dropout grid over {len(seeds)} seeds (mlplab sweep)\n",
        f"784-256-256-10, ReLU, normal(0, 0.01) init, SGD lr 0.5, batch 256, {', '.join(map(str, epochs))} epochs, "
        f"Fashion-MNIST; seeds {', '.join(map(str, seeds))}. Final test accuracy and training loss: mean ± half-width "
        "of the 95% t confidence interval over seeds."
        + (" Study log: its single run (2 decimals)." if log else "")
        + "\n",
        "| dropout1 | dropout2 | seeds | diverged | test acc | train loss |" + (" study log |" if log else ""),
        "|---|---|---|---|---|---|" + ("---|" if log else ""),
    ]
    inside = 0
    for _, r in summary.iterrows():
        row = (
            f"| {r['dropout1']:g} | {r['dropout2']:g} | {r['n']} | {r['diverged']} | "
            f"{format_metric(r['final_test_acc_mean'], r['final_test_acc_ci'])} | "
            f"{format_metric(r['final_train_loss_mean'], r['final_train_loss_ci'])} |"
        )
        if log:
            logged = log.get((round(r["dropout1"], 1), round(r["dropout2"], 1)))
            row += f" {logged:.2f} |" if logged is not None else " - |"
            # a single run is compared with the 95% prediction interval of one run, not with the CI of
            # the mean: half-width t s sqrt(1 + 1/n) = ci sqrt(n + 1), widened by the log's rounding
            half = r["final_test_acc_ci"] * math.sqrt(r["n"] + 1) + 0.005
            if logged is not None and abs(logged - r["final_test_acc_mean"]) <= half:
                inside += 1
        lines.append(row)
    if log:
        lines.append(
            f"\nThe study log's single run lies within the 95% prediction interval of one run "
            f"(mean ± ci·sqrt(n+1), widened by its 0.005 rounding) in {inside} of {len(summary)} cells."
        )
    best = summary.sort_values("final_test_acc_mean", ascending=False).iloc[0]
    lines.append(
        f"\nBest cell: dropout1 = {best['dropout1']:g}, dropout2 = {best['dropout2']:g}, test accuracy "
        f"{format_metric(best['final_test_acc_mean'], best['final_test_acc_ci'])}."
    )
    write_text(Path(directory) / "table.md", "\n".join(lines) + "\n")
    save_figure(heatmap(summary, "dropout2", "dropout1"), Path(directory) / "heatmap.png")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files (default: search)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--book-cells", type=int, default=2, help="cells trained the book's way")
    parser.add_argument("--book-epochs", type=int, default=1, help="epochs per book-style cell")
    parser.add_argument("--fit-cells", type=int, default=2, help="cells trained with mlplab fit (0 to skip)")
    parser.add_argument("--cells", type=int, default=20, help="sub-grid size for the sweep (whole rows of 10)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the sweep")
    parser.add_argument("--max-models", type=int, default=None, help="models per group (default: mlplab's)")
    parser.add_argument(
        "--kernel-models", type=int, default=20, help="K for the per-step kernel comparison (0 to skip)"
    )
    parser.add_argument("--kernel-steps", type=int, default=10, help="steps timed per kernel")
    parser.add_argument(
        "--tf32", action="store_true", help="CUDA: the sweep uses TF32 matmuls (the book loop does not)"
    )
    parser.add_argument("--full-grid", action="store_true", help="the sweep trains all 100 cells x 10 epochs")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="STEPS", help="also profile STEPS steps of the sweep's group"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 book cell, 1 fit cell, 10 sweep cells: a check that it runs"
    )
    parser.add_argument("--report", metavar="DIR", default=None, help="write DIR/table.md and DIR/heatmap.png and exit")
    parser.add_argument("--study-log", default="../shared/seed/d2l-ch4-mlp-study-log.md", help="for --report")
    args = parser.parse_args()
    if args.report:
        report(args.report, args.study_log)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.book_cells, args.fit_cells, args.cells, args.kernel_steps = 1, 1, 10, 3
    if args.full_grid:
        args.cells, args.epochs = 100, 10
    raw = fashion_mnist.load(args.data_dir, download=False)
    data = fashion_mnist_data(args.data_dir, download=False).to(args.device)
    spread = [GRID[i] for i in np.linspace(0, 99, max(args.book_cells, args.fit_cells)).round().astype(int)]
    cuda = args.device.startswith("cuda")
    if cuda:  # CUDA context, cuBLAS handles, kernel loading: once per process, not timed
        warm_s, _, _ = sweep_cells(data, GRID[:2], 1, args.device, None, args.tf32)
        print(f"CUDA warm-up (a 2-model sweep, 1 epoch, in the same process): {warm_s:.2f} s, not counted below\n")

    cells = sub_grid(args.cells)
    sweep_s, sweep_acc, k = sweep_cells(data, cells, args.epochs, args.device, args.max_models, args.tf32)
    n_sweep = len(cells) * args.epochs
    if cuda:  # the same sweep with every step launched kernel by kernel, for comparison
        eager_s, eager_acc, _ = sweep_cells(data, cells, args.epochs, args.device, args.max_models, args.tf32, False)
    book = [book_style(raw, p1, p2, args.book_epochs, args.device) for p1, p2 in spread[: args.book_cells]]
    fits = [fit_one(data, p1, p2, args.book_epochs, args.device) for p1, p2 in spread[: args.fit_cells]]
    book_per = sum(s for s, _ in book) / (len(book) * args.book_epochs)
    rows = [
        (
            "book-style loop (DataLoader, 4 workers), one model at a time",
            len(book),
            args.book_epochs,
            sum(s for s, _ in book),
            book_per,
        )
    ]
    if fits:
        rows.append(
            (
                "mlplab fit, one model at a time",
                len(fits),
                args.book_epochs,
                sum(s for s, _ in fits),
                sum(s for s, _ in fits) / (len(fits) * args.book_epochs),
            )
        )
    tf32 = ", TF32" if args.tf32 else ""
    if cuda:
        rows.append(
            (
                f"mlplab sweep, batched groups of <= {k}{tf32}, eager steps (--no-cuda-graphs)",
                n_sweep // args.epochs,
                args.epochs,
                eager_s,
                eager_s / n_sweep,
            )
        )
    rows.append(
        (
            f"mlplab sweep, batched groups of <= {k}{tf32}" + (", CUDA graphs" if cuda else ""),
            n_sweep // args.epochs,
            args.epochs,
            sweep_s,
            sweep_s / n_sweep,
        )
    )

    print("## Dropout grid (784-256-256-10, SGD lr 0.5, batch 256): seconds per model-epoch\n")
    print(f"machine: {machine(args.device)}; torch {torch.__version__}; device {args.device}\n")
    print("| method | models | epochs | seconds | s per model-epoch | speed-up vs book |")
    print("|---|---|---|---|---|---|")
    for name, models, epochs, seconds, per in rows:
        print(f"| {name} | {models} | {epochs} | {seconds:.1f} | {per:.3f} | {book_per / per:.1f}x |")
    if args.kernel_models:
        K = args.kernel_models
        times = kernel_step_times(K, args.kernel_steps, args.device)
        fastest = min(times.values())
        print(f"\n### One SGD step of K = {K} models (batch 256, dropout on), {args.kernel_steps} steps timed\n")
        print("| kernel | ms per step | ms per model-step | relative |")
        print("|---|---|---|---|")
        for name, sec in times.items():
            print(f"| {name} | {sec * 1e3:.1f} | {sec * 1e3 / K:.2f} | {sec / fastest:.2f}x |")
    book_cells = ", ".join(f"({p1:g}, {p2:g})" for p1, p2 in spread[: args.book_cells])
    print(
        f"\nbook-style cells (p1, p2): {book_cells}; their test accuracy after {args.book_epochs} epoch(s): "
        f"{', '.join(f'{a:.4f}' for _, a in book)}; sweep sub-grid: {n_sweep // args.epochs} cells, "
        f"mean test accuracy {sweep_acc:.4f} after {args.epochs} epoch(s)"
        + (f" (eager steps: {eager_acc:.4f})." if cuda else ".")
    )
    if args.profile:
        profile_group(data, cells, args.profile, args.device, args.tf32)


if __name__ == "__main__":
    main()
