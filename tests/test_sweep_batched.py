"""The batched model against one-model-at-a-time references trained with the same seeds.

Tolerance: histories (losses, accuracies) and final weights agree to ``atol=1e-5`` (float32; the
batched matmuls sum in another order than ``nn.Linear``'s, which changes the last bits).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlplab.data import Data, Split, batches
from mlplab.errors import ConfigError
from mlplab.models import build_mlp
from mlplab.sweep import BatchedMLP, DropoutStreams, SweepSpec, dropout_seed, synthetic_data, train_group
from mlplab.sweep.optim import BETAS, EPS, BatchedAdam, BatchedSGD
from mlplab.train import INITIAL_LOSS_ROWS, EpochRecord, History, evaluate, fit, outcome

ATOL = 1e-5
FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc")


@pytest.fixture(scope="module")
def data() -> Data:
    return synthetic_data(n_train=384, n_test=128, n_features=12, n_classes=5)


def assert_same_history(a: History, b: History) -> None:
    assert a.status == b.status and len(a.records) == len(b.records)
    for ra, rb in zip(a.records, b.records):
        assert ra.epoch == rb.epoch
        for f in FIELDS:
            assert getattr(ra, f) == pytest.approx(getattr(rb, f), abs=ATOL), f"{f} at epoch {ra.epoch}"


def on(trial, device: str):
    """``trial.train`` with its device set to ``device``."""
    return dataclasses.replace(trial.train, device=device)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_without_dropout_a_group_trains_exactly_like_fit(data, optimizer, device):
    lrs = (0.05, 0.3) if optimizer == "sgd" else (1e-3, 1e-2)
    spec = SweepSpec(
        base={"hidden": (16, 8), "epochs": 3, "batch_size": 32, "optimizer": optimizer},
        grid={"lr": lrs, "weight_decay": (0.0, 0.05), "init": ("normal:0.1", "xavier"), "decay_biases": (True, False)},
        seeds=(4,),
    )
    trials = spec.trials(12, 5)
    results = train_group(trials, data, device)
    model = BatchedMLP.from_trials(trials)  # initial weights only, to check the export path
    for k, (trial, result) in enumerate(zip(trials, results)):
        net = build_mlp(trial.model, torch.Generator().manual_seed(trial.seed))
        for a, b in zip(net.parameters(), model.to_module(k, trial.model).parameters()):
            assert torch.equal(a, b)  # the same initial weights, bit for bit
        history = fit(net, data, on(trial, device))
        assert_same_history(result.history, history)
    assert results[0].seconds > 0


def test_final_weights_match_fit_and_export_to_modules(data):
    spec = SweepSpec(
        base={"hidden": (10,), "epochs": 2, "batch_size": 16, "activation": "prelu", "weight_decay": 0.01},
        grid={"lr": (0.1, 0.4)},
        seeds=(1,),
    )
    trials = spec.trials(12, 5)
    model = BatchedMLP.from_trials(trials)
    results = train_group(trials, data, model=model)
    assert len(model.slopes) == 1
    for k, (trial, result) in enumerate(zip(trials, results)):
        net = build_mlp(trial.model, torch.Generator().manual_seed(trial.seed))
        assert_same_history(result.history, fit(net, data, trial.train))
        exported = model.to_module(k, trial.model)
        for a, b in zip(net.parameters(), exported.parameters()):
            torch.testing.assert_close(a.detach(), b.detach(), atol=ATOL, rtol=0)
        assert evaluate(exported, data.test) == pytest.approx(
            (result.history.final.test_loss, result.history.final.test_acc), abs=ATOL
        )
    with pytest.raises(ConfigError, match="model"):
        train_group(trials[:1], data, model=model)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_other_activations_match_fit(data, activation, device):
    spec = SweepSpec(
        base={"hidden": (8, 8), "epochs": 2, "batch_size": 64, "activation": activation, "init": "xavier"},
        grid={"lr": (0.5, 1.0)},
        seeds=(0,),
    )
    trials = spec.trials(12, 5)
    for trial, result in zip(trials, train_group(trials, data, device)):
        net = build_mlp(trial.model, torch.Generator().manual_seed(0))
        assert_same_history(result.history, fit(net, data, on(trial, device)))


class StreamDropout(nn.Module):
    """Dropout drawing one (B, H) uniform per call from its own generator: the documented scheme."""

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        u = torch.rand(x.shape, generator=self.generator, device=x.device)
        return x * (u >= self.p).float() / (1.0 - self.p)


def sequential_reference(trial, data: Data, device: str = "cpu") -> History:
    """One model, torch.optim.SGD, nn layers, masks from per-layer generators: no sweep code."""
    data = data.to(device)
    net = build_mlp(trial.model, torch.Generator().manual_seed(trial.seed)).to(device)
    layer = -1
    for i, module in enumerate(net):
        if isinstance(module, (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.PReLU)):
            layer += 1
        if isinstance(module, nn.Dropout):
            gen = torch.Generator(device=device).manual_seed(dropout_seed(trial.seed, layer))
            net[i] = StreamDropout(module.p, gen)
    cfg = trial.train
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order = torch.Generator().manual_seed(cfg.seed)
    head = Split(data.train.X[:INITIAL_LOSS_ROWS], data.train.y[:INITIAL_LOSS_ROWS])
    history = History(initial_loss=evaluate(net, head)[0])
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        total, correct = 0.0, 0
        for X, y in batches(data.train, cfg.batch_size, order):
            out = net(X)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
        n = len(data.train)
        test_loss, test_acc = evaluate(net, data.test)
        history.records.append(EpochRecord(epoch, total / n, correct / n, test_loss, test_acc, 0.0))
    k = int(data.train.y.max()) + 1
    history.status = outcome(history.final, history.initial_loss, k, len(data.test))  # judged as fit judges
    return history


def test_with_dropout_a_group_matches_a_sequential_loop_with_the_same_masks(data, device):
    spec = SweepSpec(
        base={"hidden": (16, 16), "epochs": 3, "batch_size": 32, "lr": 0.3},
        grid={"dropout1": (0.0, 0.3, 0.8), "dropout2": (0.0, 0.5)},
        seeds=(2,),
    )
    trials = spec.trials(12, 5)
    for trial, result in zip(trials, train_group(trials, data, device)):
        assert_same_history(result.history, sequential_reference(trial, data, device))


def test_a_trial_trains_the_same_in_any_group(data):
    spec = SweepSpec(
        base={"hidden": (16, 16), "epochs": 2, "batch_size": 32, "lr": 0.3},
        grid={"dropout1": (0.0, 0.5), "dropout2": (0.0, 0.2, 0.7)},
        seeds=(0,),
    )
    trials = spec.trials(12, 5)
    together = train_group(trials, data)
    for k in (0, 3, 5):  # alone: layer streams that no other model needs are not even drawn
        assert_same_history(train_group([trials[k]], data)[0].history, together[k].history)


def test_dropout_gates_keep_one_minus_p_and_are_unbiased():
    p = torch.tensor([[0.0, 0.2], [0.5, 0.9]])  # (K=2, L=2)
    streams = DropoutStreams(7, p, torch.device("cpu"))
    gates = streams.gates(4000, [50, 50])
    for layer in range(2):
        for k in range(2):
            g = gates[layer][k]
            kept = (g > 0).float().mean().item()
            assert kept == pytest.approx(1 - p[k, layer].item(), abs=0.01)
            assert g.mean().item() == pytest.approx(1.0, abs=0.03)  # E[mask / (1 - p)] = 1
            values = g.unique().tolist()
            assert values[0] == 0.0 or p[k, layer] == 0
            assert values[-1] == pytest.approx(1.0 / (1.0 - p[k, layer].item())) and len(values) <= 2
    # common random numbers: a larger p keeps a subset of the units a smaller p keeps
    assert bool(((gates[1][1] > 0) <= (gates[1][0] > 0)).all())
    assert DropoutStreams(7, torch.zeros(2, 2), torch.device("cpu")).gates(8, [4, 4]) == [None, None]


def test_refilled_uniforms_are_the_stream_s_next_draws(device):
    # what a CUDA-graphed step relies on: refilling static buffers gives the numbers fresh draws give
    p = torch.tensor([[0.0, 0.3], [0.0, 0.6]])  # layer 0 dropped by no model: no stream, no buffer
    fresh, refilled = DropoutStreams(5, p, torch.device(device)), DropoutStreams(5, p, torch.device(device))
    buffers = refilled.draw(16, [8, 6])
    assert buffers[0] is None and torch.equal(buffers[1], fresh.draw(16, [8, 6])[1])
    for _ in range(3):
        expected = fresh.draw(16, [8, 6])[1]
        out = refilled.draw(16, [8, 6], out=buffers)
        assert out[1] is buffers[1] and torch.equal(buffers[1], expected)
    reference = torch.Generator(device=device).manual_seed(dropout_seed(5, 1))
    first = torch.rand(16, 6, generator=reference, device=device)
    assert torch.equal(DropoutStreams(5, p, torch.device(device)).draw(16, [8, 6])[1], first)


def test_dropout_seeds_differ_by_seed_and_layer():
    seeds = {dropout_seed(s, layer) for s in range(20) for layer in range(3)}
    assert len(seeds) == 60 and all(0 <= s < 2**63 for s in seeds)


def test_a_diverging_model_is_frozen_and_the_others_are_unaffected(data, device):
    spec = SweepSpec(
        base={"hidden": (16,), "epochs": 4, "batch_size": 32, "init": "normal:1"},
        grid={"lr": (0.1, 1000.0, 0.05)},
        seeds=(3,),
    )
    trials = spec.trials(12, 5)
    model = BatchedMLP.from_trials(trials, device)
    before = [W[1].detach().clone() for W in model.weights]  # no autograd link to the weights
    results = train_group(trials, data, device, model=model)
    bad = results[1].history
    assert bad.status == "diverged" and len(bad.records) < 4
    assert not math.isfinite(bad.final.train_loss)
    for k in (0, 2):
        assert results[k].history.status == "ok"
        assert_same_history(
            results[k].history,
            fit(build_mlp(trials[k].model, torch.Generator().manual_seed(3)), data, on(trials[k], device)),
        )
    assert all(
        torch.isfinite(W[1]).all() and not torch.equal(W[1], b) for W, b in zip(model.weights, before)
    )  # frozen finite


def test_all_models_diverging_ends_the_group_early(data):
    spec = SweepSpec(
        base={"hidden": (16,), "epochs": 20, "batch_size": 32, "init": "normal:1"}, grid={"lr": (1e4, 1e5)}
    )
    results = train_group(spec.trials(12, 5), data)
    assert all(r.history.status == "diverged" and len(r.history.records) < 20 for r in results)


def test_sgd_step_by_hand_and_frozen_models_stay_put():
    # model 0: w = [1, 2], g = [0.5, -1], lr 0.1, wd 0.01 -> w - 0.1 * (g + 0.01 w) = [0.949, 2.098]
    # model 1: dead, its gradient is nan: nothing may move
    w = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]])  # (K=2, 1, 2)
    g = torch.tensor([[[0.5, -1.0]], [[math.nan, math.inf]]])
    opt = BatchedSGD([w], torch.tensor([0.1, 0.1]), [torch.tensor([0.01, 0.01])])
    opt.step([g], torch.tensor([True, False]))
    assert w[0, 0].tolist() == pytest.approx([0.949, 2.098], abs=1e-6)
    assert w[1, 0].tolist() == [3.0, 4.0]


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_matches_torch_optim_per_model(decoupled):
    gen = torch.Generator().manual_seed(0)
    K, lrs, wds = 3, [1e-3, 1e-2, 3e-2], [0.0, 0.1, 0.5]
    w = torch.randn(K, 4, 5, generator=gen)
    refs = [w[k].clone().requires_grad_(True) for k in range(K)]
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    torch_opts = [cls([refs[k]], lr=lrs[k], weight_decay=wds[k], betas=BETAS, eps=EPS, foreach=False) for k in range(K)]
    ours = BatchedAdam([w], torch.tensor(lrs), [torch.tensor(wds)], decoupled=decoupled)
    for _ in range(5):
        g = torch.randn(K, 4, 5, generator=gen)
        for k in range(K):
            refs[k].grad = g[k].clone()
            torch_opts[k].step()
        ours.step([g.clone()], torch.ones(K, dtype=torch.bool))
    for k in range(K):
        torch.testing.assert_close(w[k], refs[k].detach(), atol=1e-6, rtol=1e-5)


def test_groups_must_share_a_shape(data):
    spec = SweepSpec(grid={"hidden": ((8,), (16,))})
    with pytest.raises(ConfigError, match="trials"):
        train_group(spec.trials(12, 5), data)


def test_group_needs_integer_labels_in_run_sweep(tmp_path):
    from mlplab.sweep import run_sweep

    regression = Data(Split(torch.randn(8, 3), torch.randn(8, 1)), Split(torch.randn(4, 3), torch.randn(4, 1)))
    with pytest.raises(ConfigError, match="labels"):
        run_sweep(SweepSpec(), regression, tmp_path / "s")


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_cuda_graph_steps_compute_what_eager_steps_compute(data, device, optimizer):
    # on the CPU (CI) this checks the clear error; MLPLAB_TEST_DEVICE=cuda checks the graphs themselves
    spec = SweepSpec(
        base={
            "hidden": (16, 16),
            "epochs": 3,
            "batch_size": 40,
            "optimizer": optimizer,
            "lr": 0.3 if optimizer == "sgd" else 0.01,
        },
        grid={"dropout1": (0.0, 0.4), "weight_decay": (0.0, 0.01)},
        seeds=(6,),
    )
    trials = spec.trials(12, 5)  # 384 rows: 9 full batches of 40 (3 eager, a capture, replays) and one of 24
    if not device.startswith("cuda"):
        with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
            train_group(trials, data, device, cuda_graphs=True)
        return
    eager_model, graphed_model = BatchedMLP.from_trials(trials, device), BatchedMLP.from_trials(trials, device)
    eager = train_group(trials, data, device, model=eager_model, cuda_graphs=False)
    graphed = train_group(trials, data, device, model=graphed_model, cuda_graphs=True)
    for a, b in zip(eager, graphed):
        assert_same_history(a.history, b.history)
    for a, b in zip(eager_model.parameters(), graphed_model.parameters()):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
