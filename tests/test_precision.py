"""``precision="bf16"``: the forward products in bfloat16 under autocast, weights and losses in float32.

References: a numpy emulation of bfloat16 (round to nearest even on the upper 16 bits of a
float32) for the forward pass; the float32 path (itself checked against autograd and finite
differences elsewhere) for a training step, whose update bf16 must reproduce to bfloat16's
precision and not to the bit (bit-equal would mean no bfloat16 ran); and ``fit`` in bf16 for
``train_group`` in bf16.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from mlplab.data import Data, Split
from mlplab.errors import ConfigError
from mlplab.models import ModelConfig, build_mlp
from mlplab.scratch import MLP
from mlplab.sweep import BatchedMLP, SweepSpec, synthetic_data, train_group
from mlplab.sweep.batched import _Step
from mlplab.sweep.planner import plan
from mlplab.sweep.spec import Trial
from mlplab.train import TrainConfig, evaluate, fit, precision_context

BF16_EPS = 2.0**-8  # bfloat16's relative rounding step (8 significant bits)


def to_bf16(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), as float64."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def data():
    return synthetic_data(n_train=512, n_test=256, n_features=12, n_classes=4)


def chapter_like(data, **train) -> tuple[ModelConfig, TrainConfig]:
    model = ModelConfig(n_inputs=12, n_outputs=4, hidden=(32, 16), init="he")
    return model, TrainConfig(**{"epochs": 2, "batch_size": 64, "lr": 0.2, **train})


def test_precision_is_validated_with_a_clear_error():
    with pytest.raises(ConfigError, match="precision.*fp16.*fp32, bf16"):
        TrainConfig(precision="fp16")
    with pytest.raises(ConfigError, match="mps"):
        TrainConfig(precision="bf16", device="mps")
    assert TrainConfig().precision == "fp32"


def test_to_bf16_rounds_to_nearest_even():
    assert to_bf16(np.float32(1.0 + 2.0**-8))[()] == 1.0  # a tie: to the even mantissa, 1.0
    assert to_bf16(np.float32(1.0 + 3 * 2.0**-8))[()] == 1.0 + 2.0**-6  # a tie: up to the even one
    assert to_bf16(np.float32(1.0 + 2.0**-8 + 2.0**-12))[()] == 1.0 + 2.0**-7  # above the tie: up


def test_bf16_forward_is_the_emulated_bfloat16_network(data):
    """Every product's operands and output rounded to bfloat16, the sums in float32 or better."""
    net = build_mlp(ModelConfig(n_inputs=12, n_outputs=4, hidden=(32,), init="he"), torch.Generator().manual_seed(0))
    X = data.test.X
    with torch.no_grad(), precision_context("bf16", "cpu"):
        out = net(X)
    assert out.dtype == torch.bfloat16
    lin1, lin2 = (m for m in net if isinstance(m, nn.Linear))
    w1, b1, w2, b2 = (to_bf16(p.detach().numpy()) for p in (lin1.weight, lin1.bias, lin2.weight, lin2.bias))
    hidden = to_bf16((to_bf16(X.numpy()) @ w1.T + b1).astype(np.float32))
    expected = to_bf16((np.maximum(hidden, 0) @ w2.T + b2).astype(np.float32))
    got = out.float().numpy().astype(np.float64)
    # one bfloat16 step of the output's size: the float32 sum may round to the neighbour value
    assert np.abs(got - expected).max() <= BF16_EPS * np.abs(expected).max()
    fp32 = net(X).detach().numpy()
    assert np.abs(got - fp32).max() > 0  # it is not the float32 network


def test_evaluate_in_bf16_scores_the_bf16_outputs(data):
    net = build_mlp(ModelConfig(n_inputs=12, n_outputs=4, hidden=(32,), init="he"), torch.Generator().manual_seed(0))
    with torch.no_grad(), precision_context("bf16", "cpu"):
        out = net(data.test.X).float()
    loss, acc = evaluate(net, data.test, precision="bf16")
    assert loss == pytest.approx(nn.functional.cross_entropy(out, data.test.y).item(), rel=1e-6)
    assert acc == (out.argmax(1) == data.test.y).double().mean().item()


