"""fit: convergence to closed-form optima, divergence, resume, evaluation mode, configuration."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from mlplab import train
from mlplab.data import Data, Split, synthetic
from mlplab.errors import ConfigError, MlplabError
from mlplab.models import ModelConfig, build_mlp
from mlplab.train import Callback, History, TrainConfig, evaluate, fit, make_optimizer, resolve_device, set_lr


def blobs(gen, n=256, d=20, k=4) -> Data:
    both = synthetic.classification_blobs(n + n // 2, d, k, generator=gen)  # one set of centres
    return Data(Split(both.X[:n], both.y[:n]), Split(both.X[n:], both.y[n:]))


def test_linear_regression_reaches_the_least_squares_optimum(gen):
    true_w = torch.tensor([2.0, -3.4, 1.5])
    data = Data(
        synthetic.linear(true_w, 4.2, 500, noise=0.1, generator=gen),
        synthetic.linear(true_w, 4.2, 100, noise=0.1, generator=gen),
    )
    model = nn.Linear(3, 1)
    nn.init.zeros_(model.weight), nn.init.zeros_(model.bias)
    fit(model, data, TrainConfig(epochs=40, batch_size=10, lr=0.03, loss="mse"))
    # closed form: the least-squares fit of [X, 1] to y minimises the training MSE
    A = torch.cat([data.train.X, torch.ones(500, 1)], dim=1).double()
    solution = torch.linalg.lstsq(A, data.train.y.double()).solution
    best = ((A @ solution - data.train.y.double()) ** 2).mean().item()
    reached, _ = evaluate(model, data.train, "mse")
    assert reached == pytest.approx(best, rel=0.02)
    torch.testing.assert_close(model.weight.detach().double().ravel(), solution[:3].ravel(), atol=0.02, rtol=0)


def test_history_has_one_record_per_epoch_with_sane_metrics(gen):
    data = blobs(gen)
    net = build_mlp(ModelConfig(hidden=(16,), n_inputs=20, n_outputs=4, init="xavier"), gen)
    history = fit(net, data, TrainConfig(epochs=5, batch_size=32, lr=0.1))
    assert [r.epoch for r in history.records] == [1, 2, 3, 4, 5] and history.status == "ok"
    assert history.final.test_acc > 0.9 and history.records[0].train_loss > history.final.train_loss
    # the recorded test metrics are exactly what evaluate() reports for the final model
    assert evaluate(net, data.test) == pytest.approx((history.final.test_loss, history.final.test_acc))


def test_divergence_stops_training_with_a_status(gen):
    data = Data(
        synthetic.linear([1.0, 2.0], 0.0, 200, generator=gen), synthetic.linear([1.0, 2.0], 0.0, 50, generator=gen)
    )
    model = nn.Linear(2, 1)
    history = fit(model, data, TrainConfig(epochs=20, batch_size=10, lr=50.0, loss="mse"))
    assert history.status == "diverged"
    assert len(history.records) < 20
    assert not math.isfinite(history.final.train_loss)
    assert history.final.to_dict()["train_loss"] is None  # JSON-safe


class StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, record) -> None:
        if record.epoch == self.epoch:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C after this epoch's checkpoint


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, optimizer):
    data = blobs(torch.Generator().manual_seed(0))
    model_cfg = ModelConfig(hidden=(32, 16), n_inputs=20, n_outputs=4, dropout=(0.3, 0.2))
    cfg = TrainConfig(epochs=4, batch_size=16, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3, seed=3)

    straight = build_mlp(model_cfg, torch.Generator().manual_seed(1))
    full = fit(straight, data, cfg)

    interrupted = build_mlp(model_cfg, torch.Generator().manual_seed(1))
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, data, cfg, checkpoint=tmp_path / "ckpt.pt", callbacks=[StopAfter(2)])
    resumed = build_mlp(model_cfg, torch.Generator().manual_seed(1))  # fresh weights: all state from the file
    history = fit(resumed, data, cfg, checkpoint=tmp_path / "ckpt.pt", resume=True)

    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    strip = lambda h: [dataclasses.replace(r, seconds=0.0) for r in h.records]
    assert strip(history) == strip(full)


def test_resume_refuses_a_changed_config(tmp_path, gen):
    data = blobs(gen)
    net = build_mlp(ModelConfig(hidden=(8,), n_inputs=20, n_outputs=4), gen)
    fit(net, data, TrainConfig(epochs=1, batch_size=32), checkpoint=tmp_path / "c.pt")
    with pytest.raises(MlplabError, match=r"config changed \(lr: 0.1 -> 0.2\)"):
        fit(net, data, TrainConfig(epochs=2, batch_size=32, lr=0.2), checkpoint=tmp_path / "c.pt", resume=True)


def moved_checkpoint(path, device: str) -> None:
    """Rewrite a CPU run's checkpoint as if it had been trained on ``device`` (what a GPU run's says)."""
    state = torch.load(path, weights_only=True)
    state["config"]["device"] = device
    state["cuda_rng"] = [torch.zeros(16, dtype=torch.uint8)]  # a CUDA run's generator state, unused on a CPU
    torch.save(state, path)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_a_run_trained_on_another_device_resumes_here_and_goes_on(tmp_path, dropout):
    data = blobs(torch.Generator().manual_seed(0))
    model_cfg = ModelConfig(hidden=(16,), n_inputs=20, n_outputs=4, dropout=dropout)
    cfg = TrainConfig(epochs=3, batch_size=32, optimizer="adam", lr=1e-3, seed=2)
    full = fit(build_mlp(model_cfg, torch.Generator().manual_seed(1)), data, cfg)
    fit(build_mlp(model_cfg, torch.Generator().manual_seed(1)), data, dataclasses.replace(cfg, epochs=2),
        checkpoint=tmp_path / "c.pt")  # fmt: skip
    moved_checkpoint(tmp_path / "c.pt", "cuda")  # trained on a GPU, say; continued on this CPU
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "c.pt").write_bytes((tmp_path / "c.pt").read_bytes())
    resumed = [
        fit(build_mlp(model_cfg, torch.Generator().manual_seed(7)), data, cfg, checkpoint=folder / "c.pt", resume=True)
        for folder in (tmp_path, tmp_path / "again")
    ]
    strip = lambda h: [dataclasses.replace(r, seconds=0.0) for r in h.records]
    assert strip(resumed[0]) == strip(resumed[1])  # deterministic
    assert strip(resumed[0])[:2] == strip(full)[:2]
    if dropout:  # the CPU's dropout stream, never drawn from by the run so far, is seeded afresh
        assert strip(resumed[0])[2] != strip(full)[2]
    else:  # nothing random left: the state moved over whole (weights, Adam's moments, batch order)
        assert strip(resumed[0]) == strip(full)
    assert torch.load(tmp_path / "c.pt", weights_only=True)["config"]["device"] == "cpu"


def test_evaluation_runs_in_eval_mode_and_restores_the_mode(gen):
    data = blobs(gen)
    net = build_mlp(ModelConfig(hidden=(64,), n_inputs=20, n_outputs=4, dropout=0.5), gen)
    net.train()
    first, second = evaluate(net, data.test), evaluate(net, data.test)
    assert first == second  # dropout off: deterministic
    with torch.no_grad():
        net.eval()
        expected = nn.functional.cross_entropy(net(data.test.X), data.test.y).item()
    net.train()
    assert first[0] == pytest.approx(expected, rel=1e-6)
    evaluate(net, data.test)
    assert net.training


def test_fit_leaves_the_callers_global_rng_alone(gen):
    data = blobs(gen)
    net = build_mlp(ModelConfig(hidden=(8,), n_inputs=20, n_outputs=4, dropout=0.5), gen)
    state = torch.get_rng_state()
    fit(net, data, TrainConfig(epochs=1, batch_size=32))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("decay_biases", [True, False])
def test_one_sgd_step_with_weight_decay_matches_the_hand_computation(decay_biases):
    # One example x = (1, 2), target 3, model w = (0.5, -1), b = 0.25, MSE loss:
    #   prediction = 0.5*1 - 1*2 + 0.25 = -1.25;  residual r = -1.25 - 3 = -4.25
    #   dL/dw = 2 r x = (-8.5, -17);  dL/db = 2 r = -8.5
    # SGD with L2 decay lambda = 0.1, lr = 0.01:  w <- w - lr (dL/dw + lambda w)
    #   w1 = 0.5 - 0.01 (-8.5 + 0.05)  = 0.5845
    #   w2 = -1  - 0.01 (-17  - 0.1)   = -0.829
    #   b  = 0.25 - 0.01 (-8.5 + 0.025) = 0.33475   (decayed)   or   0.335 (weights only)
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0]])
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0]]))
        model.bias.fill_(0.25)
    cfg = TrainConfig(epochs=1, batch_size=1, lr=0.01, weight_decay=0.1, decay_biases=decay_biases, loss="mse")
    fit(model, Data(Split(x, y), Split(x, y)), cfg)
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[0.5845, -0.829]]))
    torch.testing.assert_close(model.bias.detach(), torch.tensor([0.33475 if decay_biases else 0.335]))


@pytest.mark.parametrize("decay_biases", [True, False])
def test_one_sgd_step_with_l1_matches_the_hand_computation(decay_biases):
    # The example above (dL/dw = (-8.5, -17), dL/db = -8.5, loss r^2 = 18.0625) with an L1 penalty
    # l1 = 0.1 and lr = 0.01: w <- w - lr (dL/dw + l1 sign(w)), sign(w) = (1, -1), sign(b) = 1
    #   w1 = 0.5 - 0.01 (-8.5 + 0.1)  = 0.584
    #   w2 = -1  - 0.01 (-17  - 0.1)  = -0.829
    #   b  = 0.25 - 0.01 (-8.5 + 0.1) = 0.334   (penalized)   or   0.335 (weights only)
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0]])
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0]]))
        model.bias.fill_(0.25)
    cfg = TrainConfig(epochs=1, batch_size=1, lr=0.01, l1=0.1, decay_biases=decay_biases, loss="mse")
    history = fit(model, Data(Split(x, y), Split(x, y)), cfg)
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[0.584, -0.829]]))
    torch.testing.assert_close(model.bias.detach(), torch.tensor([0.334 if decay_biases else 0.335]))
    assert history.final.train_loss == pytest.approx(18.0625)  # the data loss, without 0.1 * sum |w|


def test_a_loss_that_does_not_suit_the_targets_is_a_clear_error(gen):
    labels = blobs(gen)
    with pytest.raises(ConfigError, match=r"loss = 'mse' .*torch\.int64 class labels"):
        fit(nn.Linear(20, 4), labels, TrainConfig(epochs=1, loss="mse"))
    targets = Data(synthetic.linear([1.0, 2.0], 0.0, 16, generator=gen), synthetic.linear([1.0, 2.0], 0.0, 8))
    with pytest.raises(ConfigError, match=r"loss = 'cross_entropy' .*torch\.float32 \(regression\): use loss=mse"):
        fit(nn.Linear(2, 1), targets, TrainConfig(epochs=1))


def test_the_scratch_mlp_refuses_an_l1_penalty(gen):
    from mlplab.scratch import MLP

    with pytest.raises(ConfigError, match="l1 = 0.1 .*no L1 penalty"):
        fit(MLP([20, 4]), blobs(gen), TrainConfig(epochs=1, l1=0.1))


def test_a_checkpoint_written_before_l1_existed_resumes(tmp_path, gen):
    data = blobs(gen)
    net = build_mlp(ModelConfig(hidden=(8,), n_inputs=20, n_outputs=4), gen)
    fit(net, data, TrainConfig(epochs=1, batch_size=32), checkpoint=tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    del state["config"]["l1"]  # as an older mlplab wrote it
    torch.save(state, tmp_path / "c.pt")
    history = fit(net, data, TrainConfig(epochs=2, batch_size=32), checkpoint=tmp_path / "c.pt", resume=True)
    assert len(history.records) == 2


@pytest.mark.parametrize(
    ("kwargs", "field", "hint"),
    [
        ({"lr": 0}, "lr", "> 0"),
        ({"lr": -0.1}, "lr", "> 0"),
        ({"lr": float("nan")}, "lr", "finite"),
        ({"weight_decay": -1e-3}, "weight_decay", ">= 0"),
        ({"l1": -1e-3}, "l1", "the L1 penalty must be a finite number >= 0"),
        ({"l1": float("inf")}, "l1", "finite"),
        ({"epochs": 0}, "epochs", ">= 1"),
        ({"batch_size": 0}, "batch_size", ">= 1"),
        ({"batch_size": 1.5}, "batch_size", "integer"),
        ({"optimizer": "rmsprop"}, "optimizer", "sgd, adam, adamw"),
        ({"loss": "hinge"}, "loss", "cross_entropy, mse"),
        ({"device": "gpu"}, "device", "cpu, cuda, cuda:N or mps"),
        ({"seed": -1}, "seed", ">= 0"),
    ],
)
def test_bad_train_configs_name_field_value_and_range(kwargs, field, hint):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kwargs)
    assert str(info.value).startswith(f"{field} = ") and hint in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error(gen):
    with pytest.raises(ConfigError, match="CUDA is not available on this machine; use --device cpu"):
        fit(nn.Linear(20, 4), blobs(gen), TrainConfig(device="cuda"))


def test_a_cuda_device_this_machine_lacks_is_a_clear_error():
    # without CUDA: "not available"; with fewer than 100 GPUs: the ordinals that exist
    with pytest.raises(ConfigError, match=r"device.*cuda:99.*(not available|CUDA device\(s\))"):
        resolve_device("cuda:99")


def test_history_round_trips_through_its_dict(gen):
    data = blobs(gen)
    history = fit(
        build_mlp(ModelConfig(hidden=(8,), n_inputs=20, n_outputs=4), gen), data, TrainConfig(epochs=2, batch_size=64)
    )
    assert History.from_dict(history.to_dict()) == history


def test_sample_weights_must_match_the_training_rows_and_need_autograd(gen):
    data = blobs(gen)
    with pytest.raises(ConfigError, match="sample_weight"):
        fit(nn.Linear(20, 4), data, TrainConfig(epochs=1), sample_weight=torch.ones(len(data.train) - 1))
    from mlplab.scratch import MLP

    with pytest.raises(ConfigError, match="sample_weight"):
        fit(MLP([20, 4]), data, TrainConfig(epochs=1), sample_weight=torch.ones(len(data.train)))
    assert evaluate(nn.Linear(20, 4), Split(data.test.X[:0], data.test.y[:0]))[1] is None  # nothing to evaluate


def test_fit_with_progress_shows_a_row_per_epoch_and_trains_the_same(gen, capsys):
    X = torch.randn(64, 5, generator=gen)
    data = Data(Split(X, (X[:, 0] > 0).long()), Split(X[:16], (X[:16, 0] > 0).long()))
    torch.manual_seed(0)
    quiet, loud = torch.nn.Linear(5, 2), torch.nn.Linear(5, 2)
    loud.load_state_dict(quiet.state_dict())
    config = TrainConfig(epochs=3, batch_size=16)
    a = fit(quiet, data, config)
    assert capsys.readouterr().out == ""  # silent unless asked
    b = fit(loud, data, config, progress=True)
    shown = capsys.readouterr().out
    assert "train_loss" in shown and all(f"    {e}  " in shown for e in (1, 2, 3))
    assert [r.test_loss for r in a.records] == [r.test_loss for r in b.records]


@pytest.mark.parametrize(
    ("train_loss", "test_acc", "expected"),
    [
        (0.5, 0.85, "ok"),
        (0.5, 0.1058, "failed: at chance"),  # 1/10 + 1.96 sqrt(0.1 * 0.9 / 10000) = 0.10588
        (0.5, 0.1059, "ok"),
        (0.5, 0.02, "failed: at chance"),  # worse than guessing is no better
        (4.7, 0.85, "failed: loss rose"),  # > 2 x 2.3026
        (4.6, 0.85, "ok"),
        (float("inf"), 0.1, "diverged"),
        (8e6, None, "failed: loss rose"),  # a regression: no accuracy to judge
        (0.5, None, "ok"),
    ],
)
def test_outcome_follows_the_documented_rule(train_loss, test_acc, expected):
    from mlplab.train import EpochRecord, outcome

    record = EpochRecord(3, train_loss, None, 1.0, test_acc, 0.1)
    n_classes = None if test_acc is None else 10
    assert outcome(record, math.log(10), n_classes, 10_000) == expected


def test_a_learning_rate_of_10000_ends_as_failed_not_ok(gen):
    X = torch.randn(512, 8, generator=gen)
    y = (X[:, :2].sum(1) > 0).long() + 2 * (X[:, 2] > 0).long()  # 4 learnable classes
    data = Data(Split(X[:384], y[:384]), Split(X[384:], y[384:]))
    torch.manual_seed(0)
    good = fit(
        torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)),
        data,
        TrainConfig(epochs=20, batch_size=32, lr=0.1),
    )
    assert good.status == "ok" and good.final.test_acc > 0.7
    torch.manual_seed(0)
    bad = fit(
        torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)),
        data,
        TrainConfig(epochs=5, batch_size=32, lr=1e4),
    )
    assert bad.status in ("failed: loss rose", "failed: at chance", "diverged") and not bad.ok
    assert bad.initial_loss == pytest.approx(math.log(4), abs=0.5)


@pytest.mark.parametrize("decay_biases", [True, False])
def test_plain_sgd_moves_weights_as_torch_optim_sgd_does_to_the_bit(decay_biases):
    config = TrainConfig(lr=0.3, weight_decay=0.05, decay_biases=decay_biases)
    gen = torch.Generator().manual_seed(0)
    ours, theirs = (build_mlp(ModelConfig(hidden=(7, 5), n_inputs=6, n_outputs=3), gen) for _ in range(2))
    theirs.load_state_dict(ours.state_dict())
    opt_ours = make_optimizer(ours, config)
    if decay_biases:
        groups = [{"params": list(theirs.parameters()), "weight_decay": 0.05}]
    else:  # the same split into weight matrices and the rest as make_optimizer's
        groups = [
            {"params": [p for p in theirs.parameters() if p.ndim >= 2], "weight_decay": 0.05},
            {"params": [p for p in theirs.parameters() if p.ndim < 2], "weight_decay": 0.0},
        ]
    opt_theirs = torch.optim.SGD(groups, lr=0.3, foreach=True)
    assert isinstance(opt_ours, train.PlainSGD)
    assert isinstance(make_optimizer(ours, dataclasses.replace(config, momentum=0.9)), torch.optim.SGD)
    params = [p for g in opt_ours.param_groups for p in g["params"]]
    for step in range(4):
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        grads[1] = None if step == 1 else grads[1]  # a parameter the loss did not reach stays put
        for p, grad in zip([p for group in opt_theirs.param_groups for p in group["params"]], grads):
            p.grad = None if grad is None else grad.clone()
        opt_theirs.step()
        if step < 3:
            opt_ours.step(grads)
        else:  # from .grad, as torch's step takes them
            for p, grad in zip(params, grads):
                p.grad = grad.clone()
            opt_ours.step()
        for a, b in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(a, b)
    assert all(p.grad is not None for p in ours.parameters())  # left as backward would leave them
    opt_ours.zero_grad()
    assert all(p.grad is None for p in ours.parameters())


def test_plain_sgd_state_dict_is_torchs_and_each_loads_the_other():
    net = build_mlp(ModelConfig(hidden=(5,), n_inputs=4, n_outputs=3), torch.Generator().manual_seed(0))
    ours = make_optimizer(net, TrainConfig(lr=0.2, weight_decay=0.01, decay_biases=False))
    weights = [p for p in net.parameters() if p.ndim >= 2]
    rest = [p for p in net.parameters() if p.ndim < 2]
    groups = [{"params": weights, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}]
    theirs = torch.optim.SGD(groups, lr=0.2, momentum=0, foreach=True)
    assert ours.state_dict() == theirs.state_dict()
    set_lr(theirs, 0.05)
    ours.load_state_dict(theirs.state_dict())  # a checkpoint written with torch's class resumes
    assert [g["lr"] for g in ours.param_groups] == [0.05, 0.05]
    set_lr(ours, 0.07)
    theirs.load_state_dict(ours.state_dict())
    assert [g["lr"] for g in theirs.param_groups] == [0.07, 0.07]
    one_group = torch.optim.SGD(net.parameters(), lr=0.2).state_dict()
    with pytest.raises(ValueError, match=r"hold \[4\] parameters, this optimizer's \[2, 2\]"):
        ours.load_state_dict(one_group)
    momentum = torch.optim.SGD([{"params": weights}, {"params": rest}], lr=0.2, momentum=0.9).state_dict()
    with pytest.raises(ValueError, match="momentum"):
        ours.load_state_dict(momentum)


def test_training_imports_neither_torch_compile_nor_sympy():
    """Building a model and training it (fit, and a sweep's group) import neither torch._dynamo nor
    sympy: torch.optim's optimizers and to_empty on meta tensors would, about 1.2 s of start-up."""
    code = (
        "import sys, torch\n"
        "from mlplab.data.batching import Data, Split\n"
        "from mlplab.models import ModelConfig, build_mlp\n"
        "from mlplab.sweep import SweepSpec, train_group\n"
        "from mlplab.train import TrainConfig, fit\n"
        "X = torch.randn(64, 6); y = (X[:, 0] > 0).long()\n"
        "data = Data(Split(X[:48], y[:48]), Split(X[48:], y[48:]))\n"
        "model = ModelConfig(hidden=(8,), n_inputs=6, n_outputs=2)\n"
        "fit(build_mlp(model, torch.Generator().manual_seed(0)), data, TrainConfig(epochs=1, batch_size=16))\n"
        "spec = SweepSpec(base={'hidden': [8], 'epochs': 1, 'batch_size': 16}, grid={'dropout': [0.0, 0.5]})\n"
        "train_group(spec.trials(n_inputs=6, n_outputs=2), data, 'cpu')\n"
        "print(','.join(m for m in ('torch._dynamo', 'sympy', 'pandas') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"imported while training: {done.stdout.strip()}"


def graph_case(device: str) -> tuple[Data, ModelConfig, TrainConfig]:
    """fit's CUDA-graph tests: 400 rows in batches of 48 (8 full batches and one of 16), dropout."""
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(500, 12, generator=gen)
    y = (X[:, :4].argmax(1) + (X[:, 4] > 1).long()) % 4
    data = Data(Split(X[:400], y[:400]), Split(X[400:], y[400:]))
    cfg = ModelConfig(hidden=(32, 16), dropout=0.3, n_inputs=12, n_outputs=4, init="he")
    return data, cfg, TrainConfig(epochs=3, batch_size=48, lr=0.2, weight_decay=1e-3, device=device)


def test_fit_on_an_emulated_cuda_graph_computes_what_its_eager_steps_compute(emulated_cuda_graphs, monkeypatch):
    """fit's CUDA-graph path (static batch, one capture, replays; dropout drawn inside the graph)
    on a graph emulated on the CPU (tests/conftest.py): to the bit what eager steps compute."""
    real = train.check_graphable
    monkeypatch.setattr(train, "check_graphable", lambda m, o, c, d, w=None, field="cuda_graphs": real(m, o, c, torch.device("cuda"), w, field))  # fmt: skip
    data, cfg, config = graph_case("cpu")
    nets = [build_mlp(cfg, torch.Generator().manual_seed(0)) for _ in range(2)]
    eager, graphed = (fit(n, data, config, cuda_graphs=g) for n, g in zip(nets, (False, True)))
    assert emulated_cuda_graphs[-1].replays == 3 * 8 - emulated_cuda_graphs[-1].WARMUP - 1  # 8 full batches an epoch
    strip = lambda h: [dataclasses.replace(r, seconds=0.0) for r in h.records]
    assert strip(eager) == strip(graphed)
    for p, q in zip(*(n.parameters() for n in nets)):
        assert torch.equal(p, q)


def test_cuda_graph_steps_of_fit_compute_what_eager_steps_compute(device):
    """On the CPU (CI) the clear errors; with MLPLAB_TEST_DEVICE=cuda the graphs themselves: 400
    rows in batches of 48 are 8 full batches (3 eager warm-ups, a capture, replays) and one of 16,
    dropout included (graphs advance the CUDA generator as eager steps do)."""
    data, cfg, config = graph_case(device)
    net = build_mlp(cfg, torch.Generator().manual_seed(0))
    for wrong, match in [
        (dataclasses.replace(config, optimizer="adam", lr=0.01), "sgd without momentum"),
        (dataclasses.replace(config, schedule="cosine"), "constant schedule"),
    ]:
        with pytest.raises(ConfigError, match=match):
            fit(net, data, wrong, cuda_graphs=True)
    with pytest.raises(ConfigError, match="sample weights"):
        fit(net, data, config, cuda_graphs=True, sample_weight=torch.ones(400))
    if not device.startswith("cuda"):
        with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
            fit(net, data, config, cuda_graphs=True)
        return
    nets = [build_mlp(cfg, torch.Generator().manual_seed(0)) for _ in range(2)]
    eager, graphed = (fit(n, data, config, cuda_graphs=g) for n, g in zip(nets, (False, True)))
    for a, b in zip(eager.records, graphed.records):
        assert (a.train_loss, a.test_loss) == pytest.approx((b.train_loss, b.test_loss), abs=1e-5)
        assert (a.train_acc, a.test_acc) == pytest.approx((b.train_acc, b.test_acc), abs=1e-6)
    for p, q in zip(*(n.parameters() for n in nets)):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=0)
