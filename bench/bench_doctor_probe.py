"""The doctor's probe (a few batches per configuration, seeds 0-2) over the lr, init x depth and hidden grids.

cd bench && python bench_doctor_probe.py ../../shared/data/fashion-mnist
"""

import sys
import time

import torch

from mlplab.data import fashion_mnist_data
from mlplab.doctor import probe
from mlplab.models import ModelConfig, build_mlp
from mlplab.train import TrainConfig

data = fashion_mnist_data(sys.argv[1] if len(sys.argv) > 1 else None)
cases = [("lr", lr, ModelConfig(), TrainConfig(lr=lr)) for lr in (0.01, 0.03, 0.1, 0.3, 1.0)]
cases += [
    ("init x depth", f"{init} {h}", ModelConfig(hidden=h, init=init), TrainConfig())
    for init in ("normal:0.01", "normal:0.1", "normal:1", "xavier", "he")
    for h in ((256,), (256,) * 4)
]
cases += [("hidden", w, ModelConfig(hidden=(w,)), TrainConfig()) for w in (8, 16, 32, 64, 128, 256, 512, 1024)]
t0 = time.time()
for grid, value, m, t in cases:
    found = [
        f"{f.severity}:{f.check}"
        for s in range(3)
        for f in probe(build_mlp(m, torch.Generator().manual_seed(s)), data, TrainConfig(**{**t.__dict__, "seed": s}))
    ]
    print(f"| {grid} | {value} | {', '.join(sorted(set(found))) or '-'} |", flush=True)
print(time.time() - t0)
