"""mlplab.scratch.MLP: gradients against torch.autograd (float64) and finite differences, a worked
example, the chapter's facts (piecewise linearity, symmetry), memory kept for the backward pass."""

from __future__ import annotations

import importlib
import inspect
import random

import pytest
import torch
import torch.nn.functional as F

import mlplab.scratch
from mlplab.errors import ConfigError, MlplabError
from mlplab.models import ModelConfig, build_mlp
from mlplab.scratch import MLP, SGD, softmax_cross_entropy_and_grad

f64 = torch.float64
ACTIVATIONS = ("relu", "sigmoid", "tanh", "prelu")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def autograd_reference(net: MLP, X: torch.Tensor, y: torch.Tensor, masks) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Loss and gradients of the same network by torch.autograd, written independently with
    torch.nn.functional; ``masks`` are the dropout masks the scratch forward pass drew."""
    params = [p.detach().clone().requires_grad_(True) for p in net.params]
    L = net.n_layers
    A = X
    for l in range(L - 1):
        Z = A @ params[2 * l] + params[2 * l + 1]
        H = (
            {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[net.activation](Z)
            if net.activation != "prelu"
            else F.prelu(Z, params[2 * L + l])
        )
        if masks[l] is not None:  # p = 1: every unit dropped (the mask is all False)
            H = H * masks[l] / (1 - net.dropout[l]) if net.dropout[l] < 1 else H * masks[l]
        A = H
    loss = F.cross_entropy(A @ params[2 * L - 2] + params[2 * L - 1], y)
    return loss.detach(), list(torch.autograd.grad(loss, params))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item() if b.norm() > 0 else a.norm().item()


def random_case(seed: int) -> tuple[MLP, torch.Tensor, torch.Tensor]:
    rng = random.Random(seed)
    depth = rng.randint(0, 4)  # hidden layers; 0 is softmax regression
    sizes = [rng.randint(1, 12)] + [rng.randint(1, 12) for _ in range(depth)] + [rng.randint(2, 6)]
    dropout = (
        None if depth == 0 or rng.random() < 0.4 else [rng.choice([0.0, 0.2, 0.5, 0.9, 0.99]) for _ in range(depth)]
    )
    net = MLP(sizes, rng.choice(ACTIVATIONS), dropout, rng.choice(["xavier", "he", "normal:0.5"]), gen(seed), dtype=f64)
    if net.alphas:  # slopes of both signs, not just the initial 0.25
        for a in net.alphas:
            a.fill_(rng.uniform(-0.5, 1.0))
    B = rng.randint(1, 16)
    X = torch.randn(B, sizes[0], dtype=f64, generator=gen(seed + 1000))
    y = torch.randint(sizes[-1], (B,), generator=gen(seed + 2000))
    return net, X, y


# -- gradients -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_gradients_match_autograd_for_random_shapes_depths_and_activations(seed):
    net, X, y = random_case(seed)
    logits, tape = net.forward_train(X)
    loss, grad_logits = softmax_cross_entropy_and_grad(logits, y)
    grads = net.backward(tape, grad_logits)
    ref_loss, ref_grads = autograd_reference(net, X, y, [layer.mask for layer in tape.layers])
    assert abs(loss.item() - ref_loss.item()) <= 1e-12 * abs(ref_loss.item())
    assert len(grads) == len(net.params)
    for name, g, r, p in zip(net.param_names(), grads, ref_grads, net.params):
        assert g.shape == p.shape, name
        assert relative_error(g, r) <= 1e-10, (name, net)


@pytest.mark.parametrize("seed", range(6))
def test_gradients_match_central_finite_differences(seed):
    net, X, y = random_case(100 + seed)
    state = net.generator.get_state()  # dropout masks are drawn after this point

    def loss_value() -> float:  # the same dropout masks on every call
        net.generator.set_state(state)
        return net.loss_and_grads(X, y)[0].item()

    _, grads = net.loss_and_grads(X, y)
    rng, h = random.Random(seed), 1e-6
    for p, g in zip(net.params, grads):
        for _ in range(3):
            i = rng.randrange(p.numel())
            old = p.view(-1)[i].item()
            p.view(-1)[i] = old + h
            up = loss_value()
            p.view(-1)[i] = old - h
            down = loss_value()
            p.view(-1)[i] = old
            fd = (up - down) / (2 * h)
            assert abs(fd - g.view(-1)[i].item()) <= 1e-6 * max(1.0, abs(fd)), (net, i)


def test_loss_and_grads_equals_forward_then_backward():
    net = MLP([5, 4, 3], "tanh", init="xavier", generator=gen(1), dtype=f64)
    X, y = torch.randn(7, 5, dtype=f64, generator=gen(2)), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    loss, grads, logits = net.loss_and_grads(X, y, return_logits=True)
    ref_loss, ref_grads = autograd_reference(net, X, y, [None])
    torch.testing.assert_close(logits, net.forward(X), rtol=0, atol=0)
    assert abs(loss.item() - ref_loss.item()) < 1e-14
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-15)


def test_a_small_example_worked_by_hand():
    net = MLP([2, 2, 2], "relu", dtype=f64)
    W1, b1, W2, b2 = net.params
    W1.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
    b1.copy_(torch.tensor([0.0, -0.5]))
    W2.copy_(torch.tensor([[1.0, 2.0], [0.0, -2.0]]))
    b2.copy_(torch.tensor([1.5, -1.5]))
    X, y = torch.tensor([[1.0, 1.0]], dtype=f64), torch.tensor([0])
    # Z1 = X W1 + b1 = [1 + 2, -1 + 1] + [0, -0.5] = [3, -0.5]       H1 = relu(Z1) = [3, 0]
    # O  = H1 W2 + b2 = [3, 6] + [1.5, -1.5] = [4.5, 4.5]            softmax(O) = [1/2, 1/2]
    # loss = -log(1/2) = log 2
    # dO  = softmax(O) - onehot(0) = [-1/2, 1/2]                     (B = 1)
    # dW2 = H1^T dO = [[3 * -1/2, 3 * 1/2], [0, 0]] = [[-1.5, 1.5], [0, 0]]   db2 = [-1/2, 1/2]
    # dH1 = dO W2^T = [-1/2 * 1 + 1/2 * 2, -1/2 * 0 + 1/2 * -2] = [1/2, -1]
    # dZ1 = dH1 * relu'(Z1) = [1/2, -1] * [1, 0] = [1/2, 0]          (unit 2 is off: no gradient)
    # dW1 = X^T dZ1 = [[1/2, 0], [1/2, 0]]                            db1 = [1/2, 0]
    loss, (dW1, db1, dW2, db2) = net.loss_and_grads(X, y)
    assert loss.item() == pytest.approx(0.6931471805599453, abs=1e-15)
    assert torch.equal(dW2, torch.tensor([[-1.5, 1.5], [0.0, 0.0]], dtype=f64))
    assert torch.equal(db2, torch.tensor([-0.5, 0.5], dtype=f64))
    assert torch.equal(dW1, torch.tensor([[0.5, 0.0], [0.5, 0.0]], dtype=f64))
    assert torch.equal(db1, torch.tensor([0.5, 0.0], dtype=f64))


def test_forward_equals_the_concise_model_with_the_same_seed():
    for activation in ACTIVATIONS:
        cfg = ModelConfig(hidden=(9, 6), activation=activation, init="he", n_inputs=5, n_outputs=4)
        concise = build_mlp(cfg, gen(3)).double().eval()
        net = MLP(cfg.sizes, activation, init="he", generator=gen(3), dtype=f64).eval()
        X = torch.randn(11, 5, dtype=f64, generator=gen(4))
        with torch.no_grad():
            expected = concise(X)
        torch.testing.assert_close(net(X), expected, rtol=1e-13, atol=1e-15)


# -- API ---------------------------------------------------------------------------------------


def test_params_order_and_shapes():
    net = MLP([6, 5, 4, 3], "prelu", generator=gen())
    assert [tuple(p.shape) for p in net.params] == [(6, 5), (5,), (5, 4), (4,), (4, 3), (3,), (1,), (1,)]
    assert net.param_names() == ["W1", "b1", "W2", "b2", "W3", "b3", "alpha1", "alpha2"]
    assert [a.item() for a in net.alphas] == [0.25, 0.25]
    assert net.weights == net.params[0:6:2] and net.biases == net.params[1:6:2]
    assert all(torch.equal(b, torch.zeros_like(b)) for b in net.biases)
    assert net.num_params() == 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3 + 2
    assert MLP([3, 2]).alphas == [] and len(MLP([3, 2]).params) == 2


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"sizes": [784]}, "sizes"),
        ({"sizes": "784,10"}, "sizes"),
        ({"sizes": [784, 0, 10]}, r"sizes\[1\]"),
        ({"sizes": [784, 2.5, 10]}, r"sizes\[1\]"),
        ({"sizes": [4, 3], "dropout": 0.5}, "dropout"),
        ({"sizes": [4, 3, 2], "activation": "gelu"}, "activation"),
        ({"sizes": [4, 3, 2], "dropout": 1.5}, r"dropout\[0\]"),
        ({"sizes": [4, 3, 3, 2], "dropout": [0.1, 0.2, 0.3]}, "dropout"),
        ({"sizes": [4, 3, 2], "init": "uniform"}, "init"),
    ],
)
def test_bad_arguments_raise_config_errors_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        MLP(**kwargs)


def test_wrong_input_width_raises_a_config_error():
    with pytest.raises(ConfigError, match="784 features"):
        MLP([784, 10])(torch.zeros(2, 783))


def test_images_are_flattened_like_nn_flatten():
    net = MLP([784, 10], generator=gen())
    X = torch.rand(3, 1, 28, 28, generator=gen(1))
    torch.testing.assert_close(net(X), net(X.reshape(3, 784)), rtol=0, atol=0)


def test_train_and_eval_switch_dropout():
    net = MLP([20, 50, 3], dropout=0.5, generator=gen())
    X = torch.rand(4, 20, generator=gen(1))
    assert net.training
    assert not torch.equal(net(X), net(X))  # fresh masks each call
    net.eval()
    assert not net.training and torch.equal(net(X), net(X))
    assert net.train() is net and net.training


def test_no_autograd_graph_is_ever_built(monkeypatch):
    net = MLP([5, 4, 3], "prelu", dropout=0.3, generator=gen())
    X = torch.randn(6, 5, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])

    def forbidden(name):
        def call(*args, **kwargs):
            raise AssertionError(f"the scratch MLP called {name}")

        return call

    # every entry point into autograd fails the test if the scratch code reaches it
    for owner, name in [
        (torch.Tensor, "backward"),
        (torch.Tensor, "requires_grad_"),
        (torch.autograd, "backward"),
        (torch.autograd, "grad"),
        (torch, "enable_grad"),
        (torch.autograd, "Function"),
    ]:
        monkeypatch.setattr(owner, name, forbidden(f"{getattr(owner, '__name__', owner)}.{name}"))
    loss, grads, logits = net.loss_and_grads(X, y, return_logits=True)
    before = [p.clone() for p in net.params]
    SGD(net.params, lr=0.1, weight_decay=0.01).step(grads)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.params))  # it did train
    for t in [loss, logits, net(X), *grads, *net.params]:
        assert not t.requires_grad and t.grad_fn is None


def test_state_dict_round_trip_and_mismatch():
    a = MLP([4, 3, 2], "prelu", dropout=0.5, generator=gen(1))
    b = MLP([4, 3, 2], "prelu", dropout=0.5, generator=gen(2))
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(p, q) for p, q in zip(a.params, b.params))
    X = torch.rand(5, 4)
    assert torch.equal(a(X), b(X))  # the dropout generator's state travels too
    with pytest.raises(MlplabError, match="same sizes"):
        MLP([4, 3, 2], "relu").load_state_dict(a.state_dict())
    with pytest.raises(MlplabError, match="shape"):
        MLP([4, 5, 2], "prelu").load_state_dict(a.state_dict())


# -- the chapter's facts -------------------------------------------------------------------------


def second_differences(net: MLP) -> tuple[torch.Tensor, torch.Tensor, float]:
    x = torch.linspace(-4, 4, 20001, dtype=f64)
    f = net.eval()(x.unsqueeze(1))[:, 0]
    return f, f[2:] - 2 * f[1:-1] + f[:-2], (x[1] - x[0]).item()


@pytest.mark.parametrize("activation", ["relu", "prelu"])
def test_a_relu_mlp_is_a_continuous_piecewise_linear_function(activation):
    n1, n2 = 16, 16
    net = MLP([1, n1, n2, 1], activation, init="he", generator=gen(5), dtype=f64)
    for b in net.biases:  # spread the kinks over the grid
        b.copy_(torch.randn(b.shape, dtype=f64, generator=gen(6)))
    f, d2, h = second_differences(net)
    kinks = (d2.abs() > 1e-9).sum().item()
    # each unit of layer 1 bends once; each unit of layer 2 bends where its piecewise-linear input
    # (n1 + 1 pieces) crosses 0, at most once per piece; a bend between two grid points shows in
    # at most two second differences.
    assert 0 < kinks <= 2 * (n1 + n2 * (n1 + 1))
    assert d2.abs().max().item() > 1e-6  # the kinks are real bends, not rounding
    lipschitz = torch.tensor(1.0, dtype=f64)  # relu and prelu(0.25) are 1-Lipschitz
    for W in net.weights:
        lipschitz = lipschitz * torch.linalg.matrix_norm(W, ord=2)
    assert (f[1:] - f[:-1]).abs().max().item() <= lipschitz.item() * h * (1 + 1e-9)  # continuous


def test_a_tanh_mlp_is_not_piecewise_linear():  # the same check fails where it should
    net = MLP([1, 16, 16, 1], "tanh", init="he", generator=gen(5), dtype=f64)
    _, d2, _ = second_differences(net)
    assert (d2.abs() > 1e-9).float().mean().item() > 0.5


def train_symmetric(dropout: float | None) -> MLP:
    net = MLP([6, 8, 3], "relu", dropout, generator=gen(7), dtype=f64)
    for W in net.weights:
        W.fill_(0.1)  # every hidden unit starts the same
    X = torch.randn(64, 6, dtype=f64, generator=gen(8))
    y = torch.randint(3, (64,), generator=gen(9))
    opt = SGD(net.params, lr=0.5)
    for _ in range(50):
        opt.step(net.loss_and_grads(X, y)[1])
    return net


def test_symmetric_initialization_keeps_hidden_units_identical_without_dropout():
    # d2l "Numerical Stability and Initialization": equal weights give equal units, forward and backward
    W1, b1, W2, _ = train_symmetric(None).params
    assert (W1 - 0.1).abs().max().item() > 0.05  # training did move the weights
    assert (W1 - W1[:, :1]).abs().max().item() <= 1e-12  # columns: one per hidden unit
    assert (b1 - b1[0]).abs().max().item() <= 1e-12
    assert (W2 - W2[:1, :]).abs().max().item() <= 1e-12  # rows: one per hidden unit
    W1d = train_symmetric(0.5).params[0]
    assert (W1d - W1d[:, :1]).abs().max().item() > 1e-3  # dropout breaks the symmetry


# -- memory kept for the backward pass -------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes, activation, dropout, dtype, by_hand",
    [
        ([784, 256, 10], "relu", None, torch.float32, 256 * 4 + 10 * 4),  # H1, dlogits: 1064
        ([784, 256, 10], "sigmoid", None, torch.float32, 256 * 4 + 10 * 4),
        ([784, 256, 10], "prelu", None, torch.float32, 256 * 4 * 2 + 10 * 4),  # Z1 and H1
        ([784, 256, 10], "relu", 0.5, torch.float32, 256 * (4 + 4 + 1) + 10 * 4),  # H1, dropped H1, mask
        ([784, 256, 10], "prelu", 0.5, torch.float32, 256 * (4 + 4 + 1) + 10 * 4),  # Z1, dropped H1, mask
        ([784, 256, 256, 10], "relu", [0.2, 0.0], torch.float64, 256 * (8 + 8 + 1) + 256 * 8 + 10 * 8),
        ([784, 10], "relu", None, torch.float32, 10 * 4),  # softmax regression keeps only dlogits
    ],
)
def test_bytes_kept_for_the_backward_pass_match_a_count_by_hand(sizes, activation, dropout, dtype, by_hand):
    net = MLP(sizes, activation, dropout, generator=gen(), dtype=dtype)
    assert net.saved_bytes_per_sample() == by_hand
    B = 32
    logits, tape = net.forward_train(torch.rand(B, sizes[0], dtype=dtype, generator=gen(1)))
    assert (tape.nbytes() + logits.nbytes) / B == by_hand  # what the forward pass really holds


def test_evaluation_mode_keeps_no_dropout_tensors():
    net = MLP([784, 256, 10], dropout=0.5).eval()
    assert net.saved_bytes_per_sample() == 1064


def autograd_saved_bytes_per_sample(net: torch.nn.Module, n_in: int, n_out: int) -> float:
    """Bytes per example that autograd saves for backward (inputs and parameters excluded)."""

    def saved(B: int) -> int:
        X, y = torch.rand(B, n_in, generator=gen(B)), torch.randint(n_out, (B,), generator=gen(B))
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            F.cross_entropy(net(X), y)
        exclude = {t.untyped_storage().data_ptr() for t in [X, y, *net.parameters()]}
        return sum(n for ptr, n in storages.items() if ptr not in exclude)

    return (saved(64) - saved(32)) / 32  # the slope: per-batch constants (e.g. scalars) cancel


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bytes_kept_equal_what_autograd_saves_for_the_concise_model(activation):
    cfg = ModelConfig(hidden=(30, 20), activation=activation, n_inputs=12, n_outputs=5)
    concise = build_mlp(cfg, gen())
    assert MLP(cfg.sizes, activation).saved_bytes_per_sample() == autograd_saved_bytes_per_sample(concise, 12, 5)


def test_with_dropout_the_scratch_model_keeps_no_more_than_autograd():
    cfg = ModelConfig(hidden=(30, 20), dropout=(0.5,), n_inputs=12, n_outputs=5)
    concise = build_mlp(cfg, gen()).train()
    scratch = MLP(cfg.sizes, dropout=0.5).saved_bytes_per_sample()
    assert scratch <= autograd_saved_bytes_per_sample(concise, 12, 5)


def test_the_package_documents_every_public_name():
    for name in mlplab.scratch.__all__:
        obj = getattr(mlplab.scratch, name)
        assert inspect.isfunction(obj) or inspect.isclass(obj), name
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring of its own"
    # and every public function or class the scratch modules define is exported
    for module in ("activations", "dropout", "init", "losses", "mlp", "regularization", "sgd"):
        mod = importlib.import_module(f"mlplab.scratch.{module}")  # the attribute may be a function
        for name, obj in vars(mod).items():
            if (
                not name.startswith("_")
                and (inspect.isfunction(obj) or inspect.isclass(obj))
                and obj.__module__ == mod.__name__
            ):
                assert name in mlplab.scratch.__all__, f"mlplab.scratch.{module}.{name} is not exported"


def test_the_default_dtype_is_torchs_as_for_nn_linear():
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        net = MLP([6, 4, 3], generator=torch.Generator().manual_seed(0))
        assert {p.dtype for p in net.params} == {torch.float64} == {torch.nn.Linear(6, 4).weight.dtype}
    finally:
        torch.set_default_dtype(previous)
    assert {p.dtype for p in MLP([6, 4, 3]).params} == {torch.float32}
    assert MLP([6, 4, 3], dtype=torch.float64).params[0].dtype == torch.float64
