"""The store: resume skips stored results, SIGKILL loses and duplicates nothing, results read back."""

from __future__ import annotations

import fcntl
import json
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mlplab.errors import MlplabError
from mlplab.stats import mean_ci
from mlplab.sweep import SweepSpec, load_histories, load_results, run_sweep, summarize, synthetic_data
from mlplab.sweep.results import markdown_table, sort_summary
from mlplab.sweep.runner import SweepCallback
from mlplab.sweep.store import FILENAME, LOCKNAME, SweepStore, writer_lock

SMALL = SweepSpec(
    base={"hidden": (8,), "epochs": 2, "batch_size": 128, "lr": 0.5},
    grid={"dropout1": (0.0, 0.5), "weight_decay": (0.0, 0.01)},
    seeds=(0, 1, 2),
)


@pytest.fixture(scope="module")
def data():
    return synthetic_data()


def stored(directory: Path) -> list[tuple]:
    conn = sqlite3.connect(directory / FILENAME)
    try:
        return conn.execute(
            "SELECT key, final_test_acc, final_train_loss, history, group_index FROM results ORDER BY key"
        ).fetchall()
    finally:
        conn.close()


class Counter(SweepCallback):
    def __init__(self) -> None:
        self.groups = 0

    def on_group_end(self, group, results) -> None:
        self.groups += 1


def test_rerun_skips_everything_stored(tmp_path, data):
    counter = Counter()
    first = run_sweep(SMALL, data, tmp_path, max_models=2, callbacks=[counter])
    assert (first.planned, first.skipped, first.trained) == (12, 0, 12) and counter.groups == first.groups == 6
    before = stored(tmp_path)
    again = run_sweep(SMALL, data, tmp_path, max_models=2)
    assert (again.skipped, again.trained, again.groups) == (12, 0, 0)
    assert stored(tmp_path) == before
    # a larger spec trains only the new configurations
    bigger = SweepSpec(base=SMALL.base, grid={**SMALL.grid, "weight_decay": (0.0, 0.01, 0.1)}, seeds=SMALL.seeds)
    third = run_sweep(bigger, data, tmp_path, max_models=2)
    assert (third.skipped, third.trained) == (12, 6)
    with SweepStore(tmp_path, create=False) as store:
        assert len(store.keys()) == 18 and len(store.runs()) == 3 and store.runs()[-1]["trained"] == 6


