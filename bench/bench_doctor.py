"""Cost of the doctor's training-time callback on ``fit``: epoch time with and without it.

The chapter's 784-256-10 MLP on Fashion-MNIST (SGD lr 0.1, batch 256), runs alternated so a busy
moment hits both alike; the median epoch time of each, and their ratio::

    python bench/bench_doctor.py --data-dir ../shared/data/fashion-mnist --epochs 3 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from machine import cpu_name

from mlplab.data import fashion_mnist_data
from mlplab.doctor import PROBE_ROWS, DoctorCallback
from mlplab.models import ModelConfig, build_mlp
from mlplab.train import TrainConfig, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the loaders' search)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs with and without the callback, alternated")
    opts = parser.parse_args()
    data = fashion_mnist_data(opts.data_dir)
    config = TrainConfig(epochs=opts.epochs)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(opts.repeats):
        for watched in (False, True):
            net = build_mlp(ModelConfig(), torch.Generator().manual_seed(0))
            callbacks = [DoctorCallback(net, data.train.X[:PROBE_ROWS], data.train.y[:PROBE_ROWS])] if watched else []
            t0 = time.perf_counter()  # the whole fit: a record's own seconds end before the callbacks run
            fit(net, data, config, callbacks=callbacks)
            times[watched].append((time.perf_counter() - t0) / opts.epochs)
    plain, watched = statistics.median(times[False]), statistics.median(times[True])
    print(f"CPU: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"median seconds per epoch (whole fit / epochs): {plain:.3f} without the callback, {watched:.3f} with it: "
          f"x{watched / plain:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
