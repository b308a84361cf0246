"""fit's recipe options: SGD momentum, the cosine schedule, and image augmentation.

References: torch's own CosineAnnealingLR and a hand-written torch loop for the schedule and
momentum; a per-image numpy loop for the flips and shifts.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlplab.data import Data, Split, synthetic
from mlplab.data.augment import SHIFT, augment
from mlplab.data.batching import batches, num_batches
from mlplab.errors import ConfigError
from mlplab.models import ModelConfig, build_mlp
from mlplab.scratch import MLP
from mlplab.train import Callback, TrainConfig, fit, make_optimizer, scheduled_lr


def images(gen, n=64, side=6, k=3) -> Data:
    """Small square 'images' (side x side pixels) with labels that a linear model can learn."""
    both = synthetic.classification_blobs(n + n // 2, side * side, k, generator=gen)
    X = both.X.abs()  # non-negative pixels, zero as background
    return Data(Split(X[:n], both.y[:n]), Split(X[n:], both.y[n:]))


def reference_augment(X: torch.Tensor, kind: str, generator: torch.Generator, shift: int = SHIFT) -> np.ndarray:
    """One image at a time in numpy: mirror, then move by (dy, dx) with zeros shifted in."""
    B, side = X.shape[0], int(round(X.shape[1] ** 0.5))
    flips = torch.rand(B, generator=generator) < 0.5 if "flip" in kind else torch.zeros(B, dtype=torch.bool)
    offsets = torch.randint(0, 2 * shift + 1, (2, B), generator=generator) if "shift" in kind else None
    out = np.zeros((B, side, side), dtype=np.float32)
    for b in range(B):
        img = X[b].numpy().reshape(side, side)
        img = img[:, ::-1] if flips[b] else img
        if offsets is None:
            out[b] = img
            continue
        dy, dx = int(offsets[0, b]) - shift, int(offsets[1, b]) - shift  # output (i, j) reads (i + dy, j + dx)
        for i in range(side):
            for j in range(side):
                if 0 <= i + dy < side and 0 <= j + dx < side:
                    out[b, i, j] = img[i + dy, j + dx]
    return out.reshape(B, side * side)


@pytest.mark.parametrize("kind", ["flip", "shift", "flip+shift"])
def test_augment_matches_a_per_image_loop(kind):
    X = torch.rand(40, 49, generator=torch.Generator().manual_seed(1))
    got = augment(X, kind, torch.Generator().manual_seed(7))
    expected = reference_augment(X, kind, torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(got.numpy(), expected)
    assert got.shape == X.shape and not torch.equal(got, X)


def test_augment_flips_about_half_and_shifts_fill_with_zeros():
    X = torch.rand(2000, 16, generator=torch.Generator().manual_seed(0)) + 1.0  # no pixel is 0
    flipped = augment(X, "flip", torch.Generator().manual_seed(3)).reshape(-1, 4, 4)
    mirrored = (flipped == X.reshape(-1, 4, 4).flip(-1)).all(dim=(1, 2))
    assert 0.45 < mirrored.float().mean().item() < 0.55
    assert ((flipped == X.reshape(-1, 4, 4)).all(dim=(1, 2)) | mirrored).all()  # each image is one or the other
    shifted = augment(X, "shift", torch.Generator().manual_seed(3))
    zeros = (shifted == 0).sum(dim=1)
    assert zeros.max().item() > 0 and (zeros == 0).any()  # some moved (zeros shifted in), some stayed put
    assert augment(X, "none", torch.Generator()) is X


def test_augment_refuses_images_that_are_not_square():
    with pytest.raises(ConfigError, match="augment.*square"):
        augment(torch.zeros(2, 10), "flip", torch.Generator())
    data = Data(
        Split(torch.zeros(8, 10), torch.zeros(8, dtype=torch.long)),
        Split(torch.zeros(4, 10), torch.zeros(4, dtype=torch.long)),
    )
    net = build_mlp(ModelConfig(hidden=(4,), n_inputs=10, n_outputs=2), torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="augment"):
        fit(net, data, TrainConfig(epochs=1, augment="shift"))


def test_the_cosine_schedule_is_torchs_cosine_annealing():
    config = TrainConfig(lr=0.3, schedule="cosine")
    T = 37
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=T)
    for t in range(T):
        assert scheduled_lr(config, t, T) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        optimizer.step()
        annealing.step()
    assert scheduled_lr(TrainConfig(lr=0.3), 20, T) == 0.3


@pytest.mark.parametrize("augment_kind", ["none", "flip+shift"])
def test_fit_with_momentum_cosine_and_augment_equals_a_hand_written_torch_loop(augment_kind):
    data = images(torch.Generator().manual_seed(0))
    model_cfg = ModelConfig(hidden=(12,), n_inputs=36, n_outputs=3, init="he")
    cfg = TrainConfig(
        epochs=3, batch_size=10, lr=0.05, momentum=0.9, weight_decay=1e-3, schedule="cosine",
        augment=augment_kind, seed=4,
    )  # fmt: skip
    trained = build_mlp(model_cfg, torch.Generator().manual_seed(2))
    fit(trained, data, cfg)

    ref = build_mlp(model_cfg, torch.Generator().manual_seed(2))
    optimizer = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    steps = cfg.epochs * num_batches(len(data.train), cfg.batch_size)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    order = torch.Generator().manual_seed(4)
    for _ in range(cfg.epochs):
        for X, y in batches(data.train, cfg.batch_size, order):
            X = augment(X, augment_kind, order)
            optimizer.zero_grad()
            F.cross_entropy(ref(X), y).backward()
            optimizer.step()
            annealing.step()
    for p, q in zip(trained.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


class StopAfter(Callback):
    def on_epoch_end(self, record) -> None:
        if record.epoch == 2:
            raise KeyboardInterrupt


def test_a_resumed_cosine_augmented_run_equals_an_uninterrupted_one_and_keeps_its_epochs(tmp_path):
    data = images(torch.Generator().manual_seed(0))
    model_cfg = ModelConfig(hidden=(12,), n_inputs=36, n_outputs=3, dropout=0.2)
    cfg = TrainConfig(epochs=4, batch_size=8, lr=0.05, momentum=0.5, schedule="cosine", augment="flip+shift", seed=1)
    straight = build_mlp(model_cfg, torch.Generator().manual_seed(1))
    full = fit(straight, data, cfg)
    with pytest.raises(KeyboardInterrupt):
        fit(build_mlp(model_cfg, torch.Generator().manual_seed(1)), data, cfg, checkpoint=tmp_path / "c.pt",
            callbacks=[StopAfter()])  # fmt: skip
    resumed = build_mlp(model_cfg, torch.Generator().manual_seed(1))
    history = fit(resumed, data, cfg, checkpoint=tmp_path / "c.pt", resume=True)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    strip = lambda h: [dataclasses.replace(r, seconds=0.0) for r in h.records]
    assert strip(history) == strip(full)
    # the schedule spans the run's epochs: training longer would change every earlier step's rate
    with pytest.raises(ConfigError, match="anneals its learning rate over 4 epochs"):
        fit(resumed, data, dataclasses.replace(cfg, epochs=6), checkpoint=tmp_path / "c.pt", resume=True)


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"momentum": 0.9, "optimizer": "adam"}, "momentum is SGD's"),
        ({"schedule": "step"}, "schedule"),
        ({"augment": "rotate"}, "augment"),
    ],
)
def test_recipe_fields_are_validated(fields, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**fields)


def test_the_scratch_mlp_refuses_momentum_but_takes_the_schedule():
    net = MLP([36, 8, 3], generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="no momentum"):
        make_optimizer(net, TrainConfig(momentum=0.9))
    data = images(torch.Generator().manual_seed(0))
    history = fit(net, data, TrainConfig(epochs=2, batch_size=16, lr=0.1, schedule="cosine", augment="flip"))
    assert len(history.records) == 2