def test_store_refuses_other_data_and_a_second_writer(tmp_path, data):
    run_sweep(SMALL, data, tmp_path, max_models=12)
    with pytest.raises(MlplabError, match="other data"):
        run_sweep(SMALL, synthetic_data(n_train=1024), tmp_path)
    # the writer lock is re-entrant within a process, so hold it as another process would: a flock
    # on a separate open file description of sweep.lock
    with open(tmp_path / LOCKNAME, "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(MlplabError, match="another `mlplab sweep run`"):
            run_sweep(SMALL, data, tmp_path)
    with writer_lock(tmp_path):  # re-entrant: the caller may hold it while run_sweep takes it again
        assert run_sweep(SMALL, data, tmp_path).trained == 0
    with pytest.raises(MlplabError, match="holds no sweep"):
        SweepStore(tmp_path / "nothing", create=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / FILENAME).write_bytes(b"not a database, just some bytes" * 10)
    with pytest.raises(MlplabError, match="not a readable sweep database"):
        SweepStore(tmp_path / "junk", create=False)


def test_sigkill_loses_nothing_and_duplicates_nothing(tmp_path, data, sigkill_sweep_when_stored):
    out = tmp_path / "killed"
    args = [
        "run",
        "--data",
        "synthetic",
        "--hidden",
        "64,64",
        "--epochs",
        "12",
        "--batch-size",
        "64",
        "--lr",
        "0.3",
        "--grid",
        "dropout1=0:0.9:0.1",
        "--grid",
        "weight_decay=0,0.001",
        "--seeds",
        "1",
        "--max-models",
        "2",
        "--out",
        str(out),
    ]
    returncode = sigkill_sweep_when_stored(args, out, lambda d: len(stored(d)))
    assert returncode == -signal.SIGKILL, "the sweep finished before it could be killed: make it longer"
    after_kill = stored(out)
    print(f"killed with {len(after_kill)} of 20 results stored")
    assert 2 <= len(after_kill) < 20 and len(after_kill) % 2 == 0  # whole groups of 2, never half of one

    from typer.testing import CliRunner

    from mlplab.cli import app

    result = CliRunner().invoke(app, ["sweep", *args])
    assert result.exit_code == 0, result.output
    assert f"{len(after_kill)} stored result(s) skipped" in result.output
    final = stored(out)
    keys = [row[0] for row in final]
    assert len(final) == 20 and len(set(keys)) == 20  # every configuration exactly once
    assert set(after_kill) <= set(final)  # the stored results are unchanged, byte for byte

    # and the resumed sweep holds what an uninterrupted one computes (up to float32 rounding that
    # may differ between processes; 0.005 is 2 of the 512 test images)
    straight = tmp_path / "straight"
    assert CliRunner().invoke(app, ["sweep", *args[:-1], str(straight)]).exit_code == 0
    for a, b in zip(final, stored(straight)):
        assert a[0] == b[0] and a[1] == pytest.approx(b[1], abs=0.005) and a[2] == pytest.approx(b[2], abs=1e-4)


def test_results_frame_and_summary(tmp_path, data):
    run_sweep(SMALL, data, tmp_path, max_models=4)
    frame = load_results(tmp_path)
    assert len(frame) == 12 and frame["status"].eq("ok").all()
    assert list(frame.columns[:6]) == ["hidden", "activation", "init", "dropout1", "lr", "weight_decay"]
    assert {"seed", "final_test_acc", "final_train_loss", "status", "seconds", "epochs_run"} <= set(frame.columns)
    assert (frame["epochs_run"] == 2).all() and frame["seconds"].gt(0).all()
    summary = summarize(frame)
    assert len(summary) == 4 and (summary["n"] == 3).all() and (summary["diverged"] == 0).all()
    for _, row in summary.iterrows():
        cell = frame[(frame["dropout1"] == row["dropout1"]) & (frame["weight_decay"] == row["weight_decay"])]
        ci = mean_ci(cell["final_test_acc"])
        assert row["final_test_acc_mean"] == pytest.approx(np.mean(cell["final_test_acc"]))
        assert row["final_test_acc_ci"] == pytest.approx(ci.half_width)
    ranked = sort_summary(summary, "final_test_acc")
    assert ranked["final_test_acc_mean"].is_monotonic_decreasing
    assert sort_summary(summary, "final_train_loss")["final_train_loss_mean"].is_monotonic_increasing
    table = markdown_table(ranked)
    assert (
        table.splitlines()[0]
        == "| dropout1 | weight_decay | seeds | diverged | failed | final_test_acc | final_train_loss |"
    )
    assert "±" in table and len(table.splitlines()) == 6
    assert "†" not in table  # 3 seeds each: no footnote about too few seeds
    history = load_histories(tmp_path)
    assert len(history) == 24 and set(history["epoch"]) == {1, 2}
    row = stored(tmp_path)[0]
    assert json.loads(row[3])[-1]["test_acc"] == pytest.approx(row[1])


def test_a_diverged_model_is_stored_with_its_status(tmp_path, data):
    spec = SweepSpec(base={"hidden": (8,), "epochs": 3, "batch_size": 64, "init": "normal:1"}, grid={"lr": (0.1, 1e4)})
    run_sweep(spec, data, tmp_path)
    frame = load_results(tmp_path).sort_values("lr")
    assert frame["status"].tolist() == ["ok", "diverged"]
    assert np.isnan(frame["final_train_loss"].iloc[1])  # non-finite values are stored as NULL
    assert summarize(frame)["diverged"].tolist() == [0, 1]


def test_a_version_1_store_is_upgraded_in_place_and_keeps_its_rows(tmp_path):
    import sqlite3

    from mlplab.sweep.store import SCHEMA_VERSION, SweepStore

    folder = tmp_path / "old"
    folder.mkdir()
    old = sqlite3.connect(folder / "sweep.sqlite")  # the version-1 schema, as earlier mlplab wrote it
    old.executescript("""
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE results (key TEXT PRIMARY KEY, config TEXT NOT NULL, seed INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'diverged')), epochs INTEGER NOT NULL,
            final_train_loss REAL, final_train_acc REAL, final_test_loss REAL, final_test_acc REAL,
            seconds REAL NOT NULL, history TEXT NOT NULL, group_index INTEGER NOT NULL, device TEXT NOT NULL,
            created TEXT NOT NULL);
        CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, spec TEXT NOT NULL, device TEXT NOT NULL,
            max_models INTEGER NOT NULL, planned INTEGER NOT NULL, skipped INTEGER NOT NULL, trained INTEGER,
            started TEXT NOT NULL, finished TEXT);
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO results VALUES ('k1', '{}', 0, 'ok', 1, 0.5, 0.8, 0.6, 0.7, 1.0, '[]', 0, 'cpu', 'then');
    """)
    old.commit()
    old.close()
    with SweepStore(folder, create=False) as store:  # read as it is
        assert [r["key"] for r in store.rows()] == ["k1"]
    with SweepStore(folder) as store:  # a writer upgrades it
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
        with store.conn:
            store.conn.execute(
                "INSERT INTO results VALUES ('k2', '{}', 1, 'failed: at chance', 1, 2.3, 0.1, 2.3, "
                "0.1, 1.0, '[]', 1, 'cpu', 'now')"
            )
        rows = store.rows()
    assert [(r["key"], r["status"], r["final_test_acc"]) for r in rows] == [
        ("k1", "ok", 0.7),
        ("k2", "failed: at chance", 0.1),
    ]


def test_run_sweep_with_progress_shows_a_line_per_group(tmp_path, capsys):
    from mlplab.sweep import SweepSpec, run_sweep, synthetic_data

    spec = SweepSpec(base={"hidden": (8,), "epochs": 1}, grid={"lr": (0.1, 0.5)}, seeds=(0, 1))
    run_sweep(spec, synthetic_data(), tmp_path / "quiet")
    assert capsys.readouterr().out == ""
    run_sweep(spec, synthetic_data(), tmp_path / "loud", progress=True)
    shown = capsys.readouterr().out
    assert "group 1/2" in shown and "group 2/2" in shown


def test_a_group_delivered_twice_is_stored_once(tmp_path, data):
    # what a retried Ray task that had already returned would deliver: add_group skips stored keys
    from mlplab.sweep import train_group

    trials = SMALL.trials(n_inputs=32)[:4]
    results = train_group(trials, data)
    with SweepStore(tmp_path) as store:
        assert store.add_group(results[:2], 0, "cpu") == 2
        before = stored(tmp_path)
        assert store.add_group(results[:2], 0, "cpu") == 0  # again: no duplicate, no error
        assert stored(tmp_path) == before
        assert store.add_group(results, 0, "cpu") == 2  # overlapping: only the new ones
        assert len(store.rows()) == 4 and len(store.keys()) == 4
