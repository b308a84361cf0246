"""Bad input through the CLI: every case ends in a one-line error naming the flag or file, a
non-zero exit and no traceback; nothing is run, lost or overwritten.

The data layer's cases are in test_bad_input_data.py, the sweep commands' in
test_bad_input_sweep.py; this file has train, house, shift, the last line of defence and the
hypothesis tests over every command's numeric flags.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_house import write_csvs
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.data import fashion_mnist

runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[1] / "src")


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_clear_error(result, *needles: str, code: int = 2) -> None:
    """Exit ``code``, one ``error:`` line naming every needle, and no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines, "no message"
    for needle in needles:
        assert needle in result.output, result.output


def train_args(data_dir, out, *extra):
    return ["train", "--data-dir", str(data_dir), "--hidden", "8", "--batch-size", "32", "--out", str(out), *extra]


# --- must fix 1: a crafted checkpoint cannot run code -----------------------------------------


class Payload:
    """Unpickling this runs a shell command (the classic pickle exploit)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_cannot_run_code(fake_fashion_mnist, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    torch.save({"version": 1, "config": Payload(marker)}, out / "checkpoint.pt")
    assert not marker.exists()
    with open(out / "checkpoint.pt", "rb") as handle:  # the file really is an exploit
        assert b"system" in handle.read()
    result = invoke(*train_args(fake_fashion_mnist, out, "--resume", "--epochs", "1"))
    assert_clear_error(result, "refusing checkpoint", "checkpoint.pt")
    assert not marker.exists(), "the checkpoint ran code"


def test_the_safe_loader_still_loads_a_genuine_checkpoint(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    assert invoke(*train_args(fake_fashion_mnist, out, "--epochs", "1")).exit_code == 0
    result = invoke(*train_args(fake_fashion_mnist, out, "--epochs", "2", "--resume"))
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2]


@pytest.mark.parametrize("content", [b"garbage", pickle.dumps([1, 2, 3]), b""], ids=["garbage", "list", "empty"])
def test_a_damaged_checkpoint_is_a_clear_error(fake_fashion_mnist, tmp_path, content):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(content)
    assert_clear_error(invoke(*train_args(fake_fashion_mnist, out, "--resume")), "checkpoint.pt")


def test_a_checkpoint_of_another_model_is_a_clear_error(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    assert invoke(*train_args(fake_fashion_mnist, out, "--epochs", "1")).exit_code == 0
    (out / "config.json").unlink()  # only the checkpoint tells the widths apart now
    result = invoke(*train_args(fake_fashion_mnist, out, "--resume", "--hidden", "16"))
    assert_clear_error(result, "do not fit this model", "checkpoint.pt")
    assert len(result.output.splitlines()) <= 3


# --- must fix 2: one writer per run folder -----------------------------------------------------


def _patched_cli(files: dict) -> str:
    """Python code that runs the CLI with fashion_mnist.FILES patched to the fake data's table."""
    specs = {k: [v.name, list(v.shape), v.sha256] for k, v in files.items()}
    return (
        "import sys; from mlplab.data import fashion_mnist as f; "
        f"f.FILES = {{k: f.FileSpec(n, tuple(s), h) for k, (n, s, h) in {specs!r}.items()}}; "
        "from mlplab.cli import main; sys.argv[0] = 'mlplab'; main()"
    )


