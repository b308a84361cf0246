"""The dropout experiment (d2l 4.6): end to end on synthetic data, its conclusions on hand-made
results whose answer is known, its pure functions against independent references, its config, its CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.data import Split
from mlplab.errors import ConfigError
from mlplab.experiments import dropout as exp
from mlplab.models import ModelConfig, build_mlp
from mlplab.scratch import MLP
from mlplab.train import AT_CHANCE, DIVERGED, evaluate

# Tiny and quick: two hidden layers of 16 (the grid needs two), Xavier init (at normal(0.01) a net
# this small barely leaves its initial loss in 3 epochs), batches of 64 on the 2048 synthetic rows.
TINY = dict(quick=True, data="synthetic", hidden=(16, 16), init="xavier", batch_size=64, seeds=3)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    out = tmp_path_factory.mktemp("dropout")
    return exp.run(exp.Config(**TINY, out=str(out))), out


def by_text(result, start: str):
    return [c for c in result.conclusions if c.text.startswith(start)]


# ---- end to end -------------------------------------------------------------------------------


def test_end_to_end_tables_have_their_shapes(ran):
    result, _ = ran
    assert set(result.tables) == {"book", "book_curves", "grid", "swaps", "test_time_dropout",
                                  "test_time_dropout_seeds", "weight_decay", "dropout_with_decay"}  # fmt: skip
    book = result.tables["book"]
    assert list(book["implementation"]) == ["scratch", "concise", "batched"] and (book["n"] == 3).all()
    assert len(result.tables["book_curves"]) == 3 * exp.Config().quick_epochs
    grid = result.tables["grid"]
    assert len(grid) == 9 and (grid["n"] == 3).all()
    assert {"dropout1", "dropout2", "final_test_acc_mean", "final_test_acc_ci", "failed"} <= set(grid.columns)
    swaps = result.tables["swaps"]
    assert [(a, b) for a, b in zip(swaps["a"], swaps["b"])] == [(0.0, 0.5), (0.0, 0.9), (0.5, 0.9)]
    np.testing.assert_allclose(swaps["difference_mean"], swaps["ab_mean"] - swaps["ba_mean"], atol=1e-12)
    wd = result.tables["weight_decay"]
    assert len(wd) == 6 and list(wd.loc[wd["weight_decay"] == 3.0, "decay_factor"]) == [-0.5, -0.5]
    heatmap = next(f for f in result.figures if f.kind == "heatmap")
    assert (heatmap.table, heatmap.x, heatmap.by, heatmap.y) == ("grid", "dropout2", "dropout1", "final_test_acc")


def test_end_to_end_conclusions_agree_with_the_tables(ran):
    result, _ = ran
    grid = result.tables["grid"]
    top = grid.loc[grid["final_test_acc_mean"].idxmax()]
    (best,) = by_text(result, "best cell of the grid")
    assert best.values["best"] == exp.cell_label(top["dropout1"], top["dropout2"])
    (q1,) = by_text(result, "Q1")
    # every seed ran every pair, so the mean over seeds of the per-seed mean over pairs is the mean of the pairs
    assert q1.values["mean"] == pytest.approx(result.tables["swaps"]["difference_mean"].mean())
    assert q1.values["pairs"] == 3 and q1.values["n"] == 3
    assert len(by_text(result, "swapping the two layers' rates")) == 1  # of SWAP_PAIRS only (0, 0.9) is in the grid
    scratch, batched = by_text(result, "the book's net")
    assert scratch.values["a"] == "implementation=scratch" and scratch.values["initial_weight_gap"] == 0.0
    assert batched.values["a"] == "implementation=batched"
    (collapse,) = by_text(result, "Q4, why weight_decay 3")
    wd = result.tables["weight_decay"]
    assert collapse.values["decay_factor"] == -0.5 and "1 - 0.5*3 = -0.5" in collapse.text
    assert collapse.values["at_chance"] == wd.loc[wd["weight_decay"] == 3.0, "at_chance"].sum()
    assert collapse.values["positive_at_chance"] == 0  # every model with 1 - lr*wd > 0 learned something
    assert (
        "1 - lr * wd = 1 - 0.5 * 3 = -0.5" in collapse.values["doctor"] and collapse.values["doctor"] in collapse.text
    )


def test_test_time_dropout_uses_the_fit_models_of_part_one(ran):
    result, _ = ran
    seeds = result.tables["test_time_dropout_seeds"]
    curves = result.tables["book"].set_index("implementation")
    # eval mode is what fit measured after its last epoch: the same models, not retrained ones
    assert seeds["eval_acc"].mean() == pytest.approx(curves.loc["concise", "final_test_acc_mean"], abs=1e-12)
    (left_on,) = by_text(result, "dropout left on at test time")
    assert left_on.values["difference"] == pytest.approx((seeds["eval_acc"] - seeds["train_mode_acc"]).mean())
    assert left_on.values["winner"] == "dropout off (eval mode)"  # 0.2/0.5 on 16 units: a large drop


def test_parts_share_one_store_and_a_rerun_trains_nothing(ran):
    from mlplab.sweep.results import load_results

    result, out = ran
    store = exp.Config(**TINY, out=str(out)).folder(exp.NAME) / "models"
    # 9 grid cells + 4 weight-decay cells (wd 0 x dropout 0 / 0.5 are grid cells) + the 0.2/0.5 cell, 3 seeds
    assert len(load_results(store)) == (9 + 4 + 1) * 3
    grid, wd = result.tables["grid"], result.tables["weight_decay"]
    for p in (0.0, 0.5):  # the shared cells are the same stored models
        cell = grid[(grid["dropout1"] == p) & (grid["dropout2"] == p)]["final_test_acc_mean"].item()
        assert wd[(wd["weight_decay"] == 0.0) & (wd["dropout"] == p)]["final_test_acc_mean"].item() == cell
    saved = result.save(out / "saved")
    assert json.loads((saved / "result.json").read_text())["conclusions"][0]["text"] == result.conclusions[0].text
    for f in result.figures:
        assert (saved / "figures" / f"{f.name}.png").stat().st_size > 1000


# ---- Q1: the swap of the two layers' rates, on hand-made grids -----------------------------------


def grid_results(acc, values=(0.0, 0.2, 0.5), seeds=(0, 1, 2)) -> pd.DataFrame:
    """A results frame of a p1 x p2 grid with ``final_test_acc = acc(p1, p2, seed)``."""
    return pd.DataFrame([{"dropout1": a, "dropout2": b, "seed": s, "final_test_acc": acc(a, b, s)}
                         for s in seeds for a in values for b in values])  # fmt: skip


def test_an_asymmetric_grid_is_not_interchangeable_and_the_numbers_are_exact():
    # acc = 0.8 - k_s p1 - 0.05 p2: swapping a < b changes it by (k_s - 0.05)(b - a) > 0
    k = {0: 0.20, 1: 0.21, 2: 0.19}
    diffs = exp.swap_differences(grid_results(lambda a, b, s: 0.8 - k[s] * a - 0.05 * b))
    assert len(diffs) == 3 * 3
    for r in diffs.itertuples():
        assert r.difference == pytest.approx((k[r.seed] - 0.05) * (r.b - r.a))
    per_seed = [(k[s] - 0.05) * (0.2 + 0.5 + 0.3) / 3 for s in range(3)]  # the mean over the three pairs
    ci = exp.overall_swap(diffs)
    half = scipy_stats.t.ppf(0.975, 2) * np.std(per_seed, ddof=1) / math.sqrt(3)
    assert ci.mean == pytest.approx(np.mean(per_seed)) and ci.half_width == pytest.approx(half) and ci.n == 3
    *pairs, overall = exp.swap_conclusions(diffs, [(0.5, 0.2), (0.1, 0.9)])  # written either way; 0.1 is not in it
    assert len(pairs) == 1 and pairs[0].values["pair"] == (0.2, 0.5)
    assert pairs[0].values["winner"] == exp.cell_label(0.2, 0.5)
    assert overall.values["interchangeable"] is False and overall.values["larger_on_second"] == 3
    assert "second (deeper) layer" in overall.text


def test_a_symmetric_grid_is_interchangeable():
    # acc depends on p1 + p2 only, plus noise whose sign alternates with the seed: no swap effect
    noise = {0: 0.01, 1: -0.01, 2: 0.0}

    def acc(a, b, s):
        return 0.85 - 0.1 * (a + b) + noise[s] * (a - b)

    *_, overall = exp.swap_conclusions(exp.swap_differences(grid_results(acc)), [])
    assert overall.values["interchangeable"] is True and overall.values["mean"] == pytest.approx(0.0, abs=1e-12)
    assert overall.values["larger_on_second"] == overall.values["larger_on_first"] == 0


def test_missing_cells_drop_their_pair_and_incomplete_seeds_drop_out_of_the_overall():
    results = grid_results(lambda a, b, s: 0.8 - 0.1 * a + 0.01 * s * b)
    results = results[~((results["dropout1"] == 0.5) & (results["dropout2"] == 0.0))]  # (0.5, 0) never ran
    results = results[~((results["seed"] == 2) & (results["dropout1"] == 0.2) & (results["dropout2"] == 0.0))]
    diffs = exp.swap_differences(results)
    assert sorted(set(zip(diffs["a"], diffs["b"]))) == [(0.0, 0.2), (0.2, 0.5)]
    assert len(diffs) == 5  # seed 2 lacks (0.2, 0) for the pair (0, 0.2)
    assert exp.overall_swap(diffs).n == 2
    # values written as 0.1 * 3 in the store still meet 0.3
    odd = grid_results(lambda a, b, s: a - b, values=(0.1, 0.1 * 3))
    assert set(exp.swap_differences(odd)["b"]) == {0.3}


def test_grid_best_counts_the_cells_it_cannot_tell_from():
    jitter = {0: 0.002, 1: -0.001, 2: 0.0}

    def acc(a, b, s):  # (0.2, 0.5) best; the row dropout1 = 0.5 far below; the rest within noise of it
        return 0.86 if (a, b) == (0.2, 0.5) else 0.5 if a == 0.5 else 0.859 + jitter[s] * (1 + a + b)

    c = exp.grid_best(grid_results(acc))
    assert c.values["best"] == "dropout1=0.2 dropout2=0.5" and c.values["others"] == 8
    assert all("dropout1=0.5" not in t for t in c.values["tied"]) and len(c.values["tied"]) == 5
    assert "5 of the 8 other cells" in c.text


# ---- part 3: dropout at test time --------------------------------------------------------------


@pytest.fixture
def net_and_split():
    g = torch.Generator().manual_seed(0)
    net = build_mlp(ModelConfig(hidden=(32, 32), dropout=(0.2, 0.5), init="xavier", n_inputs=8, n_outputs=3), g)
    X = torch.randn(500, 8, generator=g)
    return net, Split(X, (X[:, 0] > 0).long() + (X[:, 1] > 0).long())


def test_accuracy_in_eval_mode_is_fits_and_in_train_mode_the_plain_loop(net_and_split):
    net, split = net_and_split
    assert exp.accuracy(net, split, dropout_on=False, batch_size=7) == evaluate(net, split)[1]
    on = exp.accuracy(net, split, dropout_on=True, seed=3, batch_size=1000)
    torch.manual_seed(3)  # the reference: one training-mode forward pass seeded the same way
    net.train()
    with torch.no_grad():
        reference = (net(split.X).argmax(dim=1) == split.y).sum().item() / len(split)
    assert on == reference


def test_accuracy_is_reproducible_and_touches_neither_mode_nor_rng(net_and_split):
    net, split = net_and_split
    net.eval()
    state = torch.get_rng_state()
    a = exp.accuracy(net, split, dropout_on=True, seed=1)
    assert torch.equal(torch.get_rng_state(), state) and not net.training
    assert exp.accuracy(net, split, dropout_on=True, seed=1) == a
    assert any(exp.accuracy(net, split, dropout_on=True, seed=s) != a for s in (2, 3, 4))
    plain = build_mlp(ModelConfig(hidden=(32, 32), n_inputs=8, n_outputs=3), torch.Generator().manual_seed(0))
    assert exp.accuracy(plain, split, dropout_on=True, seed=1) == exp.accuracy(plain, split, dropout_on=False)


def test_equally_seeded_scratch_and_concise_start_from_the_same_weights():
    config = ModelConfig(hidden=(16, 16), dropout=(0.2, 0.5), n_inputs=8, n_outputs=3)
    concise = build_mlp(config, torch.Generator().manual_seed(5))
    scratch = MLP([8, 16, 16, 3], dropout=(0.2, 0.5), generator=torch.Generator().manual_seed(5))
    assert exp.initial_weight_gap(scratch, concise) == 0.0
    other = MLP([8, 16, 16, 3], generator=torch.Generator().manual_seed(6))
    assert exp.initial_weight_gap(other, concise) > 0.0


# ---- part 4: weight decay, on hand-made results ---------------------------------------------------


def decay_results(lr_collapse: bool = True) -> pd.DataFrame:
    """wd 0 / 1e-3 / 3 x dropout 0 / 0.5 x 3 seeds; wd 3 at chance, one wd 1e-3 model diverged."""
    rows = []
    for wd in (0.0, 1e-3, 3.0):
        for p in (0.0, 0.5):
            for s in range(3):
                acc = 0.1 if wd == 3.0 else 0.84 + 0.01 * p + 0.001 * s
                status = AT_CHANCE if wd == 3.0 else "ok"
                rows.append({"weight_decay": wd, "dropout": p, "seed": s, "final_test_acc": acc,
                             "final_train_loss": 2.3 if wd == 3.0 else 0.4, "status": status})  # fmt: skip
    rows[6]["status"] = DIVERGED  # wd 1e-3, dropout 0, seed 0
    return pd.DataFrame(rows)


def test_the_collapse_is_explained_from_the_update_rule_and_counted():
    findings = exp.doctor_findings(exp.Config(), exp.WEIGHT_DECAYS, 784, 10, 60_000)
    assert list(findings) == [3.0] and "1 - lr * wd = 1 - 0.5 * 3 = -0.5" in findings[3.0]
    (c,) = exp.collapse_conclusions(decay_results(), lr=0.5, findings=findings)
    assert c.values["decay_factor"] == -0.5 and c.values["at_chance"] == 6 and c.values["models"] == 6
    assert c.values["positive_at_chance"] == 0 and c.values["positive_models"] == 12
    assert "1 - 0.5*3 = -0.5 < 0" in c.text and "6 of 6 models" in c.text and "shrinks 2-fold" in c.text
    assert "weight_decay 0, 0.001): 0 of 12" in c.text and findings[3.0] in c.text
    # lr * wd = 1 exactly: the factor is 0, every weight is erased
    (zero,) = exp.collapse_conclusions(decay_results().replace({"weight_decay": {3.0: 2.0}}), lr=0.5)
    assert zero.values["decay_factor"] == 0.0 and "erases" in zero.text
    # at lr 0.1 nothing collapses by the update rule: the conclusion says so and still counts
    (none,) = exp.collapse_conclusions(decay_results(), lr=0.1)
    assert "no weight decay here has lr*wd >= 1" in none.text and none.values["positive_at_chance"] == 6


def test_weight_decay_table_counts_failed_models_per_cell():
    table = exp.weight_decay_table(decay_results(), lr=0.5)
    assert len(table) == 6 and list(table["wd"].unique()) == ["0", "0.001", "3"]

    def row(wd, p):
        return table[(table["weight_decay"] == wd) & (table["dropout"] == p)].iloc[0]

    assert row(3.0, 0.0)["at_chance"] == 3 and row(3.0, 0.0)["failed"] == 3 and row(3.0, 0.5)["decay_factor"] == -0.5
    assert row(1e-3, 0.0)["at_chance"] == 0 and row(1e-3, 0.0)["failed"] == 1  # the diverged one
    assert row(0.0, 0.5)["failed"] == 0 and row(1e-3, 0.5)["decay_factor"] == pytest.approx(1 - 0.5e-3)


def test_dropout_and_decay_gains_and_their_interaction():
    # gain of dropout 0.5: 0.02 without decay, 0.005 with 1e-3 (per-seed jitter on top), 0 at wd 3
    jitter = {0: 0.001, 1: -0.001, 2: 0.0}
    results = decay_results()
    gain = results["weight_decay"].map({0.0: 0.02, 1e-3: 0.005, 3.0: 0.0}) + results["seed"].map(jitter)
    results["final_test_acc"] = 0.8 + results["dropout"] * 2 * gain
    table = exp.dropout_decay_table(results, lr=0.5).set_index("weight_decay")
    assert table.loc[0.0, "gain_mean"] == pytest.approx(0.02) and math.isnan(table.loc[0.0, "interaction_mean"])
    assert table.loc[1e-3, "gain_mean"] == pytest.approx(0.005)
    assert table.loc[1e-3, "interaction_mean"] == pytest.approx(-0.015) and table.loc[1e-3, "interaction_ci"] < 0.015
    c = exp.dropout_decay_conclusion(table.reset_index())
    assert c.values["additive"] is False and "weight_decay 3" not in c.text  # factors <= 0 are part of the collapse
    additive = results.assign(final_test_acc=0.8 + results["dropout"] * 2 * (0.02 + results["seed"].map(jitter)))
    assert exp.dropout_decay_conclusion(exp.dropout_decay_table(additive, lr=0.5)).values["additive"] is True


# ---- config and CLI ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"hidden": (16,)}, "hidden"),
        ({"hidden": (16, 0)}, "hidden"),
        ({"dropout": (0.2,)}, "dropout"),
        ({"dropout": (0.2, 1.0)}, "dropout[1]"),
        ({"init": "uniform"}, "init"),
        ({"lr": 0.0}, "lr"),
        ({"quick_epochs": 0}, "quick_epochs"),
        ({"grid": ()}, "grid"),
        ({"grid": (0.1, 0.1)}, "grid"),
        ({"quick_grid": (0.0, 1.2)}, "quick_grid[1]"),
        ({"swap_pairs": ((0.2, 0.2),)}, "swap_pairs"),
        ({"weight_decays": (0.0, -1.0)}, "weight_decays[1]"),
        ({"weight_decays": ()}, "weight_decays"),
        ({"quick_weight_decays": (0.0, 0.0)}, "quick_weight_decays"),
        ({"wd_dropouts": ()}, "wd_dropouts"),
        ({"seeds": 0}, "seeds"),
    ],
)
def test_bad_config_values_name_their_field(settings, field):
    with pytest.raises(ConfigError) as info:
        exp.Config(**settings)
    assert info.value.field == field


def test_the_cli_runs_the_experiment(tmp_path):
    args = ["run", "dropout", "--quick", "--synthetic", "--seeds", "2", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Q1" in result.output and "Q4" in result.output
    assert (tmp_path / "quick" / "synthetic" / "result.md").exists()
