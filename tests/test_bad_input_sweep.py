"""Hostile input to ``mlplab sweep run|show|plot``: every case ends in one ``error:`` line (exit 2,
no traceback) naming the flag or file, and nothing already stored is lost or overwritten.

Sections: two writers on one folder; paths (URI characters, links, empty paths); damaged stores;
unwritable outputs and a full disk; numbers beyond the machine; silently wrong input; the rest.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.errors import MlplabError
from mlplab.sweep import SweepSpec, load_results, run_sweep, synthetic_data
from mlplab.sweep.store import FILENAME, LOCKNAME, SweepStore

runner = CliRunner()
SRC = Path(__file__).resolve().parents[1] / "src"
# one tiny model per configuration: a group trains in well under a second on synthetic data
RUN = ["sweep", "run", "--data", "synthetic", "--hidden", "8", "--epochs", "1", "--batch-size", "512"]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root ignores file permissions: simulate them


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def assert_refused(result, *words: str) -> None:
    """Exit 2 with mlplab's one-line error (not a traceback, not the 'unexpected error' of a bug)."""
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output and "unexpected" not in result.output
    for word in words:
        assert word in result.output, (word, result.output)


def results_of(directory: Path) -> list[tuple]:
    """Every stored row but its timing columns, ordered by key."""
    conn = sqlite3.connect(directory / FILENAME)
    try:
        return conn.execute(
            "SELECT key, config, seed, status, final_test_acc, final_train_loss, history, group_index "
            "FROM results ORDER BY key"
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A real sweep of 4 models (lr 0.1, 0.2 x seeds 0, 1)."""
    out = tmp_path_factory.mktemp("sweep") / "grid"
    result = invoke(*RUN, "--grid", "lr=0.1,0.2", "--seeds", 2, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def big_store(sweep_dir, tmp_path_factory) -> bytes:
    """The bytes of a sweep.sqlite with 300 results (several dozen pages), copies of real ones."""
    folder = tmp_path_factory.mktemp("big")
    shutil.copy(sweep_dir / FILENAME, folder / FILENAME)
    conn = sqlite3.connect(folder / FILENAME)
    with conn:
        for i in range(74):
            conn.execute(
                "INSERT INTO results SELECT key || ?, config, seed, status, epochs, final_train_loss, "
                "final_train_acc, final_test_loss, final_test_acc, seconds, history, group_index, device, "
                "created FROM results WHERE length(key) = 24",
                (f"-{i}",),
            )
    assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 300
    assert conn.execute("PRAGMA page_count").fetchone()[0] >= 20
    conn.close()
    return (folder / FILENAME).read_bytes()


# --- 1. two writers on one folder -------------------------------------------------------------

# The first sweep waits inside its first group until the test opens a gate, so the second surely
# starts while the first holds the lock (and has already done work).
GATED = """
import sys, time
from pathlib import Path
import mlplab.sweep.runner as runner
gate = Path(sys.argv.pop(1))
original = runner.train_group
def train_group(*args, **kwargs):
    gate.with_name("reached").touch()
    while not gate.exists():
        time.sleep(0.01)
    return original(*args, **kwargs)
runner.train_group = train_group
from mlplab.cli import main
main()
"""


def test_a_second_sweep_on_the_folder_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    args = [*RUN, "--grid", "lr=0.1,0.2,0.3", "--seeds", "2", "--max-models", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    gate = tmp_path / "gate"
    first = subprocess.Popen(
        [sys.executable, "-c", GATED, str(gate), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "reached").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first sweep never reached its first group"
            time.sleep(0.02)
        second = subprocess.run(
            [sys.executable, "-m", "mlplab", *args], env=env, capture_output=True, text=True, timeout=60
        )
        gate.touch()
        stdout, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert second.returncode == 2 and "another `mlplab sweep run`" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr and "sweep:" not in second.stdout  # refused before it began
    conn = sqlite3.connect(out / FILENAME)
    counts = conn.execute("SELECT config, seed, COUNT(*) FROM results GROUP BY config, seed").fetchall()
    conn.close()
    assert len(counts) == 6 and {c for *_, c in counts} == {1}  # every (config, seed) exactly once


def test_run_sweep_refuses_a_folder_another_process_writes(tmp_path):
    spec = SweepSpec(base={"hidden": (8,), "epochs": 1})
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / LOCKNAME, "a+") as other:  # a flock on another open file: as another process holds it
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(MlplabError, match="another"):
            run_sweep(spec, synthetic_data(), tmp_path)
    assert not (tmp_path / FILENAME).exists()  # refused before the store was even opened


# --- 2. paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a#b", "a?b", "a%20b", "100%"])
def test_folder_names_with_uri_characters(tmp_path, name):
    out = tmp_path / name
    assert invoke(*RUN, "--out", out).exit_code == 0
    before = sorted(os.listdir(tmp_path))
    result = invoke("sweep", "show", out)
    assert result.exit_code == 0 and "1 model(s)" in result.output, result.output
    result = invoke("sweep", "plot", out, "--x", "lr", "--out", tmp_path / name / "p.png")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == before  # no stray database beside it ("a" for "a#b")
    assert load_results(out)["lr"].tolist() == [0.1]


def test_a_linked_store_is_not_followed(tmp_path, sweep_dir):
    original = (sweep_dir / FILENAME).read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    (other / FILENAME).symlink_to(sweep_dir / FILENAME)
    assert_refused(invoke(*RUN, "--grid", "lr=0.1,0.2", "--seeds", 2, "--out", other), "symbolic link", FILENAME)
    assert_refused(invoke("sweep", "show", other), "symbolic link", FILENAME)
    assert_refused(invoke("sweep", "plot", other, "--out", tmp_path / "p.png"), "symbolic link")
    assert (sweep_dir / FILENAME).read_bytes() == original


def test_a_linked_lock_is_not_followed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCKNAME).symlink_to(tmp_path / "elsewhere.lock")
    assert_refused(invoke(*RUN, "--out", out), "symbolic link", LOCKNAME)
    assert not (tmp_path / "elsewhere.lock").exists() and not (out / FILENAME).exists()


def test_empty_paths_are_refused(tmp_path, monkeypatch, sweep_dir):
    monkeypatch.chdir(tmp_path)
    assert_refused(invoke(*RUN, "--out", ""), "--out", "empty")
    assert_refused(invoke("sweep", "show", ""), "empty")
    assert_refused(invoke("sweep", "plot", sweep_dir, "--out", ""), "--out", "empty")
    assert os.listdir(tmp_path) == []  # nothing written into the current folder
    with pytest.raises(MlplabError, match="empty"):
        run_sweep(SweepSpec(base={"hidden": (8,), "epochs": 1}), synthetic_data(), "")


# --- 3. damaged stores ------------------------------------------------------------------------


def _damage(data: bytes, how: str) -> bytes:
    page = int.from_bytes(data[16:18], "big")  # the page size, from the header
    if how == "garbage":
        return bytes((i * 7919) % 251 for i in range(len(data)))
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "zeroed page":
        middle = len(data) // page // 2
        return data[: middle * page] + bytes(page) + data[(middle + 1) * page :]
    assert how == "bad header"
    return b"SQLite format 9\0" + data[16:]


@pytest.mark.parametrize("how", ["garbage", "truncated", "zeroed page", "bad header"])
@pytest.mark.parametrize("command", ["run", "show", "plot"])
def test_a_damaged_store_is_refused_and_left_as_it_is(tmp_path, big_store, how, command):
    out = tmp_path / "damaged"
    out.mkdir()
    damaged = _damage(big_store, how)
    (out / FILENAME).write_bytes(damaged)
    args = {
        "run": [*RUN, "--grid", "lr=0.1,0.2", "--seeds", 2, "--out", out],
        "show": ["sweep", "show", out],
        "plot": ["sweep", "plot", out, "--out", tmp_path / "p.png"],
    }[command]
    assert_refused(invoke(*args), str(out / FILENAME), "damaged", "Fix:")
    assert (out / FILENAME).read_bytes() == damaged
    assert sorted(os.listdir(out)) == sorted([FILENAME, *([LOCKNAME] if command == "run" else [])])


def test_open_checks_the_whole_file_in_milliseconds(tmp_path, big_store):
    (tmp_path / FILENAME).write_bytes(big_store)
    start = time.perf_counter()
    SweepStore(tmp_path, create=False).close()  # PRAGMA quick_check over 300 results
    assert time.perf_counter() - start < 0.5


def test_another_programs_database_is_not_written_to(tmp_path):
    conn = sqlite3.connect(tmp_path / FILENAME)
    conn.execute("CREATE TABLE photos (name TEXT)")
    conn.commit()
    conn.close()
    before = (tmp_path / FILENAME).read_bytes()
    assert_refused(invoke(*RUN, "--out", tmp_path), "not a sweep's database", "photos")
    assert_refused(invoke("sweep", "show", tmp_path), "not a sweep's database")
    assert (tmp_path / FILENAME).read_bytes() == before


def test_a_row_edited_into_nonsense_is_reported(tmp_path, sweep_dir):
    shutil.copy(sweep_dir / FILENAME, tmp_path / FILENAME)
    conn = sqlite3.connect(tmp_path / FILENAME)
    with conn:
        conn.execute("UPDATE results SET config = '{not json' WHERE rowid = 1")
    conn.close()
    assert_refused(invoke("sweep", "show", tmp_path), FILENAME, "damaged", "config")


# --- 4. unwritable outputs and a full disk ----------------------------------------------------


def _deny_writes(monkeypatch, folder: Path, err: int = errno.EACCES) -> None:
    """Writes into ``folder`` fail as in a read-only folder: chmod where it works, else os.open fails."""
    if not AS_ROOT:
        folder.chmod(0o555)
        return
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if Path(path).parent == folder and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(err, os.strerror(err), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.parametrize("err", [errno.EACCES, errno.EROFS])
def test_a_read_only_sweep_folder(tmp_path, monkeypatch, err):
    out = tmp_path / "ro"
    out.mkdir()
    _deny_writes(monkeypatch, out, err)
    try:
        assert_refused(invoke(*RUN, "--out", out), str(out), "Fix:")
    finally:
        out.chmod(0o755)
    assert os.listdir(out) == []


def test_plot_into_a_read_only_folder(tmp_path, monkeypatch, sweep_dir):
    target = tmp_path / "figures"
    target.mkdir()
    _deny_writes(monkeypatch, target)
    try:
        assert_refused(invoke("sweep", "plot", sweep_dir, "--out", target / "p.png"), str(target / "p.png"), "Fix:")
    finally:
        target.chmod(0o755)
    assert os.listdir(target) == []


def test_outputs_that_are_the_wrong_kind_of_thing(tmp_path, sweep_dir):
    (tmp_path / "file").write_text("mine")
    assert_refused(invoke(*RUN, "--out", tmp_path / "file"), str(tmp_path / "file"), "not a folder")
    assert (tmp_path / "file").read_text() == "mine"
    assert_refused(invoke("sweep", "plot", sweep_dir, "--out", tmp_path / "x.txt"), "--out", "x.txt", ".png")
    assert not (tmp_path / "x.txt").exists()
    # an existing folder as --out: the figure goes into it as METRIC.png
    (tmp_path / "figs").mkdir()
    result = invoke("sweep", "plot", sweep_dir, "--out", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "figs" / "final_test_acc.png").read_bytes()[:4] == b"\x89PNG"


def test_a_full_disk_keeps_the_stored_groups_and_the_rerun_resumes(tmp_path, monkeypatch):
    args = [*RUN, "--grid", "lr=0.1,0.2,0.3", "--max-models", 1]
    straight = tmp_path / "straight"
    assert invoke(*args, "--out", straight).exit_code == 0
    original = SweepStore.add_group
    calls = []

    def full_on_the_second(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database or disk is full")
        return original(self, *a, **kw)

    out = tmp_path / "full"
    monkeypatch.setattr(SweepStore, "add_group", full_on_the_second)
    assert_refused(invoke(*args, "--out", out), str(out / FILENAME), "no space", "Fix:")
    monkeypatch.setattr(SweepStore, "add_group", original)
    first_group = results_of(out)
    assert len(first_group) == 1
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0 and "1 stored result(s) skipped" in result.output, result.output
    final = results_of(out)
    assert set(first_group) <= set(final)  # the committed group is untouched
    expected = results_of(straight)
    assert [r[:4] for r in final] == [r[:4] for r in expected]  # key, config, seed, status
    for a, b in zip(final, expected):
        assert a[4] == pytest.approx(b[4], abs=0.005) and a[5] == pytest.approx(b[5], abs=1e-4)


# --- 5. numbers beyond the machine ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--first-seed", 2**63], ["--first-seed", str(2**63)]),
        (["--first-seed", 2**63 - 1, "--seeds", 2], ["--first-seed", "last"]),
        (["--first-seed", -1], ["--first-seed"]),
        (["--seeds", 10**12], ["--seeds", "1000000000000", "100,000"]),
        (["--max-models", 0], ["--max-models"]),
        (["--max-models", -3], ["--max-models"]),
        (["--max-models", 10**30], ["--max-models"]),
        (["--weight-decay", "1e39"], ["weight_decay", "1e+39"]),
        (["--lr", "1e39"], ["lr", "1e+39"]),
        (["--lr", "nan"], ["lr", "nan"]),
        (["--random", "lr=loguniform:0.001:1e39"], ["lr", "1e39"]),
        (["--hidden", "1000000000"], ["32-1000000000-10", "needs at least", "TiB", "--hidden"]),
        (["--grid", "lr=0.1:1e300:1e-300"], ["lr", "at most"]),
        (["--grid", "epochs=1:1000000:1"], ["epochs", "at most"]),
        (["--samples", 10**9, "--random", "lr=0.1,0.2"], ["--samples"]),
        (["--search-seed", 2**64, "--random", "lr=0.1,0.2"], ["--search-seed"]),
    ],
)
def test_numbers_beyond_the_machine_are_refused_before_any_work(tmp_path, args, words):
    out = tmp_path / "out"
    start = time.perf_counter()
    assert_refused(invoke(*RUN, *args, "--out", out), *words)
    assert time.perf_counter() - start < 10  # nothing was expanded into a huge list
    assert not out.exists()  # refused before the folder, the lock or the store


def test_huge_learning_rates_that_fit_float32_still_train_and_are_marked_diverged(tmp_path):
    result = invoke(*RUN, "--lr", "1e30", "--init", "normal:1", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert load_results(tmp_path)["status"].tolist() == ["diverged"]


# --- 6. silently wrong ------------------------------------------------------------------------


def test_first_seed_alone_is_honoured(tmp_path):
    assert invoke(*RUN, "--first-seed", 7, "--out", tmp_path / "a").exit_code == 0
    assert load_results(tmp_path / "a")["seed"].tolist() == [7]
    config = tmp_path / "two.toml"
    config.write_text("seeds = 2\n")
    assert invoke(*RUN, "--config", config, "--first-seed", 5, "--out", tmp_path / "b").exit_code == 0
    assert sorted(load_results(tmp_path / "b")["seed"]) == [5, 6]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('seeds = [0, 1]\nfirst_seed = "x"\n', ["first_seed", "'x'"]),
        ('first_seed = "x"\n', ["first_seed", "'x'"]),
        ("seeds = [0, 1]\nfirst_seed = 3\n", ["first_seed", "list"]),
        ("seeds = 1000000000000\n", ["seeds", "1000000000000"]),
        ("seeds = [9223372036854775807, -1]\n", ["seeds", "-1"]),
        ('samples = "3"\n[random]\nlr = "0.1,0.2"\n', ["samples", "'3'"]),
        ("search_seed = 1.5\n", ["search_seed", "1.5"]),
        ("seed = 3\n", ["seed", "allowed keys"]),
        ("[base]\nlr = 1e39\n", ["lr", "1e+39"]),
        ("[grid]\nlearning_rate = [0.1]\n", ["learning_rate"]),
        ("[grid]\nlr = []\n", ["lr", "at least one value"]),
        ("[base]\nlr = nan\n", ["lr", "nan"]),
        ("grid = 3\n", ["grid", "table"]),
    ],
)
def test_toml_keys_of_the_wrong_type_or_unknown_are_errors(tmp_path, text, words):
    config = tmp_path / "sweep.toml"
    config.write_text(text)
    assert_refused(invoke(*RUN, "--config", config, "--out", tmp_path / "out"), str(config), *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["not utf-8", "folder", "missing", "device"])
def test_a_config_that_is_not_a_toml_file(tmp_path, kind):
    config = {
        "not utf-8": tmp_path / "latin1.toml",
        "folder": tmp_path,
        "missing": tmp_path / "nope.toml",
        "device": Path("/dev/zero"),
    }[kind]
    if kind == "not utf-8":
        config.write_bytes("[base]\nactivation = 'relu' # café\n".encode("latin-1"))
    assert_refused(invoke(*RUN, "--config", config, "--out", tmp_path / "out"), "--config", str(config))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--grid", "lr="], ["--grid lr", "at least one value"]),
        (["--grid", "lr=0.1", "--random", "lr=uniform:0.1:1"], ["--random", "already given by --grid lr=0.1"]),
        (["--grid", "lr=0.1", "--grid", "lr=0.2"], ["--grid", "already given"]),
        (["--grid", "wd=0", "--random", "weight_decay=0,0.1"], ["--random", "weight_decay"]),
        (["--lr", "0.5", "--grid", "lr=0.1,0.2"], ["--lr", "also the axis"]),
        (["--samples", 3], ["--samples", "random"]),
        (["--search-seed", 3], ["--search-seed", "random"]),
        (["--device", "nonsense"], ["--device", "nonsense"]),
        (["--device", "cuda:99999"], ["device"]),
        (["--data", "imagenet"], ["--data", "imagenet"]),
        (["--dropout", "1"], ["dropout", "[0, 1)"]),
        (["--random", "dropout=uniform:0:1.5"], ["dropout", "uniform:0:1.5"]),
        (["--batch-size", 0], ["batch_size"]),
    ],
)
def test_flags_that_would_be_silently_wrong(tmp_path, args, words):
    out = tmp_path / "out"
    assert_refused(invoke(*RUN, *args, "--out", out), *words)
    assert not out.exists()


def test_show_and_plot_flags(sweep_dir, tmp_path):
    for top in (-1, 0):
        assert_refused(invoke("sweep", "show", sweep_dir, "--top", top), "--top", str(top))
    assert_refused(invoke("sweep", "show", sweep_dir, "--sort", "speed"), "--sort", "speed")
    assert_refused(
        invoke("sweep", "plot", sweep_dir, "--x", "lr", "--y", "lr", "--out", tmp_path / "p.png"), "--y", "differ"
    )
    assert_refused(invoke("sweep", "plot", sweep_dir, "--metric", "f1", "--out", tmp_path / "p.png"), "--metric", "f1")
    assert list(tmp_path.iterdir()) == []


# --- 7. the rest ------------------------------------------------------------------------------


def test_a_heatmap_over_models_of_different_depth(tmp_path):
    """dropout2 is NaN for one-layer models: the cell is drawn under '-', not a ValueError."""
    assert invoke(*RUN, "--out", tmp_path).exit_code == 0
    assert invoke(*RUN[:4], "--hidden", "8,8", *RUN[6:], "--grid", "dropout2=0,0.5", "--out", tmp_path).exit_code == 0
    result = invoke("sweep", "plot", tmp_path, "--x", "dropout2", "--y", "hidden", "--out", tmp_path / "h.png")
    assert result.exit_code == 0, result.output


def test_a_rerun_removes_temp_files_of_a_killed_plot(tmp_path):
    import subprocess

    from mlplab.sweep import SweepSpec, run_sweep, synthetic_data

    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "sweep"
    out.mkdir()
    stale, live = out / f".final_test_acc.tmp-{dead.pid}-x1.png", out / f".other.tmp-{os.getpid()}-x2.png"
    stale.write_bytes(b"half a png")
    live.write_bytes(b"being written")
    run_sweep(SweepSpec(base={"hidden": (8,), "epochs": 1}), synthetic_data(), out)
    assert not stale.exists() and live.exists()
