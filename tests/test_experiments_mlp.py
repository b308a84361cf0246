"""The experiments of d2l 4.1-4.3: mlp-depth, mlp-lr and activations.

The conclusions' computations are checked on hand-made results whose answer is known; each
experiment runs end to end on the synthetic blobs (tiny widths, the quick budget) and through
the CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlplab import experiments
from mlplab.cli import app
from mlplab.errors import ConfigError
from mlplab.experiments import activations, mlp_depth, mlp_lr
from mlplab.stats import paired
from mlplab.sweep.results import load_results

runner = CliRunner()


# ---- mlp-depth: reading the histories ---------------------------------------------------------


def test_depth_of_counts_hidden_layers():
    hidden = pd.Series(["256", "256-256", "none", "8-8-8-8"])
    assert list(mlp_depth.depth_of(hidden)) == [1, 2, 0, 4]


def hand_histories() -> pd.DataFrame:
    """Run a (depth 1) trains 3 epochs; run b (depth 3) diverged and stopped after epoch 2."""
    rows = [
        ("a", 1, 0, 1, 0.30, 0.31, 2.0),
        ("a", 1, 0, 2, 0.50, 0.52, 1.5),
        ("a", 1, 0, 3, 0.60, 0.63, 1.2),
        ("b", 3, 0, 1, 0.10, 0.11, 2.3),
        ("b", 3, 0, 2, 0.12, 0.10, 2.3),
    ]
    return pd.DataFrame(rows, columns=["key", "depth", "seed", "epoch", "test_acc", "train_acc", "test_loss"])


def test_accuracy_at_reads_each_budget_and_keeps_a_stopped_runs_last_record():
    at = mlp_depth.accuracy_at(hand_histories(), [1, 3], column="budget")
    assert list(at.columns) == ["budget", "depth", "seed", "test_acc", "train_acc", "test_loss"]
    assert list(at["budget"]) == [1, 1, 3, 3] and list(at["depth"]) == [1, 3, 1, 3]
    np.testing.assert_allclose(at["test_acc"], [0.30, 0.10, 0.60, 0.12])  # b at 3: its epoch-2 record
    np.testing.assert_allclose(at["test_loss"], [2.0, 2.3, 1.2, 2.3])


def test_accuracy_at_does_not_depend_on_row_order():
    h = hand_histories()
    shuffled = h.sample(frac=1.0, random_state=0)
    at = mlp_depth.accuracy_at(shuffled, [2]).sort_values("depth").reset_index(drop=True)
    np.testing.assert_allclose(at["test_acc"], [0.50, 0.12])


def test_a_budget_read_from_a_longer_run_is_what_a_run_of_that_budget_ends_with(tmp_path):
    """Why mlp-depth trains each depth once: epoch 2 of a 4-epoch run is a 2-epoch run's end."""
    from mlplab.experiments.base import ExperimentConfig, sweep
    from mlplab.sweep.runner import synthetic_data
    from mlplab.sweep.spec import SweepSpec

    data = synthetic_data(n_train=256, n_test=128)
    config = ExperimentConfig(data="synthetic", out=str(tmp_path))

    def spec(epochs: int) -> SweepSpec:
        return SweepSpec(base={"hidden": (8, 8), "epochs": epochs, "batch_size": 64, "lr": 0.5}, seeds=(0, 1))

    long = sweep(spec(4), data, tmp_path / "store", config, histories=True)
    short = sweep(spec(2), data, tmp_path / "store", config).results.sort_values("seed")
    at = mlp_depth.accuracy_at(long.histories.assign(depth=2), [2]).sort_values("seed")
    np.testing.assert_allclose(at["test_acc"], short["final_test_acc"], atol=1e-6)
    np.testing.assert_allclose(at["test_loss"], short["final_test_loss"], rtol=1e-5)
    np.testing.assert_allclose(at["train_acc"], short["final_train_acc"], atol=1e-6)


def test_first_epoch_above_finds_when_each_depth_leaves_chance():
    curves = pd.DataFrame(
        {
            "epoch": [1, 1, 2, 2, 3, 3],
            "depth": [1, 4, 1, 4, 1, 4],
            "test_acc_mean": [0.15, 0.10, 0.21, 0.10, 0.60, 0.20],  # 0.20 is not *above* 0.2
        }
    )
    assert mlp_depth.first_epoch_above(curves, 0.2) == {1: 2, 4: None}
    assert mlp_depth.first_epoch_above(curves, 0.1) == {1: 1, 4: 3}
    c = mlp_depth.chance_conclusion({1: 2, 4: None}, 0.2, 3)
    assert "depth 1: 2" in c.text and "depth 4: not within 3" in c.text
    assert c.values["first_epoch"] == {1: 2, 4: None}


