"""The experiments framework: paired comparisons, conclusions, storage that reuses and never mixes."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from mlplab import experiments
from mlplab.cli import app
from mlplab.errors import ConfigError
from mlplab.experiments.base import ExperimentConfig, best, compare, sweep
from mlplab.stats import paired

runner = CliRunner()


def test_paired_matches_scipys_paired_t_interval():
    rng = np.random.default_rng(0)
    a = rng.normal(0.85, 0.01, 5)
    b = a - 0.004 + rng.normal(0, 0.002, 5)
    p = paired(dict(enumerate(a)), dict(enumerate(b)), labels=("A", "B"))
    ci = scipy_stats.ttest_rel(a, b).confidence_interval(0.95)
    assert p.difference.low == pytest.approx(ci.low, rel=1e-10)
    assert p.difference.high == pytest.approx(ci.high, rel=1e-10)
    assert p.winner == ("A" if ci.low > 0 else None)


def test_paired_uses_only_shared_seeds_and_says_when_undecided():
    p = paired({0: 0.8, 1: 0.9, 2: 0.7}, {1: 0.89, 2: 0.72, 3: 0.1}, labels=("A", "B"))
    assert p.difference.n == 2 and p.a_mean == pytest.approx(0.8)
    assert p.winner is None and "not told apart" in p.sentence()
    one = paired({0: 0.8}, {0: 0.7})
    assert math.isnan(one.difference.half_width) and one.winner is None and "no interval" in one.sentence()
    with pytest.raises(ConfigError, match="seeds"):
        paired({0: 1.0}, {1: 1.0})


def test_a_lower_loss_wins_when_lower_is_better():
    p = paired({0: 1.0, 1: 1.1, 2: 1.05}, {0: 2.0, 1: 2.1, 2: 2.2}, labels=("A", "B"), higher_is_better=False)
    assert p.winner == "A" and "A beats B" in p.sentence() and "by +" not in p.sentence()


def hand_results() -> pd.DataFrame:
    """Width 256 is best; 512 is within noise of it; 8 is far worse (3 seeds each)."""
    acc = {8: (0.70, 0.71, 0.69), 256: (0.850, 0.860, 0.855), 512: (0.851, 0.855, 0.856)}
    return pd.DataFrame([{"width": w, "seed": s, "final_test_acc": v[s]} for w, v in acc.items() for s in range(3)])


def test_best_names_the_best_value_and_the_ones_not_told_apart():
    c = best(hand_results(), "width")
    assert c.values["best"] == 256 and c.values["tied"] == [512]
    assert c.values["mean"] == pytest.approx(0.855) and c.values["n"] == 3
    assert "best width: 256" in c.text and "512" in c.text


def test_compare_pairs_on_seeds():
    p = compare(hand_results(), "width", 256, 8)
    assert p.winner == "width=256" and p.difference.mean == pytest.approx(0.155)


def test_the_config_is_checked():
    with pytest.raises(ConfigError, match="seeds"):
        ExperimentConfig(seeds=0)
    with pytest.raises(ConfigError, match="data"):
        ExperimentConfig(data="mnist")
    with pytest.raises(ConfigError, match="device"):
        ExperimentConfig(device="gpu")
    with pytest.raises(ConfigError, match="widths"):
        experiments.module("mlp-hidden").Config(widths=(0,))
    with pytest.raises(ConfigError, match="experiment"):
        experiments.module("no-such-thing")


def test_quick_and_full_results_live_apart(tmp_path):
    quick = ExperimentConfig(out=str(tmp_path), quick=True).folder("x")
    full = ExperimentConfig(out=str(tmp_path)).folder("x")
    assert quick != full and quick.parent == full.parent


def test_a_rerun_reuses_the_store_and_a_changed_config_is_stored_apart(tmp_path):
    from mlplab.sweep.runner import synthetic_data
    from mlplab.sweep.spec import SweepSpec

    data = synthetic_data(n_train=256, n_test=128)
    config = ExperimentConfig(data="synthetic", out=str(tmp_path))
    folder = tmp_path / "store"
    spec = SweepSpec(base={"hidden": (8,), "epochs": 1, "batch_size": 64}, grid={"lr": (0.1, 0.5)}, seeds=(0, 1))
    first = sweep(spec, data, folder, config)
    assert len(first.results) == 4
    again = sweep(spec, data, folder, config)  # nothing retrained: the same rows come back
    pd.testing.assert_frame_equal(first.results, again.results)
    longer = SweepSpec(base={"hidden": (8,), "epochs": 2, "batch_size": 64}, grid={"lr": (0.1, 0.5)}, seeds=(0, 1))
    other = sweep(longer, data, folder, config, histories=True)
    assert len(other.results) == 4 and set(other.results["epochs"]) == {2}  # only its own rows
    assert set(other.histories["epoch"]) == {1, 2} and len(other.histories) == 8
    from mlplab.sweep.results import load_results

    assert len(load_results(folder)) == 8  # both configs are stored, apart


def test_an_experiment_hands_its_callbacks_to_every_sweep_and_they_change_no_result(tmp_path):
    from mlplab.live import LiveSweepPlot

    plot = LiveSweepPlot(tmp_path / "live.png", stream=io.StringIO())
    kwargs = dict(quick=True, data="synthetic", widths=(8, 64), seeds=2, compare_widths=(8, 64))
    watched = experiments.run("mlp-hidden", out=str(tmp_path / "a"), callbacks=[plot], **kwargs)
    assert set(plot.means()) == {"hidden=8", "hidden=64"}  # the live curves of its sweep
    assert (tmp_path / "live.png").stat().st_size > 1000
    plain = experiments.run("mlp-hidden", out=str(tmp_path / "b"), **kwargs)
    timings = [c for c in plain.tables["widths"] if c.startswith("seconds")]  # drawing takes time
    pd.testing.assert_frame_equal(
        watched.tables["widths"].drop(columns=timings), plain.tables["widths"].drop(columns=timings)
    )
    assert "callbacks" not in watched.config and watched.config == plain.config | {"out": str(tmp_path / "a")}


def test_mlp_hidden_end_to_end_on_synthetic_data(tmp_path):
    result = experiments.run(
        "mlp-hidden", quick=True, data="synthetic", out=str(tmp_path), widths=(8, 64, 256), seeds=2,
        compare_widths=(64, 256),
    )  # fmt: skip
    widths = result.tables["widths"]
    assert list(widths["width"]) == [8, 64, 256] and (widths["n"] == 2).all()
    assert len(result.tables["accuracy"]) == 6
    best_width = result.conclusions[0].values["best"]
    assert best_width == widths.loc[widths["final_test_acc_mean"].idxmax(), "width"]
    assert result.conclusions[1].values["a"] == "width=64"
    folder = result.save(tmp_path / "saved")
    saved = json.loads((folder / "result.json").read_text())
    assert saved["conclusions"][0]["text"] == result.conclusions[0].text
    assert (folder / "figures" / "accuracy.png").stat().st_size > 1000
    assert (folder / "tables" / "widths.csv").read_text().startswith("width,n,")


def test_the_cli_lists_and_runs_experiments(tmp_path):
    listed = runner.invoke(app, ["run", "--list"])
    assert listed.exit_code == 0
    for name in experiments.names():
        assert name in listed.output
    result = runner.invoke(app, ["run", "mlp-hidden", "--quick", "--synthetic", "--seeds", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "best width" in result.output and (tmp_path / "quick" / "synthetic" / "result.md").exists()
    bad = runner.invoke(app, ["run", "mlp-hidden", "--seeds", "0", "--synthetic", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "seeds" in bad.output


def test_a_value_with_a_diverged_seed_is_not_the_best():
    results = hand_results()
    results.loc[(results["width"] == 512) & (results["seed"] == 0), "final_test_acc"] = 0.99
    results.loc[(results["width"] == 512) & (results["seed"] == 1), "final_test_acc"] = float("nan")
    c = best(results, "width")
    assert c.values["best"] == 256 and c.values["tied"] == []


def test_every_experiment_setting_round_trips_through_text():
    from mlplab.experiments.base import parse_settings, settings

    for name in experiments.names():
        config_class = experiments.module(name).Config
        fields = settings(config_class)
        assert fields, name  # every experiment has settings of its own that --set reaches
        for s in fields:
            text = ",".join(map(str, s.default)) if isinstance(s.default, tuple) else str(s.default)
            assert parse_settings(config_class, [f"{s.name}={text}"]) == {s.name: s.default}, (name, s.name)


def test_set_parses_by_the_fields_type_and_names_the_fix():
    from mlplab.experiments import best_mlp, mlp_hidden
    from mlplab.experiments.base import parse_settings

    assert parse_settings(mlp_hidden.Config, ["widths=8, 16", "lr=0.5", "compare-widths=8,16"]) == {
        "widths": (8, 16), "lr": 0.5, "compare_widths": (8, 16)}  # fmt: skip
    assert parse_settings(best_mlp.Config, ["epochs=none", "candidates=adamw-2x1024"]) == {
        "epochs": None, "candidates": ("adamw-2x1024",)}  # fmt: skip
    for bad, match in [(["widths=8,x"], "integer"), (["compare_widths=8"], "give 2"), (["nope=1"], "one of widths"),
                       (["lr"], "FIELD=VALUE")]:  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            parse_settings(mlp_hidden.Config, bad)


def test_the_cli_sets_and_lists_an_experiments_own_settings(tmp_path):
    listed = runner.invoke(app, ["run", "mlp-hidden", "--settings"])
    assert listed.exit_code == 0 and "widths (comma list of int, default 8,16,32" in listed.output
    args = ["run", "mlp-hidden", "--quick", "--synthetic", "--seeds", "2", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--set", "widths=8,16", "--set", "compare_widths=8,16"])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "quick" / "synthetic" / "tables" / "widths.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in table[1:]] == ["8", "16"]
    bad = runner.invoke(app, [*args, "--set", "widths=0"])
    assert bad.exit_code == 2 and "widths" in bad.output


def test_stored_parts_reuse_matching_settings_and_refuse_others(tmp_path):
    from mlplab.errors import MlplabError
    from mlplab.experiments.base import StoredParts

    parts = StoredParts(tmp_path / "study")
    assert parts.load("label", {"seeds": [0, 1]}) is None
    parts.save("label", {"config": {"seeds": (0, 1), "n": 5}, "rows": [{"x": 1.5}]})
    assert parts.load("label", {"seeds": [0, 1], "n": 5})["rows"] == [{"x": 1.5}]  # tuples stored as lists match
    with pytest.raises(MlplabError, match=r"other settings \(n: stored 5, asked 6\)"):
        parts.load("label", {"seeds": [0, 1], "n": 6})
    (tmp_path / "study" / "concept.json").write_text("[1, 2]")
    with pytest.raises(MlplabError, match="not a stored result"):
        parts.load("concept", {})


def test_the_shift_study_reuses_a_stored_part_through_the_same_mechanism(tmp_path, monkeypatch):
    import mlplab.shift.experiment as ex
    from mlplab.errors import MlplabError
    from mlplab.experiments.base import StoredParts

    calls = []

    def fake_study(data, config, progress):
        calls.append(config)
        return ex.PartResult("covariate", ex.part_config(study, "covariate"), [{"seed": 0, "loss": 0.5}])

    monkeypatch.setattr(ex, "covariate_shift_study", fake_study)
    study = ex.StudyConfig(parts=("covariate",))
    parts = StoredParts(tmp_path)
    first = ex.run_study(None, study, parts=parts)
    assert len(calls) == 1 and (tmp_path / "covariate.json").exists()
    again = ex.run_study(None, study, parts=parts)
    assert len(calls) == 1 and again["covariate"].rows == first["covariate"].rows  # loaded, not rerun
    other = ex.StudyConfig(parts=("covariate",), covariate=ex.CovariateShiftConfig(seeds=(5,)))
    with pytest.raises(MlplabError, match="other settings"):
        ex.run_study(None, other, parts=parts)


def test_draw_keeps_an_unchanged_figure_and_redraws_a_changed_one(tmp_path):
    from mlplab.experiments.base import FigureSpec, Result
    from mlplab.experiments.plots import draw

    table = pd.DataFrame({"x": [1, 2, 3], "y_mean": [0.1, 0.2, 0.3], "y_ci": [0.01, 0.01, 0.01]})
    result = Result("demo", {}, {"t": table}, [FigureSpec("f", "t", "line", "x", "y")])
    (path,) = draw(result, tmp_path)
    first = path.stat().st_mtime_ns, path.read_bytes()
    draw(result, tmp_path)
    assert (path.stat().st_mtime_ns, path.read_bytes()) == first  # not redrawn
    result.tables["t"] = table.assign(y_mean=[0.3, 0.2, 0.1])
    draw(result, tmp_path)
    assert path.read_bytes() != first[1]  # the table changed: drawn again
    path.unlink()
    draw(result, tmp_path)
    assert path.is_file()  # a missing PNG is drawn even when its digest is known


def test_read_once_reads_fashion_mnist_once_inside_the_block(fake_fashion_mnist):
    from mlplab.data import fashion_mnist_data, read_once

    with read_once():
        a, b = fashion_mnist_data(fake_fashion_mnist), fashion_mnist_data(fake_fashion_mnist)
        with read_once():  # nested: the same loads
            c = fashion_mnist_data(fake_fashion_mnist)
    assert a is b is c
    outside = fashion_mnist_data(fake_fashion_mnist)
    assert outside is not a and torch.equal(outside.train.X, a.train.X)
