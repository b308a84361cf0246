"""Training at the hardware's limit on a CPU: mlplab's time against the matrix products it does.

Issue #15's CPU targets, measured side by side on the same threads (1. and 2. in this process,
3. in fresh processes alternated with fresh processes of its GEMM work):

1. **The dropout grid** (784-256-256-10, ReLU, dropout p1/p2, SGD lr 0.5, batch 256,
   normal(0, 0.01), Fashion-MNIST): the 20-cell sub-grid of ``bench_sweep.py`` trained by
   ``train_group`` as one batched group, seconds per model-epoch (training and the per-epoch test
   evaluation), against
   - **its GEMM work**: the very products a group epoch does (per step three forward products
     and five backward ones, at the group's shapes and operand layouts, the last batch at its own
     size; the test set's forward products in the group's evaluation chunks), on random operands
     of the same shapes, nothing else: no activation, dropout, loss, optimizer or Python around
     them. The ratio is the cost of everything that is not a matrix product;
   - the book-style loop (``bench_sweep.book_style``: a per-item Dataset, ``DataLoader`` with 4
     workers, ``nn.Dropout``, ``torch.optim.SGD``), one cell.
2. **``fit`` of the chapter's MLP** (784-256-10, SGD lr 0.1, batch 256, normal(0, 0.01), 10
   epochs), the seconds ``fit`` spends (its epoch times: training and test evaluation) against its
   GEMM work (``nn.Linear``'s ``addmm`` forward, the two weight-gradient and one input-gradient
   products backward, the test set's forward products in ``evaluate``'s chunks).
3. **``mlplab train --epochs 10``** as a user runs it, in a subprocess: wall time, and the
   training time it reports (its epochs' seconds), against 2.'s GEMM work timed in a fresh
   subprocess right after it (``--repeats`` such pairs; the fastest of each kept).

Usage (serialize benchmarks whose numbers are reported: other processes on the 2 cores distort them):

    flock /tmp/mlplab-bench.lock python bench/bench_limit.py --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_sweep import book_style
from grid import grid_spec, sub_grid
from machine import cpu_name

from mlplab.data import fashion_mnist, fashion_mnist_data
from mlplab.models import ModelConfig, build_mlp
from mlplab.stats import paired
from mlplab.sweep import BatchedMLP, train_group
from mlplab.sweep.batched import eval_rows_for
from mlplab.train import INITIAL_LOSS_ROWS, TrainConfig, fit


def timed(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn`` after one warm-up call, in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def epoch_batches(X: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """One epoch's mini-batches of ``X`` as training gathers them (a random permutation), gathered now.

    The products below read these, not one batch over and over: a training step's batch is a
    fresh gather of rows from all over the data set, and a product of operands that stay in the
    cache from the previous call would be faster than any training step could be.
    """
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    return [X.index_select(0, order[i : i + batch]) for i in range(0, len(X), batch)]


def group_gemm_work(model: BatchedMLP, train_X: torch.Tensor, batch: int, test_X: torch.Tensor) -> Callable[[], None]:
    """One group epoch's matrix products, as ``BatchedMLP.forward`` and its backward issue them.

    Forward, per layer: ``baddbmm(b, A, W)`` with ``A`` (K, B, n_in) (the first layer's ``A`` is
    the batch expanded to K models without a copy) and ``W`` (K, n_in, n_out). Backward: ``A^T dZ``
    for every weight and ``dZ W^T`` for every layer but the first (the input needs no gradient).
    Then the test set's forward products in ``eval_rows_for(model)`` chunks, and once the
    initial-loss evaluation of ``INITIAL_LOSS_ROWS`` rows (a group does it once: counted in a
    1-epoch run). Hidden activations and gradients are random tensors of their shapes.
    """
    K = model.n_models
    gen = torch.Generator().manual_seed(0)
    shapes = [tuple(W.shape[1:]) for W in model.weights]  # (n_in, n_out) per layer
    weights = [torch.randn(K, i, o, generator=gen) * 0.01 for i, o in shapes]
    biases = [torch.zeros(K, 1, o) for _, o in shapes]

    def hidden(rows: int) -> list[torch.Tensor]:  # the inputs of layers 2.., (K, rows, n_in)
        return [torch.rand(K, rows, i, generator=gen) for i, _ in shapes[1:]]

    def deltas(rows: int) -> list[torch.Tensor]:  # each layer's output gradient, (K, rows, n_out)
        return [torch.rand(K, rows, o, generator=gen) for _, o in shapes]

    steps = epoch_batches(train_X, batch)
    operands = {len(X): (hidden(len(X)), deltas(len(X))) for X in steps}
    rows = eval_rows_for(model)
    evals = list(test_X.split(rows)) + list(train_X[:INITIAL_LOSS_ROWS].split(rows))
    eval_operands = {len(X): hidden(len(X)) for X in evals}

    def epoch() -> None:
        for X in steps:
            hiddens, Ds = operands[len(X)]
            As = [X.expand(K, *X.shape), *hiddens]
            for A, W, b in zip(As, weights, biases):
                torch.baddbmm(b, A, W)
            for layer in reversed(range(len(weights))):
                torch.bmm(As[layer].transpose(1, 2), Ds[layer])  # dW
                if layer:
                    torch.bmm(Ds[layer], weights[layer].transpose(1, 2))  # dA of the layer below
        for X in evals:
            for A, W, b in zip([X.expand(K, *X.shape), *eval_operands[len(X)]], weights, biases):
                torch.baddbmm(b, A, W)

    return epoch


def fit_gemm_work(train_X: torch.Tensor, test_X: torch.Tensor, eval_rows: int) -> Callable[[], None]:
    """One ``fit`` epoch's matrix products for 784-256-10, as ``nn.Linear`` and autograd issue them.

    Forward ``addmm(b, X, W^T)`` per layer; backward ``dZ^T A`` per weight and ``dZ2 W2`` for the
    hidden activation's gradient; then the test set's forward in ``evaluate``'s chunks.
    """
    gen = torch.Generator().manual_seed(0)
    W1, W2 = torch.randn(256, 784, generator=gen) * 0.01, torch.randn(10, 256, generator=gen) * 0.01
    b1, b2 = torch.zeros(256), torch.zeros(10)
    steps = epoch_batches(train_X, 256)
    operands = {
        len(X): (torch.rand(len(X), 256, generator=gen), torch.rand(len(X), 256, generator=gen),
                 torch.rand(len(X), 10, generator=gen))
        for X in steps
    }  # fmt: skip
    evals = [(X, torch.rand(len(X), 256, generator=gen)) for X in test_X.split(eval_rows)]

    def epoch() -> None:
        for X in steps:
            A1, D1, D2 = operands[len(X)]
            torch.addmm(b1, X, W1.t())
            torch.addmm(b2, A1, W2.t())
            D2.t().mm(A1)  # dW2
            D2.mm(W2)  # dA1
            D1.t().mm(X)  # dW1
        for X, A1 in evals:
            torch.addmm(b1, X, W1.t())
            torch.addmm(b2, A1, W2.t())

    return epoch


def first_layer_shapes(
    K: int, batch: int, d: int, h: int, repeats: int, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> dict[str, float]:
    """The first layer's forward and weight gradient as K products (today) or one (``X W1`` over K*h columns).

    Seconds per step for each: what the issue's "first layer as one GEMM" would buy on this
    machine (on CUDA each timed call is 10 steps, synchronized, divided by 10).
    """
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(batch, d, generator=gen).to(device, dtype)
    W, b, dZ = (
        torch.rand(K, d, h, generator=gen).to(device, dtype),
        torch.rand(K, 1, h, generator=gen).to(device, dtype),
        torch.rand(K, batch, h, generator=gen).to(device, dtype),
    )
    W_one, b_one, dZ_one = (
        W.permute(1, 0, 2).reshape(d, K * h),
        b.reshape(K * h),
        dZ.permute(1, 0, 2).reshape(batch, K * h),
    )
    Xe = X.expand(K, batch, d)

    calls = 10 if device.startswith("cuda") else 1  # a GPU's launches are timed in runs, not one by one

    def k_products() -> None:
        for _ in range(calls):
            torch.baddbmm(b, Xe, W)
            torch.bmm(Xe.transpose(1, 2), dZ)
        if calls > 1:
            torch.cuda.synchronize()

    def one_product() -> None:
        for _ in range(calls):
            torch.addmm(b_one, X, W_one)
            X.t().mm(dZ_one)
        if calls > 1:
            torch.cuda.synchronize()

    forms = (("K", k_products), ("one", one_product))
    return {name: min(timed(fn, 5) for _ in range(repeats)) / calls for name, fn in forms}


def bench_grid(data, raw, cells: int, epochs: int, repeats: int, book_cells: int) -> dict:
    """Section 1: the group's seconds per model-epoch, its GEMM work's, the book loop's."""
    trials = grid_spec(sub_grid(cells), epochs).trials(n_inputs=784, n_outputs=10)
    K = len(trials)
    model = BatchedMLP.from_trials(trials)
    gemm = group_gemm_work(model, data.train.X, trials[0].train.batch_size, data.test.X)
    group_s, autograd_s, gemm_s = [], [], []
    for _ in range(repeats):  # alternated, so that a change of load hits all alike
        t0 = time.perf_counter()
        results = train_group(trials, data)
        group_s.append((time.perf_counter() - t0) / (K * epochs))
        t0 = time.perf_counter()
        reference = train_group(trials, data, fused=False)
        autograd_s.append((time.perf_counter() - t0) / (K * epochs))
        gemm_s.append(timed(gemm, 1) / K)
    book = [book_style(raw, *cell, 1, "cpu")[0] for cell in sub_grid(cells)[:book_cells]]
    fused_acc = {k: r.history.final.test_acc for k, r in enumerate(results)}
    autograd_acc = {k: r.history.final.test_acc for k, r in enumerate(reference)}
    return {
        "K": K,
        "group": min(group_s),
        "autograd": min(autograd_s),
        "gemm": min(gemm_s),
        "book": min(book) if book else None,
        "acc": sum(fused_acc.values()) / K,
        # the two steps round differently, and this regime amplifies it: equal in distribution?
        "versus": paired(fused_acc, autograd_acc, labels=("fused step", "autograd step"), metric="test accuracy"),
    }


