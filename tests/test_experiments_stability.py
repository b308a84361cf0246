"""The stability experiment (d2l 4.8): its pure functions against independent references (closed
forms, hand computations, manual backprop in float64), its conclusions on hand-made results, its
config checks, and one end-to-end run on synthetic data, from Python and from the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mlplab.errors import ConfigError
from mlplab.experiments import stability as st
from mlplab.models import ModelConfig, build_mlp

# ---- part 1: the sigmoid and gradient norms ----------------------------------------------------


def test_sigmoid_derivative_is_the_closed_form():
    x = torch.linspace(-8, 8, 161, dtype=torch.float64)
    s, ds = st.sigmoid_and_derivative(x)
    closed = 1 / (1 + torch.exp(-x))
    torch.testing.assert_close(s, closed, rtol=0, atol=1e-15)
    torch.testing.assert_close(ds, closed * (1 - closed), rtol=0, atol=1e-15)
    assert float(ds.max()) == pytest.approx(0.25) and abs(float(x[ds.argmax()])) < 1e-12


def test_sigmoid_conclusion_reads_the_table():
    table = st.sigmoid_table(st.Config())
    assert list(table.columns) == ["x", "sigmoid", "derivative"] and len(table) == 33
    c = st.sigmoid_conclusion(table)
    # s'(4.5) = 0.0109 >= 0.01 and s'(5) = 0.00665 < 0.01 (by hand), so the cutoff on the 0.5 grid is 5
    assert c.values["max_derivative"] == pytest.approx(0.25) and c.values["at_x"] == 0.0
    assert c.values["from_abs_x"] == 5.0
    assert c.values["at_ends"] == pytest.approx(math.exp(-8) / (1 + math.exp(-8)) ** 2)


def _manual_two_layer(X, y, W1, W2, act):
    """Forward and backward of X -> W1 -> act -> W2 -> cross-entropy by hand, float64, no biases."""
    z1 = X @ W1.T
    h = torch.sigmoid(z1) if act == "sigmoid" else z1.clamp(min=0)
    dh_dz = h * (1 - h) if act == "sigmoid" else (z1 > 0).double()
    z2 = h @ W2.T
    p = torch.softmax(z2, dim=1)
    dz2 = (p - nn.functional.one_hot(y, W2.shape[0]).double()) / len(X)  # d mean CE / d logits
    dW2 = dz2.T @ h
    dz1 = (dz2 @ W2) * dh_dz
    dW1 = dz1.T @ X
    return z1, z2, dz1, dz2, dW1, dW2, dz1 @ W1


def _two_layer(act: str, seed: int = 0) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    net = build_mlp(ModelConfig(hidden=(5,), activation=act, init="normal:0.5", n_inputs=4, n_outputs=3, bias=False), g)
    net = net.double()
    X = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (7,), generator=g)
    return net, X, y


@pytest.mark.parametrize("act", ["sigmoid", "relu"])
def test_gradient_norms_match_manual_backprop(act):
    net, X, y = _two_layer(act)
    W1, W2 = net[1].weight.detach(), net[3].weight.detach()
    *_, dW1, dW2, _ = _manual_two_layer(X, y, W1, W2, act)
    norms = st.gradient_norms(net, X, y)
    assert norms == pytest.approx([float(dW1.norm()), float(dW2.norm())], rel=1e-12)
    assert all(p.grad is None for p in net.parameters())  # autograd.grad: nothing accumulated


def test_gradient_ratios_and_vanishing_conclusion_by_hand():
    # seed s: sigmoid norms 1e-5 .. 1 (first/last = 1e-5 * (s + 1)), relu 2 .. 2 (ratio 1)
    rows = []
    for seed in range(3):
        for layer, (sig, relu) in enumerate([(1e-5 * (seed + 1), 2.0), (0.3, 5.0), (1.0, 2.0)], start=1):
            rows.append(("sigmoid", "xavier", seed, layer, sig))
            rows.append(("relu", "xavier", seed, layer, relu))
    runs = pd.DataFrame(rows, columns=["activation", "init", "seed", "layer", "grad_norm"]).sample(
        frac=1, random_state=0
    )
    ratios = st.gradient_ratios(runs)
    sig = ratios[ratios["activation"] == "sigmoid"].sort_values("seed")
    assert sig["ratio"].tolist() == pytest.approx([1e-5, 2e-5, 3e-5])
    assert ratios.loc[ratios["activation"] == "relu", "ratio"].tolist() == pytest.approx([1.0] * 3)
    c = st.vanishing_conclusion(ratios, "xavier")
    assert c.values["ratio_a"] == pytest.approx(2e-5) and c.values["ratio_b"] == pytest.approx(1.0)
    # log10(1) - log10((s + 1) 1e-5) = 5 - log10(s + 1), mean over s = 0, 1, 2
    assert c.values["log10_difference"] == pytest.approx(5 - np.log10([1, 2, 3]).mean())
    assert c.values["winner"] == "relu" and "relu beats sigmoid" in c.text


# ---- part 2: products of random matrices -------------------------------------------------------


def test_product_norms_match_a_plain_numpy_loop():
    n, size = 12, 3
    max_abs, frob = st.product_norms(n, size, torch.Generator().manual_seed(5))
    G = torch.normal(0.0, 1.0, (n + 1, size, size), generator=torch.Generator().manual_seed(5)).double().numpy()
    M = G[0]
    for k in range(1, n + 1):
        M = M @ G[k]
        assert max_abs[k - 1] == pytest.approx(np.abs(M).max(), rel=1e-12)
        assert frob[k - 1] == pytest.approx(np.sqrt((M**2).sum()), rel=1e-12)


def test_one_by_one_products_are_products_of_numbers():
    G = torch.normal(0.0, 1.0, (5, 1, 1), generator=torch.Generator().manual_seed(1)).double().flatten()
    max_abs, frob = st.product_norms(4, 1, torch.Generator().manual_seed(1))
    expected = [abs(float(G[: k + 1].prod())) for k in range(1, 5)]
    assert max_abs.tolist() == pytest.approx(expected) and frob.tolist() == pytest.approx(expected)


def test_growth_rate_by_hand():
    k = np.arange(1, 11)
    assert st.growth_rate(k, 3.0 * 2.0**k) == pytest.approx(math.log(2))
    # ln values = 0, 1, 3 at k = 1, 2, 3: slope = sum (k - 2)(v - 4/3) / sum (k - 2)^2 = (4/3 + 5/3) / 2
    assert st.growth_rate([1, 2, 3], [1.0, math.e, math.e**3]) == pytest.approx(1.5)


def test_lyapunov_exponent():
    # n = 2: (ln 2 + digamma(1)) / 2 = (ln 2 - Euler's gamma) / 2
    assert st.lyapunov(2) == pytest.approx((math.log(2) - 0.5772156649015329) / 2)
    # against E[ln chi2_4] / 2 by Monte Carlo (a sum of 4 squared normals)
    z = np.random.default_rng(0).standard_normal((400_000, 4))
    assert st.lyapunov(4) == pytest.approx(0.5 * np.log((z**2).sum(axis=1)).mean(), abs=3e-3)


def test_product_conclusion_by_hand():
    products = pd.DataFrame({"seed": [0, 0, 1, 1], "k": [1, 2, 1, 2], "max_abs": [1, 2, 1, 4.0],
                             "frobenius": [2, 4, 2, 8.0]})  # fmt: skip
    growth = pd.DataFrame({"seed": [0, 0, 1, 1], "metric": ["max_abs", "frobenius"] * 2,
                           "slope": np.log([2, 2, 4, 4]), "factor": [2, 2, 4, 4.0]})  # fmt: skip
    c = st.product_conclusion(products, growth, size=4)
    assert c.values["final_median"] == 6.0 and c.values["factor"] == 3.0
    assert c.values["theory"] == pytest.approx(math.exp(st.lyapunov(4)))


# ---- part 3: symmetry -------------------------------------------------------------------------


def test_rank_and_spread_by_hand():
    same = torch.tensor([[1.0, 2.0, 3.0]] * 4)
    assert st.numerical_rank(same, 1e-6) == 1 and st.unit_spread(same) == 0.0
    W = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    assert st.numerical_rank(W, 1e-6) == 2 and st.unit_spread(W) == 3.0
    assert st.numerical_rank(torch.tensor([[1.0, 0.0], [0.0, 1e-6]]), 1e-4) == 1  # below the tolerance


def test_constant_init_sets_every_linear():
    net = build_mlp(ModelConfig(hidden=(4, 3), n_inputs=5, n_outputs=2), torch.Generator().manual_seed(0))
    st.constant_init_(net, 0.25)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert all(bool((m.weight == 0.25).all()) and bool((m.bias == 0).all()) for m in linears)


def test_symmetry_conclusion_by_hand():
    runs = pd.DataFrame({
        "start": ["constant 0.01", "normal:0.01", "constant 0.01"] * 2, "dropout": [0.0, 0.0, 0.5] * 2,
        "seed": [0, 0, 0, 1, 1, 1], "rank": [1, 32, 30, 1, 32, 31], "full_rank": [32] * 6,
        "spread": [0.0, 0.07, 3e-4, 0.0, 0.06, 2e-4],
    })  # fmt: skip
    c = st.symmetry_conclusion(runs, 1e-4)
    assert c.values["constant_stays_rank_1"] and c.values["dropout_breaks"]
    assert c.values["normal:0.01"]["ranks"] == [32] and c.values["constant 0.01 with dropout 0.5"]["ranks"] == [30, 31]
    runs.loc[3, "rank"] = 2  # one constant model that did not stay at rank 1
    assert not st.symmetry_conclusion(runs, 1e-4).values["constant_stays_rank_1"]


# ---- part 4: variances at init, and training ---------------------------------------------------


def test_layer_variances_match_a_manual_forward_and_backward():
    net, X, y = _two_layer("relu", seed=3)
    W1, W2 = net[1].weight.detach(), net[3].weight.detach()
    z1, z2, _dz1, dz2, dW1, dW2, dX = _manual_two_layer(X, y, W1, W2, "relu")
    v = st.layer_variances(net, X, y)

    def var(t):
        return float(((t - t.mean()) ** 2).mean())

    assert v.activation == pytest.approx([var(z1), var(z2)], rel=1e-12)
    assert v.gradient == pytest.approx([var(dW1), var(dW2)], rel=1e-12)
    assert v.input_second_moment == pytest.approx(float((X**2).mean()))
    assert v.input_gradient == pytest.approx(var(dX), rel=1e-12)
    assert v.output_gradient == pytest.approx(var(dz2), rel=1e-12)
    assert v.forward == pytest.approx(var(z2) / float((X**2).mean()))
    assert all(p.grad is None for p in net.parameters())


def test_predicted_variances_by_hand():
    # relu, std 0.1 (sigma^2 = 0.01), sizes 4-8-8-3, E[X^2] = 2: 4 * .01 * 2, then * 0.5 * 8 * .01 per layer
    spec = ModelConfig(hidden=(8, 8), activation="relu", init="normal:0.1", n_inputs=4, n_outputs=3)
    assert st.predicted_variances(spec, 2.0) == pytest.approx([0.08, 0.0032, 0.000128])
    # xavier, tanh: Var(z_1) = 2 * 2 / 8; then 6 * 2 / 10 * E[tanh(z)^2] for z ~ N(0, 1/2), by scipy's quad
    from scipy import integrate, stats

    spec = ModelConfig(hidden=(6,), activation="tanh", init="xavier", n_inputs=2, n_outputs=4)
    z = stats.norm(scale=0.5**0.5)
    second = integrate.quad(lambda t: math.tanh(t) ** 2 * z.pdf(t), -np.inf, np.inf)[0]
    assert second < 0.5 * 0.8  # tanh saturates: well below the linear 1/2
    assert st.predicted_variances(spec, 1.0) == pytest.approx([0.5, 6 * 2 / 10 * second], rel=1e-9)


def test_he_keeps_a_wide_relu_layer_near_the_prediction():
    # Var(z_1) = n_in sigma^2 E[X^2] in expectation: 2 E[X^2] for he; one wide layer is close to it
    g = torch.Generator().manual_seed(0)
    net = build_mlp(ModelConfig(hidden=(2048,), init="he", n_inputs=64, n_outputs=10), g)
    X = torch.rand(512, 64, generator=g)
    v = st.layer_variances(net, X, torch.randint(0, 10, (512,), generator=g))
    predicted = st.predicted_variances(ModelConfig(hidden=(2048,), init="he", n_inputs=64, n_outputs=10),
                                       v.input_second_moment)  # fmt: skip
    assert v.activation[0] == pytest.approx(predicted[0], rel=0.1)


def test_variance_conclusion_by_hand():
    table = pd.DataFrame({"init": ["normal:0.01", "he"], "activation": ["relu", "relu"],
                          "forward_mean": [1e-14, 0.9], "backward_mean": [4e-15, 0.6],
                          "predicted_forward": [1.4e-14, 2.0], "predicted_backward": [4.4e-15, 0.63],
                          "doctor_flags": [True, False]})  # fmt: skip
    c = st.variance_conclusion(table, (256,) * 6)
    assert c.values["normal:0.01, relu"]["flagged"] and not c.values["he, relu"]["flagged"]
    assert "normal:0.01, relu 1e-14 (doctor 1.4e-14) forward" in c.text and "[" not in c.text


def _hand_results() -> pd.DataFrame:
    """relu: he 0.85 + 0.01 s beats xavier 0.80 + 0.01 s; tanh: xavier 0.81 + 0.01 s beats he 0.75 + 0.01 s;
    normal:0.01 at chance (0.10) for both."""
    accs = {("relu", "xavier"): 0.80, ("relu", "he"): 0.85, ("tanh", "xavier"): 0.81, ("tanh", "he"): 0.75}
    rows = []
    for seed in range(3):
        for activation in ("relu", "tanh"):
            for init in ("normal:0.01", "xavier", "he"):
                acc = accs[activation, init] + 0.01 * seed if init != "normal:0.01" else 0.10
                status = "ok" if init != "normal:0.01" else "failed: at chance"
                rows.append((activation, init, seed, acc, 2.3 - acc, status))
    return pd.DataFrame(rows, columns=["activation", "init", "seed", "final_test_acc", "final_train_loss", "status"])


def test_training_table_and_conclusions_by_hand():
    results = _hand_results()
    table = st.training_table(results)
    assert len(table) == 6
    row = table[(table["init"] == "normal:0.01") & (table["activation"] == "relu")].iloc[0]
    assert (
        row["n_ok"] == 0
        and row["statuses"] == "failed: at chance: 3"
        and row["final_test_acc_mean"] == pytest.approx(0.10)
    )
    assert table.loc[table["init"] == "he", "n_ok"].tolist() == [3, 3]
    conclusions = st.training_conclusions(results, ("he", "normal:0.01"))
    by = {c.values.get("activation"): c for c in conclusions[:2]}
    assert by["relu"].values["best"] == "he" and by["tanh"].values["best"] == "xavier"
    assert by["relu"].values["not_ok"] == {"normal:0.01": 3}
    paired = conclusions[2].values
    assert paired["a"] == "init=he" and paired["difference"] == pytest.approx(0.76) and paired["winner"] == "init=he"


def test_no_paired_comparison_without_both_inits():
    results = _hand_results()
    results = results[results["init"] != "normal:0.01"]
    assert len(st.training_conclusions(results, ("he", "normal:0.01"))) == 2


# ---- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("sigmoid_points", 1), ("sigmoid_range", 0.0), ("n_products", 1), ("matrix_size", 0),
        ("gradient_activations", ("swish",)), ("deep_activations", ("relu", "relu")), ("deep_activations", "relu"),
        ("gradient_hidden", ()), ("deep_hidden", (256, 0)), ("deep_hidden", 256),
        ("deep_inits", ("uniform",)), ("gradient_inits", ("he", "HE")), ("compare_inits", ("he",)),
        ("symmetry_width", 1), ("symmetry_dropout", 1.0), ("rank_rtol", 0.0), ("epochs", 0), ("lr", -0.1),
        ("probe_batch", 0), ("seeds", 0),
    ],
)  # fmt: skip
def test_bad_config_values_name_their_field(field, value):
    with pytest.raises(ConfigError) as err:
        st.Config(**{field: value})
    assert err.value.field == field


def test_config_canonicalizes_inits_and_caps_quick_widths():
    c = st.Config(deep_inits=("Normal:0.010", "he"), quick=True)
    assert c.deep_inits == ("normal:0.01", "he")
    assert c.deep == (st.QUICK_WIDTH,) * 6 and st.Config().deep == (256,) * 6


# ---- end to end ----------------------------------------------------------------------------------


def test_run_end_to_end_on_synthetic_data(tmp_path):
    config = st.Config(
        data="synthetic", quick=True, seeds=2, out=str(tmp_path), gradient_hidden=(8,) * 4, n_products=20,
        symmetry_width=8, deep_hidden=(16,) * 3, probe_batch=64,
    )  # fmt: skip
    result = st.run(config)
    t = result.tables
    assert t["sigmoid"].shape == (33, 3) and len(t["sigmoid_curves"]) == 66
    assert len(t["gradient_norms"]) == 2 * 2 * 5  # activations x inits x Linear layers
    assert {"grad_norm_mean", "grad_norm_ci", "model"} <= set(t["gradient_norms"].columns)
    assert len(t["gradient_ratio"]) == 4 and (t["gradient_ratio"]["n"] == 2).all()
    assert t["products"].shape == (40, 4) and len(t["product_growth"]) == 4
    assert len(t["symmetry"]) == 2 * 3
    assert len(t["variances"]) == 3 * 2 * 4 and len(t["variance_factors"]) == 6
    assert len(t["training"]) == 6 and (t["training"]["n"] == 2).all()

    c = {i: conc for i, conc in enumerate(result.conclusions)}
    assert len(c) == 8  # sigmoid, vanishing, products, symmetry, variances, best x 2, paired
    ratio = t["gradient_ratio"]
    sig = ratio[(ratio["activation"] == "sigmoid") & (ratio["init"] == "xavier")]["ratio_mean"].item()
    assert c[1].values["ratio_a"] == pytest.approx(sig)
    growth = t["product_growth"]
    assert c[2].values["factor"] == pytest.approx(growth.loc[growth["metric"] == "frobenius", "factor"].mean())
    sym = t["symmetry"]
    constant = sym[(sym["start"] == "constant 0.01") & (sym["dropout"] == 0)]
    assert (constant["rank"] == 1).all() and (constant["spread"] == 0).all()  # the units stay identical
    assert (sym.loc[sym["start"] == "normal:0.01", "rank"] == 8).all()  # full: min(8 units, 32 inputs)
    assert c[3].values["constant_stays_rank_1"]
    factors = t["variance_factors"]
    flags = dict(zip(factors["init"] + ", " + factors["activation"], factors["doctor_flags"]))
    assert {k: v["flagged"] for k, v in c[4].values.items()} == flags
    training = t["training"]
    relu = training[training["activation"] == "relu"]
    assert c[5].values["best"] == relu.loc[relu["final_test_acc_mean"].idxmax(), "init"]
    assert c[7].values["a"] == "init=he" and c[7].values["b"] == "init=normal:0.01"

    folder = result.save(config.folder(st.NAME))
    saved = json.loads((folder / "result.json").read_text())
    assert len(saved["conclusions"]) == 8
    assert {p.stem for p in (folder / "figures").glob("*.png")} == {f.name for f in result.figures}
    again = st.run(config)  # the sweep's models are stored: the rerun reads them back
    pd.testing.assert_frame_equal(again.tables["training"], t["training"])


def test_cli_runs_the_experiment(tmp_path):
    from typer.testing import CliRunner

    from mlplab.cli import app

    out = CliRunner().invoke(app, ["run", st.NAME, "--quick", "--synthetic", "--seeds", "2", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    folder = tmp_path / "quick" / "synthetic"
    assert (folder / "result.md").is_file() and (folder / "tables" / "variances.csv").is_file()
    assert "flagged" in out.output  # normal:0.01 through 6 layers: the doctor's variance check warns
