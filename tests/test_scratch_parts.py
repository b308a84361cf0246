"""mlplab.scratch's pieces against independent references: autograd in float64, closed forms,
finite differences, torch's own SGD, and the chapter's identities."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mlplab.errors import ConfigError
from mlplab.models import ModelConfig, build_mlp, parse_init
from mlplab.scratch import (
    SGD,
    dropout,
    dropout_grad,
    he,
    init_weight,
    l1_penalty,
    l1_subgrad,
    l2_grad,
    l2_penalty,
    log_softmax,
    normal,
    prelu,
    prelu_grad,
    prelu_grad_alpha,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    softmax_cross_entropy,
    softmax_cross_entropy_and_grad,
    softmax_cross_entropy_grad,
    tanh,
    tanh_grad,
    xavier_normal,
    xavier_uniform,
)

f64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def autograd_elementwise(fn, z: torch.Tensor) -> torch.Tensor:
    """d fn(z)_i / d z_i by autograd (fn elementwise, so the gradient of the sum is the diagonal)."""
    z = z.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(z).sum(), z)
    return grad


# -- activations -----------------------------------------------------------------------------


def test_zero_is_included_in_activation_inputs():
    z = torch.tensor([-2.0, -1e-300, 0.0, 1e-300, 3.0], dtype=f64)
    assert torch.equal(relu_grad(relu(z)).to(f64), autograd_elementwise(torch.relu, z))


@pytest.mark.parametrize(
    "forward, derivative, reference",
    [(relu, relu_grad, torch.relu), (sigmoid, sigmoid_grad, torch.sigmoid), (tanh, tanh_grad, torch.tanh)],
)
def test_activation_values_and_derivatives_match_autograd(forward, derivative, reference):
    z = torch.randn(1000, dtype=f64, generator=gen()) * 4
    z[:5] = torch.tensor([0.0, -50.0, 50.0, 1e-8, -1e-8])
    torch.testing.assert_close(forward(z), reference(z), rtol=0, atol=0)
    # atol: 1 - h^2 for |h| near 1 cancels; both sides then differ by a few 1e-17 absolute
    torch.testing.assert_close(
        derivative(forward(z)).to(f64), autograd_elementwise(reference, z), rtol=1e-14, atol=1e-15
    )


def test_activations_match_their_formulas():
    z = torch.linspace(-30, 30, 601, dtype=f64)
    torch.testing.assert_close(relu(z), torch.maximum(z, torch.zeros_like(z)), rtol=0, atol=0)
    torch.testing.assert_close(sigmoid(z), 1 / (1 + torch.exp(-z)), rtol=1e-15, atol=1e-300)
    torch.testing.assert_close(tanh(z), (1 - torch.exp(-2 * z)) / (1 + torch.exp(-2 * z)), rtol=1e-14, atol=1e-15)


def test_tanh_plus_one_is_twice_sigmoid_of_twice_x():
    # d2l exercise: tanh(x) + 1 = 2 sigmoid(2x), since (1 - e^{-2x}) / (1 + e^{-2x}) + 1 = 2 / (1 + e^{-2x})
    x = torch.linspace(-20, 20, 4001, dtype=f64)
    torch.testing.assert_close(tanh(x) + 1, 2 * sigmoid(2 * x), rtol=0, atol=1e-15)  # 1 ulp of 2 is 4.4e-16


def test_sigmoid_saturates_without_overflow():
    z = torch.tensor([-1e4, -800.0, 800.0, 1e4])
    h = sigmoid(z)
    assert torch.equal(h, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert torch.equal(sigmoid_grad(h), torch.zeros(4))


def test_prelu_derivative_is_one_for_positive_and_alpha_for_negative_inputs():
    # d/dx pReLU(x) = 1 for x > 0 and alpha for x < 0 (the study log's Q1); d/dalpha = min(0, x)
    alpha = torch.tensor([0.25], dtype=f64)
    x = torch.tensor([-3.0, -0.5, 0.5, 2.0], dtype=f64)
    assert torch.equal(prelu(x, alpha), torch.tensor([-0.75, -0.125, 0.5, 2.0], dtype=f64))
    assert torch.equal(prelu_grad(x, alpha), torch.tensor([0.25, 0.25, 1.0, 1.0], dtype=f64))
    assert torch.equal(prelu_grad_alpha(x), torch.tensor([-3.0, -0.5, 0.0, 0.0], dtype=f64))
    h = 1e-6  # central differences, away from the kink at 0
    fd_x = (prelu(x + h, alpha) - prelu(x - h, alpha)) / (2 * h)
    fd_alpha = (prelu(x, alpha + h) - prelu(x, alpha - h)) / (2 * h)
    torch.testing.assert_close(fd_x, prelu_grad(x, alpha), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(fd_alpha, prelu_grad_alpha(x), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("alpha_value", [0.25, -0.4, 0.0, 1.7])
def test_prelu_gradients_match_autograd(alpha_value):
    z = torch.randn(500, dtype=f64, generator=gen(1))
    z[0] = 0.0
    alpha = torch.tensor([alpha_value], dtype=f64)
    torch.testing.assert_close(prelu(z, alpha), F.prelu(z, alpha), rtol=0, atol=0)
    zr, ar = z.clone().requires_grad_(True), alpha.clone().requires_grad_(True)
    upstream = torch.randn(500, dtype=f64, generator=gen(2))
    gz, ga = torch.autograd.grad((F.prelu(zr, ar) * upstream).sum(), (zr, ar))
    torch.testing.assert_close(upstream * prelu_grad(z, alpha), gz, rtol=1e-14, atol=0)
    torch.testing.assert_close((upstream * prelu_grad_alpha(z)).sum().reshape(1), ga, rtol=1e-12, atol=1e-14)


# -- softmax cross-entropy -----------------------------------------------------------------


def test_softmax_cross_entropy_and_gradient_match_autograd():
    logits = torch.randn(64, 10, dtype=f64, generator=gen(3)) * 5
    y = torch.randint(10, (64,), generator=gen(4))
    loss, grad = softmax_cross_entropy_and_grad(logits, y)
    ref_logits = logits.clone().requires_grad_(True)
    ref_loss = F.cross_entropy(ref_logits, y)
    (ref_grad,) = torch.autograd.grad(ref_loss, ref_logits)
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(softmax_cross_entropy(logits, y), ref_loss.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-17)
    torch.testing.assert_close(softmax_cross_entropy_grad(logits, y), ref_grad, rtol=1e-12, atol=1e-17)
    torch.testing.assert_close(log_softmax(logits), torch.log_softmax(logits, 1), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(grad.sum(dim=1), torch.zeros(64, dtype=f64), rtol=0, atol=1e-16)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = torch.tensor([[1000.0, -1000.0, 0.0], [1000.0, 1000.0, -1000.0]])
    y = torch.tensor([1, 0])
    loss, grad = softmax_cross_entropy_and_grad(logits, y)
    # row 1: log(e^1000 + e^-1000 + 1) - (-1000) = 2000 (to float32); row 2: log(2 e^1000) - 1000 = log 2
    torch.testing.assert_close(loss, torch.tensor((2000.0 + math.log(2.0)) / 2))
    # gradient rows (softmax - onehot) / B: ([1, 0, 0] - [0, 1, 0]) / 2 and ([1/2, 1/2, 0] - [1, 0, 0]) / 2
    torch.testing.assert_close(grad, torch.tensor([[0.5, -0.5, 0.0], [-0.25, 0.25, 0.0]]))
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


# -- dropout ---------------------------------------------------------------------------------


def test_dropout_p0_and_evaluation_are_the_identity():
    h = torch.randn(10, 5, generator=gen())
    out, mask = dropout(h, 0.0, training=True, generator=gen())
    assert out is h and mask is None
    out, mask = dropout(h, 0.7, training=False, generator=gen())
    assert out is h and mask is None
    g = torch.randn(10, 5, generator=gen(1))
    assert dropout_grad(g, None, 0.0) is g


def test_dropout_p1_drops_everything_without_nan():
    h = torch.randn(10, 5, generator=gen())
    out, mask = dropout(h, 1.0, training=True, generator=gen())
    assert torch.equal(out, torch.zeros_like(h)) and not mask.any()
    grad = dropout_grad(torch.ones_like(h), mask, 1.0)
    assert torch.equal(grad, torch.zeros_like(h))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_each_unit_with_probability_1_minus_p_and_preserves_the_mean(p):
    n = 200_000
    h = torch.full((n,), 3.0, dtype=f64)
    out, mask = dropout(h, p, generator=gen(5))
    kept = mask.double().mean().item()
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)  # 5 standard errors of a binomial
    assert torch.equal(out[mask], torch.full_like(out[mask], 3.0 / (1 - p)))  # kept: scaled by 1/(1-p)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    std_err = 3.0 * math.sqrt(p / (1 - p) / n)  # sd of h m / (1-p) is h sqrt(p / (1 - p))
    assert abs(out.mean().item() - 3.0) < 5 * std_err


def test_dropout_gradient_matches_autograd_with_the_same_mask():
    h = torch.randn(30, 8, dtype=f64, generator=gen())
    out, mask = dropout(h, 0.3, generator=gen(6))
    hr = h.clone().requires_grad_(True)
    upstream = torch.randn(30, 8, dtype=f64, generator=gen(7))
    ref_out = hr * mask / (1 - 0.3)
    (ref_grad,) = torch.autograd.grad((ref_out * upstream).sum(), hr)
    torch.testing.assert_close(out, ref_out.detach(), rtol=1e-15, atol=0)
    torch.testing.assert_close(dropout_grad(upstream, mask, 0.3), ref_grad, rtol=1e-15, atol=0)


def test_dropout_draws_from_the_generator_it_is_given():
    h = torch.ones(100)
    a, _ = dropout(h, 0.5, generator=gen(9))
    b, _ = dropout(h, 0.5, generator=gen(9))
    c, _ = dropout(h, 0.5, generator=gen(10))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", True])
def test_dropout_rejects_bad_probabilities(p):
    with pytest.raises(ConfigError, match="dropout"):
        dropout(torch.ones(3), p)


# -- penalties -------------------------------------------------------------------------------


def test_l2_and_l1_penalties_and_gradients_match_autograd():
    ws = [torch.randn(4, 3, dtype=f64, generator=gen(i)) for i in range(2)]
    lam = 0.7
    refs = [w.clone().requires_grad_(True) for w in ws]
    l2 = lam / 2 * sum((r**2).sum() for r in refs)
    l1 = lam * sum(r.abs().sum() for r in refs)
    torch.testing.assert_close(l2_penalty(ws, lam), l2.detach(), rtol=1e-15, atol=0)
    torch.testing.assert_close(l1_penalty(ws, lam), l1.detach(), rtol=1e-15, atol=0)
    g2 = torch.autograd.grad(l2, refs)
    g1 = torch.autograd.grad(l1, refs)
    for w, a, b in zip(ws, g2, g1):
        torch.testing.assert_close(l2_grad(w, lam), a, rtol=1e-15, atol=0)
        torch.testing.assert_close(l1_subgrad(w, lam), b, rtol=1e-15, atol=0)


def test_l1_subgradient_at_zero_is_zero():
    assert torch.equal(l1_subgrad(torch.tensor([-2.0, 0.0, 5.0]), 0.5), torch.tensor([-0.5, 0.0, 0.5]))


# -- initializers ----------------------------------------------------------------------------


def test_initializers_have_shape_n_in_by_n_out_and_the_formula_variances():
    n_in, n_out = 300, 900  # unequal, so a swapped fan-in/fan-out shows in he's variance
    cases = {
        "normal": (normal(n_in, n_out, 0.05, gen(1)), 0.05),
        "xavier_uniform": (xavier_uniform(n_in, n_out, gen(2)), math.sqrt(2 / (n_in + n_out))),
        "xavier_normal": (xavier_normal(n_in, n_out, gen(3)), math.sqrt(2 / (n_in + n_out))),
        "he": (he(n_in, n_out, gen(4)), math.sqrt(2 / n_in)),
    }
    for name, (W, std) in cases.items():
        assert W.shape == (n_in, n_out) and W.is_contiguous(), name
        assert abs(W.std().item() / std - 1) < 0.01, name  # 270,000 draws: ~0.14% standard error
        assert abs(W.mean().item()) < 5 * std / math.sqrt(W.numel()), name
    W = cases["xavier_uniform"][0]
    a = math.sqrt(6 / (n_in + n_out))
    assert W.abs().max().item() <= a and W.abs().max().item() > 0.999 * a


def test_scratch_weights_are_the_transposed_concise_weights_for_the_same_seed():
    cfg = ModelConfig(hidden=(20, 7), n_inputs=12, n_outputs=3, init="xavier")
    net = build_mlp(cfg, gen(11))
    g = gen(11)
    for linear, (n_in, n_out) in zip([m for m in net if isinstance(m, torch.nn.Linear)], [(12, 20), (20, 7), (7, 3)]):
        assert torch.equal(init_weight("xavier", n_in, n_out, g), linear.weight.detach().T)


def test_init_weight_rejects_unknown_specs():
    with pytest.raises(ConfigError, match="init"):
        init_weight("uniform", 3, 4)
    assert init_weight(parse_init("he"), 3, 4, dtype=f64).dtype == f64


def test_variance_through_ten_linear_layers():
    # d2l "Numerical Stability and Initialization": with n inputs per unit, Var(out) = n sigma^2
    # Var(in). Xavier (sigma^2 = 2 / (n + n) = 1/n) keeps it; N(0, 1) multiplies it by n = 200 per
    # layer; N(0, 0.01^2) by 200 * 1e-4 = 0.02.
    n, depth = 200, 10
    X = torch.randn(2000, n, dtype=f64, generator=gen(12))
    variances = {}
    for name, draw in {
        "xavier": lambda g: xavier_uniform(n, n, g),
        "normal:1": lambda g: normal(n, n, 1.0, g),
        "normal:0.01": lambda g: normal(n, n, 0.01, g),
    }.items():
        g, A = gen(13), X
        for _ in range(depth):
            A = A @ draw(g).to(f64)
        variances[name] = A.var().item() / X.var().item()
    assert 1 / 3 < variances["xavier"] < 3
    assert variances["normal:1"] > 1e20  # expected 200^10 = 1e23
    assert variances["normal:0.01"] < 1e-15  # expected 0.02^10 = 1e-17


# -- SGD -------------------------------------------------------------------------------------


def test_sgd_step_worked_by_hand():
    w = torch.tensor([1.0, -2.0], dtype=f64)
    b = torch.tensor([0.5], dtype=f64)
    opt = SGD([w, b], lr=0.1, weight_decay=0.5, decay=[True, False])
    opt.step([torch.tensor([0.2, 0.4], dtype=f64), torch.tensor([1.0], dtype=f64)])
    # w <- w - lr (g + lam w): 1 - 0.1 (0.2 + 0.5) = 0.93; -2 - 0.1 (0.4 - 1.0) = -1.94
    # b is not decayed:        0.5 - 0.1 * 1.0 = 0.4
    torch.testing.assert_close(w, torch.tensor([0.93, -1.94], dtype=f64), rtol=1e-15, atol=0)
    torch.testing.assert_close(b, torch.tensor([0.4], dtype=f64), rtol=1e-15, atol=0)


def test_sgd_matches_torch_sgd_with_weight_decay():
    ws = [torch.randn(5, 4, dtype=f64, generator=gen(i)) for i in range(3)]
    refs = [torch.nn.Parameter(w.clone()) for w in ws]
    ref = torch.optim.SGD(
        [{"params": refs[:2], "weight_decay": 0.3}, {"params": refs[2:], "weight_decay": 0.0}], lr=0.05
    )
    opt = SGD(ws, lr=0.05, weight_decay=0.3, decay=[True, True, False])
    for step in range(3):
        grads = [torch.randn(5, 4, dtype=f64, generator=gen(10 + 3 * step + i)) for i in range(3)]
        for r, g in zip(refs, grads):
            r.grad = g.clone()
        ref.step()
        opt.step(grads)
    for w, r in zip(ws, refs):
        torch.testing.assert_close(w, r.detach(), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"lr": 0.1, "weight_decay": -1.0}, "weight_decay"),
        ({"lr": 0.1, "decay": [True]}, "decay"),
    ],
)
def test_sgd_rejects_bad_settings(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        SGD([torch.zeros(2), torch.zeros(3)], **kwargs)