def test_a_bf16_step_is_the_fp32_step_to_bfloat16_precision(data):
    """One full-batch SGD step: the update agrees with float32's to a few bfloat16 steps, not to the bit."""
    model_cfg, _ = chapter_like(data)
    config = TrainConfig(epochs=1, batch_size=len(data.train), lr=0.5)
    before = build_mlp(model_cfg, torch.Generator().manual_seed(1))
    updates = {}
    for precision in ("fp32", "bf16"):
        net = build_mlp(model_cfg, torch.Generator().manual_seed(1))
        fit(net, data, dataclasses.replace(config, precision=precision))
        updates[precision] = [(p - q).detach() for p, q in zip(net.parameters(), before.parameters())]
    for u32, u16 in zip(updates["fp32"], updates["bf16"]):
        scale = u32.abs().max()
        assert scale > 0
        assert (u16 - u32).abs().max() <= 16 * BF16_EPS * scale  # a few roundings of every operand
    assert any((u16 - u32).abs().max() > 0 for u32, u16 in zip(updates["fp32"], updates["bf16"]))


def test_fit_in_bf16_learns_as_fp32_does(data):
    model_cfg, config = chapter_like(data, epochs=4)
    histories = {}
    for precision in ("fp32", "bf16"):
        net = build_mlp(model_cfg, torch.Generator().manual_seed(0))
        histories[precision] = fit(net, data, dataclasses.replace(config, precision=precision))
    h32, h16 = histories["fp32"], histories["bf16"]
    assert h16.status == "ok" and h16.final.test_acc > 0.65  # these blobs overlap: about 0.75 at best
    assert h16.final.train_loss == pytest.approx(h32.final.train_loss, rel=0.05)
    assert abs(h16.final.test_acc - h32.final.test_acc) <= 0.03


def test_train_group_in_bf16_trains_each_model_as_fit_in_bf16_does(data, device):
    """The batched bf16 step rounds the same operands; ``bmm`` and ``mm`` sum in other orders, so
    the trajectories part by bfloat16 roundings, not by more. (With dropout the engine's masks are
    not fit's, see mlplab.sweep.batched, so only the model without dropout is compared.) On CUDA
    (``MLPLAB_TEST_DEVICE=cuda``) the group's steps are CUDA graphs captured under autocast."""
    model_cfg, config = chapter_like(data, precision="bf16", device=device)
    trials = [Trial(dataclasses.replace(model_cfg, dropout=p), config) for p in (0.0, 0.3)]
    results = train_group(trials, data, device)
    history = fit(build_mlp(trials[0].model, torch.Generator().manual_seed(0)), data, trials[0].train)
    assert [r.history.status for r in results] == [history.status] * 2 == ["ok"] * 2
    for got, want in zip(results[0].history.records, history.records):
        assert got.train_loss == pytest.approx(want.train_loss, rel=0.01)
        assert got.test_loss == pytest.approx(want.test_loss, rel=0.01)
        assert got.test_acc == pytest.approx(want.test_acc, abs=0.02)


def test_fp32_and_bf16_never_share_a_group_and_both_take_the_fused_cpu_step(data):
    model_cfg, config = chapter_like(data)
    fp32, bf16 = Trial(model_cfg, config), Trial(model_cfg, dataclasses.replace(config, precision="bf16"))
    groups = plan([fp32, bf16], max_models=10)
    assert sorted(len(g) for g in groups) == [1, 1]
    assert {g.trials[0].train.precision for g in groups} == {"fp32", "bf16"}
    seen = []
    original = _Step.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append((self.precision, self.fused is not None and self.fused.bf16))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_Step, "__init__", spy)
        for trial in (fp32, bf16):
            train_group([trial], data, model=BatchedMLP.from_trials([trial]))
    assert seen == [("fp32", False), ("bf16", True)]


def bf16_trials(epochs: int, batch_size: int) -> list[Trial]:
    """Three ReLU models with dropout and weight decay, in bf16."""
    spec = SweepSpec(
        base={"hidden": (32, 16), "epochs": epochs, "batch_size": batch_size, "dropout1": 0.3, "dropout2": 0.2,
              "weight_decay": 0.01, "init": "he", "precision": "bf16"},
        grid={"lr": (0.05, 0.1, 0.2)},
    )  # fmt: skip
    return spec.trials(n_inputs=12, n_outputs=4)


