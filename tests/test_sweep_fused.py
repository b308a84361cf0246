"""The hand-fused CPU SGD step (mlplab.sweep.fused) against the autograd step and its optimizer.

The autograd step (``train_group(..., fused=False)``) is itself checked against ``fit`` in
test_sweep_batched.py; here the two steps of ``train_group`` are compared with each other, on the
same initial weights, batches and dropout masks. Tolerance ``atol=1e-5``: the fused update sums
``p - A^T (lr dZ)`` in another order than ``p - lr (A^T dZ)``, which changes the last bits.
"""

from __future__ import annotations

import math

import pytest
import torch

from mlplab.data import Data, Split
from mlplab.errors import ConfigError
from mlplab.sweep import BatchedMLP, SweepSpec, batched, synthetic_data, train_group
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


def train_pair(trials, data, device, **fused):
    """``train_group`` with ``fused=True, **fused`` and with the autograd step on ``device``: (results, weights) each."""
    out = []
    for how in ({"fused": True, **fused}, {"fused": False}):
        model = BatchedMLP.from_trials(trials, device)
        out.append((train_group(trials, data, device, model=model, **how), model))
    return out


def assert_same(a, b) -> None:
    (results_a, model_a), (results_b, model_b) = a, b
    assert_same_histories(results_a, results_b)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, atol=ATOL, rtol=1e-4, equal_nan=True)


def assert_same_histories(results_a, results_b) -> None:
    for ra, rb in zip(results_a, results_b, strict=True):
        assert ra.history.status == rb.history.status
        assert len(ra.history.records) == len(rb.history.records)
        for ea, eb in zip(ra.history.records, rb.history.records):
            for f in FIELDS:
                va, vb = getattr(ea, f), getattr(eb, f)
                assert (va is None and vb is None) or va == pytest.approx(vb, abs=ATOL, nan_ok=True), (
                    f"{f} at epoch {ea.epoch}"
                )


@pytest.mark.parametrize(
    "base",
    [
        {"hidden": (8, 16), "dropout1": 0.3, "dropout2": 0.5},  # dropout on both layers: scale not folded, folded
        {"hidden": (12,), "weight_decay": 0.1, "decay_biases": False},  # decay of weights only
        {"hidden": (12, 12, 6), "weight_decay": 0.05, "dropout2": 0.2},  # three layers, decayed biases
        {"hidden": (8,), "bias": False, "dropout1": 0.4},  # no biases at all
        {"hidden": (), "weight_decay": 0.01},  # softmax regression: no hidden layer
    ],
)
def test_fused_steps_train_like_the_autograd_step(data, base, fused_calls):
    spec = SweepSpec(base={"epochs": 3, "batch_size": 32, **base}, grid={"lr": (0.05, 0.2, 0.5)}, seeds=(1,))
    trials = spec.trials(10, 4)
    fused, autograd = train_pair(trials, data, "cpu")
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
    fused, autograd = train_pair(trials, data, "cpu")
    assert fused_calls and all(fused_calls)
    assert_same(fused, autograd)


def test_a_diverging_model_hands_its_step_back_and_is_frozen_like_the_autograd_step(data, fused_calls):
    spec = SweepSpec(
        base={"hidden": (16,), "epochs": 2, "batch_size": 32, "init": "normal:1"}, grid={"lr": (0.05, 1e4)}
    )
    trials = spec.trials(10, 4)
    fused, autograd = train_pair(trials, data, "cpu")
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


# The capturable step (what CUDA gets; forced on the CPU here by saying host reads are not free)
# and the compiled one, each against the autograd step, on the device of $MLPLAB_TEST_DEVICE.

BF16_CLOSE = {"rel": 0.01}  # bfloat16 steps round the learning rate in at another place (test_precision.py)


@pytest.fixture
def capturable(monkeypatch):
    """Make ``train_group`` build the capturable fused step on any device, the CPU included."""
    monkeypatch.setattr(batched, "host_reads_are_free", lambda device: False)


@pytest.fixture
def no_host_reads(monkeypatch) -> list[int]:
    """Fail any read of a tensor's value on the host during a fused step (on CUDA, any synchronizing call too)."""
    calls: list[int] = []
    original = FusedReluSGD.__call__

    def refuse(*args, **kwargs):
        raise AssertionError("the capturable step read a value back to the host")

    def spy(self, X, *args):
        with monkeypatch.context() as m:
            for name in ("__bool__", "item", "tolist", "__float__", "__int__"):
                m.setattr(torch.Tensor, name, refuse)
            if X.is_cuda:
                torch.cuda.set_sync_debug_mode("error")
            try:
                out = original(self, X, *args)
            finally:
                if X.is_cuda:
                    torch.cuda.set_sync_debug_mode("default")
        calls.append(1)
        return out

    monkeypatch.setattr(FusedReluSGD, "__call__", spy)
    return calls


