"""The batched engine on the chapter's regression experiments, against ``fit`` on the same seeds.

Regression (``loss="mse"``), the L1 penalty, ``bias=False`` layers and models that read only the
first ``n_inputs`` columns (the polynomial degrees of d2l 4.4) each train as ``fit`` trains the
one model. Tolerance: as in tests/test_sweep_batched.py, histories (losses; accuracies are None
for mse) and final weights agree to ``atol=1e-5`` (float32; the batched matmuls sum in another
order than ``nn.Linear``'s). The zero padding of narrower models is checked to stay exactly 0.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from mlplab.data import Data, Split, synthetic
from mlplab.errors import ConfigError
from mlplab.models import ModelConfig, build_mlp
from mlplab.sweep import BatchedMLP, SweepSpec, load_histories, load_results, run_sweep, synthetic_data, train_group
from mlplab.sweep.batched import evaluate_batched
from mlplab.sweep.optim import BatchedAdam, BatchedSGD
from mlplab.sweep.planner import check_memory, default_max_models, group_key, plan
from mlplab.sweep.runner import DATA_SETS, DATA_SIZES, REGRESSION_SETS, plan_sweep, sweep_data
from mlplab.sweep.spec import Trial
from mlplab.train import History, TrainConfig, evaluate, fit

ATOL = 1e-5
FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc")


def regression(target: str = "(n, 2)", n_train: int = 160, n_test: int = 64, d: int = 6) -> Data:
    """``y = tanh(X) W + noise``: float targets of shape (n,), (n, 1) or (n, 2)."""
    gen = torch.Generator().manual_seed(0)
    k = 2 if target == "(n, 2)" else 1
    W = torch.randn(d, k, generator=gen)
    X = torch.randn(n_train + n_test, d, generator=gen)  # (n, d)
    y = torch.tanh(X) @ W + 0.1 * torch.randn(n_train + n_test, k, generator=gen)  # (n, k)
    if target == "(n,)":
        y = y[:, 0]
    return Data(Split(X[:n_train], y[:n_train]), Split(X[n_train:], y[n_train:]))


@pytest.fixture(scope="module")
def blobs() -> Data:
    return synthetic_data(n_train=192, n_test=64, n_features=6, n_classes=3)


@pytest.fixture(scope="module")
def poly() -> Data:
    return synthetic.polynomial(n_train=100, n_test=50, max_degree=20, generator=torch.Generator().manual_seed(0))


def trials_of(model: dict, train: dict, grid: list[dict]) -> list[Trial]:
    """One trial per grid point: ``ModelConfig(**model)``, ``TrainConfig(**train, **point)``."""
    out = []
    for point in grid:
        m = {**model, **{k: v for k, v in point.items() if k in ModelConfig.__dataclass_fields__}}
        t = {**train, **{k: v for k, v in point.items() if k in TrainConfig.__dataclass_fields__}}
        out.append(Trial(ModelConfig(**m), TrainConfig(**t)))
    return out


def first_columns(data: Data, d: int) -> Data:
    """``data`` with only its first ``d`` input columns: what fit trains a d-input model on."""
    return Data(Split(data.train.X[:, :d], data.train.y), Split(data.test.X[:, :d], data.test.y))


def assert_same_history(a: History, b: History) -> None:
    assert a.status == b.status and len(a.records) == len(b.records)
    for ra, rb in zip(a.records, b.records):
        for f in FIELDS:
            x, y = getattr(ra, f), getattr(rb, f)
            if y is None:
                assert x is None, f"{f} at epoch {ra.epoch}"
            else:
                assert x == pytest.approx(y, abs=ATOL), f"{f} at epoch {ra.epoch}"


def assert_trains_like_fit(trials: list[Trial], data: Data, device: str = "cpu") -> BatchedMLP:
    """Train ``trials`` as one group; each model's history and final weights equal fit's on its columns."""
    model = BatchedMLP.from_trials(trials, device)
    results = train_group(trials, data, device, model=model)
    for k, (trial, result) in enumerate(zip(trials, results)):
        net = build_mlp(trial.model, torch.Generator().manual_seed(trial.seed))
        history = fit(net, first_columns(data, trial.model.n_inputs), dataclasses.replace(trial.train, device=device))
        assert_same_history(result.history, history)
        exported = model.to_module(k, trial.model)
        assert [n for n, _ in exported.named_parameters()] == [n for n, _ in net.named_parameters()]
        for a, b in zip(net.parameters(), exported.parameters()):
            torch.testing.assert_close(b.detach().cpu(), a.detach().cpu(), atol=ATOL, rtol=0)
    return model


# ---- regression -------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("hidden", [(), (8,)], ids=["linear", "hidden-8"])
@pytest.mark.parametrize("target", ["(n,)", "(n, 2)"])
def test_mse_groups_train_exactly_like_fit(optimizer, hidden, target, device):
    data = regression(target)
    lrs = (0.01, 0.05) if optimizer == "sgd" else (1e-3, 1e-2)
    trials = trials_of(
        {"hidden": hidden, "n_inputs": 6, "n_outputs": data.n_outputs, "init": "xavier"},
        {"epochs": 3, "batch_size": 16, "optimizer": optimizer, "loss": "mse", "seed": 2},
        [{"lr": lr, "weight_decay": wd} for lr in lrs for wd in (0.0, 0.05)],
    )
    model = assert_trains_like_fit(trials, data, device)
    loss, acc = evaluate_batched(model, data.to(device).test, loss="mse")
    assert acc is None and loss.shape == (len(trials),) and bool(torch.isfinite(loss).all())
    for k, trial in enumerate(trials):  # the batched evaluation is fit's evaluate of the exported model
        exported = model.to_module(k, trial.model).to(device)
        assert loss[k].item() == pytest.approx(evaluate(exported, data.to(device).test, "mse")[0], abs=ATOL)


def test_data_tells_labels_from_targets(blobs):
    assert blobs.is_classification and blobs.n_outputs == blobs.n_classes == 3
    for target, width in (("(n,)", 1), ("(n, 1)", 1), ("(n, 2)", 2)):
        data = regression(target)
        assert not data.is_classification and data.n_outputs == width
        with pytest.raises(ConfigError, match="n_outputs"):
            data.n_classes  # noqa: B018  (float targets have no classes)


# ---- the L1 penalty ---------------------------------------------------------------------------


@pytest.mark.parametrize("decay_biases", [True, False])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_l1_groups_train_exactly_like_fit(task, decay_biases, blobs):
    data = blobs if task == "classification" else regression("(n, 1)")
    loss = "cross_entropy" if task == "classification" else "mse"
    trials = trials_of(
        {"hidden": (8,), "n_inputs": 6, "n_outputs": data.n_outputs, "init": "normal:0.3"},
        {"epochs": 3, "batch_size": 16, "lr": 0.1, "loss": loss, "decay_biases": decay_biases, "seed": 5},
        [{"l1": l1, "weight_decay": wd} for l1 in (0.0, 1e-3, 3e-2) for wd in (0.0, 0.01)],
    )
    model = assert_trains_like_fit(trials, data)
    assert not torch.equal(model.weights[0][0], model.weights[0][4])  # l1 = 0 and l1 = 0.03 end apart


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_l1_with_adam_trains_like_fit(optimizer):
    trials = trials_of(
        {"hidden": (8,), "n_inputs": 6, "n_outputs": 1, "init": "xavier"},
        {"epochs": 3, "batch_size": 16, "lr": 0.01, "optimizer": optimizer, "loss": "mse", "decay_biases": False},
        [{"l1": l1, "weight_decay": wd} for l1 in (0.0, 0.01) for wd in (0.0, 0.1)],
    )
    assert_trains_like_fit(trials, regression("(n, 1)"))


def test_l1_step_by_hand_and_zero_entries_stay_put():
    # SGD, model 0: w = [1, -2, 0], g = [0.5, 0.5, 0.5], lr 0.1, l1 0.2, no decay:
    #   w - 0.1 (g + 0.2 sign(w)) = [1 - 0.07, -2 - 0.03, 0 - 0.05] = [0.93, -2.03, -0.05]
    # model 1: l1 0, the plain step [0.95, -2.05, -0.05]
    w = torch.tensor([[[1.0, -2.0, 0.0]], [[1.0, -2.0, 0.0]]])  # (K=2, 1, 3)
    opt = BatchedSGD([w], torch.tensor([0.1, 0.1]), [torch.zeros(2)], [torch.tensor([0.2, 0.0])])
    opt.step([torch.full((2, 1, 3), 0.5)], torch.tensor([True, True]))
    assert w[0, 0].tolist() == pytest.approx([0.93, -2.03, -0.05], abs=1e-6)
    assert w[1, 0].tolist() == pytest.approx([0.95, -2.05, -0.05], abs=1e-6)
    # an entry with value 0 and gradient 0 never moves, under decay, L1 and Adam (coupled or not)
    for decoupled in (False, True):
        v = torch.tensor([[[0.0, 1.0]]])  # (K=1, 1, 2)
        adam = BatchedAdam([v], torch.tensor([0.1]), [torch.tensor([0.5])], decoupled, l1=[torch.tensor([0.3])])
        for _ in range(3):
            adam.step([torch.tensor([[[0.0, 0.2]]])], torch.tensor([True]))
        assert v[0, 0, 0].item() == 0.0 and v[0, 0, 1].item() != 1.0


# ---- layers without biases --------------------------------------------------------------------


@pytest.mark.parametrize(("hidden", "activation"), [((), "relu"), ((8,), "relu"), ((8, 4), "prelu")])
def test_bias_free_models_train_like_fit_and_export_without_biases(hidden, activation):
    trials = trials_of(
        {"hidden": hidden, "activation": activation, "n_inputs": 6, "n_outputs": 1, "bias": False, "init": "xavier"},
        {"epochs": 3, "batch_size": 16, "loss": "mse", "decay_biases": False, "seed": 1},
        [{"lr": lr, "weight_decay": 0.01} for lr in (0.01, 0.05)],
    )
    model = assert_trains_like_fit(trials, regression("(n, 1)"))
    assert model.biases == [] and len(model.parameters()) == len(hidden) + 1 + len(model.slopes)
    assert model.is_bias() == [False] * (len(hidden) + 1) + [True] * len(model.slopes)
    exported = model.to_module(0, trials[0].model)
    assert all(m.bias is None for m in exported if isinstance(m, nn.Linear))
    with pytest.raises(ConfigError, match="bias"):
        model.to_module(0, dataclasses.replace(trials[0].model, bias=True))


# ---- per-model input widths (polynomial degrees) ----------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_polynomial_degrees_train_as_one_group_each_like_fit_on_its_columns(poly, optimizer):
    # d2l 4.4: degree d is nn.Linear(d + 1, 1, bias=False) on the first d + 1 features
    trials = trials_of(
        {"hidden": (), "n_outputs": 1, "bias": False},
        {"epochs": 4, "batch_size": 10, "lr": 0.01, "optimizer": optimizer, "loss": "mse", "seed": 0},
        [
            {"n_inputs": d, "weight_decay": wd, "l1": l1}
            for d in (2, 4, 20)
            for wd, l1 in ((0.0, 0.0), (0.1, 0.0), (0.0, 0.05), (0.1, 0.05))
        ],
    )
    assert len(plan(trials, 100)) == 1  # one group: the widths share the data
    model = assert_trains_like_fit(trials, poly)
    assert model.n_inputs == 20 and model.input_mask is not None
    for k, trial in enumerate(trials):
        d = trial.model.n_inputs
        W = model.weights[0][k]  # (20, 1)
        assert bool((W[d:] == 0).all()), f"padding of model {k} (n_inputs {d}) moved"
        assert bool((W[:d] != 0).any())
        assert model.to_module(k, trial.model)[1].weight.shape == (1, d)


def test_widths_with_hidden_layers_and_biases_train_like_fit(poly):
    trials = trials_of(
        {"hidden": (8,), "n_outputs": 1, "init": "xavier"},
        {"epochs": 3, "batch_size": 10, "lr": 0.01, "loss": "mse", "weight_decay": 0.01, "seed": 3},
        [{"n_inputs": d} for d in (1, 3, 7)],
    )
    model = assert_trains_like_fit(trials, poly)  # the data has 20 columns: the group reads 7
    assert model.n_inputs == 7
    for k, d in enumerate((1, 3, 7)):
        assert bool((model.weights[0][k, d:] == 0).all())


def test_cuda_graph_steps_compute_what_eager_steps_compute_for_regression(poly, device):
    # on the CPU (CI) this checks the clear error; MLPLAB_TEST_DEVICE=cuda checks the graphs themselves
    trials = trials_of(
        {"hidden": (8,), "n_outputs": 1, "init": "xavier", "dropout": 0.2},
        {"epochs": 2, "batch_size": 8, "lr": 0.01, "loss": "mse", "seed": 4},  # 100 rows: 12 full batches, one of 4
        [{"n_inputs": d, "l1": l1} for d in (3, 20) for l1 in (0.0, 0.01)],
    )
    if not device.startswith("cuda"):
        with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
            train_group(trials, poly, device, cuda_graphs=True)
        return
    eager_model, graphed_model = BatchedMLP.from_trials(trials, device), BatchedMLP.from_trials(trials, device)
    eager = train_group(trials, poly, device, model=eager_model, cuda_graphs=False)
    graphed = train_group(trials, poly, device, model=graphed_model, cuda_graphs=True)
    for a, b in zip(eager, graphed):
        assert_same_history(a.history, b.history)
    for a, b in zip(eager_model.parameters(), graphed_model.parameters()):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    assert bool((graphed_model.weights[0][:2, 3:] == 0).all())


def test_one_width_means_no_mask(blobs):
    trials = trials_of({"hidden": (8,), "n_inputs": 6, "n_outputs": 3}, {"epochs": 1}, [{"lr": 0.1}, {"lr": 0.2}])
    assert BatchedMLP.from_trials(trials).input_mask is None


def test_a_model_wider_than_the_data_is_refused(poly, tmp_path):
    trials = trials_of(
        {"hidden": (), "n_outputs": 1}, {"epochs": 1, "loss": "mse"}, [{"n_inputs": 4}, {"n_inputs": 21}]
    )
    with pytest.raises(ConfigError, match="n_inputs = 21 .*20 input columns"):
        train_group(trials, poly)
    spec = RegressionSpec(base={"hidden": (), "epochs": 1}, widths=(4, 21))
    with pytest.raises(ConfigError, match="n_inputs = 21 .*20 input columns"):
        run_sweep(spec, poly, tmp_path / "s")
    assert not (tmp_path / "s" / "sweep.sqlite").exists()


# ---- planning ---------------------------------------------------------------------------------


def test_loss_and_bias_separate_groups_and_widths_do_not():
    base = {"hidden": (8,), "n_outputs": 1}
    a = Trial(ModelConfig(**base, n_inputs=4), TrainConfig(loss="mse"))
    b = Trial(ModelConfig(**base, n_inputs=4), TrainConfig(loss="cross_entropy"))
    c = Trial(ModelConfig(**base, n_inputs=4, bias=False), TrainConfig(loss="mse"))
    d = Trial(ModelConfig(**base, n_inputs=9), TrainConfig(loss="mse", lr=0.3, l1=0.1))
    assert len({group_key(t) for t in (a, b, c)}) == 3 and group_key(a) == group_key(d)
    groups = plan([a, b, c, d], 10)
    assert [[t for t in g.trials] for g in groups] == [[a, d], [b], [c]]
    assert groups[0].describe().startswith("2 x 4..9-8-1 ")
    with pytest.raises(ConfigError, match="trials"):
        train_group([a, b], regression("(n, 1)", d=9))
    # memory is planned for the padded stack: each model as wide as the widest
    check_memory(groups, "cpu", n_train=100)


# ---- running a sweep --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RegressionSpec(SweepSpec):
    """A spec whose trials use ``loss="mse"`` and each of ``widths`` input columns (default: all).

    A stand-in until the hyperparameter table names ``loss`` and the input width: the trials are
    what the spec will then expand to; they differ in ``lr`` and ``n_inputs`` only, which their
    keys already tell apart.
    """

    widths: tuple[int, ...] = ()

    def trials(self, n_inputs: int = 784, n_outputs: int = 10) -> list[Trial]:
        out = []
        for t in super().trials(n_inputs, n_outputs):
            for w in self.widths or (n_inputs,):
                out.append(Trial(dataclasses.replace(t.model, n_inputs=w), dataclasses.replace(t.train, loss="mse")))
        return out


def test_a_regression_sweep_runs_end_to_end_and_resumes(tmp_path):
    data = regression("(n, 1)")
    spec = RegressionSpec(
        base={"hidden": (8,), "epochs": 2, "batch_size": 16, "init": "xavier"}, grid={"lr": (0.01, 0.05)}
    )
    report = run_sweep(spec, data, tmp_path / "s")
    assert (report.planned, report.trained, report.groups) == (2, 2, 1)
    results = load_results(tmp_path / "s")
    assert results["final_train_acc"].isna().all() and results["final_test_acc"].isna().all()
    assert all(math.isfinite(v) for v in results[["final_train_loss", "final_test_loss"]].to_numpy().ravel())
    assert (results["status"] == "ok").all()
    curves = load_histories(tmp_path / "s")
    assert len(curves) == 4 and curves["test_acc"].isna().all() and curves["test_loss"].notna().all()
    for trial in spec.trials(6, 1):  # the stored losses are fit's
        net = build_mlp(trial.model, torch.Generator().manual_seed(trial.seed))
        row = results[results["key"] == trial.key].iloc[0]
        assert row["final_test_loss"] == pytest.approx(fit(net, data, trial.train).final.test_loss, abs=ATOL)
    again = run_sweep(spec, data, tmp_path / "s")
    assert (again.skipped, again.trained) == (2, 0)


def test_a_polynomial_sweep_stores_every_degree(tmp_path):
    spec = RegressionSpec(base={"hidden": (), "epochs": 2, "batch_size": 10, "lr": 0.01}, widths=(2, 4, 20))
    report = run_sweep(spec, sweep_data("poly"), tmp_path / "s")
    assert (report.trained, report.groups) == (3, 1)
    results = load_results(tmp_path / "s")
    assert len(set(results["key"])) == 3 and results["final_test_loss"].notna().all()


def test_a_loss_that_does_not_suit_the_targets_is_refused(tmp_path, blobs):
    with pytest.raises(ConfigError, match=r"loss = 'mse' .*torch\.int64 class labels.*cross_entropy"):
        run_sweep(RegressionSpec(base={"hidden": (8,), "epochs": 1}), blobs, tmp_path / "a")
    with pytest.raises(ConfigError, match=r"loss = 'cross_entropy' .*torch\.float32.*loss=mse"):
        run_sweep(SweepSpec(base={"hidden": (8,), "epochs": 1}), regression("(n, 1)"), tmp_path / "b")
    for folder in ("a", "b"):  # refused before anything was created
        assert not (tmp_path / folder / "sweep.sqlite").exists()
    trials = trials_of({"hidden": (), "n_inputs": 6, "n_outputs": 3}, {"loss": "mse"}, [{}])
    with pytest.raises(ConfigError, match="loss"):
        train_group(trials, blobs)


@pytest.mark.parametrize("name", sorted(REGRESSION_SETS))
def test_the_regression_data_sets_match_their_planned_sizes(name):
    assert name in DATA_SETS
    data = sweep_data(name)
    rows, inputs, outputs = DATA_SIZES[name]
    assert data.train.X.shape == (rows, inputs) and not data.is_classification and data.n_outputs == outputs
    assert data.train.y.dtype == torch.float32 and torch.equal(sweep_data(name).train.X, data.train.X)  # seeded
    spec = RegressionSpec(base={"hidden": (), "epochs": 1, "batch_size": 10})
    trials, k, groups = plan_sweep(spec, *DATA_SIZES[name], torch.device("cpu"))
    assert k == default_max_models(trials, "cpu") >= 1 and len(groups) == 1
    assert trials[0].model.sizes == [inputs, outputs]


def test_linear_200_is_the_weight_decay_chapter_s_data():
    data = sweep_data("linear-200")
    assert (len(data.train), len(data.test)) == (20, 100)
    # y = 0.05 + 0.01 sum_i x_i + noise(0.01): the residual of the true model is the noise
    residual = data.test.y[:, 0] - (0.05 + 0.01 * data.test.X.sum(1))
    assert residual.std().item() == pytest.approx(0.01, rel=0.3)