def bf16_group(data, epochs: int, fused: bool, batch_size: int = 64) -> tuple[list, BatchedMLP]:
    """:func:`bf16_trials` trained by the fused step or by the autograd step: (results, trained model)."""
    trials = bf16_trials(epochs, batch_size)
    model = BatchedMLP.from_trials(trials)
    return train_group(trials, data, model=model, fused=fused), model


def test_the_fused_bf16_step_updates_as_the_autograd_bf16_step(data):
    """One step: both multiply the same bfloat16 operands; they round the learning rate in at
    another place and sum the bias gradient in float32 (fused) or bfloat16 (autograd), so the
    updates agree to bfloat16's precision, not to the bit."""
    before = BatchedMLP.from_trials(bf16_trials(1, len(data.train)))
    updates = {}
    for fused in (True, False):
        _, model = bf16_group(data, 1, fused, batch_size=len(data.train))  # one full-batch step
        updates[fused] = [(p - q).detach() for p, q in zip(model.parameters(), before.parameters())]
    for a, b in zip(updates[True], updates[False]):
        scale = b.abs().max()
        assert scale > 0
        assert (a - b).abs().max() <= 3 * BF16_EPS * scale  # measured: at most 1.04 steps of bfloat16
    assert any((a - b).abs().max() > 0 for a, b in zip(updates[True], updates[False]))


def test_the_fused_bf16_step_trains_as_the_autograd_bf16_step(data):
    fused, _ = bf16_group(data, 3, True)
    autograd, _ = bf16_group(data, 3, False)
    for rf, ra in zip(fused, autograd):
        assert rf.history.status == ra.history.status == "ok"
        for got, want in zip(rf.history.records, ra.history.records):
            assert got.train_loss == pytest.approx(want.train_loss, rel=0.01)
            assert got.test_loss == pytest.approx(want.test_loss, rel=0.01)
            assert got.test_acc == pytest.approx(want.test_acc, abs=0.02)


def test_precision_is_a_sweep_axis_and_fp32_keys_stay_as_they_were():
    spec = SweepSpec.from_dict({"grid": {"precision": ["fp32", "bf16"]}, "base": {"hidden": [8]}})
    trials = spec.trials(n_inputs=12, n_outputs=4)
    assert [t.train.precision for t in trials] == ["fp32", "bf16"]
    plain = SweepSpec.from_dict({"base": {"hidden": [8]}}).trials(n_inputs=12, n_outputs=4)[0]
    assert trials[0].key == plain.key  # the default stays out of the key: stored sweeps resume
    assert trials[1].key != plain.key
    assert trials[1].params()["precision"] == "bf16"


def test_the_scratch_mlp_refuses_bf16(data):
    net = MLP([12, 8, 4], generator=torch.Generator().manual_seed(0))  # the scratch MLP
    with pytest.raises(ConfigError, match="precision.*scratch"):
        fit(net, data, TrainConfig(epochs=1, precision="bf16"))


def test_the_fused_bf16_step_regresses_as_the_autograd_bf16_step():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(240, 6, generator=gen)
    target = X @ torch.randn(6, 2, generator=gen)
    data = Data(Split(X[:200], target[:200]), Split(X[200:], target[200:]))
    spec = SweepSpec(
        base={"hidden": (16,), "epochs": 3, "batch_size": 25, "loss": "mse", "dropout1": 0.2, "precision": "bf16"},
        grid={"lr": (0.01, 0.05)},
    )
    trials = spec.trials(6, 2)
    fused, autograd = (train_group(trials, data, fused=f) for f in (True, False))
    for rf, ra in zip(fused, autograd):
        assert rf.history.final.test_loss < rf.history.initial_loss  # it learned
        for got, want in zip(rf.history.records, ra.history.records):
            assert got.train_loss == pytest.approx(want.train_loss, rel=0.02)
            assert got.test_loss == pytest.approx(want.test_loss, rel=0.02)
