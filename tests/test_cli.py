"""The command line, through typer's CliRunner."""

from __future__ import annotations

import csv
import json
import os
import re

import pytest
import torch
import typer.main
from typer.testing import CliRunner

from mlplab.cli import app

runner = CliRunner()


def command_paths(command, prefix=()):
    yield prefix
    if hasattr(command, "commands"):  # a group (typer may vendor click, so no isinstance)
        for name, sub in command.commands.items():
            yield from command_paths(sub, (*prefix, name))


ALL_COMMANDS = list(command_paths(typer.main.get_command(app)))


def test_the_command_tree_has_the_foundation_commands():
    assert {("train",), ("data", "fetch"), ("data", "info")} <= set(ALL_COMMANDS)


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "mlplab")
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option" and param.name != "help":
            assert param.help, f"option {param.opts} of {' '.join(path)} has no help"


def train_args(data_dir, out, *extra):
    return ["train", "--data-dir", str(data_dir), "--hidden", "16", "--batch-size", "32", "--out", str(out), *extra]


def test_train_writes_config_history_and_curves(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, train_args(fake_fashion_mnist, out, "--epochs", "2", "--dropout", "0.1"))
    assert result.exit_code == 0, result.output
    assert "train_loss" in result.output and "ok: test accuracy" in result.output
    history = json.loads((out / "history.json").read_text())
    assert [list(r) for r in history] == [["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]] * 2
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["test_acc"]) == pytest.approx(history[1]["test_acc"])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["hidden"] == [16] and config["model"]["dropout"] == [0.1]
    assert config["train"]["epochs"] == 2 and config["train"]["lr"] == 0.1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_rerunning_into_a_run_folder_needs_resume(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, train_args(fake_fashion_mnist, out, "--epochs", "1")).exit_code == 0
    again = runner.invoke(app, train_args(fake_fashion_mnist, out, "--epochs", "2"))
    assert again.exit_code == 2 and "already holds a run" in again.output and "--resume" in again.output
    resumed = runner.invoke(app, train_args(fake_fashion_mnist, out, "--epochs", "3", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2, 3]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dropout", "1.5"], "dropout[0] = 1.5 is invalid"),
        (["--hidden", "256,abc"], "--hidden = '256,abc' is invalid"),
        (["--hidden", "256,0"], "hidden[1] = 0 is invalid"),
        (["--activation", "swish"], "activation = 'swish' is invalid"),
        (["--optimizer", "rmsprop"], "optimizer = 'rmsprop' is invalid"),
        (["--lr", "0"], "lr = 0.0 is invalid: the learning rate must be a finite number > 0"),
        (["--init", "normal:x"], "init = 'normal:x' is invalid"),
        (["--impl", "scratch", "--optimizer", "adam"], "scratch MLP is trained by hand-written SGD only"),
        pytest.param(
            ["--device", "cuda"],
            "CUDA is not available on this machine; use --device cpu",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA"),
        ),
    ],
)
def test_bad_flags_are_rejected_before_any_work(flags, message, tmp_path):
    out = tmp_path / "never"
    result = runner.invoke(app, ["train", "--out", str(out), "--data-dir", str(tmp_path / "no-data"), *flags])
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()


def test_data_info_and_fetch(fake_fashion_mnist):
    info = runner.invoke(app, ["data", "info", "--data-dir", str(fake_fashion_mnist)])
    assert info.exit_code == 0, info.output
    assert "all four files verified" in info.output and "ankle boot" in info.output
    fetch = runner.invoke(app, ["data", "fetch", "--data-dir", str(fake_fashion_mnist)])
    assert fetch.exit_code == 0 and fetch.output.count("ok ") == 4


