"""The cost of the doctor's training-time checks on a batched sweep (issue #12).

One group of K models of the study log's dropout grid (784-256-256-10, SGD lr 0.5, normal:0.01),
trained with and without ``mlplab.doctor.SweepDoctorCallback``, runs alternated:

    cd bench && python bench_doctor_sweep.py --data-dir ../../shared/data/fashion-mnist [--models 20 --epochs 2 --repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

from machine import cpu_name

from mlplab.data import fashion_mnist_data
from mlplab.doctor import SweepDoctorCallback
from mlplab.sweep.batched import train_group
from mlplab.sweep.spec import SweepSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = fashion_mnist_data(args.data_dir)
    p = [round(0.9 * i / max(1, args.models - 1), 4) for i in range(args.models)]
    spec = SweepSpec(
        base={"hidden": (256, 256), "lr": 0.5, "epochs": args.epochs, "dropout1": 0.2}, grid={"dropout2": tuple(p)}
    )
    trials = spec.trials()
    times: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.repeats):
        for name in ("without", "with"):
            callbacks = [SweepDoctorCallback()] if name == "with" else []
            t0 = time.perf_counter()
            train_group(trials, data, callbacks=callbacks)
            times[name].append((time.perf_counter() - t0) / args.epochs)
    best = {k: min(v) for k, v in times.items()}
    print(f"{cpu_name()}, {os.cpu_count()} cores; {args.models} models x {args.epochs} epochs, {args.repeats} repeats")
    for k, v in times.items():
        print(f"{k:>8} the doctor: s per group-epoch {', '.join(f'{t:.2f}' for t in v)} (best {best[k]:.2f})")
    print(f"ratio with / without (best of each): x{best['with'] / best['without']:.3f}")


if __name__ == "__main__":
    main()
