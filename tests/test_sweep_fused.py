"""The hand-fused CPU SGD step (mlplab.sweep.fused) against the autograd step and its optimizer.

The autograd step (``train_group(..., fused=False)``) is itself checked against ``fit`` in
test_sweep_batched.py; here the two steps of ``train_group`` are compared with each other, on the
same initial weights, batches and dropout masks. Tolerance ``atol=1e-5``: the fused update sums
``p - A^T (lr dZ)`` in another order than ``p - lr (A^T dZ)``, which changes the last bits.
"""

from __future__ import annotations

import pytest
import torch

from mlplab.data import Data, Split
from mlplab.sweep import BatchedMLP, SweepSpec, synthetic_data, train_group
from mlplab.sweep import fused as fused_module
from mlplab.sweep.fused import FusedReluSGD, supports
from mlplab.sweep.optim import BatchedAdam, BatchedSGD

ATOL = 1e-5
FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc")


@pytest.fixture(scope="module")
def data():
    return synthetic_data(n_train=300, n_test=100, n_features=10, n_classes=4)


@pytest.fixture
def fused_calls(monkeypatch) -> list[bool]:
    """One entry per fused step attempted: True when it took the step, False when it handed it back."""
    calls: list[bool] = []
    original = FusedReluSGD.__call__

    def spy(self, *args):
        out = original(self, *args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(FusedReluSGD, "__call__", spy)
    return calls


def train_both(trials, data):
    """``train_group`` with the fused step and with the autograd step: (results, weights) of each."""
    out = []
    for fused in (True, False):
        model = BatchedMLP.from_trials(trials)
        out.append((train_group(trials, data, model=model, fused=fused), model))
    return out


def assert_same(a, b) -> None:
    (results_a, model_a), (results_b, model_b) = a, b
    for ra, rb in zip(results_a, results_b):
        assert ra.history.status == rb.history.status
        assert len(ra.history.records) == len(rb.history.records)
        for ea, eb in zip(ra.history.records, rb.history.records):
            for f in FIELDS:
                va, vb = getattr(ea, f), getattr(eb, f)
                assert (va is None and vb is None) or va == pytest.approx(vb, abs=ATOL, nan_ok=True), (
                    f"{f} at epoch {ea.epoch}"
                )
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, atol=ATOL, rtol=1e-4, equal_nan=True)


@pytest.mark.parametrize(
    "base",
    [
        {"hidden": (16, 8), "dropout1": 0.3, "dropout2": 0.5},  # dropout on both layers, scales folded and not
        {"hidden": (12,), "weight_decay": 0.1, "decay_biases": False},  # decay of weights only
        {"hidden": (12, 12, 6), "weight_decay": 0.05, "dropout2": 0.2},  # three layers, decayed biases
        {"hidden": (8,), "bias": False, "dropout1": 0.4},  # no biases at all
        {"hidden": (), "weight_decay": 0.01},  # softmax regression: no hidden layer
    ],
)
def test_fused_steps_train_like_the_autograd_step(data, base, fused_calls):
    spec = SweepSpec(base={"epochs": 3, "batch_size": 32, **base}, grid={"lr": (0.05, 0.2, 0.5)}, seeds=(1,))
    trials = spec.trials(10, 4)
    fused, autograd = train_both(trials, data)
    assert fused_calls and all(fused_calls)  # every step of the fused run was taken by the fused step
    assert_same(fused, autograd)


def test_regression_groups_take_fused_steps_with_the_mean_squared_error(fused_calls):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(200, 6, generator=gen)
    w = torch.randn(6, 2, generator=gen)
    data = Data(Split(X[:150], (X[:150] @ w)), Split(X[150:], (X[150:] @ w)))
    spec = SweepSpec(
        base={"hidden": (16,), "epochs": 3, "batch_size": 25, "loss": "mse", "dropout1": 0.2},
        grid={"lr": (0.01, 0.05)},
    )
    trials = spec.trials(6, 2)
    fused, autograd = train_both(trials, data)
    assert fused_calls and all(fused_calls)
    assert_same(fused, autograd)


def test_a_diverging_model_hands_its_step_back_and_is_frozen_like_the_autograd_step(data, fused_calls):
    spec = SweepSpec(
        base={"hidden": (16,), "epochs": 2, "batch_size": 32, "init": "normal:1"}, grid={"lr": (0.05, 1e4)}
    )
    trials = spec.trials(10, 4)
    fused, autograd = train_both(trials, data)
    assert [r.history.status for r in fused[0]][1] == "diverged"
    assert False in fused_calls  # the step whose loss was not finite went to the autograd step
    assert_same(fused, autograd)


def test_models_the_fused_step_does_not_cover_train_by_autograd(data, fused_calls):
    for base in (
        {"hidden": (8,), "activation": "tanh"},
        {"hidden": (8,), "l1": 0.01},
        {"hidden": (8,), "optimizer": "adam", "lr": 0.01},
    ):
        trials = SweepSpec(base={"epochs": 1, "batch_size": 50, **base}, grid={"lr": (0.01, 0.1)}).trials(10, 4)
        train_group(trials, data)
    narrow = SweepSpec(base={"hidden": (8,), "epochs": 1, "batch_size": 50}, grid={"features": (6, 10)}).trials(10, 4)
    train_group(narrow, data)  # padded input rows
    assert fused_calls == []


def test_supports_names_what_the_fused_step_covers():
    trials = SweepSpec(base={"hidden": (4,)}, grid={"lr": (0.1, 0.2)}).trials(3, 2)
    model = BatchedMLP.from_trials(trials)
    lr, wd = torch.tensor([0.1, 0.2]), [torch.zeros(2)] * len(model.parameters())
    assert supports(model, BatchedSGD(model.parameters(), lr, wd), "cross_entropy")
    assert supports(model, BatchedSGD(model.parameters(), lr, wd), "mse")
    assert not supports(model, BatchedAdam(model.parameters(), lr, wd, decoupled=False), "cross_entropy")
    assert not supports(model, BatchedSGD(model.parameters(), lr, wd, [torch.full((2,), 0.1)] * len(wd)), "mse")
    with pytest.raises(ValueError, match="ReLU"):
        FusedReluSGD(model, BatchedAdam(model.parameters(), lr, wd, decoupled=True), "mse")
    assert fused_module.LOSSES == ("cross_entropy", "mse")
