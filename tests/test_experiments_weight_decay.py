"""The weight-decay experiment (d2l 4.5): scratch = concise, ||w|| vs lambda, validation choice, run, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.data import Data, Split
from mlplab.errors import ConfigError
from mlplab.experiments import weight_decay
from mlplab.experiments.weight_decay import (
    Config,
    concise_weights,
    l2_penalty,
    regression_data,
    scratch_weights,
    sparsity_comparison,
    validation_choice,
    weight_metrics,
)


def test_l2_penalty_is_half_the_squared_norm_and_its_gradient_is_w():
    w = torch.tensor([[3.0, -4.0]], dtype=torch.float64, requires_grad=True)
    value = l2_penalty(w)
    assert value.item() == 12.5
    (grad,) = torch.autograd.grad(value, w)
    torch.testing.assert_close(grad, w.detach())


@pytest.mark.parametrize("lam", [0.0, 3.0])
def test_scratch_equals_concise(lam):
    data, _ = regression_data(Config(), 1)
    ws, bs = scratch_weights(data, lam, 0.003, 5, 20, seed=1)
    wc, bc = concise_weights(data, lam, 0.003, 5, 20, seed=1)
    assert (ws - wc).abs().max() <= 1e-5 and (bs - bc).abs().max() <= 1e-5
    if lam:  # the penalty did something, so the agreement is not just the shared start
        w0, _ = scratch_weights(data, 0.0, 0.003, 5, 20, seed=1)
        assert (ws - w0).abs().max() > 1e-4


def test_weight_norm_decreases_with_lambda_on_a_hand_made_case():
    """Two rows x = (1, -1), y = (1, -1): the bias stays 0 and the weight alone fits the data."""
    X = torch.tensor([[1.0], [-1.0]])
    y = torch.tensor([[1.0], [-1.0]])
    data = Data(Split(X, y), Split(X, y))
    norms = [float(scratch_weights(data, lam, 0.1, 2, 300, seed=0)[0].norm()) for lam in (0.0, 1.0, 3.0)]
    # the minimum of mean (w x + b - y)^2 + lam/2 w^2 is w = 2 / (2 + lam), b = 0
    np.testing.assert_allclose(norms, [1.0, 2 / 3, 2 / 5], atol=1e-4)


def test_weight_metrics_against_hand_computation():
    w = np.array([[0.0, 2e-3, 1.0], [3.0, 4.0, 0.0]])  # (K=2, d=3)
    b = np.array([0.0, 1.0])
    split = Split(torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[1.0]]))
    m = weight_metrics(w, b, {"test": split})
    np.testing.assert_allclose(m["weight_norm"], [np.sqrt(4e-6 + 1), 5.0])
    np.testing.assert_allclose(m["near_zero"], [1 / 3, 1 / 3])
    np.testing.assert_allclose(m["test_loss"], [0.0, 9.0])  # (1 - 1)^2 and (3 + 1 - 1)^2


def hand_made() -> pd.DataFrame:
    """Validation prefers lambda=1 on every seed; the test set alone would pick lambda=3."""
    rows = []
    for s in range(3):
        for lam, val, test in ((0.0, 0.05, 0.050), (1.0, 0.01, 0.030), (3.0, 0.03, 0.020)):
            rows.append({"lambda": lam, "seed": s, "validation_loss": val + 0.001 * s, "test_loss": test + 0.001 * s,
                         "near_zero": {0.0: 0.1, 1.0: 0.2, 3.0: 0.3}[lam] + 0.01 * s})  # fmt: skip
    return pd.DataFrame(rows)


def test_validation_choice_on_hand_made_results():
    c = validation_choice(hand_made(), "lambda", "L2")
    assert c.values["best"] == 1.0 and c.values["tied"] == []
    assert c.values["test_loss"] == pytest.approx(0.031)  # the test loss at the chosen lambda
    assert c.values["test_best"] == 3.0 and c.values["test_best_loss"] == pytest.approx(0.021)


def test_sparsity_comparison_on_hand_made_results():
    l2 = hand_made()
    l1 = l2.rename(columns={"lambda": "l1"}).assign(near_zero=lambda f: 0.9 + 0.01 * f["seed"])
    c = sparsity_comparison(l1, l2, 1.0, 1.0)
    assert c.values["winner"] == "L1 (l1=1)" and c.values["difference"] == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("field", "value"), [("lambdas", ()), ("lambdas", (-1.0,)), ("l1s", (float("nan"),)), ("epochs", 0), ("lr", 0.0)]
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        Config(**{field: value})


def test_quick_run_end_to_end(tmp_path):
    config = Config(quick=True, seeds=2, epochs=10, lambdas=(0.0, 3.0), l1s=(0.0, 0.03), out=str(tmp_path))
    result = weight_decay.run(config)
    t = result.tables
    assert list(t["lambdas"]["lambda"]) == [0.0, 3.0] and (t["lambdas"]["n"] == 2).all()
    assert list(t["l1"]["l1"]) == [0.0, 0.03] and len(t["losses"]) == 2 * 3
    assert len(t["stored"]) == 3  # lambda=0 and l1=0 are one model
    # the test loss from the kept weights is the stored one: train_group retrained the same models
    stored = t["stored"].query("penalty == 'l2'").sort_values("weight_decay")["final_test_loss_mean"]
    np.testing.assert_allclose(stored.to_numpy(), t["lambdas"]["test_loss_mean"].to_numpy(), rtol=1e-4)
    assert (t["scratch_vs_concise"][["max_abs_w_diff", "abs_b_diff"]] <= 1e-5).all().all()
    scratch, norms, l2, l1, sparsity = result.conclusions
    assert scratch.values["agree_1e-5"]
    assert l2.values["best"] == t["lambdas"].set_index("lambda")["validation_loss_mean"].idxmin()
    assert sparsity.values["lambda"] == l2.values["best"] and sparsity.values["l1"] == l1.values["best"]
    result.save(tmp_path / "saved", figures=False)


def test_cli_run(tmp_path):
    out = CliRunner().invoke(app, ["run", "weight-decay", "--quick", "--seeds", "2", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "quick" / "result.json").exists()
