"""Tests of mlplab.shift on synthetic data whose shift is known in closed form."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from mlplab.data.batching import Data, Split
from mlplab.errors import ConfigError, DataError
from mlplab.shift import (
    ShiftInputError,
    adjust_predictions,
    concept_mapping,
    confusion_matrix,
    covariate_shift_split,
    covariate_weights,
    dirichlet_priors,
    effective_sample_size,
    em_priors,
    estimate_label_shift,
    fit_calibration,
    fit_label_shift,
    fit_weighted,
    knock_out_priors,
    mean_ci,
    relabel,
    sample_by_priors,
    tweak_one_priors,
    weight_error,
)
from mlplab.shift.experiment import verdict
from mlplab.shift.label import IllConditionedWarning, calibration_nll
from mlplab.stats import MeanCI
from mlplab.train import TrainConfig, fit

MEANS = np.array([-2.0, 0.0, 2.0])  # three unit-variance 1-D Gaussian classes


def gaussian_posteriors(n: int, priors: np.ndarray, rng: np.random.Generator, model_priors: np.ndarray):
    """Labels from ``priors``, x | y ~ N(MEANS[y], 1), and the exact Bayes posteriors under ``model_priors``."""
    y = rng.choice(len(MEANS), size=n, p=priors)
    x = rng.normal(MEANS[y], 1.0)
    post = np.exp(-0.5 * (x[:, None] - MEANS) ** 2) * model_priors  # (n, 3)
    return post / post.sum(axis=1, keepdims=True), y


# --- label shift -----------------------------------------------------------------------------

P_SOURCE = np.array([0.5, 0.3, 0.2])
Q_TARGET = np.array([0.1, 0.3, 0.6])


@pytest.fixture(scope="module")
def gaussian_label_shift():
    rng = np.random.default_rng(0)
    ps, ys = gaussian_posteriors(20_000, P_SOURCE, rng, P_SOURCE)
    pt, yt = gaussian_posteriors(20_000, Q_TARGET, rng, P_SOURCE)
    return ps, ys, pt, yt


@pytest.mark.parametrize(
    "method,calibration", [("bbse", None), ("bbse_soft", None), ("em", None), ("em", "bcts"), ("em", "ts")]
)
def test_label_shift_weights_match_closed_form(gaussian_label_shift, method, calibration):
    ps, ys, pt, _ = gaussian_label_shift
    w_true = Q_TARGET / P_SOURCE  # (0.2, 1, 3)
    w = estimate_label_shift(ps, ys, pt, method=method, calibration=calibration)
    assert w.shape == (3,)
    assert weight_error(w, w_true) < 0.01  # 20 seeds of this setup: at most 0.0064
    assert weight_error(np.ones(3), w_true) > 1.5  # what ignoring the shift would cost


@pytest.mark.parametrize("method", ["bbse", "bbse_soft", "em"])
def test_no_shift_gives_unit_weights(gaussian_label_shift, method):
    ps, ys, _, _ = gaussian_label_shift
    rng = np.random.default_rng(1)
    pt, _ = gaussian_posteriors(20_000, P_SOURCE, rng, P_SOURCE)
    np.testing.assert_allclose(estimate_label_shift(ps, ys, pt, method), 1.0, atol=0.06)


@pytest.mark.parametrize("soft", [False, True])
def test_bbse_is_exact_when_the_target_is_the_source_reweighted(soft):
    # Target = held-out rows of class y repeated c_y times: mu = C w holds exactly, w = c / mean(c).
    rng = np.random.default_rng(2)
    k, n = 4, 400
    y = np.repeat(np.arange(k), n // k)
    probs = rng.dirichlet(np.ones(k) * 0.5, size=n)
    probs[np.arange(n), y] += 2.0  # an informative classifier
    probs /= probs.sum(axis=1, keepdims=True)
    counts = np.array([1, 3, 2, 4])
    target = np.repeat(probs, counts[y], axis=0)
    w = estimate_label_shift(probs, y, target, "bbse_soft" if soft else "bbse")
    q = counts / counts.sum()  # per-class target frequencies (classes are balanced in the source)
    np.testing.assert_allclose(w, q / 0.25, atol=1e-10)


def test_confusion_matrix_is_the_joint_distribution():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(confusion_matrix(probs, y), [[0.25, 0.25], [0.25, 0.25]])
    np.testing.assert_allclose(confusion_matrix(probs, y, soft=True), [[1.1 / 4, 0.9 / 4], [0.9 / 4, 1.1 / 4]])


def test_em_returns_a_fixed_point_of_its_update(gaussian_label_shift):
    ps, ys, pt, _ = gaussian_label_shift
    p = np.bincount(ys) / len(ys)
    q, iters = em_priors(pt, p)
    a = pt * (q / p)
    a /= a.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(a.mean(axis=0), q, atol=1e-9)
    assert 1 < iters < 10_000


def test_adjust_predictions_is_bayes_rule_with_the_new_prior():
    rng = np.random.default_rng(3)
    post_p, _ = gaussian_posteriors(1000, P_SOURCE, rng, P_SOURCE)
    x_post_q = post_p * Q_TARGET / P_SOURCE
    np.testing.assert_allclose(
        adjust_predictions(post_p, Q_TARGET / P_SOURCE), x_post_q / x_post_q.sum(1, keepdims=True)
    )
    # the exact posteriors under q, computed from the likelihoods directly
    x = rng.normal(0.3, 1.5, size=50)
    lik = np.exp(-0.5 * (x[:, None] - MEANS) ** 2)
    under_p, under_q = lik * P_SOURCE, lik * Q_TARGET
    got = adjust_predictions(under_p / under_p.sum(1, keepdims=True), Q_TARGET / P_SOURCE)
    np.testing.assert_allclose(got, under_q / under_q.sum(1, keepdims=True), rtol=1e-12)


def test_adjusted_predictions_raise_target_accuracy(gaussian_label_shift):
    ps, ys, pt, yt = gaussian_label_shift
    w = estimate_label_shift(ps, ys, pt, "bbse")
    before = (pt.argmax(1) == yt).mean()
    after = (adjust_predictions(pt, w).argmax(1) == yt).mean()
    assert after > before + 0.02


def test_calibration_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    logp = np.log(rng.dirichlet(np.ones(5), size=50))
    y = rng.integers(0, 5, 50)
    for theta in (rng.normal(size=6) * 0.3, np.array([0.4])):
        _, grad = calibration_nll(theta, logp, y)
        eps = 1e-6
        numeric = [
            (calibration_nll(theta + eps * e, logp, y)[0] - calibration_nll(theta - eps * e, logp, y)[0]) / (2 * eps)
            for e in np.eye(len(theta))
        ]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_calibration_recovers_temperature_and_bias():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(30_000, 4)) * 3.0
    true_bias = np.array([0.5, -0.5, 0.2, -0.2])
    z = logits / 2.0 + true_bias
    labels = (rng.random((len(z), 1)) < np.cumsum(np.exp(z) / np.exp(z).sum(1, keepdims=True), axis=1)).argmax(1)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    cal = fit_calibration(probs, labels, "bcts")
    assert cal.temperature == pytest.approx(2.0, rel=0.05)
    np.testing.assert_allclose(cal.bias, true_bias, atol=0.05)
    assert cal.nll_after < cal.nll_before
    ts = fit_calibration(probs, labels, "ts")
    assert np.all(ts.bias == 0) and ts.temperature > 1.5
    np.testing.assert_allclose(cal(probs).sum(axis=1), 1.0)


def test_ill_conditioned_confusion_matrix_warns():
    rng = np.random.default_rng(6)
    y = np.repeat([0, 1, 2], 100)
    probs = np.full((300, 3), 0.1)
    probs[np.arange(300), np.where(y == 2, 2, 0)] = 0.8  # classes 0 and 1 both predicted as 0
    target = probs[rng.permutation(300)]
    with pytest.warns(IllConditionedWarning, match="ill-conditioned"):
        est = fit_label_shift(probs, y, target, "bbse")
    assert est.condition_number > 1e10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_label_shift(probs, y, target, "em")  # EM does not solve the linear system


def test_estimators_accept_torch_tensors(gaussian_label_shift):
    ps, ys, pt, _ = gaussian_label_shift
    w_np = estimate_label_shift(ps, ys, pt)
    w_t = estimate_label_shift(torch.from_numpy(ps).float(), torch.from_numpy(ys), torch.from_numpy(pt).float())
    np.testing.assert_allclose(w_t, w_np, atol=1e-3)


def _probs(n, k=3, seed=0):
    return np.random.default_rng(seed).dirichlet(np.ones(k), size=n)


@pytest.mark.parametrize(
    "source,labels,target,match",
    [
        (_probs(10), np.arange(10) % 3, _probs(5, 4), "4 columns, expected 3"),
        (_probs(10), np.arange(9) % 3, _probs(5), "9 labels but the probabilities have 10 rows"),
        (_probs(10) * 2, np.arange(10) % 3, _probs(5), "sums to 2"),
        (_probs(10) - 0.5, np.arange(10) % 3, _probs(5), "negative entries"),
        (_probs(10), np.arange(10) % 3 + 1, _probs(5), r"outside \[0, 3\)"),
        (_probs(10), -(np.arange(10) % 3), _probs(5), r"outside \[0, 3\)"),
        (np.zeros((0, 3)), np.zeros(0, int), _probs(5), "empty"),
        (_probs(10), np.arange(10) % 3, np.zeros((0, 3)), "empty"),
        (_probs(10)[:, 0], np.arange(10) % 3, _probs(5), "must be 2-D"),
        (np.full((10, 3), np.nan), np.arange(10) % 3, _probs(5), "NaN"),
        (_probs(10), np.zeros(10, int), _probs(5), r"no example of class\(es\) \[1, 2\]"),
        (_probs(10), np.arange(10) % 3 + 0.5, _probs(5), "integer class indices"),
    ],
)
def test_label_shift_rejects_bad_input(source, labels, target, match):
    with pytest.raises(ShiftInputError, match=match) as info:
        estimate_label_shift(source, labels, target)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DataError)


def test_label_shift_rejects_unknown_method_and_calibration():
    with pytest.raises(ConfigError, match="method = 'mle' is invalid"):
        estimate_label_shift(_probs(9), np.arange(9) % 3, _probs(5), method="mle")
    with pytest.raises(ConfigError, match="calibration = 'platt'"):
        estimate_label_shift(_probs(9), np.arange(9) % 3, _probs(5), calibration="platt")


def test_adjust_predictions_rejects_bad_weights():
    with pytest.raises(ShiftInputError, match="3 classes"):
        adjust_predictions(_probs(4), np.ones(2))
    with pytest.raises(ShiftInputError, match="not all zero"):
        adjust_predictions(_probs(4), np.zeros(3))


# --- covariate shift -------------------------------------------------------------------------

SHIFT = np.array([1.0, -0.5])  # target mean; source N(0, I), target N(SHIFT, I)


def exact_ratio(X: np.ndarray) -> np.ndarray:
    """q(x)/p(x) for N(SHIFT, I) over N(0, I): exp(SHIFT.x - |SHIFT|^2 / 2)."""
    return np.exp(X @ SHIFT - SHIFT @ SHIFT / 2)


@pytest.mark.parametrize("n_source,n_target", [(4000, 4000), (8000, 2000)])
def test_covariate_weights_match_gaussian_density_ratio(n_source, n_target):
    rng = np.random.default_rng(7)
    Xs = rng.normal(size=(n_source, 2))
    Xt = rng.normal(size=(n_target, 2)) + SHIFT
    beta = covariate_weights(Xs, Xt, clip=None)
    truth = exact_ratio(Xs)
    assert beta.shape == (n_source,)
    assert np.corrcoef(np.log(beta), np.log(truth))[0, 1] > 0.99
    assert np.median(np.abs(beta / truth - 1)) < 0.1
    # without the n_s/n_t factor every weight is off by n_t/n_s
    raw = covariate_weights(Xs, Xt, clip=None, correct_sizes=False)
    np.testing.assert_allclose(raw * n_source / n_target, beta, rtol=1e-10)


def test_covariate_weights_clip():
    rng = np.random.default_rng(8)
    Xs, Xt = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2)) + 2 * SHIFT
    unclipped = covariate_weights(Xs, Xt, clip=None)
    clipped = covariate_weights(Xs, Xt, clip=5.0)
    assert unclipped.max() > 5.0
    np.testing.assert_allclose(clipped, np.minimum(unclipped, 5.0))


def test_covariate_weights_through_pca_on_high_dimensional_inputs():
    rng = np.random.default_rng(9)
    d, shift = 100, np.zeros(100)
    shift[0] = 1.5
    Xs = rng.normal(size=(3000, d))
    Xt = rng.normal(size=(3000, d)) + shift
    beta = covariate_weights(Xs, Xt, clip=None, n_components=5)
    truth = np.exp(Xs @ shift - shift @ shift / 2)
    assert np.corrcoef(np.log(beta), np.log(truth))[0, 1] > 0.9  # 0.946: 4 of the 5 components are noise


def test_weighted_target_risk_matches_the_target_risk():
    # E_p[beta(x) f(x)] = E_q[f(x)]: the identity the whole correction rests on.
    rng = np.random.default_rng(10)
    Xs, Xt = rng.normal(size=(20_000, 2)), rng.normal(size=(20_000, 2)) + SHIFT
    beta = covariate_weights(Xs, Xt, clip=None)
    f = lambda X: (X[:, 0] > 0.5).astype(float)
    assert abs(np.mean(beta * f(Xs)) - f(Xt).mean()) < 0.02
    assert abs(f(Xs).mean() - f(Xt).mean()) > 0.2  # unweighted, the estimate is far off


@pytest.mark.parametrize(
    "source,target,kw,match",
    [
        (np.zeros((5, 2)), np.zeros((5, 3)), {}, "3 columns, expected 2"),
        (np.zeros((0, 2)), np.zeros((5, 2)), {}, "empty"),
        (np.zeros(5), np.zeros((5, 1)), {}, "must be 2-D"),
        (np.full((5, 2), np.inf), np.zeros((5, 2)), {}, "infinite"),
    ],
)
def test_covariate_weights_reject_bad_input(source, target, kw, match):
    with pytest.raises(ShiftInputError, match=match):
        covariate_weights(source, target, **kw)


def test_covariate_weights_reject_bad_clip():
    with pytest.raises(ConfigError, match="clip"):
        covariate_weights(np.zeros((5, 2)), np.ones((5, 2)), clip=0.0)


def test_effective_sample_size():
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size([0, 0, 3.0, 0]) == pytest.approx(1)
    assert effective_sample_size([1, 1, 2, 2]) == pytest.approx(36 / 10)
    with pytest.raises(ShiftInputError):
        effective_sample_size([-1.0, 2.0])


# --- weighted training -----------------------------------------------------------------------


def _blobs(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(3, 5, generator=g) * 2
    y = torch.randint(3, (n,), generator=g)
    return Split(centers[y] + torch.randn(n, 5, generator=g), y)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def test_unit_weights_train_exactly_like_fit():
    train, test = _blobs(), _blobs(100, seed=1)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.1, seed=3)
    a, b = _net(), _net()
    h_fit = fit(a, Data(train, test), cfg)
    h_w = fit_weighted(b, train, np.full(len(train), 7.0), cfg, eval_split=test)  # constant weights rescale to 1
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    assert h_w.final.test_acc == h_fit.final.test_acc
    assert h_w.final.train_loss == pytest.approx(h_fit.final.train_loss, rel=1e-5)


def test_weights_equal_duplicated_examples_in_a_full_batch_step():
    train = _blobs(60)
    counts = np.random.default_rng(0).integers(1, 4, size=60)
    cfg = TrainConfig(epochs=1, batch_size=1000, lr=0.5, seed=0)  # one full-batch SGD step
    a, b = _net(), _net()
    fit_weighted(a, train, counts, cfg)
    idx = torch.from_numpy(np.repeat(np.arange(60), counts))
    fit(b, Data(Split(train.X[idx], train.y[idx]), train), cfg)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_weighted_mse_training_converges_to_weighted_least_squares():
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 2, 80)
    y = x**2 + 0.1 * rng.normal(size=80)
    w = np.exp(-x)  # emphasises small x
    A = np.column_stack([np.ones(80), x])
    b_wls = np.linalg.lstsq(A * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    net = nn.Linear(1, 1)
    nn.init.zeros_(net.weight), nn.init.zeros_(net.bias)
    split = Split(torch.tensor(x[:, None], dtype=torch.float32), torch.tensor(y[:, None], dtype=torch.float32))
    fit_weighted(net, split, w, TrainConfig(epochs=1500, batch_size=80, lr=0.1, loss="mse", seed=0))
    got = [net.bias.item(), net.weight.item()]
    np.testing.assert_allclose(got, b_wls, atol=2e-3)
    b_ols = np.linalg.lstsq(A, y, rcond=None)[0]
    assert np.abs(b_ols - b_wls).max() > 0.2  # the weights matter here


def test_fit_weighted_rejects_bad_weights():
    train = _blobs(20)
    with pytest.raises(ShiftInputError, match="19 entries but the training split has 20"):
        fit_weighted(_net(), train, np.ones(19), TrainConfig(epochs=1))
    with pytest.raises(ShiftInputError, match="finite"):
        fit_weighted(_net(), train, np.full(20, np.nan), TrainConfig(epochs=1))


# --- generators ------------------------------------------------------------------------------


def test_dirichlet_priors_are_seeded_distributions():
    a = dirichlet_priors(10, 1.0, np.random.default_rng(0))
    b = dirichlet_priors(10, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (10,) and a.sum() == pytest.approx(1) and np.all(a >= 0)
    # Dirichlet(alpha) marginal: Var q_y = (k - 1) / (k^2 (k alpha + 1)) = 3 / (16 * 9) for k=4, alpha=2
    many = np.array([dirichlet_priors(4, 2.0, np.random.default_rng(s)) for s in range(3000)])
    assert many[:, 0].var() == pytest.approx(3 / (16 * 9), rel=0.1)
    with pytest.raises(ConfigError, match="alpha"):
        dirichlet_priors(10, 0.0, np.random.default_rng(0))


def test_tweak_one_and_knock_out_priors():
    np.testing.assert_allclose(tweak_one_priors(5, 2, 0.6), [0.1, 0.1, 0.6, 0.1, 0.1])
    q = knock_out_priors(np.full(4, 0.25), 1, 0.8)
    np.testing.assert_allclose(q, np.array([1, 0.2, 1, 1]) / 3.2)
    with pytest.raises(ConfigError, match="rho"):
        tweak_one_priors(5, 0, 1.5)


def test_sample_by_priors_follows_the_priors_and_keeps_classes_uniform():
    labels = np.repeat(np.arange(4), 100)
    q = np.array([0.7, 0.1, 0.1, 0.1])
    idx = sample_by_priors(labels, q, 4000, np.random.default_rng(0))
    freq = np.bincount(labels[idx], minlength=4) / 4000
    np.testing.assert_allclose(freq, q, atol=0.03)  # multinomial sd ~ 0.007
    # class 0 needs 2,800 of its 100 pool images: drawn with replacement, still all of them used
    assert len(np.unique(idx[labels[idx] == 0])) == 100
    # a class asked for less than its pool size is drawn without replacement
    small = sample_by_priors(labels, np.full(4, 0.25), 200, np.random.default_rng(1))
    assert len(np.unique(small)) == 200
    np.testing.assert_array_equal(idx, sample_by_priors(labels, q, 4000, np.random.default_rng(0)))


def test_covariate_shift_split_has_the_stated_density_ratio():
    rng = np.random.default_rng(12)
    stat_s, stat_t = rng.normal(size=200_000), rng.normal(size=200_000)
    s = 1.2
    src, tgt, ratio = covariate_shift_split(stat_s, stat_t, s, np.random.default_rng(13), center=0.0, scale=1.0)
    assert ratio.mean() == pytest.approx(1) and len(ratio) == len(src)
    bins = np.linspace(-1.5, 1.5, 7)
    hs = np.histogram(stat_s[src], bins)[0] / len(src)
    ht = np.histogram(stat_t[tgt], bins)[0] / len(tgt)
    centers = (bins[:-1] + bins[1:]) / 2
    slope = np.polyfit(centers, np.log(ht / hs), 1)[0]
    assert slope == pytest.approx(s, rel=0.05)  # log q/p = s z + const
    np.testing.assert_allclose(np.log(ratio) - np.log(ratio).mean(), s * (stat_s[src] - stat_s[src].mean()), atol=1e-9)


def test_concept_mapping_moves_exactly_n_changed_classes():
    for seed in range(20):
        m = concept_mapping(10, 4, np.random.default_rng(seed))
        assert sorted(m) == list(range(10))
        assert int(np.sum(m != np.arange(10))) == 4
    np.testing.assert_array_equal(concept_mapping(10, 0, np.random.default_rng(0)), np.arange(10))
    np.testing.assert_array_equal(relabel([0, 1, 2, 1], np.array([1, 2, 0])), [1, 2, 0, 2])
    with pytest.raises(ConfigError, match="n_changed"):
        concept_mapping(10, 1, np.random.default_rng(0))


# --- statistics ------------------------------------------------------------------------------


def test_mean_ci_uses_the_student_t_quantile():
    ci = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    t_975_4 = 2.7764451051977987  # from tables
    assert ci.mean == 3.0
    assert ci.half_width == pytest.approx(t_975_4 * math.sqrt(2.5) / math.sqrt(5))
    assert math.isnan(mean_ci([2.0]).half_width)


def test_mean_ci_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(14)
    covered = 0
    trials = 4000
    for _ in range(trials):
        ci = mean_ci(rng.normal(1.0, 2.0, 5))
        covered += ci.low <= 1.0 <= ci.high
    assert covered / trials == pytest.approx(0.95, abs=0.015)


def test_verdict_reads_the_confidence_interval():
    assert verdict(MeanCI(-0.05, 0.01, 5)) == "helps"
    assert verdict(MeanCI(0.05, 0.01, 5)) == "hurts"
    assert verdict(MeanCI(-0.005, 0.01, 5)) == "no measurable effect"
    assert verdict(MeanCI(0.05, 0.01, 5), lower_is_better=False) == "helps"