def test_two_trains_on_one_folder_one_works_the_other_is_refused_before_any_work(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    code = _patched_cli(fashion_mnist.FILES)
    first = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            *train_args(fake_fashion_mnist, out, "--epochs", "100000", "--batch-size", "8", "--seed", "1"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "history.json").exists():  # the first one holds the folder and trains
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "the first train never started"
            time.sleep(0.05)
        config = (out / "config.json").read_bytes()
        t0 = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-c", code, *train_args(fake_fashion_mnist, out, "--seed", "2")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2, second.stderr
        assert "another `mlplab train` is writing to" in second.stderr and "Traceback" not in second.stderr
        assert time.monotonic() - t0 < 30  # refused at once, not after loading data and training
        assert (out / "config.json").read_bytes() == config  # the first run's settings, untouched
        assert first.poll() is None  # the first goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == 1


def test_a_folder_that_holds_a_run_is_refused_even_before_its_first_checkpoint(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # a run killed during its first epoch
    assert_clear_error(invoke(*train_args(fake_fashion_mnist, out)), "already holds a run", "config.json")
    assert (out / "config.json").read_text() == "{}"


def test_temp_files_of_a_killed_run_are_removed_on_resume(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    assert invoke(*train_args(fake_fashion_mnist, out, "--epochs", "1")).exit_code == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / f".checkpoint.tmp-{dead.pid}-abc123.pt"
    stale.write_bytes(b"x" * 1000)
    assert invoke(*train_args(fake_fashion_mnist, out, "--epochs", "2", "--resume")).exit_code == 0
    assert not stale.exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# --- resume: nothing rewritten that contradicts the stored run ---------------------------------


def test_resume_with_fewer_epochs_than_done_is_refused_and_changes_nothing(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    assert invoke(*train_args(fake_fashion_mnist, out, "--epochs", "3")).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert_clear_error(
        invoke(*train_args(fake_fashion_mnist, out, "--epochs", "2", "--resume")),
        "already trained 3 epochs",
        "--epochs 3",
    )
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_resume_with_other_settings_names_both_values(fake_fashion_mnist, tmp_path):
    out = tmp_path / "run"
    assert invoke(*train_args(fake_fashion_mnist, out, "--epochs", "1")).exit_code == 0
    result = invoke(*train_args(fake_fashion_mnist, out, "--epochs", "2", "--resume", "--lr", "0.5"))
    assert_clear_error(result, "train.lr: stored 0.1, given 0.5")


@pytest.mark.parametrize(
    "content", ["not json", "[1, 2]", '{"train": 3}', "\udcff"], ids=["garbage", "list", "bad-train", "non-utf8"]
)
def test_a_damaged_config_json_on_resume_is_a_clear_error(fake_fashion_mnist, tmp_path, content):
    out = tmp_path / "run"
    assert invoke(*train_args(fake_fashion_mnist, out, "--epochs", "1")).exit_code == 0
    (out / "config.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    assert_clear_error(invoke(*train_args(fake_fashion_mnist, out, "--epochs", "2", "--resume")), "config.json")


# --- outputs that cannot be written ------------------------------------------------------------


@contextlib.contextmanager
def mounted_tmpfs(path: Path, options: str):
    """A tmpfs at ``path`` (as root; CI runs as root), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); CI runs as root and can")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def read_only_dir(tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as path:
        yield path


def test_train_into_a_read_only_folder_names_the_path_and_cause(fake_fashion_mnist, read_only_dir):
    result = invoke(*train_args(fake_fashion_mnist, read_only_dir / "run"))
    assert_clear_error(result, str(read_only_dir / "run"), "read-only")


def test_house_submit_into_a_read_only_folder_is_refused_before_fitting(tmp_path, read_only_dir):
    data = write_csvs(tmp_path / "house")
    result = invoke(
        "house", "submit", "--model", "ridge", "--no-verify", "--data-dir", data, "--out", read_only_dir / "sub.csv"
    )
    assert_clear_error(result, str(read_only_dir), "cannot write")


@pytest.mark.parametrize("out", ["", "   "])
def test_an_empty_out_is_refused(fake_fashion_mnist, tmp_path, out, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert_clear_error(invoke(*train_args(fake_fashion_mnist, out)), "--out")
    assert list(cwd.iterdir()) == []


def test_an_out_that_is_a_file_is_refused(fake_fashion_mnist, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert_clear_error(invoke(*train_args(fake_fashion_mnist, target)), str(target), "is a file")
    assert target.read_text() == "mine"


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_resume_completes(tmp_path, gen):
    from mlplab.atomic import OutputError
    from mlplab.data import Data, Split
    from mlplab.train import Callback, TrainConfig, fit, load_checkpoint

    X = torch.randn(256, 64, generator=gen)
    data = Data(Split(X, (X[:, 0] > 0).long()), Split(X[:64], (X[:64, 0] > 0).long()))
    config = TrainConfig(epochs=3, batch_size=32)

    def model():
        torch.manual_seed(0)  # the same initial weights each time
        return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 2))

    reference = model()
    fit(reference, data, config)
    with mounted_tmpfs(tmp_path / "small", "size=256k") as disk:
        ballast = disk / "ballast"

        class FillTheDisk(Callback):  # after epoch 1's checkpoint, leave almost no space
            def on_epoch_end(self, record) -> None:
                if record.epoch == 1:
                    with contextlib.suppress(OSError), open(ballast, "wb") as handle:
                        while True:
                            handle.write(b"\0" * 4096)
                            handle.flush()

        net, ckpt = model(), disk / "checkpoint.pt"
        with pytest.raises(OutputError, match=r"checkpoint\.pt: no space left on the device"):
            fit(net, data, config, checkpoint=ckpt, callbacks=[FillTheDisk()])
        assert [r["epoch"] for r in load_checkpoint(ckpt)["history"]["epochs"]] == [1]  # epoch 1 kept whole
        assert sorted(p.name for p in disk.iterdir()) == ["ballast", "checkpoint.pt", "run.lock"]  # no temp file
        ballast.unlink()
        resumed = model()
        history = fit(resumed, data, config, checkpoint=ckpt, resume=True)
    assert [r.epoch for r in history.records] == [1, 2, 3]
    for a, b in zip(resumed.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# --- numbers beyond the machine ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--lr", "1e39"], "lr = 1e+39"),
        (["--lr", "1e308"], "lr = 1e+308"),
        (["--lr", "inf"], "lr = inf"),
        (["--weight-decay", "1e39"], "weight_decay = 1e+39"),
        (["--seed", str(2**63)], "seed = 9223372036854775808"),
        (["--seed", "-1"], "seed = -1"),
        (["--hidden", "1000000000"], "784-1000000000-10"),
        (["--batch-size", str(2**40)], "batch_size"),
        (["--epochs", str(10**12)], "epochs"),
        (["--device", "cuda:99999999999"], "device"),
        (["--impl", "numpy"], "--impl"),
    ],
)
def test_train_numbers_beyond_the_machine_are_refused_before_any_work(flags, needle, tmp_path):
    out = tmp_path / "never"
    assert_clear_error(invoke(*train_args(tmp_path / "no-data", out, *flags)), needle)
    assert not out.exists()


# --- house -------------------------------------------------------------------------------------


def test_house_submit_never_writes_over_its_own_training_data(tmp_path):
    data = write_csvs(tmp_path / "house")
    before = (data / "train.csv").read_bytes()
    for extra, needle in (([], "not a submission"), (["--force"], "would destroy it")):
        result = invoke(
            "house",
            "submit",
            "--model",
            "ridge",
            "--no-verify",
            "--data-dir",
            data,
            "--out",
            data / "train.csv",
            *extra,
        )
        assert_clear_error(result, "train.csv", needle)
    assert (data / "train.csv").read_bytes() == before


def test_house_submit_replaces_a_submission_but_not_another_file_without_force(tmp_path):
    data = write_csvs(tmp_path / "house")
    notes = tmp_path / "notes.csv"
    notes.write_text("my,notes\n1,2\n")
    result = invoke("house", "submit", "--model", "ridge", "--no-verify", "--data-dir", data, "--out", notes)
    assert_clear_error(result, "notes.csv", "--force")
    assert notes.read_text() == "my,notes\n1,2\n"
    sub = tmp_path / "sub.csv"
    for _ in range(2):  # the second run replaces the first one's submission
        result = invoke("house", "submit", "--model", "ridge", "--no-verify", "--data-dir", data, "--out", sub)
        assert result.exit_code == 0, result.output
    result = invoke("house", "submit", "--model", "ridge", "--no-verify", "--data-dir", data, "--out", notes, "--force")
    assert result.exit_code == 0, result.output
    assert notes.read_text().startswith("Id,SalePrice")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["cv", "--seed", "-1"], "--seed = -1"),
        (["cv", "--seed", str(2**32)], "--seed"),
        (["submit", "--seed", "-1"], "--seed = -1"),
        (["cv", "--folds", "1"], "--folds"),
        (["submit", "--out", ""], "--out"),
    ],
)
def test_house_bad_numbers_are_refused(args, needle, tmp_path):
    assert_clear_error(invoke("house", *args, "--data-dir", tmp_path / "none"), needle)


def test_house_cv_more_folds_than_houses_is_refused(tmp_path):
    data = write_csvs(tmp_path / "house", n_train=30)
    result = invoke("house", "cv", "--models", "ridge", "--no-verify", "--data-dir", data, "--folds", "31")
    assert_clear_error(result, "folds = 31")


# --- shift -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["label", "--n-target", "100000000"], "n_target = 100000000"),
        (["label", "--seeds", "1000000000000"], "--seeds"),
        (["run", "--seeds", "0"], "--seeds"),
        (["covariate", "--clip", "-1"], "--clip = -1.0"),
        (["covariate", "--components", "-5"], "--components"),
        (["label", "--alpha", "1e309"], "alpha"),
        (["concept", "--n-changed", "11"], "n_changed"),
        (["run", "--out", ""], "--out"),
    ],
)
def test_shift_bad_numbers_are_refused_before_any_work(args, needle, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert_clear_error(invoke("shift", *args, "--data-dir", tmp_path / "none"), needle)
    assert list(cwd.iterdir()) == []


# --- the last line of defence ------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_pointing_at_the_traceback_file(fake_fashion_mnist, tmp_path, monkeypatch):
    import mlplab.train as train_cli  # the command imports fit from here when it runs

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug " + uuid.uuid4().hex)

    monkeypatch.setattr(train_cli, "fit", broken)
    monkeypatch.setattr("mlplab.cli._common.crash_dir", lambda: tmp_path / "logs")
    result = invoke(*train_args(fake_fashion_mnist, tmp_path / "run"))
    assert_clear_error(result, "unexpected ZeroDivisionError in `mlplab train`", "This is a bug", code=1)
    reports = list((tmp_path / "logs").iterdir())
    assert len(reports) == 1 and str(reports[0]) in result.output.replace("\n", "")
    assert "Traceback" in reports[0].read_text() and "broken" in reports[0].read_text()
    debug = runner.invoke(app, ["--debug", *train_args(fake_fashion_mnist, tmp_path / "run2")])
    assert isinstance(debug.exception, ZeroDivisionError)  # --debug lets the traceback through


def test_an_os_error_naming_a_file_is_one_line(fake_fashion_mnist, tmp_path, monkeypatch):
    import mlplab.train as train_cli  # the command imports fit from here when it runs

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/some/where/file.bin")

    monkeypatch.setattr(train_cli, "fit", denied)
    assert_clear_error(
        invoke(*train_args(fake_fashion_mnist, tmp_path / "run")), "/some/where/file.bin", "permission denied"
    )


# --- hypothesis: random strings and extreme numbers to the numeric flags -----------------------

EXTREMES = st.sampled_from(
    [
        "0",
        "-0",
        "-1",
        "1e39",
        "1e308",
        "1e309",
        "-1e309",
        "inf",
        "-inf",
        "nan",
        str(2**63),
        str(2**64),
        str(-(2**63)),
        "1000000000000",
        "0x10",
        "1_000",
        "",
        " ",
        "1,5",
        "१२",
    ]
)
NUMERIC = st.one_of(EXTREMES, st.text(max_size=12), st.floats().map(repr), st.integers().map(str))
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_no_traceback(result) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output  # usage error or mlplab's error; never a crash (1)


@FUZZ
@given(
    flag=st.sampled_from(
        ["--lr", "--weight-decay", "--batch-size", "--epochs", "--seed", "--hidden", "--dropout", "--init"]
    ),
    value=NUMERIC,
)
def test_fuzz_train_flags(flag, value, tmp_path):
    out = tmp_path / uuid.uuid4().hex
    assert_no_traceback(
        runner.invoke(app, ["train", "--data-dir", str(tmp_path / "no-data"), "--out", str(out), flag, value])
    )


@FUZZ
@given(
    flag=st.sampled_from(
        [
            "--lr",
            "--weight-decay",
            "--batch-size",
            "--epochs",
            "--seeds",
            "--first-seed",
            "--max-models",
            "--dropout",
            "--samples",
            "--search-seed",
        ]
    ),
    value=NUMERIC,
)
def test_fuzz_sweep_run_flags(flag, value, tmp_path):
    out = tmp_path / uuid.uuid4().hex
    assert_no_traceback(
        runner.invoke(app, ["sweep", "run", "--data-dir", str(tmp_path / "no-data"), "--out", str(out), flag, value])
    )


@FUZZ
@given(
    args=st.sampled_from(
        [
            ["label", "--alpha"],
            ["label", "--rho"],
            ["label", "--delta"],
            ["label", "--n-target"],
            ["label", "--seeds"],
            ["label", "--source-epochs"],
            ["covariate", "--strength"],
            ["covariate", "--clip"],
            ["covariate", "--components"],
            ["covariate", "--epochs"],
            ["concept", "--n-changed"],
            ["concept", "--n-train"],
            ["run", "--seeds"],
        ]
    ),
    value=NUMERIC,
)
def test_fuzz_shift_flags(args, value, tmp_path):
    out = tmp_path / uuid.uuid4().hex
    assert_no_traceback(
        runner.invoke(app, ["shift", *args, value, "--data-dir", str(tmp_path / "no-data"), "--out", str(out)])
    )


@FUZZ
@given(flag=st.sampled_from(["--folds", "--seed"]), value=NUMERIC)
def test_fuzz_house_cv_flags(flag, value, tmp_path):
    assert_no_traceback(runner.invoke(app, ["house", "cv", "--data-dir", str(tmp_path / "no-data"), flag, value]))


def test_house_submit_writes_under_runs_by_default_not_into_the_current_folder(tmp_path, monkeypatch):
    data = write_csvs(tmp_path / "house")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = invoke("house", "submit", "--model", "ridge", "--no-verify", "--data-dir", data)
    assert result.exit_code == 0, result.output
    assert [p.relative_to(cwd).as_posix() for p in cwd.rglob("*") if p.is_file()] == ["runs/house/submission.csv"]


def test_a_train_that_fails_before_writing_leaves_no_empty_run_folder(tmp_path):
    missing = tmp_path / "no-data"
    fresh = tmp_path / "runs" / "new"
    assert_clear_error(invoke(*train_args(missing, fresh, "--epochs", "1")), "--data-dir", str(missing))
    assert not fresh.exists()  # the folder this command made is gone again, lock file and all
    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("the user's")
    assert_clear_error(invoke(*train_args(missing, kept, "--epochs", "1")), "--data-dir")
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt", "run.lock"]  # a folder it did not make stays


def test_a_sweep_that_fails_before_writing_leaves_no_empty_folder(tmp_path):
    missing, fresh = tmp_path / "no-data", tmp_path / "sweeps" / "new"
    result = invoke("sweep", "run", "--hidden", "8", "--epochs", "1", "--data-dir", missing, "--out", fresh)
    assert_clear_error(result, "--data-dir", str(missing))
    assert not fresh.exists()