@pytest.fixture
def compiled_calls(monkeypatch) -> dict[str, int]:
    """Calls of each compiled kernel, by the name of the function compiled."""
    calls: dict[str, int] = {}
    real = fused_module.compiled_kernel

    def counting(f):
        kernel = real(f)

        def call(*args):
            calls[f.__name__] = calls.get(f.__name__, 0) + 1
            return kernel(*args)

        return call

    monkeypatch.setattr(fused_module, "compiled_kernel", counting)
    return calls


def regression(data: Data) -> Data:
    """The same features with a linear function of them as the target."""
    return Data(*(Split(s.X, s.X @ torch.linspace(-1, 1, s.X.shape[1])) for s in (data.train, data.test)))


def assert_close_bf16(a, b) -> None:
    for ra, rb in zip(a[0], b[0], strict=True):
        assert ra.history.status == rb.history.status
        for ea, eb in zip(ra.history.records, rb.history.records, strict=True):
            assert ea.train_loss == pytest.approx(eb.train_loss, **BF16_CLOSE)
            assert ea.test_loss == pytest.approx(eb.test_loss, **BF16_CLOSE)


CASES = {
    "dropout, one scale folded and one not": ({"hidden": (8, 16), "dropout1": 0.3, "dropout2": 0.5}, "fp32"),
    "three layers, decay": ({"hidden": (12, 12, 6), "weight_decay": 0.05, "dropout2": 0.2}, "fp32"),
    "mse, no biases": ({"hidden": (8, 16), "bias": False, "dropout1": 0.4, "loss": "mse", "lr": 0.02}, "fp32"),
    "bf16": ({"hidden": (8, 16), "dropout1": 0.3, "weight_decay": 0.01}, "bf16"),
}


def case_trials(base: dict, precision: str):
    grid = {"weight_decay": (0.0, 0.01)} if "lr" in base else {"lr": (0.05, 0.2, 0.5)}
    spec = SweepSpec(base={"epochs": 3, "batch_size": 32, "precision": precision, **base}, grid=grid)
    return spec.trials(10, 1 if base.get("loss") == "mse" else 4)


@pytest.mark.parametrize("case", CASES)
def test_capturable_fused_steps_train_like_the_autograd_step_and_read_nothing_back(
    data, case, device, capturable, no_host_reads
):
    base, precision = CASES[case]
    trials = case_trials(base, precision)
    fused, autograd = train_pair(trials, regression(data) if base.get("loss") == "mse" else data, device)
    assert no_host_reads  # the spy ran, and every read would have raised
    (assert_close_bf16 if precision == "bf16" else assert_same)(fused, autograd)


@pytest.mark.parametrize("case", CASES)
def test_compiled_kernels_train_like_the_autograd_step(data, case, device, compiled_calls):
    """torch.compile'd dropout, its backward and the loss (C++ on a CPU, Triton on CUDA) against autograd."""
    base, precision = CASES[case]
    trials = case_trials(base, precision)
    fused, autograd = train_pair(trials, regression(data) if base.get("loss") == "mse" else data, device, compiled=True)
    loss = "squared_error_grad" if base.get("loss") == "mse" else "cross_entropy_grad"
    assert compiled_calls.get(loss) and compiled_calls.get("relu_dropout")  # the compiled kernels ran
    if case.startswith("dropout"):
        assert compiled_calls.get("relu_dropout_backward")  # the layer whose scale is not folded
    (assert_close_bf16 if precision == "bf16" else assert_same)(fused, autograd)


@pytest.mark.parametrize("layers", [(16,), (16, 16)])  # the second overflows in its forward pass
def test_a_capturable_step_stops_a_diverging_model_and_trains_the_rest_like_the_autograd_step(
    data, layers, device, capturable, no_host_reads
):
    lrs = (0.05, 1e4, 0.1) if layers == (16,) else (0.05, 1e30, 0.1)
    spec = SweepSpec(base={"hidden": layers, "epochs": 3, "batch_size": 32, "init": "normal:1"}, grid={"lr": lrs})
    (fused, fused_model), (autograd, autograd_model) = train_pair(spec.trials(10, 4), data, device)
    live, dead = [0, 2], 1
    assert_same_histories([fused[k] for k in live], [autograd[k] for k in live])
    for pf, pa in zip(fused_model.parameters(), autograd_model.parameters()):
        torch.testing.assert_close(pf[live], pa[live], atol=ATOL, rtol=1e-4)
        # the dead model's parameters: frozen as the autograd step freezes them, or non-finite where its forward overflowed
        frozen = torch.isclose(pf[dead], pa[dead], atol=ATOL, rtol=1e-4) | ~torch.isfinite(pf[dead])
        assert bool(frozen.all())
    hf, ha = fused[dead].history, autograd[dead].history
    assert hf.status == ha.status == "diverged" and len(hf.records) == len(ha.records)
    for ef, ea in zip(hf.records[:-1], ha.records[:-1]):  # the epochs before it diverged
        for f in FIELDS:
            assert getattr(ef, f) == pytest.approx(getattr(ea, f), abs=ATOL)
    assert not math.isfinite(hf.records[-1].train_loss) and not math.isfinite(ha.records[-1].train_loss)