def test_data_info_without_data_says_how_to_get_it(tmp_path):
    result = runner.invoke(app, ["data", "info", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "not found" in result.output and "mlplab data fetch" in result.output


def test_train_one_epoch_on_the_real_data(real_fashion_mnist, tmp_path):
    out = tmp_path / "real"
    result = runner.invoke(app, ["train", "--data-dir", str(real_fashion_mnist), "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (record,) = json.loads((out / "history.json").read_text())
    assert record["test_acc"] > 0.65  # the chapter's first epoch reaches ~0.73 (study log: 0.73)


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("mlplab ")


def test_outputs_get_the_usual_file_permissions(tmp_path):
    import os
    import stat

    from mlplab.atomic import write_text

    mask = os.umask(0o022)
    try:
        path = write_text(tmp_path / "x.txt", "hi")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_run_shift_is_the_shift_study_command(monkeypatch, tmp_path):
    # both spellings must turn the same flags into the same study, the one StudyConfig.quick describes
    import mlplab.cli.shift as shift_cli
    from mlplab.shift.experiment import StudyConfig

    seen = []
    monkeypatch.setattr(shift_cli, "_execute", lambda config, out, *rest: seen.append((config, out)))
    flags = ["--quick", "--parts", "label,concept", "--source-optimizer", "sgd", "--out", str(tmp_path / "s")]
    for command in (["run", "shift"], ["shift", "run"]):
        result = runner.invoke(app, [*command, *flags])
        assert result.exit_code == 0, result.output
    expected = StudyConfig.quick(("label", "concept"), "cpu", "sgd")
    assert seen == [(expected, str(tmp_path / "s"))] * 2


def test_a_resumed_run_keeps_the_whole_history_on_disk_after_every_epoch(gen, tmp_path):
    # a run killed while resuming must leave every epoch so far in history.json, not only the new ones
    from mlplab.data import Data, Split
    from mlplab.runs import RunDir
    from mlplab.train import Callback, TrainConfig, fit

    X = torch.randn(64, 5, generator=gen)
    data = Data(Split(X, (X[:, 0] > 0).long()), Split(X[:16], (X[:16, 0] > 0).long()))
    seen = []

    class Watch(Callback):
        def on_epoch_end(self, record) -> None:
            seen.append([r["epoch"] for r in json.loads((tmp_path / "history.json").read_text())])

    net, ckpt = torch.nn.Linear(5, 2), tmp_path / "ckpt.pt"
    fit(net, data, TrainConfig(epochs=1, batch_size=16), checkpoint=ckpt)
    fit(
        net,
        data,
        TrainConfig(epochs=3, batch_size=16),
        callbacks=[RunDir(tmp_path).writer(), Watch()],
        checkpoint=ckpt,
        resume=True,
    )
    assert seen == [[1, 2], [1, 2, 3]]


def test_resume_takes_the_runs_settings_from_its_config_json(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    folder = ["train", "--data-dir", str(fake_fashion_mnist), "--out", str(out)]
    first = runner.invoke(app, [*folder, "--impl", "scratch", "--hidden", "12,6", "--batch-size", "16", "--lr", "0.2",
                                "--epochs", "1"])  # fmt: skip
    assert first.exit_code == 0, first.output
    stored = json.loads((out / "config.json").read_text())
    # only the folder and the new total: everything else comes from config.json (README: --out DIR --epochs 20 --resume)
    result = runner.invoke(app, [*folder, "--resume", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["impl"] == "scratch" and config["model"]["hidden"] == [12, 6]
    assert {**config["train"], "epochs": 1} == stored["train"]
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2, 3]
    refused = runner.invoke(app, [*folder, "--resume", "--epochs", "4", "--hidden", "12"])
    assert refused.exit_code == 2 and "model.hidden: stored [12, 6], given [12]" in refused.output


def test_a_run_resumes_on_another_device_and_says_so(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    folder = ["train", "--data-dir", str(fake_fashion_mnist), "--out", str(out), "--batch-size", "64"]
    assert runner.invoke(app, [*folder, "--epochs", "1"]).exit_code == 0
    # as if the run had trained on a GPU: its config.json and its checkpoint say cuda
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "train": {**config["train"], "device": "cuda"}}))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["config"]["device"] = "cuda"
    torch.save(state, out / "checkpoint.pt")
    if not torch.cuda.is_available():  # its own device, taken from config.json, is not here: say what to do
        refused = runner.invoke(app, [*folder, "--resume", "--epochs", "2"])
        assert refused.exit_code == 2 and "CUDA is not available on this machine; use --device cpu" in refused.output
    result = runner.invoke(app, [*folder, "--resume", "--epochs", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "resuming on cpu: the run was last started on cuda" in result.output
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2]
    assert json.loads((out / "config.json").read_text())["train"] == {**config["train"], "epochs": 2}


def test_train_takes_the_recipe_flags_and_a_cosine_run_resumes_only_to_its_own_epochs(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    folder = ["train", "--data-dir", str(fake_fashion_mnist), "--out", str(out)]
    first = runner.invoke(app, [*folder, "--hidden", "12", "--batch-size", "16", "--momentum", "0.9", "--lr", "0.05",
                                "--schedule", "cosine", "--augment", "flip+shift", "--epochs", "2"])  # fmt: skip
    assert first.exit_code == 0, first.output
    train = json.loads((out / "config.json").read_text())["train"]
    assert (train["momentum"], train["schedule"], train["augment"]) == (0.9, "cosine", "flip+shift")
    before = (out / "config.json").read_text()
    refused = runner.invoke(app, [*folder, "--resume", "--epochs", "3"])
    assert refused.exit_code == 2 and "anneals its learning rate over 2 epochs" in refused.output
    assert (out / "config.json").read_text() == before  # refused before anything was written
    bad = runner.invoke(app, [*folder[:-2], "--out", str(tmp_path / "b"), "--momentum", "0.9", "--optimizer", "adam"])
    assert bad.exit_code == 2 and "momentum" in bad.output


def test_resume_needs_the_runs_folder(tmp_path):
    result = runner.invoke(app, ["train", "--resume"])
    assert result.exit_code == 2 and "--out" in result.output


def test_outputs_follow_the_umask_in_force_when_written(tmp_path):
    import stat

    from mlplab.atomic import write_text

    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        previous = os.umask(mask)
        try:
            path = write_text(tmp_path / f"x{mask:o}.txt", "hi")
        finally:
            os.umask(previous)
        assert stat.S_IMODE(path.stat().st_mode) == mode


def test_ctrl_c_says_what_is_saved_and_how_to_resume(fake_fashion_mnist, tmp_path, monkeypatch):
    import mlplab.train as train_cli  # the command imports fit from here when it runs
    from mlplab.train import fit

    def interrupted_after_two_epochs(*args, **kwargs):
        class Stop(Callback):
            def on_epoch_end(self, record) -> None:
                if record.epoch == 2:
                    raise KeyboardInterrupt

        kwargs["callbacks"] = [*kwargs["callbacks"], Stop()]
        return fit(*args, **kwargs)

    from mlplab.train import Callback

    monkeypatch.setattr(train_cli, "fit", interrupted_after_two_epochs)
    out = tmp_path / "run"
    result = runner.invoke(app, train_args(fake_fashion_mnist, out, "--epochs", "5"))
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert (
        f"interrupted: 2 finished epoch(s) are saved in {out}. Continue with: mlplab train --out {out} --resume"
        in result.output.replace("\n", "")
    )
    monkeypatch.setattr(train_cli, "fit", fit)
    resumed = runner.invoke(app, ["train", "--data-dir", str(fake_fashion_mnist), "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2, 3, 4, 5]


def test_mlplab_help_imports_no_heavy_library():
    # `mlplab --help` must start fast: the commands import torch, pandas, sklearn, matplotlib when they run
    code = (
        "import sys; from mlplab.cli import app; import typer.main; typer.main.get_command(app); "
        "heavy = sorted(m for m in ('torch', 'pandas', 'sklearn', 'matplotlib', 'numpy', 'scipy') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"imported at start-up: {done.stdout.strip()}"


def test_the_clis_own_copies_of_library_names_match_the_library():
    import mlplab.cli.shift as shift_cli
    import mlplab.cli.sweep as sweep_cli
    from mlplab.shift import experiment
    from mlplab.sweep import results, runner, spec

    assert sweep_cli.DATA_SETS == runner.DATA_SETS and sweep_cli.METRICS == results.METRICS
    assert sweep_cli.STATUS_FILTERS == results.STATUS_FILTERS and sweep_cli.MAX_TRIALS == spec.MAX_TRIALS
    assert shift_cli.PARTS == experiment.PARTS


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "mlplab")
def test_help_speaks_the_books_language(path):
    # users have the book, not the author's notes: help cites the book's sections, never "the study log"
    text = runner.invoke(app, [*path, "--help"], terminal_width=200).output.lower()
    assert "study log" not in text and "the log's" not in text
    for english_only in ("d2l 4.7", "d2l 5."):  # the English edition's numbers (4.9 and 4.x in the Chinese one)
        assert english_only not in text


def test_docs_cite_the_chinese_editions_sections():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert "study log" not in text.lower(), path.name
        assert not re.search(r"d2l (4\.7|5\.\d)", text), path.name


def test_train_precision_bf16_trains_in_bfloat16_and_bad_precisions_are_refused(fake_fashion_mnist, tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        result = runner.invoke(app, train_args(fake_fashion_mnist, out, "--epochs", "1", "--precision", precision))
        assert result.exit_code == 0, result.output
        assert json.loads((out / "config.json").read_text())["train"]["precision"] == precision
        runs[precision] = json.loads((out / "history.json").read_text())[0]
    # the same model, data and batches: bfloat16 products round differently, by little
    assert runs["bf16"]["train_loss"] != runs["fp32"]["train_loss"]
    assert runs["bf16"]["train_loss"] == pytest.approx(runs["fp32"]["train_loss"], rel=0.05)
    bad = runner.invoke(app, train_args(fake_fashion_mnist, tmp_path / "fp16", "--precision", "fp16"))
    assert bad.exit_code == 2 and "precision" in bad.output and "bf16" in bad.output
    assert not (tmp_path / "fp16").exists()
    scratch = runner.invoke(
        app, train_args(fake_fashion_mnist, tmp_path / "s", "--impl", "scratch", "--precision", "bf16")
    )
    assert scratch.exit_code == 2 and "bf16" in scratch.output and "concise" in scratch.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "CUDA graphs need a CUDA device, not cpu"),
        (["--impl", "scratch"], "the scratch MLP's steps are not captured"),
        (
            ["--optimizer", "adam", "--lr", "0.01"],
            "a captured step bakes in its learning rate: use sgd without momentum",
        ),
    ],
)
def test_train_cuda_graphs_refuses_what_a_graph_cannot_replay_before_any_work(
    fake_fashion_mnist, tmp_path, flags, message
):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "--data-dir", str(fake_fashion_mnist), "--out", str(out), "--cuda-graphs", *flags]
    )
    assert result.exit_code == 2 and f"--cuda-graphs = True is invalid: {message}" in result.output, result.output
    assert not out.exists()