def test_ranking_change_says_when_the_verdict_flips():
    wins = paired({0: 0.80, 1: 0.81, 2: 0.82}, {0: 0.10, 1: 0.11, 2: 0.10}, labels=("depth=1", "depth=3"))
    noise = paired({0: 0.85, 1: 0.84, 2: 0.86}, {0: 0.86, 1: 0.84, 2: 0.85}, labels=("depth=1", "depth=3"))
    loses = paired({0: 0.84, 1: 0.84, 2: 0.85}, {0: 0.87, 1: 0.86, 2: 0.88}, labels=("depth=1", "depth=3"))
    assert wins.winner == "depth=1" and noise.winner is None and loses.winner == "depth=3"
    changed = mlp_depth.ranking_change({10: wins, 30: noise})
    assert changed.values["changes"] is True and changed.values["verdicts"] == {10: "depth=1", 30: None}
    assert "changes" in changed.text and "at 30 epochs neither" in changed.text
    assert mlp_depth.ranking_change({10: wins, 30: loses}).values["changes"] is True
    same = mlp_depth.ranking_change({10: wins, 30: wins})
    assert same.values["changes"] is False and "is the same" in same.text


# ---- mlp-lr and activations: conclusions from hand-made results -------------------------------


def hand_lr_results() -> pd.DataFrame:
    """lr 0.1 is best; 0.03 is clearly worse; lr 1 diverged twice and failed once (3 seeds each)."""
    acc = {0.03: (0.80, 0.81, 0.79), 0.1: (0.85, 0.86, 0.855), 1.0: (0.10, 0.10, 0.10)}
    status = {0.03: ("ok",) * 3, 0.1: ("ok",) * 3, 1.0: ("diverged", "failed: at chance", "diverged")}
    return pd.DataFrame(
        [{"lr": lr, "seed": s, "final_test_acc": acc[lr][s], "status": status[lr][s]} for lr in acc for s in range(3)]
    )


def test_status_counts_count_every_status_per_value():
    counts = mlp_lr.status_counts(hand_lr_results(), "lr")
    assert list(counts.columns) == ["lr", "ok", "diverged", "failed_at_chance", "failed_loss_rose"]
    assert list(counts["lr"]) == [0.03, 0.1, 1.0]
    lr_one = {"ok": 0, "diverged": 2, "failed_at_chance": 1, "failed_loss_rose": 0}
    assert counts.set_index("lr").loc[1.0].to_dict() == lr_one
    assert list(counts["ok"]) == [3, 3, 0]
    c = mlp_lr.status_conclusion(counts, "lr")
    assert c.values["not_ok"] == 3 and c.values["counts"]["1"] == {"diverged": 2, "failed_at_chance": 1}
    assert "lr=1: 2 diverged, 1 failed_at_chance" in c.text and "lr=0.1: 3 ok" in c.text


def test_the_best_lr_is_compared_with_the_guess():
    results = hand_lr_results()
    c = mlp_lr.against_guess(results, 0.1, 0.03)
    assert c.values["winner"] == "lr=0.1" and c.values["difference"] == pytest.approx(0.055)
    same = mlp_lr.against_guess(results, 0.03, 0.03)
    assert "is the best" in same.text and "winner" not in same.values


def test_relu_is_compared_with_every_other_activation():
    acc = {"relu": (0.85, 0.86, 0.85), "sigmoid": (0.60, 0.62, 0.61), "tanh": (0.851, 0.858, 0.852)}
    results = pd.DataFrame(
        [{"activation": a, "seed": s, "final_test_acc": v[s]} for a, v in acc.items() for s in range(3)]
    )
    sig, tanh = activations.against_reference(results, "relu")
    assert sig.values["b"] == "activation=sigmoid" and sig.values["winner"] == "activation=relu"
    assert tanh.values["b"] == "activation=tanh" and tanh.values["winner"] is None


# ---- configs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "field", "value"),
    [
        (mlp_depth, "depths", (0, 1)),
        (mlp_depth, "depths", (2, 2)),
        (mlp_depth, "depths", ()),
        (mlp_depth, "width", 0),
        (mlp_depth, "budgets", (10, 0)),
        (mlp_depth, "budgets", (True,)),
        (mlp_depth, "lr", 0.0),
        (mlp_depth, "compare_depths", (3, 3)),
        (mlp_depth, "chance", 1.0),
        (mlp_lr, "lrs", ()),
        (mlp_lr, "lrs", (0.1, -1.0)),
        (mlp_lr, "lrs", (0.1, 0.1)),
        (mlp_lr, "epochs", 0),
        (mlp_lr, "width", 2.5),
        (mlp_lr, "guess", float("nan")),
        (activations, "activations", ("relu", "swish")),
        (activations, "activations", ()),
        (activations, "reference", "sigmoid"),
        (activations, "epochs", 0),
        (activations, "lr", float("inf")),
    ],
)
def test_bad_config_values_are_refused_naming_the_field(module, field, value):
    settings = {field: value}
    if module is activations and field == "reference":
        settings["activations"] = ("relu", "tanh")
    with pytest.raises(ConfigError) as info:
        module.Config(**settings)
    assert info.value.field == field


