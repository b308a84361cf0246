"""The poly-fit experiment (d2l 4.4): the exact solution, its conclusions, the run and the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.data import Data, Split
from mlplab.errors import ConfigError
from mlplab.experiments import poly_fit
from mlplab.experiments.poly_fit import Config, conclusions_from, exact_solution, gap_column, unscaled
from mlplab.models import ModelConfig, build_mlp
from mlplab.train import TrainConfig, fit


def test_exact_solution_matches_numpy_lstsq_in_float64():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 8)), rng.normal(size=(50, 1))
    for n in (1, 4, 8):
        w = exact_solution(X, y, n)
        assert w.dtype == np.float64 and w.shape == (n,)
        reference = np.linalg.lstsq(X[:, :n], y.ravel(), rcond=None)[0]
        np.testing.assert_allclose(w, reference, atol=1e-8, rtol=0)
        # the normal equations X^T (X w - y) = 0 hold at the minimum: an independent check
        np.testing.assert_allclose(X[:, :n].T @ (X[:, :n] @ w - y.ravel()), 0.0, atol=1e-8)


def test_exact_solution_recovers_the_true_weights_without_noise():
    data = poly_fit.polynomial(100, 10, 20, noise=0.0, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = exact_solution(data.train.X.numpy(), data.train.y.numpy(), 4)
    np.testing.assert_allclose(w, [5.0, 1.2, -3.4, 5.6], atol=1e-8, rtol=0)


def test_exact_solution_refuses_too_many_features():
    with pytest.raises(ConfigError, match="n_features"):
        exact_solution(np.ones((5, 3)), np.ones(5), 4)


def test_sgd_on_degree_3_approaches_the_exact_solution():
    """fit with the book's settings for 300 epochs; tolerance 0.01 (seen: under 1e-3 at 400 epochs)."""
    data = poly_fit.poly_data(Config(), 0)
    X = Data(Split(data.train.X[:, :4], data.train.y), Split(data.test.X[:, :4], data.test.y))
    model = build_mlp(ModelConfig(hidden=(), n_inputs=4, n_outputs=1, bias=False), torch.Generator().manual_seed(0))
    fit(model, X, TrainConfig(loss="mse", lr=0.01, batch_size=10, epochs=300, seed=0))
    w = model[-1].weight.detach().double().numpy().ravel()
    exact = exact_solution(data.train.X.double().numpy(), data.train.y.double().numpy(), 4)
    assert np.abs(w - exact).max() < 0.01


def test_unscaled_features_are_plain_powers():
    data = poly_fit.poly_data(Config(n_train=20, n_test=5), 0)
    raw = unscaled(data)
    x = data.train.X[:, 1]
    torch.testing.assert_close(raw.train.X[:, 3], x**3)
    torch.testing.assert_close(raw.train.X[:, 3] / 6, data.train.X[:, 3])
    assert torch.equal(raw.train.y, data.train.y)


def hand_made() -> pd.DataFrame:
    """Three seeds: degree 3 best on test, degree 1 far worse on train, degree 19 the larger gap."""
    rows = []
    for s in range(3):
        for degree, train, test in ((1, 10.0, 11.0), (3, 0.010, 0.011), (19, 0.008, 0.5)):
            rows.append({"features": degree + 1, "seed": s, "final_train_loss": train + 0.001 * s,
                         "final_test_loss": test + 0.002 * s})  # fmt: skip
    return gap_column(pd.DataFrame(rows))


def test_conclusions_on_hand_made_results():
    best, under, over = conclusions_from(hand_made())
    assert best.values["best"] == 3 and best.values["tied"] == []
    assert under.values["underfits"] and under.text.startswith("degree 1 underfits")
    assert over.values["larger_gap"]
    # in decades: log10(0.5 / 0.008) - log10(0.011 / 0.010) for seed 0, and so on
    expected = np.mean([np.log10((0.5 + 0.002 * s) / (0.008 + 0.001 * s)) - np.log10((0.011 + 0.002 * s) / (0.010 + 0.001 * s))
                        for s in range(3)])  # fmt: skip
    assert over.values["difference"] == pytest.approx(expected)
    assert under.values["difference"] == pytest.approx(np.mean([np.log10((10 + 0.001 * s) / (0.01 + 0.001 * s))
                                                                for s in range(3)]))  # fmt: skip


def test_underfitting_is_seen_in_decades_when_the_data_seeds_differ_in_scale():
    # the losses of one seed are 100 times another's: differences of raw losses would be swamped
    rows = [{"features": d + 1, "seed": s, "final_train_loss": base * scale, "final_test_loss": base * scale * 1.1}
            for s, scale in enumerate((1.0, 100.0, 0.3)) for d, base in ((1, 5.0), (3, 0.01))]  # fmt: skip
    under = conclusions_from(gap_column(pd.DataFrame(rows)))[1]
    assert under.values["underfits"] and under.values["difference"] == pytest.approx(np.log10(500))


def test_conclusions_see_no_overfitting_when_the_gaps_are_equal():
    results = hand_made()
    results.loc[results["degree"] == 19, "final_test_loss"] = results["final_train_loss"] + 0.001
    results = gap_column(results)
    assert not conclusions_from(results)[2].values["larger_gap"]


@pytest.mark.parametrize(("field", "value"), [("epochs", 0), ("lr", 0.0), ("n_train", 5), ("noise", -1.0)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        Config(**{field: value})


def test_quick_run_end_to_end(tmp_path):
    result = poly_fit.run(Config(quick=True, seeds=2, epochs=5, out=str(tmp_path)))
    t = result.tables
    assert set(t) == {"curves", "degrees", "degree_losses", "weights", "weights_degree3", "exact", "unscaled"}
    assert list(t["degrees"]["degree"]) == list(range(20)) and (t["degrees"]["n"] == 2).all()
    assert len(t["curves"]) == 3 * 2 * 5  # 3 degrees x train/test x 5 epochs
    assert len(t["weights"]) == 4 + 20 and set(t["exact"]["degree"]) == {3, 19}
    best = result.conclusions[0]
    means = t["degrees"].set_index("degree")["final_test_loss_mean"]
    assert best.values["best"] == means.idxmin()
    assert len(result.conclusions) == 6
    assert (tmp_path / "quick" / "data-0" / "sweep.sqlite").exists()
    assert (tmp_path / "quick" / "data-1-unscaled" / "sweep.sqlite").exists()
    result.save(tmp_path / "saved", figures=False)


def test_cli_run(tmp_path):
    out = CliRunner().invoke(app, ["run", "poly-fit", "--quick", "--seeds", "2", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "quick" / "result.json").exists()


def test_stored_weights_are_the_trained_ones_and_a_rerun_reads_them(tmp_path, monkeypatch):
    from mlplab.experiments.base import StoredParts

    config = Config(epochs=20, out=str(tmp_path))
    data = poly_fit.poly_data(config, 0)
    trained = poly_fit.trained_weights(config, data, 0, (1, 3))
    parts = StoredParts(tmp_path / "weights")
    first = poly_fit.trained_weights(config, data, 0, (1, 3), parts)
    assert parts.path("weights-seed0").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a rerun must read the stored weights, not train")

    monkeypatch.setattr("mlplab.sweep.batched.train_group", no_training)
    again = poly_fit.trained_weights(config, data, 0, (1, 3), parts)
    for degree in (1, 3):
        assert np.array_equal(first[degree], trained[degree]) and np.array_equal(again[degree], trained[degree])