def test_the_compiled_dropout_kernels_compute_what_the_eager_gate_computes():
    gen = torch.Generator().manual_seed(3)
    Z, U = torch.randn(3, 5, 7, generator=gen), torch.rand(5, 7, generator=gen)
    Z[0, 0, :3] = torch.tensor([math.inf, -math.inf, math.nan])  # dropped or kept, as the eager gate has them
    Z[2, 1, :3] = torch.tensor([math.inf, -math.inf, math.nan])
    p = torch.tensor([0.0, 0.5, 0.9]).view(3, 1, 1)
    streams = batched.DropoutStreams(0, p.view(3, 1), torch.device("cpu"))
    (gate,) = streams.gates_from([U])
    expected = torch.relu(Z) * gate  # what the autograd forward computes
    for form in (fused_module.relu_dropout, fused_module.compiled_kernel(fused_module.relu_dropout)):
        torch.testing.assert_close(form(Z, U, p, streams.scales[0]), expected, rtol=0, atol=0, equal_nan=True)
    dA = torch.randn(3, 5, 7, generator=gen)
    A = torch.relu(torch.randn(3, 5, 7, generator=gen)) * gate
    backward = fused_module.relu_dropout_backward
    for form in (backward, fused_module.compiled_kernel(backward)):
        torch.testing.assert_close(form(dA, A, streams.scales[0]), dA * gate * (A > 0), rtol=0, atol=0)


def test_a_machine_that_cannot_build_compiled_kernels_gets_an_error_that_says_so():
    import torch._inductor.config as inductor_config

    def triple_plus_one(x):  # compiled nowhere else
        return x * 3 + 1

    # torch's own patch, which puts the settings back (monkeypatch's undo deletes a config entry
    # it set, and every later compile in the process then fails); no kernel built earlier may stand in
    with inductor_config.patch({"cpp.cxx": (None, "/nonexistent/g++"), "fx_graph_cache": False}):
        with pytest.raises(ConfigError, match=r"compiled = True .*C\+\+ compiler.*compiled=False"):
            fused_module.compiled_kernel(triple_plus_one)(torch.randn(4))


def test_a_bug_in_compiled_code_is_not_reported_as_a_missing_compiler():
    def adds_mismatched_shapes(x):
        return x + x[:-1]

    with pytest.raises(Exception) as raised:
        fused_module.compiled_kernel(adds_mismatched_shapes)(torch.randn(4))
    assert not isinstance(raised.value, ConfigError)


def test_compiled_asks_for_the_fused_step_on_any_device(data, device, fused_calls, compiled_calls, tmp_path):
    """On CUDA the default step is autograd: compiled=True must bring the fused step with it, through run_sweep too."""
    from mlplab.sweep import run_sweep

    base, _ = CASES["dropout, one scale folded and one not"]
    trials = case_trials(base, "fp32")
    train_group(trials, data, device, compiled=True)
    assert fused_calls and all(fused_calls) and compiled_calls.get("relu_dropout")
    with pytest.raises(ConfigError, match="compiled kernels are the fused step's"):
        train_group(trials, data, device, fused=False, compiled=True)
    spec = SweepSpec(base={"epochs": 1, "batch_size": 32, **base}, grid={"lr": (0.05, 0.2)})
    fused_calls.clear()
    run_sweep(spec, data, tmp_path / "autograd", device=device, fused=False)
    assert not fused_calls
    run_sweep(spec, data, tmp_path / "compiled", device=device, compiled=True)
    assert fused_calls
    with pytest.raises(ConfigError, match="compiled kernels are the fused step's"):
        run_sweep(spec, data, tmp_path / "refused", device=device, fused=False, compiled=True)
    assert not (tmp_path / "refused").exists()  # refused before any work