def chapter_mlp() -> torch.nn.Sequential:
    return build_mlp(ModelConfig(hidden=(256,), init="normal:0.01"), torch.Generator().manual_seed(0))


def bench_fit(data, epochs: int, repeats: int) -> dict:
    """Section 2: ``fit``'s own epoch seconds (10 epochs) against its GEMM work, alternated."""
    config = TrainConfig(epochs=epochs, lr=0.1, batch_size=256, seed=0)
    gemm = fit_gemm_work(data.train.X, data.test.X, 8192)  # 8192: evaluate's chunk
    fit_s, gemm_s = [], []
    for _ in range(repeats):
        history = fit(chapter_mlp(), data, config)
        fit_s.append(sum(r.seconds for r in history.records))
        gemm_s.append(epochs_seconds(gemm, epochs))
    return {"fit": min(fit_s), "gemm": min(gemm_s), "acc": history.final.test_acc}


def bench_cli(data_dir: str | None, epochs: int, repeats: int, threads: int | None = None) -> dict:
    """Section 3: ``mlplab train`` in fresh processes, alternated with fresh processes of its GEMM work.

    Each pair runs one after the other, so both see the same host; a process's GEMM work is timed
    as in :func:`bench_fit` (after one warm-up epoch). Returns the fastest of each: the wall
    seconds and the epochs' own seconds of ``mlplab train``, and the GEMM work's seconds.
    ``threads`` reaches both through ``OMP_NUM_THREADS`` (torch's thread count at start-up).
    """
    walls, trains, gemms = [], [], []
    data_flags = ["--data-dir", data_dir] if data_dir else []
    env = {**os.environ, "COLUMNS": "120", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "mlplab", "train", "--epochs", str(epochs), "--out", out, *data_flags]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            walls.append(time.perf_counter() - t0)
            records = json.loads((Path(out) / "history.json").read_text())  # one object per epoch
            trains.append(sum(r["seconds"] for r in records))
        gemm = [sys.executable, __file__, "--fit-gemm-seconds", str(epochs), *data_flags]
        gemms.append(float(subprocess.run(gemm, check=True, capture_output=True, text=True, env=env).stdout))
    return {"wall": min(walls), "epochs": min(trains), "gemm": min(gemms)}