# ---- end to end -------------------------------------------------------------------------------


def test_mlp_depth_end_to_end_on_synthetic_data(tmp_path):
    config = mlp_depth.Config(quick=True, data="synthetic", out=str(tmp_path), depths=(1, 2, 3), width=16, seeds=2)
    result = mlp_depth.run(config)
    budgets, epochs = mlp_depth.QUICK_BUDGETS, max(mlp_depth.QUICK_BUDGETS)
    table, curves, chance = result.tables["depths"], result.tables["curves"], result.tables["chance"]
    assert list(table["budget"]) == [b for b in budgets for _ in range(3)] and (table["n"] == 2).all()
    assert {"test_acc_mean", "test_acc_ci", "train_acc_mean", "test_loss_mean"} <= set(table.columns)
    assert len(curves) == epochs * 3 and list(curves.columns) == ["epoch", "depth", "n", "test_acc_mean", "test_acc_ci"]
    # each depth was trained once: its value at the last budget is the stored run's final accuracy
    stored = load_results(config.folder(mlp_depth.NAME) / "depths")
    assert len(stored) == 3 * 2 and set(stored["epochs"]) == {epochs}
    final = stored.assign(depth=mlp_depth.depth_of(stored["hidden"])).groupby("depth")["final_test_acc"].mean()
    last = table[table["budget"] == epochs].set_index("depth")["test_acc_mean"]
    np.testing.assert_allclose(last.to_numpy(), final.loc[last.index].to_numpy())
    for b, c in zip(budgets, result.conclusions[:2]):  # the best depth at each budget, from its rows
        rows = table[table["budget"] == b]
        assert c.values["budget"] == b and c.values["best"] == rows.loc[rows["test_acc_mean"].idxmax(), "depth"]
    assert [c.values.get("a") for c in result.conclusions[2:4]] == ["depth=1", "depth=1"]
    assert set(result.conclusions[4].values["verdicts"]) == set(budgets)
    assert result.conclusions[-1].values["first_epoch"] == dict(
        zip(chance["depth"], [None if pd.isna(e) else int(e) for e in chance["first_epoch_above"]])
    )
    folder = result.save(tmp_path / "saved")
    saved = json.loads((folder / "result.json").read_text())
    assert [c["text"] for c in saved["conclusions"]] == [c.text for c in result.conclusions]
    assert (folder / "figures" / "curves.png").stat().st_size > 1000


def test_mlp_lr_end_to_end_on_synthetic_data(tmp_path):
    lrs = (0.03, 0.3, 1.0)
    result = mlp_lr.run(mlp_lr.Config(quick=True, data="synthetic", out=str(tmp_path), lrs=lrs, width=16, seeds=2))
    table = result.tables["lrs"]
    assert list(table["lr"]) == list(lrs) and (table["n"] == 2).all()
    statuses = ["ok", "diverged", "failed_at_chance", "failed_loss_rose"]
    assert (table[statuses].sum(axis=1) == table["n"]).all()
    assert len(result.tables["accuracy"]) == 2 * len(lrs)
    top = result.conclusions[0].values["best"]
    assert top == table.loc[table["final_test_acc_mean"].idxmax(), "lr"]
    assert result.conclusions[1].values["guess"] == 0.03
    counts = result.conclusions[2].values["counts"]
    assert sum(sum(c.values()) for c in counts.values()) == 2 * len(lrs)


def test_activations_end_to_end_on_synthetic_data(tmp_path):
    config = activations.Config(quick=True, data="synthetic", out=str(tmp_path), width=16, seeds=2)
    result = activations.run(config)
    table = result.tables["activations"]
    assert list(table["activation"]) == list(activations.ACTIVATIONS) and (table["n"] == 2).all()
    top = result.conclusions[0].values["best"]
    assert top == table.loc[table["final_test_acc_mean"].idxmax(), "activation"]
    others = [c.values["b"] for c in result.conclusions[1:]]
    assert others == ["activation=sigmoid", "activation=tanh", "activation=prelu"]
    assert all(c.values["a"] == "activation=relu" for c in result.conclusions[1:])
    assert result.figures[0].kind == "bar" and result.figures[0].table == "activations"


CLI_RUNS = [("mlp-depth", "best depth"), ("mlp-lr", "best lr"), ("activations", "best activation")]


@pytest.mark.parametrize(("name", "says"), CLI_RUNS)
def test_the_cli_runs_the_experiment(tmp_path, name, says):
    result = runner.invoke(app, ["run", name, "--quick", "--synthetic", "--seeds", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert says in result.output and (tmp_path / "quick" / "synthetic" / "result.md").exists()
    assert experiments.module(name).NAME == name
