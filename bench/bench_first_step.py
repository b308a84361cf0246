"""Process start-up to the first training step (issue #15: "process start-up to first step <= 5 s").

Each measurement launches a fresh Python process and takes the wall time from just before the
launch to the end of its first training step (CUDA synchronized): the interpreter, importing torch
and mlplab, reading Fashion-MNIST onto the device, building the models (for the sweep, the study
log's full 10 x 10 dropout grid as one group) and the first step itself (on CUDA also the context's
creation and, with CUDA graphs, the first eager warm-up step). The child exits right after that
step. ``train`` is the command a user types, ``mlplab train`` (10 epochs, the chapter MLP): on top of
``fit`` its start-up has the CLI, the run folder and the doctor's checks. Median of ``--repeats``,
the kinds (and the trees given with ``--src``) alternated::

    PYTHONPATH=src python bench/bench_first_step.py --device cuda --tf32 --data-dir ../shared/data/fashion-mnist
    python bench/bench_first_step.py --src src --src /tmp/old/src --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import os, sys, tempfile, time
import torch
from mlplab.train import Callback

what, device, data_dir, tf32, precision = sys.argv[1:6]

def done(*_):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    print(f"FIRST_STEP {time.time():.6f}", flush=True)
    os._exit(0)

class Fit(Callback):
    on_batch_end = done

if what == "train":  # the CLI alone (no TF32 flag), its fit given the probe: cli/train.py imports fit as it runs
    import mlplab.train
    from mlplab.cli import main

    real_fit = mlplab.train.fit
    mlplab.train.fit = lambda *a, callbacks=(), **k: real_fit(*a, callbacks=[*callbacks, Fit()], **k)
    out = os.path.join(tempfile.mkdtemp(), "run")
    sys.argv = ["mlplab", "train", "--epochs", "10", "--device", device, "--precision", precision, "--out", out]
    main()

import dataclasses
from mlplab.data import fashion_mnist_data
from mlplab.sweep import train_group
from mlplab.sweep.batched import GroupCallback
from mlplab.sweep.runner import tf32_matmuls
from mlplab.train import TrainConfig, fit
from mlplab.models import ModelConfig, build_mlp
from grid import GRID, grid_spec  # not bench_sweep: its pandas and scipy would add a second

class Sweep(GroupCallback):
    on_batch_end = done

data = fashion_mnist_data(data_dir, download=False, device=device)
with tf32_matmuls(tf32 == "1", torch.device(device)):
    if what == "sweep":
        trials = grid_spec(GRID, 10).trials(n_inputs=784, n_outputs=10)
        trials = [dataclasses.replace(t, train=dataclasses.replace(t.train, precision=precision)) for t in trials]
        train_group(trials, data, device, callbacks=[Sweep()])
    else:
        config = TrainConfig(epochs=10, lr=0.1, batch_size=256, device=device, precision=precision)
        fit(build_mlp(ModelConfig(hidden=(256,)), torch.Generator().manual_seed(0)), data, config, callbacks=[Fit()])
"""


def first_step(what: str, src: str | None, args) -> float:
    here = os.path.dirname(os.path.abspath(__file__))
    path = [*([src] if src else []), here, os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    if args.data_dir:  # the CLI child finds it as a user's shell would give it
        env["MLPLAB_DATA"] = os.path.dirname(os.path.abspath(args.data_dir))
    argv = [what, args.device, args.data_dir or "", "1" if args.tf32 else "0", args.precision]
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("FIRST_STEP ")]
    if not lines:
        raise SystemExit(f"the {what} child printed no first step (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return float(lines[0].split()[1]) - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files (default: search)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tf32", action="store_true", help="CUDA: float32 products in TF32")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per kind (median reported)")
    parser.add_argument("--kinds", default="sweep,fit,train", help="comma list of sweep, fit, train")
    parser.add_argument(
        "--src", action="append", help="a source folder holding mlplab/ (repeatable; default: PYTHONPATH's)"
    )
    args = parser.parse_args()
    trees = args.src or [None]
    times = {(what, src): [] for src in trees for what in args.kinds.split(",")}
    for _ in range(args.repeats):
        for what, src in times:
            times[what, src].append(first_step(what, src, args))
    print(f"### Process start-up to the end of the first step ({args.device}, {args.precision}"
          f"{', TF32' if args.tf32 else ''}), median of {args.repeats} fresh processes\n")  # fmt: skip
    print("| | median s | all runs, s |\n|---|---|---|")
    label = {
        "sweep": "sweep: the 100-cell dropout grid as one group",
        "fit": "fit: the chapter MLP (784-256-10)",
        "train": "`mlplab train` (the chapter MLP)",
    }
    for (what, src), values in times.items():
        name = label[what] + (f", {src}" if src else "")
        print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