def fit_gemm_seconds(data_dir: str | None, epochs: int) -> float:
    """``--fit-gemm-seconds``: ``epochs`` of fit's GEMM work in this (fresh) process, after one warm-up."""
    data = fashion_mnist_data(data_dir, download=False)
    return epochs_seconds(fit_gemm_work(data.train.X, data.test.X, 8192), epochs)


def epochs_seconds(epoch: Callable[[], None], epochs: int) -> float:
    """Seconds for ``epochs`` calls of ``epoch`` after one warm-up call."""
    epoch()
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files (default: search)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--cells", type=int, default=20, help="dropout-grid cells trained as one group")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the group")
    parser.add_argument("--repeats", type=int, default=3, help="alternated repeats; the fastest of each is kept")
    parser.add_argument("--book-cells", type=int, default=1, help="cells trained the book's way (0 to skip)")
    parser.add_argument("--fit-epochs", type=int, default=10, help="epochs of the chapter MLP (0 to skip)")
    parser.add_argument("--quick", action="store_true", help="4 cells, 1 repeat, 2 fit epochs: a check that it runs")
    parser.add_argument("--fit-gemm-seconds", type=int, metavar="EPOCHS", help=argparse.SUPPRESS)  # section 3's
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fit_gemm_seconds:
        print(fit_gemm_seconds(args.data_dir, args.fit_gemm_seconds))
        return
    if args.quick:
        args.cells, args.repeats, args.fit_epochs, args.book_cells = 4, 1, 2, 0
    raw = fashion_mnist.load(args.data_dir, download=False)
    data = fashion_mnist_data(args.data_dir, download=False)
    print("## Training against its matrix products (issue #15, CPU)\n")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    # the chapter's MLP first: after the group's hundreds of megabytes come and go, a small
    # model's allocations in the same process measured up to 10% slower
    if args.fit_epochs:
        f = bench_fit(data, args.fit_epochs, args.repeats)
        c = bench_cli(args.data_dir, args.fit_epochs, args.repeats, args.threads)
        print(f"### The chapter's MLP (784-256-10, SGD lr 0.1, batch 256), {args.fit_epochs} epochs\n")
        print(f"In this process, alternated, fastest of {args.repeats}:\n")
        print("| | seconds | vs GEMM work | target |")
        print("|---|---|---|---|")
        print(f"| GEMM work alone (fit's products, {args.fit_epochs} epochs) | {f['gemm']:.2f} | 1.00x | |")
        print(f"| mlplab fit, its epochs | {f['fit']:.2f} | **{f['fit'] / f['gemm']:.3f}x** | <= 1.3x |")
        print(f"\nIn fresh processes, `mlplab train` alternated with its GEMM work's, fastest of {args.repeats}:\n")
        print("| | seconds | vs GEMM work | target |")
        print("|---|---|---|---|")
        print(f"| GEMM work alone (a fresh process each) | {c['gemm']:.2f} | 1.00x | |")
        print(f"| `mlplab train`, its epochs | {c['epochs']:.2f} | **{c['epochs'] / c['gemm']:.3f}x** | <= 1.3x |")
        print(f"| `mlplab train`, whole process wall time | {c['wall']:.2f} | {c['wall'] / c['gemm']:.2f}x | |")
        print(f"\nfit's final test accuracy (seed 0): {f['acc']:.4f}")
    g = bench_grid(data, raw, args.cells, args.epochs, args.repeats, args.book_cells)
    print(f"### Dropout grid: {g['K']} cells as one group, {args.epochs} epoch(s), fastest of {args.repeats}\n")
    print("| | s per model-epoch | vs GEMM work | target |")
    print("|---|---|---|---|")
    print(f"| GEMM work alone (the group's products) | {g['gemm']:.3f} | 1.00x | |")
    print(
        f"| mlplab train_group (fused SGD step, the default on a CPU) | {g['group']:.3f} | **{g['group'] / g['gemm']:.3f}x** | <= 1.15x |"
    )
    print(
        f"| mlplab train_group, autograd step (`fused=False`) | {g['autograd']:.3f} | {g['autograd'] / g['gemm']:.3f}x | |"
    )
    if g["book"] is not None:
        print(
            f"| book-style loop, 1 cell | {g['book']:.3f} | {g['book'] / g['gemm']:.2f}x | "
            f"group **{g['book'] / g['group']:.2f}x** faster (target >= 5x) |"
        )
    d = g["versus"].difference
    print(
        f"\nmean test accuracy after {args.epochs} epoch(s): {g['acc']:.4f} (fused step); fused - autograd "
        f"{d.mean:+.4f} ± {d.half_width:.4f} (95% t interval, paired by cell over {d.n} cells)\n"
    )
    shapes = first_layer_shapes(g["K"], 256, 784, 256, args.repeats)
    print(f"### The first layer of the group's step (K = {g['K']}): forward and weight gradient\n")
    print("| | ms per step | relative |")
    print("|---|---|---|")
    print(f"| as K products (`baddbmm`, `bmm`: what the step does) | {shapes['K'] * 1e3:.2f} | 1.00x |")
    print(
        f"| as one product over K*h columns (`addmm`, `mm`) | {shapes['one'] * 1e3:.2f} | {shapes['one'] / shapes['K']:.2f}x |\n"
    )


if __name__ == "__main__":
    main()
