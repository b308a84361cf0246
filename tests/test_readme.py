"""The README's examples run and say what the README says (on the real Fashion-MNIST, like the
other smoke tests: wherever the loaders find it; CI sets MLPLAB_DATA)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.data import sources

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", README, re.M | re.S)


@pytest.fixture
def real_data_env(real_fashion_mnist, monkeypatch, tmp_path):
    """The loaders' default search finds the real data, and outputs land in a fresh folder."""
    if real_fashion_mnist.name != "fashion-mnist":
        pytest.skip(f"{real_fashion_mnist} is not a folder named fashion-mnist ($MLPLAB_DATA/fashion-mnist)")
    monkeypatch.setenv(sources.ENV_VAR, str(real_fashion_mnist.parent))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_python_examples_run_and_print_what_the_readme_says(real_data_env):
    namespace: dict = {}
    shown = io.StringIO()
    python = blocks("python")
    assert len(python) == 3  # training, scratch, sweep: a new example needs its checks here
    with contextlib.redirect_stdout(shown):
        for code in python:
            exec(compile(code, "README.md", "exec"), namespace)
    history = namespace["history"]  # the scratch example's; the first one printed its own
    first = shown.getvalue()
    printed = re.search(r"^ok (0\.\d+)$", first, re.M)
    assert printed and abs(float(printed.group(1)) - 0.832) < 0.001, first  # "# ok 0.832 (seed 0; ...)"
    assert history.status == "ok" and history.final.test_acc > 0.8
    assert namespace["net"].saved_bytes_per_sample() == 1064  # "# 1064: kept for backward"
    assert [g.shape for g in namespace["grads"]] == [p.shape for p in namespace["net"].params]
    summary = namespace["summarize"](namespace["load_results"]("runs/dropout-grid"))
    assert len(summary) == 4 and (summary["n"] == 3).all()  # 2 x 2 grid, 3 seeds each
    assert (real_data_env / "runs" / "dropout-grid" / "sweep.sqlite").exists()


def test_the_train_commands_run(real_data_env):
    (commands,) = [b for b in blocks("bash") if "mlplab train --hidden" in b]
    runner = CliRunner()
    for line in commands.splitlines():
        args = shlex.split(line.split("#")[0])[1:]  # drop "mlplab" and the comment
        if "--device" in args and not torch.cuda.is_available():
            result = runner.invoke(app, args)
            assert result.exit_code == 2 and "CUDA is not available" in result.output
            continue
        # one epoch (or one more, when resuming) keeps this a smoke test; the flags are the README's
        epochs = ["--epochs", "2"] if "--resume" in args else ["--epochs", "1"]
        result = runner.invoke(app, [*args, *epochs])
        assert result.exit_code == 0, f"{line}\n{result.output}"
        assert "ok:" in result.output or "failed:" in result.output
    assert (real_data_env / "runs" / "dropout" / "checkpoint.pt").exists()
