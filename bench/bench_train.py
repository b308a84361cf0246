"""Chapter MLP on Fashion-MNIST: mlplab vs the book-style loop vs scikit-learn, side by side.

Runs in one process, one after another, on the same data:

1. book-style: a per-item Dataset converting one uint8 image at a time to a float tensor (as
   torchvision's ToTensor does), ``DataLoader(batch_size=256, shuffle=True, num_workers=4)``, the
   book's ``train_ch3`` loop (per-batch metric accumulation with ``float()``, test accuracy over a
   DataLoader every epoch);
2. mlplab ``fit`` with SGD (the chapter's settings), over several seeds;
3. mlplab ``fit`` with Adam (lr 1e-3, Glorot/Xavier uniform init as scikit-learn uses for ReLU)
   vs scikit-learn ``MLPClassifier(hidden_layer_sizes=(256,), batch_size=256, max_iter=10)``
   (Adam, lr 1e-3, L2 alpha 1e-4) on float64 input (what ``X / 255.0`` gives) and on float32
   input, over up to 3 seeds each.

All models: 784-256-10, ReLU, batch 256, 10 epochs; the SGD runs (book loop and mlplab) use the
chapter's normal(0, 0.01) init. Prints a markdown table. Usage: ``python bench/bench_train.py --data-dir DIR [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from booklike import book_mlp, train_book_style
from machine import cpu_name

from mlplab.data import fashion_mnist, fashion_mnist_data
from mlplab.models import ModelConfig, build_mlp
from mlplab.train import TrainConfig, fit


def book_style(raw, epochs: int, seed: int) -> tuple[float, float]:
    """The book's train_ch3 (d2l 3.6 / 4.2) with its DataLoader; returns (seconds, test accuracy)."""
    torch.manual_seed(seed)
    return train_book_style(raw, book_mlp((256,)), 0.1, epochs, "cpu", seed)


def mlplab_run(
    raw_dir, optimizer: str, lr: float, epochs: int, seed: int, init: str = "normal:0.01"
) -> tuple[float, float]:
    t0 = time.perf_counter()
    data = fashion_mnist_data(raw_dir, download=False)  # includes uint8 -> float conversion; files are cached by the OS
    load = time.perf_counter() - t0
    net = build_mlp(ModelConfig(hidden=(256,), init=init), torch.Generator().manual_seed(seed))
    t1 = time.perf_counter()
    history = fit(net, data, TrainConfig(epochs=epochs, optimizer=optimizer, lr=lr, seed=seed))
    return time.perf_counter() - t1, history.final.test_acc, load


def sklearn_run(raw, dtype, epochs: int, seed: int) -> tuple[float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X = raw.train_images.reshape(60000, -1).astype(dtype) / dtype(255)
    Xt = raw.test_images.reshape(10000, -1).astype(dtype) / dtype(255)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(256,), batch_size=256, max_iter=epochs, random_state=seed).fit(
            X, raw.train_labels
        )
    seconds = time.perf_counter() - t0
    return seconds, model.score(Xt, raw.test_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files (default: search)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the mlplab runs")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 seed: a check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.seeds = 2, 1
    raw = fashion_mnist.load(args.data_dir, download=False)
    rows = []

    book_s, book_acc = book_style(raw, args.epochs, 0)
    rows.append(("book-style loop (DataLoader, 4 workers), SGD", book_s, [book_acc]))
    sgd = [mlplab_run(args.data_dir, "sgd", 0.1, args.epochs, s) for s in range(args.seeds)]
    # sklearn initialises ReLU layers with Glorot uniform: give mlplab's Adam run the same init
    adam = [mlplab_run(args.data_dir, "adam", 1e-3, args.epochs, s, init="xavier") for s in range(args.seeds)]
    sk_seeds = range(min(args.seeds, 3))
    sk64_runs = [sklearn_run(raw, np.float64, args.epochs, s) for s in sk_seeds]
    sk32_runs = [sklearn_run(raw, np.float32, args.epochs, s) for s in sk_seeds]
    sk64 = (statistics.median(r[0] for r in sk64_runs), statistics.mean(r[1] for r in sk64_runs))
    sk32 = (statistics.median(r[0] for r in sk32_runs), statistics.mean(r[1] for r in sk32_runs))
    sgd_s = statistics.median(r[0] for r in sgd)
    adam_s = statistics.median(r[0] for r in adam)
    print(f"## Chapter MLP, 784-256-10, batch 256, {args.epochs} epochs")
    print(
        f"machine: {cpu_name()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; data load+convert for mlplab: {statistics.median(r[2] for r in sgd):.2f} s\n"
    )
    print("| run | seconds (train+eval) | test accuracy | speed-up |")
    print("|---|---|---|---|")
    print(f"| book-style loop, SGD lr 0.1 (seed 0) | {book_s:.2f} | {book_acc:.4f} | 1.0x |")
    accs = [r[1] for r in sgd]
    print(
        f"| mlplab fit, SGD lr 0.1 ({args.seeds} seeds, median time) | {sgd_s:.2f} | "
        f"{statistics.mean(accs):.4f} (min {min(accs):.4f}, max {max(accs):.4f}) | {book_s / sgd_s:.1f}x vs book |"
    )
    n_sk = len(sk64_runs)
    print(
        f"| scikit-learn MLPClassifier, float64 input ({n_sk} seeds, median time, mean acc) | {sk64[0]:.2f} | {sk64[1]:.4f} | 1.0x |"
    )
    print(
        f"| scikit-learn MLPClassifier, float32 input ({n_sk} seeds) | {sk32[0]:.2f} | {sk32[1]:.4f} | {sk64[0] / sk32[0]:.1f}x vs float64 |"
    )
    accs = [r[1] for r in adam]
    print(
        f"| mlplab fit, Adam lr 1e-3, xavier init ({args.seeds} seeds, median time) | {adam_s:.2f} | "
        f"{statistics.mean(accs):.4f} (min {min(accs):.4f}, max {max(accs):.4f}) | "
        f"{sk64[0] / adam_s:.1f}x vs sklearn float64, {sk32[0] / adam_s:.1f}x vs float32 |"
    )


if __name__ == "__main__":
    main()