@pytest.mark.parametrize(
    ("device_type", "fused", "compiled", "wanted"),
    [
        ("cpu", None, False, True),  # measured faster there
        ("cuda", None, False, False),  # autograd until a GPU has measured the fused step
        ("cuda", None, True, True),  # the compiled kernels are the fused step's
        ("mps", None, True, True),
        ("cpu", False, False, False),
        ("cuda", True, False, True),
    ],
)
def test_which_step_a_group_wants(device_type, fused, compiled, wanted):
    assert batched.wants_fused(device_type, fused, compiled) is wanted


def test_a_machine_without_a_compiler_is_refused_before_any_work(data, tmp_path, monkeypatch):
    """run_sweep, train_group and `mlplab sweep run --compiled` ask torch.compile first, not at the first step."""
    import torch._inductor.config as inductor_config
    from typer.testing import CliRunner

    from mlplab.cli import app
    from mlplab.sweep import run_sweep

    def double_plus_one(x):  # a kernel no test has built: the broken compiler below must be asked
        return x * 2 + 1

    monkeypatch.setattr(fused_module, "_probe", double_plus_one)
    spec = SweepSpec(base={"hidden": (8,), "epochs": 1, "batch_size": 32})
    flags = ["sweep", "run", "--data", "synthetic", "--hidden", "8", "--epochs", "1", "--compiled"]
    with inductor_config.patch({"cpp.cxx": (None, "/nonexistent/g++"), "fx_graph_cache": False}):
        with pytest.raises(ConfigError, match=r"compiled = True .*could not build kernels.*compiled=False"):
            run_sweep(spec, data, tmp_path / "api", compiled=True)
        with pytest.raises(ConfigError, match="could not build kernels"):
            train_group(spec.trials(10, 4), data, compiled=True)
        result = CliRunner().invoke(app, [*flags, "--out", str(tmp_path / "cli")])
    assert (
        result.exit_code == 2 and "--compiled = True is invalid" in result.output and "drop --compiled" in result.output
    )
    assert "raised:" not in result.output  # torch's reason, not the line that introduces it
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()


DIVERGING = SweepSpec(
    base={"hidden": (16,), "epochs": 3, "batch_size": 32, "init": "normal:1"}, grid={"lr": (0.05, 1e4, 0.1)}
)


@pytest.mark.parametrize("fused", [True, False], ids=["capturable fused step", "autograd step"])
@pytest.mark.parametrize("case", ["dropout, one scale folded and one not", "bf16", "a model diverges"])
def test_a_graphed_group_computes_what_its_eager_steps_compute(data, case, fused, emulated_cuda_graphs, monkeypatch):
    """The CUDA-graph path of ``_Step`` (static batch and uniforms, one capture, replays) on an
    emulated graph (tests/conftest.py): to the bit what the same steps compute eagerly, a model
    that diverges mid-epoch (frozen inside the graph, by the device-side ``alive``) included."""
    if case == "a model diverges":
        trials = DIVERGING.trials(10, 4)
    else:
        trials = case_trials(*CASES[case])
    initial = BatchedMLP.from_trials(trials, "cpu").parameters()

    def trained(graphed: bool):
        model = BatchedMLP.from_trials(trials, "cpu")
        with monkeypatch.context() as m:
            if graphed:  # what cuda_graphs=True does on CUDA; train_group refuses it on a CPU
                init = batched._Step.__init__
                m.setattr(batched._Step, "__init__", lambda self, *a, **k: (init(self, *a, **k), setattr(self, "graphed", True))[0])  # fmt: skip
            results = train_group(trials, data, "cpu", model=model, fused=fused)
        return results, model

    (eager, eager_model), (graphed, graphed_model) = trained(False), trained(True)
    replayed = emulated_cuda_graphs[-1]
    assert replayed.tape is not None and replayed.replays == 3 * (300 // 32) - replayed.WARMUP - 1
    for p0, pe, pg in zip(initial, eager_model.parameters(), graphed_model.parameters()):
        assert not torch.equal(p0, pe)  # it trained
        torch.testing.assert_close(pe, pg, rtol=0, atol=0, equal_nan=True)
    for re, rg in zip(eager, graphed, strict=True):
        assert re.history.status == rg.history.status
        metrics = [[(r.train_loss, r.train_acc, r.test_loss, r.test_acc) for r in x.history.records] for x in (re, rg)]
        torch.testing.assert_close(torch.tensor(metrics[0]), torch.tensor(metrics[1]), rtol=0, atol=0, equal_nan=True)
    if case == "a model diverges":
        assert [r.history.status for r in graphed] == ["ok", "diverged", "ok"]
