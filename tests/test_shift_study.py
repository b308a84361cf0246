"""The shift study end to end on a small Fashion-MNIST-shaped synthetic set, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.data.batching import Data, Split
from mlplab.errors import ConfigError
from mlplab.shift import (
    ConceptShiftConfig,
    CovariateShiftConfig,
    LabelShiftConfig,
    PartResult,
    SourceConfig,
    StudyConfig,
    run_study,
    train_source,
)
from mlplab.shift.report import concept_figure, study_markdown

runner = CliRunner()


def fake_images(n_per_class: int, seed: int) -> Split:
    """784-pixel 'images' in [0, 1]: a class template, a random brightness per image, noise."""
    g = torch.Generator().manual_seed(100)  # the same templates for train and test
    templates = torch.rand(10, 784, generator=g)
    g.manual_seed(seed)
    y = torch.arange(10).repeat_interleave(n_per_class)
    brightness = 0.5 + torch.rand(len(y), 1, generator=g)
    X = (templates[y] * brightness + 0.3 * torch.randn(len(y), 784, generator=g)).clamp(0, 1)
    return Split(X, y)


@pytest.fixture(scope="module")
def data() -> Data:
    return Data(fake_images(150, 1), fake_images(60, 2))


@pytest.fixture(scope="module")
def small_config() -> StudyConfig:
    seeds = (0, 1)
    return StudyConfig(
        source=SourceConfig(hidden=(32,), epochs=4, optimizer="adam", lr=5e-3, holdout_per_class=40),
        label=LabelShiftConfig(n_target=400, seeds=seeds, estimators=("bbse", "em+bcts"), retrain_with="bbse"),
        covariate=CovariateShiftConfig(seeds=seeds, models=((), (16,)), epochs=2, n_components=10, gaussian_n=100),
        concept=ConceptShiftConfig(n_train=(100,), epochs=2, seeds=seeds, batch_size=32),
    )


@pytest.fixture(scope="module")
def results(data, small_config):
    return run_study(data, small_config)


def test_study_returns_every_part_as_json_ready_rows(results, small_config):
    assert set(results) == {"label", "covariate", "concept"}
    for part in results.values():
        assert isinstance(part, PartResult) and part.rows
        again = PartResult.from_dict(json.loads(json.dumps(part.to_dict(), allow_nan=False)))
        assert again.rows == part.rows


def test_label_part_measures_every_estimator(results):
    rows = results["label"].rows
    names = {r["estimator"] for r in rows}
    assert names == {"none", "none+bcts", "oracle", "oracle+bcts", "bbse", "em+bcts", "bbse (retrain)"}
    for r in rows:
        w_true, w_hat = np.array(r["w_true"]), np.array(r["w_hat"])
        assert r["weight_mse"] == pytest.approx(np.mean((w_hat - w_true) ** 2))
        assert 0 <= r["accuracy"] <= 1
    oracle = [r for r in rows if r["estimator"].startswith("oracle")]
    assert all(r["weight_mse"] == 0 for r in oracle)
    assert all(r["gain"] == 0 for r in rows if r["estimator"] == "none")
    assert all(
        r["weight_mse"] == next(n["weight_mse"] for n in rows if n["seed"] == r["seed"] and n["estimator"] == "none")
        for r in rows
        if r["estimator"] == "none+bcts"
    )  # calibration alone: w_hat = 1 too
    # the synthetic classes are easy (C is nearly diagonal), so BBSE is close to the truth
    mse = {name: np.mean([r["weight_mse"] for r in rows if r["estimator"] == name]) for name in names}
    assert mse["bbse"] < 0.05 < mse["none"]


def test_covariate_part_compares_weightings_per_model(results):
    rows = results["covariate"].rows
    fm = [r for r in rows if r["scenario"] == "fashion-mnist"]
    assert {(r["model"], r["variant"]) for r in fm} == {
        (m, v) for m in ("softmax-regression", "mlp-16") for v in ("unweighted", "weighted", "oracle")
    }
    for r in fm:
        assert r["n_source"] > 0 and r["n_target"] > 0 and 0 < r["ess_fraction"] <= 1
    # brightness drives the selection: the domain classifier finds it
    assert min(r["log_ratio_corr"] for r in fm if r["variant"] == "weighted") > 0.5
    gauss = [r for r in rows if r["scenario"] == "gaussian-regression"]
    weighted = np.mean([r["loss_change"] for r in gauss if r["variant"] == "weighted"])
    assert weighted < 0  # the misspecified linear model is helped by the weights


def test_concept_part_has_learning_curves(results, small_config):
    rows = results["concept"].rows
    epochs = small_config.concept.epochs
    for mode in ("finetune", "scratch"):
        curve = [r for r in rows if r["mode"] == mode and r["seed"] == 0]
        assert [r["epoch"] for r in curve] == list(range(epochs + 1))


def test_report_renders_tables_and_figure(results):
    md = study_markdown(results)
    for title in ("### Label shift", "### Covariate shift", "### Concept shift", "| bbse |", "em+bcts", "helps"):
        assert title in md
    fig = concept_figure(results["concept"])
    assert len(fig.axes) == 1


def test_source_holdout_is_disjoint_and_balanced(data):
    source = train_source(data, SourceConfig(hidden=(8,), epochs=1, holdout_per_class=40))
    assert len(source.holdout) == 400 and len(source.train) == 1100
    assert np.all(np.bincount(source.holdout.y.numpy()) == 40)
    rows = {tuple(x) for x in source.holdout.X[:, :8].numpy().round(6)}
    assert not rows & {tuple(x) for x in source.train.X[:, :8].numpy().round(6)}
    np.testing.assert_allclose(source.holdout_probs.sum(1), 1.0, atol=1e-9)


def test_configs_reject_bad_values():
    with pytest.raises(ConfigError, match="estimator = 'mle'"):
        LabelShiftConfig(estimators=("mle",))
    with pytest.raises(ConfigError, match="retrain_with"):
        LabelShiftConfig(estimators=("bbse",), retrain_with="em")
    with pytest.raises(ConfigError, match="seeds"):
        LabelShiftConfig(seeds=(0, 0))
    with pytest.raises(ConfigError, match="strength"):
        CovariateShiftConfig(strength=-1.0)
    with pytest.raises(ConfigError, match="parts"):
        StudyConfig(parts=("labels",))
    with pytest.raises(ConfigError, match="optimizer = 'rmsprop'"):
        SourceConfig(optimizer="rmsprop")


def test_source_classifier_settings():
    default = SourceConfig().train_config()
    assert (default.optimizer, default.lr, default.epochs, default.batch_size) == ("adam", 1e-3, 10, 256)
    chapter = SourceConfig(optimizer="sgd").train_config()  # d2l 4.3's recipe
    assert (chapter.optimizer, chapter.lr) == ("sgd", 0.1) and SourceConfig().model_config().init == "normal:0.01"
    assert SourceConfig(optimizer="adam", lr=0.01).lr == 0.01 and SourceConfig().hidden == (256,)


# --- CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["shift", "--help"],
        ["shift", "run", "--help"],
        ["shift", "label", "--help"],
        ["shift", "covariate", "--help"],
        ["shift", "concept", "--help"],
    ],
)
def test_cli_help(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["shift", "run", "--parts", "label,labels"], "labels"),
        (["shift", "covariate", "--models", "softmax,big"], "--models"),
        (["shift", "label", "--estimators", "bbse,mle"], "mle"),
        (["shift", "label", "--seeds", "0"], "--seeds"),
        (["shift", "run", "--retrain", "bbse_soft+ts"], "retrain_with"),
        (["shift", "label", "--source-optimizer", "lbfgs"], "optimizer"),
    ],
)
def test_cli_reports_bad_flags_without_traceback(args, message, tmp_path):
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_refuses_to_overwrite_results(tmp_path):
    (tmp_path / "label.json").write_text("{}")
    result = runner.invoke(app, ["shift", "label", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--resume" in result.output


def test_cli_label_and_concept_on_fashion_mnist_and_resume(tmp_path, real_fashion_mnist):
    data_dir = str(real_fashion_mnist)
    out = str(tmp_path / "label")
    args = [
        "shift",
        "label",
        "--seeds",
        "2",
        "--source-epochs",
        "1",
        "--estimators",
        "bbse,em+bcts",
        "--out",
        out,
        "--data-dir",
        data_dir,
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "| bbse |" in first.output
    stored = json.loads((tmp_path / "label" / "label.json").read_text())
    assert max(r["weight_mse"] for r in stored["rows"] if r["estimator"] == "bbse") < 0.05
    again = runner.invoke(app, [*args, "--resume"])  # nothing left to do: same tables
    assert again.exit_code == 0 and json.loads((tmp_path / "label" / "label.json").read_text()) == stored
    changed = runner.invoke(app, [*args[:-4], "--n-target", "1000", "--out", out, "--data-dir", data_dir, "--resume"])
    assert changed.exit_code == 2 and "other settings" in changed.output
    concept = runner.invoke(
        app,
        [
            "shift",
            "concept",
            "--seeds",
            "2",
            "--n-train",
            "200",
            "--epochs",
            "1",
            "--source-epochs",
            "1",
            "--out",
            str(tmp_path / "c"),
            "--data-dir",
            data_dir,
        ],
    )
    assert concept.exit_code == 0, concept.output
    assert (tmp_path / "c" / "concept_curves.png").stat().st_size > 0
