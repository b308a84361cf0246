"""Training the scratch MLP through mlplab.train.fit and `mlplab train --impl scratch`: it follows
the concise model step for step (same seed, float64), resumes exactly, and refuses what it lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.data import Data, Split
from mlplab.data.synthetic import classification_blobs
from mlplab.errors import ConfigError
from mlplab.models import ModelConfig, build_mlp
from mlplab.scratch import MLP
from mlplab.train import TrainConfig, fit

f64 = torch.float64
runner = CliRunner()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blobs(n_features: int = 8, n_classes: int = 4, dtype: torch.dtype = torch.float32, n: int = 800) -> Data:
    split = classification_blobs(n, n_features, n_classes, gen(0))
    X = split.X.to(dtype)
    cut = n * 3 // 4
    return Data(Split(X[:cut], split.y[:cut]), Split(X[cut:], split.y[cut:]))


def concise_as_scratch_params(net: torch.nn.Sequential) -> list[torch.Tensor]:
    """The concise model's parameters in the scratch ``params`` order and layout (W transposed)."""
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    slopes = [m.weight.detach() for m in net if isinstance(m, torch.nn.PReLU)]
    return [t for m in linears for t in (m.weight.detach().T, m.bias.detach())] + slopes


@pytest.mark.parametrize(
    "activation, weight_decay, decay_biases",
    [("relu", 0.0, True), ("prelu", 0.01, True), ("sigmoid", 0.05, False), ("tanh", 0.0, True)],
)
def test_fit_trains_the_scratch_model_exactly_like_the_concise_one(activation, weight_decay, decay_biases):
    data = blobs(dtype=f64)
    cfg = ModelConfig(hidden=(16, 12), activation=activation, init="xavier", n_inputs=8, n_outputs=4)
    train = TrainConfig(epochs=3, batch_size=32, lr=0.2, weight_decay=weight_decay, decay_biases=decay_biases, seed=3)
    concise = build_mlp(cfg, gen(1)).double()
    scratch = MLP(cfg.sizes, activation, init="xavier", generator=gen(1), dtype=f64)
    h_concise, h_scratch = fit(concise, data, train), fit(scratch, data, train)
    for a, b in zip(h_concise.records, h_scratch.records):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-10)
        assert a.test_loss == pytest.approx(b.test_loss, rel=1e-10)
        assert (a.train_acc, a.test_acc) == (b.train_acc, b.test_acc)
    for name, p, q in zip(scratch.param_names(), scratch.params, concise_as_scratch_params(concise)):
        assert ((p - q).norm() / q.norm()).item() < 1e-10, name
    assert h_scratch.final.train_loss < h_scratch.records[0].train_loss  # it did train


def test_fit_learns_in_float32_with_dropout():
    data = blobs()
    net = MLP([8, 32, 4], dropout=0.2, init="he", generator=gen(2))
    history = fit(net, data, TrainConfig(epochs=5, batch_size=32, lr=0.1))
    assert history.status == "ok"
    assert history.records[-1].train_loss < history.records[0].train_loss
    assert history.final.test_acc > 0.9
    assert net.training  # fit restores the mode after evaluating


@pytest.mark.parametrize(
    "change, field",
    [({"optimizer": "adam"}, "optimizer"), ({"optimizer": "adamw"}, "optimizer"), ({"loss": "mse"}, "loss")],
)
def test_fit_refuses_what_the_scratch_model_does_not_implement(change, field):
    with pytest.raises(ConfigError, match=field):
        fit(MLP([8, 4]), blobs(), TrainConfig(epochs=1, **change))


def test_checkpoint_resume_gives_the_uninterrupted_result(tmp_path):
    data = blobs()

    def model() -> MLP:  # dropout masks come from the model's generator: its state is checkpointed
        return MLP([8, 16, 4], "prelu", dropout=0.3, init="he", generator=gen(4))

    config = TrainConfig(epochs=4, batch_size=64, weight_decay=1e-3, seed=5)
    whole = model()
    h_whole = fit(whole, data, config, checkpoint=tmp_path / "a.pt")
    part = model()
    fit(part, data, TrainConfig(**{**config.__dict__, "epochs": 2}), checkpoint=tmp_path / "b.pt")
    resumed = model()
    h_resumed = fit(resumed, data, config, checkpoint=tmp_path / "b.pt", resume=True)
    assert [r.train_loss for r in h_resumed.records] == [r.train_loss for r in h_whole.records]
    assert all(torch.equal(p, q) for p, q in zip(resumed.params, whole.params))


# -- CLI -------------------------------------------------------------------------------------


def test_train_help_lists_impl():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "--impl" in result.output and "scratch" in result.output


def test_train_rejects_an_unknown_impl(tmp_path):
    result = runner.invoke(app, ["train", "--impl", "numpy", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "--impl" in result.output and "numpy" in result.output and "concise, scratch" in result.output


def test_train_impl_scratch_on_small_data(tmp_path, monkeypatch):
    monkeypatch.setattr("mlplab.data.fashion_mnist_data", lambda *a, **k: blobs(784, 10, n=400))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--impl", "scratch", "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1,064 bytes per example" in result.output  # 256 * 4 + 10 * 4, as counted in test_scratch_mlp
    assert json.loads((out / "config.json").read_text())["impl"] == "scratch"
    assert len(json.loads((out / "history.json").read_text())) == 2
    resumed = runner.invoke(app, ["train", "--impl", "concise", "--epochs", "3", "--out", str(out), "--resume"])
    assert resumed.exit_code == 2 and "impl: stored 'scratch', given 'concise'" in resumed.output
    resumed = runner.invoke(app, ["train", "--impl", "scratch", "--epochs", "3", "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert len(json.loads((out / "history.json").read_text())) == 3


def test_train_impl_scratch_refuses_adam(tmp_path, monkeypatch):
    monkeypatch.setattr("mlplab.data.fashion_mnist_data", lambda *a, **k: blobs(784, 10, n=40))
    result = runner.invoke(app, ["train", "--impl", "scratch", "--optimizer", "adam", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "optimizer" in result.output and "sgd" in result.output


def test_train_impl_scratch_on_fashion_mnist(tmp_path, real_fashion_mnist):
    out = tmp_path / "fmnist"
    data_dir = str(real_fashion_mnist)
    result = runner.invoke(
        app, ["train", "--impl", "scratch", "--epochs", "1", "--out", str(out), "--data-dir", data_dir]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "history.json").read_text())[0]
    assert record["test_acc"] > 0.7  # one epoch of the chapter's 784-256-10 at lr 0.1 (0.70-0.76 seen)
    assert Path(out / "curves.png").exists()
