"""mlplab.doctor: each check fires on the case it is for and stays quiet on its sane neighbour;
the variance factors agree with a Monte-Carlo measurement through real layers."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.doctor import check, variance_factors
from mlplab.models import ModelConfig, build_mlp
from mlplab.train import TrainConfig

runner = CliRunner()
LOG_NET = ModelConfig(hidden=(256, 256), dropout=(0.2, 0.5))  # the dropout x weight decay grid's network


def checks(model: ModelConfig, train: TrainConfig, n_train: int = 60_000) -> list[str]:
    return [f.check for f in check(model, train, n_train)]


def test_the_logs_collapse_is_an_error_naming_weight_decay_and_its_neighbour_is_clean():
    (finding,) = check(LOG_NET, TrainConfig(lr=0.5, weight_decay=3))
    assert finding.severity == "error" and finding.check == "weight-decay-flips"
    assert "1 - 0.5 * 3 = -0.5" in finding.saw and "--weight-decay" in finding.fix
    assert check(LOG_NET, TrainConfig(lr=0.1, weight_decay=1e-4)) == []


@pytest.mark.parametrize(
    ("train", "n_train", "fires"),
    [
        (TrainConfig(lr=0.5, weight_decay=0.1), 60_000, "weight-decay-erases"),  # 0.95^235 = 6e-6 per epoch
        (TrainConfig(lr=0.5, weight_decay=0.005), 60_000, None),  # 0.9975^235 = 0.56
        (TrainConfig(optimizer="adam", lr=1e-3, weight_decay=1e-4), 60_000, "adam-coupled-decay"),
        (TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=1e-4), 60_000, None),
        (TrainConfig(batch_size=1000), 500, "batch-larger-than-data"),
        (TrainConfig(batch_size=500), 500, None),
    ],
)
def test_training_checks(train, n_train, fires):
    assert checks(ModelConfig(init="xavier"), train, n_train) == ([fires] if fires else [])


@pytest.mark.parametrize(
    ("lr", "wd", "momentum"), [(0.1, 5e-4, 0.9), (0.5, 0.1, 0.0), (0.5, 3.0, 0.9), (0.1, 0.5, 0.5)]
)
def test_the_decay_rate_is_torchs_sgd_with_momentum_on_a_zero_loss(lr, wd, momentum):
    # weight decay alone (no data gradient): torch's own SGD update, and its envelope rate per step
    from mlplab.doctor import decay_radius

    w = torch.ones(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum, weight_decay=wd)
    trace = []
    for _ in range(340):
        opt.zero_grad()
        (w * 0).sum().backward()
        opt.step()
        trace.append(abs(w.item()))
    rate = (max(trace[300:340]) / max(trace[100:140])) ** (1 / 200)
    assert rate == pytest.approx(decay_radius(lr * wd, momentum), rel=1e-2)


@pytest.mark.parametrize(
    ("train", "fires"),
    [
        (TrainConfig(lr=0.1, weight_decay=5e-4, momentum=0.9), None),  # the usual recipe: rate 0.9995, 0.89 per epoch
        (TrainConfig(lr=0.5, weight_decay=3, momentum=0.9), "weight-decay-erases"),  # the log's collapse with momentum
        (TrainConfig(lr=1.0, weight_decay=4, momentum=0.9), "weight-decay-flips"),  # 4 >= (1 + sqrt 0.9)^2 = 3.8
        (TrainConfig(lr=0.1, weight_decay=0.05, momentum=0.9), "weight-decay-erases"),  # complex roots: sqrt(0.9)^235
    ],
)
def test_weight_decay_checks_with_momentum(train, fires):
    assert checks(ModelConfig(init="xavier"), train, 60_000) == ([fires] if fires else [])
    if fires:  # and the fix it suggests is itself clean
        (finding,) = check(ModelConfig(init="xavier"), train, 60_000)
        suggested = float(finding.fix.split("--weight-decay ")[1].split()[0])
        assert checks(ModelConfig(init="xavier"), dataclasses.replace(train, weight_decay=suggested), 60_000) == []


def test_the_suggested_weight_decay_is_itself_clean():
    (finding,) = check(LOG_NET, TrainConfig(lr=0.5, weight_decay=3))
    suggested = float(finding.fix.split("--weight-decay ")[1].split()[0])
    assert check(LOG_NET, TrainConfig(lr=0.5, weight_decay=suggested)) == []


@pytest.mark.parametrize(
    ("model", "fires"),
    [
        (ModelConfig(hidden=(256,) * 4), "variance-vanishes"),  # normal:0.01 on four hidden layers
        (ModelConfig(hidden=(256,) * 3), None),  # three: trains, slowly (the book's exercise)
        (ModelConfig(), None),  # the chapter's 784-256-10
        (ModelConfig(hidden=(256,) * 10, activation="sigmoid", init="xavier"), "variance-vanishes"),
        (ModelConfig(hidden=(256,) * 10, activation="tanh", init="xavier"), None),
        (ModelConfig(hidden=(256,) * 8, init="normal:1"), "variance-explodes"),
        (ModelConfig(hidden=(256,) * 8, init="he"), None),
        (ModelConfig(hidden=(256,), dropout=(0.8,)), "dropout-first-layer"),
        (ModelConfig(hidden=(256, 256), dropout=(0.5, 0.9)), None),  # heavy dropout, but not on the first layer
    ],
)
def test_model_checks(model, fires):
    assert checks(model, TrainConfig()) == ([fires] if fires else [])


@pytest.mark.parametrize(
    ("activation", "init"),
    [("relu", "he"), ("relu", "normal:0.05"), ("tanh", "normal:0.005"), ("prelu", "he"),
     # saturating: tanh at He (pre-activations of variance 2, far from tanh's linear part), sigmoid (mean 1/2)
     ("tanh", "he"), ("tanh", "xavier"), ("sigmoid", "xavier"), ("sigmoid", "normal:0.1")],
)  # fmt: skip
def test_variance_factors_match_a_monte_carlo_pass_through_real_layers(activation, init):
    # forward: E[out^2] / E[x^2] for x ~ N(0, 1); backward: E[grad_x^2] / E[grad_out^2] for a N(0, 1) output
    # gradient, through real layers: the activation's moments are taken exactly (quadrature), not linearized.
    torch.manual_seed(0)
    model = ModelConfig(hidden=(400, 300), activation=activation, init=init, n_inputs=500, n_outputs=200)
    forward, backward = variance_factors(model)
    ratios_f, ratios_b = [], []
    for seed in range(8):  # average over weight draws: the prediction is an expectation over them
        net = build_mlp(model, torch.Generator().manual_seed(seed)).double()
        x = torch.randn(2000, 500, dtype=torch.float64, requires_grad=True)
        out = net(x)
        grad_out = torch.randn_like(out)
        out.backward(grad_out)
        ratios_f.append((out.pow(2).mean() / x.pow(2).mean()).item())
        ratios_b.append((x.grad.pow(2).mean() / grad_out.pow(2).mean()).item())
    assert sum(ratios_f) / 8 == pytest.approx(forward, rel=0.15)
    assert sum(ratios_b) / 8 == pytest.approx(backward, rel=0.15)


def test_cli_exit_status_follows_the_worst_finding():
    bad = runner.invoke(app, ["doctor", "--hidden", "256,256", "--dropout", "0.2,0.5", "--lr", "0.5", "--wd", "3"])
    assert bad.exit_code == 1 and "error (weight-decay-flips)" in bad.output and "Fix:" in bad.output
    good = runner.invoke(app, ["doctor", "--hidden", "256,256", "--lr", "0.1", "--wd", "1e-4"])
    assert good.exit_code == 0 and "no findings" in good.output
    warned = ["doctor", "--hidden", "256,256,256,256"]
    assert runner.invoke(app, warned).exit_code == 0
    assert runner.invoke(app, [*warned, "--strict"]).exit_code == 1
    assert runner.invoke(app, ["doctor", "--lr", "-1"]).exit_code == 2  # bad input: the usual one-line error


def test_train_refuses_an_error_before_any_work_unless_forced(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    flags = ["train", "--data-dir", str(fake_fashion_mnist), "--hidden", "16", "--batch-size", "32", "--lr", "0.5",
             "--weight-decay", "3", "--epochs", "2", "--out", str(out)]  # fmt: skip
    refused = runner.invoke(app, flags)
    assert refused.exit_code == 2 and "1 - 0.5 * 3 = -0.5" in refused.output and "--force" in refused.output
    assert not out.exists()
    forced = runner.invoke(app, [*flags, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "failed: at chance" in forced.output or "failed: loss rose" in forced.output
    warned = runner.invoke(app, [*flags[:-6], "--epochs", "1", "--out", str(tmp_path / "w"), "--hidden", "64,64,64,64"])
    assert warned.exit_code == 0 and "doctor" in warned.output and "variance" in warned.output.lower()


def test_first_layer_dropout_is_a_note_at_0_8_and_a_warning_at_0_9():
    (note,) = check(ModelConfig(hidden=(256,), dropout=(0.8,)), TrainConfig())
    (warning,) = check(ModelConfig(hidden=(256,), dropout=(0.9,)), TrainConfig())
    assert note.severity == "note" and warning.severity == "warning" and "10%" in warning.saw


def test_explain_groups_a_sweeps_failed_models_by_cause(tmp_path):
    from mlplab.doctor import explain

    out = tmp_path / "collapse"
    flags = ["sweep", "run", "--data", "synthetic", "--hidden", "16", "--epochs", "3", "--lr", "0.5",
             "--grid", "weight_decay=0,3", "--seeds", "2", "--out", str(out), "--force"]  # fmt: skip
    assert runner.invoke(app, flags).exit_code == 0
    stored = __import__("json").loads((out / "doctor.json").read_text())
    before = [(f["check"], f["configurations"]) for f in stored if "configurations" in f]  # before training
    assert before == [("weight-decay-flips", 1)]
    during = [f for f in stored if "model" in f]  # while training: the collapsed models sat at chance
    assert during and all("weight_decay=3" in f["model"] for f in during)
    found = explain(out)
    assert (found.models, found.failed, found.unexplained, found.flagged_ok) == (4, 2, 0, 0)
    ((finding, count),) = found.causes.values()
    assert finding.check == "weight-decay-flips" and count == 2
    shown = runner.invoke(app, ["doctor", str(out)])
    assert shown.exit_code == 0 and "2 of 4 model(s) failed" in shown.output and "2 of them: error" in shown.output


def test_explain_reads_a_run_folder(fake_fashion_mnist, tmp_path):
    from mlplab.doctor import explain

    out = tmp_path / "run"
    flags = ["train", "--data-dir", str(fake_fashion_mnist), "--hidden", "16", "--batch-size", "32", "--lr", "0.5",
             "--weight-decay", "3", "--epochs", "1", "--out", str(out), "--force"]  # fmt: skip
    assert runner.invoke(app, flags).exit_code == 0
    found = explain(out)
    assert found.failed == 1 and list(found.causes) == ["weight-decay-flips"]
    missing = runner.invoke(app, ["doctor", str(tmp_path)])
    assert missing.exit_code == 2 and "neither a run" in missing.output


# --- the probe: a few batches of data ------------------------------------------------------------


@pytest.fixture(scope="module")
def pixels():
    """Fashion-MNIST-shaped data in [0, 1] (784 inputs, 10 classes), learnable within an epoch."""
    from mlplab.data import Data, Split

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (2000,), generator=g)
    X = torch.rand(2000, 784, generator=g) * 0.5
    for c in range(10):  # a class-specific bright band of 70 pixels
        X[y == c, c * 70 : c * 70 + 70] += 0.5
    return Data(Split(X[:1600], y[:1600]), Split(X[1600:], y[1600:]))


PROBE_TRAIN = TrainConfig(lr=0.1, batch_size=64)


def probed(model: ModelConfig, data, train: TrainConfig = PROBE_TRAIN, tweak=None) -> list[str]:
    from mlplab.doctor import probe

    net = build_mlp(model, torch.Generator().manual_seed(0))
    if tweak is not None:
        tweak(net)
    before = [p.detach().clone() for p in net.parameters()]
    found = [f.check for f in probe(net, data, train)]
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # the caller's model is untouched
    return found


def test_a_healthy_model_probes_clean(pixels):
    assert probed(ModelConfig(), pixels) == []
    assert probed(ModelConfig(hidden=(256,) * 3), pixels) == []  # slow, not broken
    assert probed(ModelConfig(hidden=(256,) * 8, init="he"), pixels) == []


def test_pixels_0_255_are_flagged(pixels):
    from mlplab.data import Data, Split

    raw = Data(Split(pixels.train.X * 255, pixels.train.y), Split(pixels.test.X * 255, pixels.test.y))
    assert "input-scale" in probed(ModelConfig(), raw)


def test_a_large_init_shows_in_the_first_loss_as_a_note(pixels):
    from mlplab.doctor import probe

    assert "init-loss" in probed(ModelConfig(init="normal:1"), pixels)
    net = build_mlp(ModelConfig(init="normal:1"), torch.Generator().manual_seed(0))
    found = {f.check: f.severity for f in probe(net, pixels, PROBE_TRAIN)}
    assert found["init-loss"] == "note"  # one such layer trains (BENCHMARKS.md): not a warning
    assert "init-loss" not in probed(ModelConfig(init="xavier"), pixels)


def test_gradients_that_vanish_towards_the_input(pixels):
    assert probed(ModelConfig(hidden=(256,) * 4), pixels) == ["gradients-vanish"]


def test_dead_relus(pixels):
    def kill(net):
        with torch.no_grad():
            net[1].bias.fill_(-100.0)  # every pre-activation of the first hidden layer negative

    assert "dead-relus" in probed(ModelConfig(), pixels, tweak=kill)


def test_a_learning_rate_that_raises_the_loss(pixels):
    assert probed(ModelConfig(), pixels, TrainConfig(lr=50, batch_size=64)) == ["lr-raises-loss"]
    assert "lr-raises-loss" not in probed(ModelConfig(), pixels, TrainConfig(lr=0.5, batch_size=64))


# --- during training -----------------------------------------------------------------------------


def watched_fit(model: ModelConfig, data, train: TrainConfig):
    from mlplab.doctor import DoctorCallback
    from mlplab.train import fit

    net = build_mlp(model, torch.Generator().manual_seed(0))
    seen = []
    watch = DoctorCallback(net, data.train.X[:512], data.train.y[:512], on_finding=seen.append)
    history = fit(net, data, train, callbacks=[watch])
    assert seen == watch.findings  # each reported once, as it appears
    return history, [f.check for f in watch.findings]


def test_the_callback_stays_quiet_on_a_run_that_learns_and_does_not_change_it(pixels):
    from mlplab.train import fit

    train = TrainConfig(epochs=3, batch_size=64, lr=0.1)
    history, found = watched_fit(ModelConfig(), pixels, train)
    assert found == [] and history.status == "ok"
    plain = fit(build_mlp(ModelConfig(), torch.Generator().manual_seed(0)), pixels, train)
    assert [r.test_loss for r in plain.records] == [r.test_loss for r in history.records]


def test_the_callback_sees_the_collapse_and_the_vanishing_gradient(pixels):
    _, collapse = watched_fit(ModelConfig(), pixels, TrainConfig(epochs=2, batch_size=64, lr=0.5, weight_decay=3))
    assert collapse.count("stuck-at-chance") == 1  # two epochs at chance, reported once
    _, deep = watched_fit(ModelConfig(hidden=(256,) * 4), pixels, TrainConfig(epochs=1, batch_size=64))
    assert "gradients-vanish" in deep


def test_the_callback_reports_a_non_finite_loss(pixels):
    from mlplab.doctor import DoctorCallback
    from mlplab.train import EpochRecord

    watch = DoctorCallback(build_mlp(ModelConfig()), pixels.train.X[:64], pixels.train.y[:64])
    watch.on_epoch_end(EpochRecord(3, float("nan"), None, float("nan"), 0.1, 1.0))
    watch.on_epoch_end(EpochRecord(4, float("nan"), None, float("nan"), 0.1, 1.0))
    assert [f.check for f in watch.findings] == ["loss-not-finite"] and "epoch 3" in watch.findings[0].saw


def test_train_stores_the_findings_in_doctor_json(fake_fashion_mnist, tmp_path):
    import json

    out = tmp_path / "run"
    flags = ["train", "--data-dir", str(fake_fashion_mnist), "--hidden", "64,64,64,64", "--batch-size", "32",
             "--epochs", "1", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, flags)
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "doctor.json").read_text())
    assert stored[0]["check"] == "variance-vanishes" and {"severity", "saw", "why", "fix"} <= set(stored[0])


def test_doctor_checks_every_configuration_of_a_grid():
    bad = runner.invoke(app, ["doctor", "--hidden", "256,256", "--lr", "0.5", "--grid", "weight_decay=0,1e-4,3",
                              "--grid", "dropout1=0,0.5"])  # fmt: skip
    assert bad.exit_code == 1 and "error (weight-decay-flips) in 2 of 6 configuration(s)" in bad.output
    good = runner.invoke(app, ["doctor", "--grid", "lr=0.01,0.1,0.5", "--grid", "hidden=64,256,256-256"])
    assert good.exit_code == 0 and "no findings in 9 configuration(s)" in good.output


def test_the_sweep_callback_finds_what_fits_callback_finds_for_each_model():
    import torch

    from mlplab.doctor import DoctorCallback, SweepDoctorCallback
    from mlplab.models import ModelConfig, build_mlp
    from mlplab.sweep.batched import train_group
    from mlplab.sweep.runner import synthetic_data
    from mlplab.sweep.spec import Trial
    from mlplab.train import TrainConfig, fit

    data = synthetic_data(n_train=512, n_test=256)
    trials = [
        Trial(
            ModelConfig(hidden=(16, 16), init=init, n_inputs=32), TrainConfig(epochs=2, batch_size=64, lr=0.1, seed=1)
        )
        for init in ("xavier", "normal:0.0001")
    ]
    watch = SweepDoctorCallback()
    train_group(trials, data, callbacks=[watch])
    by_trial = {t.key: {f.check for u, f in watch.findings if u.key == t.key} for t in trials}
    assert by_trial[trials[0].key] == set()
    assert "stuck-at-chance" in by_trial[trials[1].key]
    for t in trials:  # the same checks as fit's own callback on the same model, seed and data
        net = build_mlp(t.model, torch.Generator().manual_seed(t.seed))
        single = DoctorCallback(net, data.train.X[:512], data.train.y[:512])
        fit(net, data, t.train, callbacks=[single])
        assert {f.check for f in single.findings} == by_trial[t.key], t.model.init


def test_a_resumed_sweep_keeps_the_training_findings_of_its_earlier_models(tmp_path):
    import json

    out = tmp_path / "s"
    flags = ["sweep", "run", "--data", "synthetic", "--hidden", "16,16", "--epochs", "2", "--batch-size", "64",
             "--out", str(out)]  # fmt: skip
    assert runner.invoke(app, [*flags, "--grid", "init=normal:0.0001"]).exit_code == 0
    first = json.loads((out / "doctor.json").read_text())
    assert first and all("init=normal:0.0001" in e["model"] for e in first if "model" in e)
    assert runner.invoke(app, [*flags, "--grid", "init=normal:0.0001,normal:0.00001"]).exit_code == 0
    second = [e for e in json.loads((out / "doctor.json").read_text()) if "model" in e]
    models = {e["model"].split(" init=")[1].split()[0] for e in second}
    assert models == {"normal:0.0001", "normal:1e-05"}  # the first run's model is still there
    (out / "doctor.json").write_text("{not json")  # a damaged file of its own is replaced, not fatal
    assert runner.invoke(app, [*flags, "--grid", "init=normal:0.0001"]).exit_code == 0


def test_explain_reads_a_sweep_stored_before_later_table_entries(tmp_path):
    # bench/results/dropout-grid was stored before loss, l1, bias and features existed: they trained at their defaults
    import shutil
    from pathlib import Path

    from mlplab.doctor import explain

    stored = Path(__file__).parent.parent / "bench" / "results" / "dropout-grid"
    shutil.copytree(stored, tmp_path / "grid")  # a copy: opening a store may upgrade it in place
    lines = explain(tmp_path / "grid").lines()
    assert lines[0] == "0 of 300 model(s) failed or diverged"
    assert "30 model(s) ended ok despite a warning" in lines[1]
