"""``mlplab sweep run|show|plot`` through typer's CliRunner, on synthetic data."""

from __future__ import annotations

import csv
import io

import pytest
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.cli._common import console
from mlplab.sweep import load_results, summarize

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["run"], ["show"], ["plot"]])
def test_every_command_has_help(command):
    result = runner.invoke(app, ["sweep", *command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output) > 200


# a 2 x 3 dropout grid over 2 seeds on the synthetic blobs (seconds)
GRID_FLAGS = ["--data", "synthetic", "--hidden", "16,16", "--epochs", "2", "--lr", "0.5", "--batch-size", "128",
              "--init", "normal:0.1", "--grid", "dropout1=0:0.5:0.5", "--grid", "dropout2=0,0.3,0.6", "--seeds", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "grid"
    result = runner.invoke(app, ["sweep", "run", *GRID_FLAGS, "--optimizer", "sgd", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "12 models (6 configurations x 2 seeds)" in result.output and "trained 12 model(s)" in result.output
    return out


def test_run_stores_what_the_flags_say(grid_dir):
    frame = load_results(grid_dir)
    assert len(frame) == 12
    assert sorted(frame["dropout1"].unique()) == [0.0, 0.5] and sorted(frame["dropout2"].unique()) == [0.0, 0.3, 0.6]
    assert (frame["hidden"] == "16-16").all() and (frame["init"] == "normal:0.1").all() and (frame["lr"] == 0.5).all()
    assert sorted(frame["seed"].unique()) == [0, 1]


def test_show_prints_mean_and_ci_sorted(grid_dir, monkeypatch):
    monkeypatch.setattr(console, "width", 160)  # CliRunner is not a terminal: rich would assume 80 columns
    result = runner.invoke(app, ["sweep", "show", str(grid_dir), "--sort", "final_train_loss"])
    assert result.exit_code == 0, result.output
    assert "±" in result.output and "dropout1" in result.output and "fixed: hidden=16-16" in result.output
    lines = result.output.splitlines()
    losses = [float(line.split("│")[-2].split("±")[0]) for line in lines if line.count("±") == 3]
    assert len(losses) == 6 and losses == sorted(losses)
    result = runner.invoke(app, ["sweep", "show", str(grid_dir), "--top", "2"])
    assert result.exit_code == 0 and "2 configuration(s) shown" in result.output


def test_show_csv_has_one_row_per_configuration_and_seed(grid_dir):
    result = runner.invoke(app, ["sweep", "show", str(grid_dir), "--csv"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 12
    for column in (
        "dropout1",
        "dropout2",
        "lr",
        "hidden",
        "seed",
        "final_test_acc",
        "final_train_loss",
        "status",
        "seconds",
    ):
        assert column in rows[0]
    assert {r["status"] for r in rows} == {"ok"}


def test_plot_draws_a_heatmap_and_lines(grid_dir, tmp_path):
    result = runner.invoke(app, ["sweep", "plot", str(grid_dir), "--out", str(tmp_path / "heat.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "heat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(
        app,
        [
            "sweep",
            "plot",
            str(grid_dir),
            "--x",
            "dropout2",
            "--metric",
            "final_train_loss",
            "--out",
            str(tmp_path / "lines.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lines.png").stat().st_size > 1000


def test_rerun_resumes(grid_dir):
    result = runner.invoke(app, ["sweep", "run", *GRID_FLAGS, "--out", str(grid_dir)])  # the same sweep
    assert result.exit_code == 0
    assert "12 stored result(s) skipped" in result.output and "trained 0 model(s)" in result.output


def test_toml_config_with_flag_overrides(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text("seeds = 1\n[base]\nhidden = [8]\nepochs = 1\nbatch_size = 256\n[grid]\nlr = [0.1, 0.2]\n")
    out = tmp_path / "toml"
    result = runner.invoke(
        app,
        [
            "sweep",
            "run",
            "--config",
            str(config),
            "--data",
            "synthetic",
            "--lr",
            "9",
            "--grid",
            "weight_decay=0,0.1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    frame = load_results(out)
    assert len(frame) == 4 and sorted(frame["lr"].unique()) == [0.1, 0.2]  # the grid axis wins over --lr
    assert (frame["hidden"] == "8").all()


def test_random_search_from_flags(tmp_path):
    result = runner.invoke(
        app,
        [
            "sweep",
            "run",
            "--data",
            "synthetic",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "--random",
            "lr=loguniform:0.01:1",
            "--samples",
            "3",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 0, result.output
    lrs = load_results(tmp_path / "r")["lr"]
    assert len(lrs) == 3 and lrs.between(0.01, 1).all() and lrs.nunique() == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--data", "synthetic", "--grid", "dropout1=0:0.9"], "dropout1"),
        (["run", "--data", "synthetic", "--grid", "depth=1,2"], "hyperparameter"),
        (["run", "--data", "synthetic", "--grid", "dropout3=0.5", "--hidden", "8"], "dropout3"),
        (["run", "--data", "mnist"], "data"),
        (["run", "--data", "synthetic", "--seeds", "0"], "--seeds"),
        (["run", "--data", "synthetic", "--device", "cuda:99"], "device"),
        (["run", "--data", "synthetic", "--hidden", "8,x"], "--hidden"),
        (["run", "--data", "synthetic", "--tf32"], "tf32"),
        (
            ["run", "--data", "synthetic", "--compiled", "--no-fused"],
            "--compiled = True is invalid: the compiled kernels",
        ),
    ],
)
def test_bad_input_is_a_clean_error(tmp_path, args, message):
    result = runner.invoke(app, ["sweep", *args, "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2
    assert "error:" in result.output and message in result.output
    assert "Traceback" not in result.output


def test_show_and_plot_errors(tmp_path, grid_dir):
    result = runner.invoke(app, ["sweep", "show", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "holds no sweep" in result.output
    result = runner.invoke(app, ["sweep", "show", str(grid_dir), "--sort", "accuracy"])
    assert result.exit_code == 2 and "sort" in result.output
    result = runner.invoke(app, ["sweep", "plot", str(grid_dir), "--x", "momentum"])
    assert result.exit_code == 2 and "momentum" in result.output


def test_the_logs_weight_decay_collapse_is_reported_as_failed_not_ok(tmp_path):
    # weight decay 3 at lr 0.5: every SGD step multiplies the weights by 1 - 1.5 < 0; nothing is learned
    out = tmp_path / "collapse"
    flags = ["sweep", "run", "--data", "synthetic", "--hidden", "16", "--epochs", "3", "--lr", "0.5",
             "--grid", "weight_decay=0,3", "--seeds", "3", "--out", str(out)]  # fmt: skip
    refused = runner.invoke(app, flags)  # the doctor sees it before any work
    assert refused.exit_code == 2 and "1 of 2 configuration(s) cannot train (weight-decay-flips" in refused.output
    assert not out.exists()
    result = runner.invoke(app, [*flags, "--force"])  # trained anyway, it ends failed, not ok
    assert result.exit_code == 0, result.output
    assert result.output.count("1 failed (at chance or loss rose)") == 3  # one group per seed, one bad model each
    summary = summarize(load_results(out))
    by_wd = summary.set_index("weight_decay")
    assert by_wd.loc[0.0, "failed"] == 0 and by_wd.loc[3.0, "failed"] + by_wd.loc[3.0, "diverged"] == 3
    assert by_wd.loc[0.0, "final_test_acc_mean"] > 0.25  # chance is 0.1
    failed = runner.invoke(app, ["sweep", "show", str(out), "--status", "failed", "--csv"])
    rows = failed.output.strip().splitlines()[1:]
    assert (
        failed.exit_code == 0
        and len(rows) == by_wd.loc[3.0, "failed"]
        and all(",3.0," in r or ",3," in r for r in rows)
    )
    assert runner.invoke(app, ["sweep", "show", str(out), "--status", "bogus"]).exit_code == 2


def test_every_hyperparameter_has_a_fixed_flag_and_is_named_by_grid_help():
    import typer.main

    from mlplab.sweep.hyperparameters import AXIS_NAMES, HYPERPARAMETERS

    run = typer.main.get_command(app).commands["sweep"].commands["run"]
    options = {opt: param for param in run.params for opt in (*param.opts, *param.secondary_opts)}
    for h in HYPERPARAMETERS:  # generated from the table: the flag passes its value to the spec by name
        assert h.flag in options, f"sweep run has no flag for {h.name}"
        assert options[h.flag].name == h.name and options[h.flag].default is None
    assert options["--wd-weights-only"] is options["--decay-biases"]
    assert "Default --decay-biases." in options["--decay-biases"].help
    grid_help = " ".join(options["--grid"].help.split())
    assert all(name in grid_help for name in AXIS_NAMES)
    assert "Default 0.1." in options["--lr"].help and "Default 256." in options["--hidden"].help


def tiny_sweep(out, *args):
    """A one-epoch sweep on synthetic data; ``args`` add axes (and --hidden where hidden is fixed)."""
    flags = ["--data", "synthetic", "--epochs", "1", "--batch-size", "128", "--out", str(out)]
    result = runner.invoke(app, ["sweep", "run", *flags, *args])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def depth_dir(tmp_path_factory):
    return tiny_sweep(tmp_path_factory.mktemp("depth") / "d", "--grid", "hidden=8-8,4,8-8-8,8")


@pytest.fixture(scope="module")
def lr_dir(tmp_path_factory):
    return tiny_sweep(tmp_path_factory.mktemp("lr") / "lr", "--hidden", "8", "--grid", "lr=0.001,0.01,0.1,1")


def test_a_depth_sweep_plots_lines_over_hidden_ordered_by_size(depth_dir, tmp_path):
    from mlplab.sweep.plots import plot_summary
    from mlplab.sweep.results import varying

    summary = summarize(load_results(depth_dir))
    assert varying(summary) == ["hidden"]  # dropout2 and dropout3 are 0 where they apply: not axes
    ax = plot_summary(summary).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["4", "8", "8-8", "8-8-8"]
    assert ax.get_xlabel() == "hidden" and ax.get_xscale() == "linear"
    result = runner.invoke(app, ["sweep", "plot", str(depth_dir), "--out", str(tmp_path / "depth.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refused = runner.invoke(app, ["sweep", "plot", str(depth_dir), "--logx", "--out", str(tmp_path / "x.png")])
    assert refused.exit_code == 2 and "logx" in refused.output and "not numeric" in refused.output


def test_a_depth_sweep_shows_hidden_as_its_one_column(depth_dir, monkeypatch):
    monkeypatch.setattr(console, "width", 200)
    result = runner.invoke(app, ["sweep", "show", str(depth_dir)])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "seeds" in line)
    assert "hidden" in header and "dropout" not in header
    assert "dropout2=0 dropout3=0" in result.output  # fixed where they apply, never "-"


def test_an_lr_grid_over_decades_plots_on_a_log_axis(lr_dir, tmp_path):
    from mlplab.sweep.plots import plot_summary

    summary = summarize(load_results(lr_dir))
    assert plot_summary(summary).axes[0].get_xscale() == "log"
    assert plot_summary(summary, logx=False).axes[0].get_xscale() == "linear"
    for flag in ("--logx", "--no-logx"):
        result = runner.invoke(app, ["sweep", "plot", str(lr_dir), flag, "--out", str(tmp_path / "lr.png")])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("name", "values", "logx", "scale"),
    [
        ("lr", [0.001, 0.01, 0.1, 1.0], None, "log"),
        ("lr", [0.1, 0.2, 0.5], None, "linear"),  # a factor of 5: linear reads better
        ("lr", [0.1, 0.2, 0.5], True, "log"),
        ("lr", [0.001, 1.0], False, "linear"),
        ("weight_decay", [0.0, 1e-4, 1e-3, 1e-2], None, "symlog"),  # 0 cannot sit on a log axis
        ("weight_decay", [0.0, 1e-3], None, "linear"),
        ("dropout1", [0.01, 0.5, 0.9], None, "linear"),  # not a log_scale hyperparameter
        ("batch_size", [16.0, 64.0, 1024.0], True, "log"),
    ],
)
def test_x_scale(name, values, logx, scale):
    from mlplab.sweep.plots import x_scale

    assert x_scale(name, values, logx) == scale


def test_weight_decay_0_keeps_its_place_on_a_symlog_axis():
    import pandas as pd

    from mlplab.sweep.plots import plot_summary

    wd = [0.0, 1e-4, 1e-3, 1e-2]
    summary = pd.DataFrame(
        {
            "hidden": "8",
            "weight_decay": wd,
            "n": 3,
            "diverged": 0,
            "failed": 0,
            "final_test_acc_mean": [0.8, 0.81, 0.82, 0.7],
            "final_test_acc_ci": 0.01,
        }
    )
    ax = plot_summary(summary).axes[0]
    assert ax.get_xscale() == "symlog"
    assert ax.get_xlim()[0] < 0 < 1e-4  # 0 is drawn, left of the first decade


def test_show_cautions_about_intervals_from_fewer_than_3_seeds(grid_dir, lr_dir, monkeypatch):
    monkeypatch.setattr(console, "width", 400)  # the caution on one line
    result = runner.invoke(app, ["sweep", "show", str(grid_dir), "--top", "2"])
    assert result.exit_code == 0, result.output
    caution = next(line for line in result.output.splitlines() if line.startswith("caution:"))
    assert "6 of 6 configuration(s) have fewer than 3 seeds" in caution  # all of them, not only the 2 shown
    assert "2 seeds is very wide and unreliable" in caution and "12.71" in caution and "--seeds 3" in caution
    one = runner.invoke(app, ["sweep", "show", str(lr_dir)])
    assert "4 of 4 configuration(s)" in one.output and "1 seed gives no interval" in one.output


def test_plot_title_says_a_2_seed_interval_is_unreliable(grid_dir):
    from mlplab.sweep.plots import plot_summary

    summary = summarize(load_results(grid_dir))
    heat = plot_summary(summary)  # dropout1 x dropout2, 2 seeds each
    assert "n=2 seeds: CI unreliable" in heat.axes[0].get_title()
    three = summary.assign(n=3)
    assert "unreliable" not in plot_summary(three, x="dropout2", y="dropout1").axes[0].get_title()


def test_markdown_table_footnotes_configurations_with_fewer_than_3_seeds(grid_dir):
    from mlplab.sweep.results import markdown_table

    table = markdown_table(summarize(load_results(grid_dir)))
    rows = [line for line in table.splitlines() if line.startswith("| ") and "seeds" not in line]
    assert len(rows) == 6 and all("| 2 † |" in row for row in rows)
    footnote = table.rstrip().splitlines()[-1]
    assert footnote.startswith("† caution: 6 of 6 configuration(s) have fewer than 3 seeds") and "--seeds 3" in footnote


def test_a_generated_fixed_flag_reaches_the_stored_configs(tmp_path):
    from mlplab.sweep.results import load_results

    out = tiny_sweep(tmp_path / "s", "--hidden", "8", "--wd", "0.01", "--wd-weights-only", "--activation", "tanh")
    results = load_results(out)
    assert (results["decay_biases"] == False).all()  # noqa: E712
    assert (results["weight_decay"] == 0.01).all() and (results["activation"] == "tanh").all()
    assert (results["hidden"] == "8").all()


def test_run_takes_the_step_its_flags_ask_for(tmp_path, monkeypatch):
    """--no-fused trains by autograd where the CPU would take the fused step; --compiled compiles its kernels."""
    from mlplab.sweep import fused

    taken, compiled = [], []
    original_call, original_kernel = fused.FusedReluSGD.__call__, fused.compiled_kernel
    monkeypatch.setattr(fused.FusedReluSGD, "__call__", lambda self, *a: taken.append(1) or original_call(self, *a))
    monkeypatch.setattr(fused, "compiled_kernel", lambda f: compiled.append(f.__name__) or original_kernel(f))
    flags = ["sweep", "run", *GRID_FLAGS[:-2], "--seeds", "1"]
    assert runner.invoke(app, [*flags, "--no-fused", "--out", str(tmp_path / "a")]).exit_code == 0
    assert not taken and not compiled
    result = runner.invoke(app, [*flags, "--compiled", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert taken and "relu_dropout" in compiled
    autograd, by_hand = (load_results(tmp_path / name).sort_values("key") for name in "ac")
    assert by_hand["final_test_acc"].tolist() == pytest.approx(autograd["final_test_acc"].tolist(), abs=1e-5)
