"""The Ray backend (``run_sweep(..., backend="ray")``, ``sweep run --backend ray``) on a local Ray instance.

One Ray instance (2 CPUs, an 80 MB object store, no dashboard) is started for the whole session
by the ``ray_cluster`` fixture and shared by these tests; ``run_sweep`` uses a Ray that is already
initialized as it is. The first Ray test runs before it, on the instance ``run_sweep`` starts (and
stops) by itself, as ``mlplab sweep run --backend ray`` does without ``--address``. Faults are injected through the test-only ``MLPLAB_RAY_TEST_FAULT`` (see
``mlplab.sweep.ray_backend``). Ray is an optional extra: ``scripts/test.sh`` (what CI runs) installs
it and sets ``MLPLAB_REQUIRE_RAY=1``, so there a missing Ray fails these tests instead of skipping
them; the tests that need no Ray (its absence, argument checks) run everywhere.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.errors import ConfigError, MlplabError
from mlplab.sweep import SweepSpec, run_sweep, synthetic_data
from mlplab.sweep.batched import GroupCallback
from mlplab.sweep.ray_backend import FAULT_ENV, GroupsFailedError, task_resources
from mlplab.sweep.runner import SweepCallback
from mlplab.sweep.store import FILENAME

try:
    import ray
except ImportError:  # pragma: no cover - CI installs the extra
    if os.environ.get("MLPLAB_REQUIRE_RAY"):
        raise
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason='Ray is not installed: pip install -e ".[ray]"')

SRC = Path(__file__).resolve().parents[1] / "src"
runner = CliRunner()
# 4 configurations x 3 seeds, in groups of 2: 6 groups (6 Ray tasks) of seconds' work
SPEC = SweepSpec(
    base={"hidden": (8,), "epochs": 2, "batch_size": 128, "lr": 0.5},
    grid={"dropout1": (0.0, 0.5), "weight_decay": (0.0, 0.01)},
    seeds=(0, 1, 2),
)
TOLERANCE = 1e-6  # same code, same CPU, one thread each: measured differences are exactly 0
COLUMNS = (
    "key, config, seed, status, epochs, final_train_loss, final_train_acc, final_test_loss, final_test_acc, "
    "history, group_index, device"
)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray instance for the session; its address (GCS), for drivers in other processes."""
    if ray is None:
        pytest.skip('Ray is not installed: pip install -e ".[ray]"')
    environ = dict(os.environ)
    ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    os.environ.clear()  # ray.init sets PYTHONBREAKPOINT and RAY_* here; the tests after this module must not see them
    os.environ.update(environ)


@pytest.fixture(scope="module")
def data():
    return synthetic_data()


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory, data):
    """What the local backend stores for SPEC."""
    out = tmp_path_factory.mktemp("local") / "sweep"
    run_sweep(SPEC, data, out, max_models=2)
    return rows(out)


def rows(directory: Path) -> list[tuple]:
    """The stored results by key, each epoch's wall time left out of the history (it differs)."""
    conn = sqlite3.connect(directory / FILENAME)
    try:
        found = conn.execute(f"SELECT {COLUMNS} FROM results ORDER BY key").fetchall()
    finally:
        conn.close()
    out = []
    for row in found:
        history = [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in json.loads(row[9])]
        out.append((*row[:9], history, *row[10:]))
    return out


def count_keys(directory: Path) -> tuple[int, int]:
    """(rows, distinct keys) in the store."""
    conn = sqlite3.connect(directory / FILENAME)
    try:
        return conn.execute("SELECT count(*), count(DISTINCT key) FROM results").fetchone()
    finally:
        conn.close()


def assert_same(a: list[tuple], b: list[tuple]) -> None:
    """Same keys, configurations, statuses and group indices; metrics and histories within TOLERANCE."""
    assert [r[0] for r in a] == [r[0] for r in b]
    for x, y in zip(a, b):
        assert x[1:5] == y[1:5] and x[10:] == y[10:], x[0]
        assert x[5:9] == pytest.approx(y[5:9], abs=TOLERANCE, nan_ok=True), x[0]
        for ex, ey in zip(x[9], y[9], strict=True):
            assert ex.keys() == ey.keys()
            for k in ex:
                assert ex[k] == pytest.approx(ey[k], abs=TOLERANCE, nan_ok=True), (x[0], k)


class Recorder(SweepCallback):
    def __init__(self) -> None:
        self.begun: list[int] = []
        self.ended: list[int] = []

    def on_sweep_begin(self, groups, n_skipped) -> None:
        self.begun.append(len(groups))

    def on_group_end(self, group, results) -> None:
        self.ended.append(group.index)


@needs_ray
def test_a_local_instance_started_by_run_sweep_is_shut_down_and_leaves_no_environment(tmp_path, data):
    if ray.is_initialized():  # the session's instance: this test needs Ray not running in this process
        pytest.skip("it runs before ray_cluster starts: the first Ray test of the module")
    before = dict(os.environ)
    report = run_sweep(SPEC, data, tmp_path, max_models=6, backend="ray")
    assert report.trained == 12 and not ray.is_initialized()
    assert {k: v for k, v in os.environ.items() if before.get(k) != v} == {}


@needs_ray
def test_ray_stores_what_the_local_backend_stores(tmp_path, data, local_rows, ray_cluster, monkeypatch):
    from mlplab.live import LiveSweepPlot

    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(type(value).__name__) or real_put(value, **kw))
    recorder, live = Recorder(), LiveSweepPlot(show=False)
    report = run_sweep(SPEC, data, tmp_path, max_models=2, backend="ray", callbacks=[recorder, live])
    assert (report.planned, report.skipped, report.trained, report.groups, report.max_models) == (12, 0, 12, 6, 2)
    assert puts == ["Data"]  # the data went to the object store once, for 6 tasks
    assert recorder.begun == [6] and sorted(recorder.ended) == [0, 1, 2, 3, 4, 5]  # on the driver
    assert len(live.curves) == 4 and all(len(c) == 2 for s in live.curves.values() for c in s.values())
    assert_same(rows(tmp_path), local_rows)
    assert count_keys(tmp_path) == (12, 12)
    # a rerun of the finished sweep trains nothing (and starts no task)
    again = run_sweep(SPEC, data, tmp_path, max_models=2, backend="ray")
    assert (again.skipped, again.trained, again.groups) == (12, 0, 0)
    assert_same(rows(tmp_path), local_rows)


@needs_ray
def test_ray_tasks_take_the_step_they_are_given(tmp_path, data, local_rows, ray_cluster):
    """``fused=False`` reaches the workers: their results are the local autograd step's, to the bit,
    and not the local default's (the fused step, which rounds differently)."""
    run_sweep(SPEC, data, tmp_path / "local", max_models=2, fused=False)
    run_sweep(SPEC, data, tmp_path / "ray", max_models=2, backend="ray", fused=False)
    autograd = rows(tmp_path / "local")
    assert rows(tmp_path / "ray") == autograd
    assert autograd != local_rows


@needs_ray
def test_a_worker_killed_mid_task_is_retried_and_nothing_is_stored_twice(
    tmp_path, data, local_rows, ray_cluster, monkeypatch
):
    marker = tmp_path / "killed.pid"
    monkeypatch.setenv(FAULT_ENV, f"kill:1:{marker}")  # group 1's worker SIGKILLs itself after epoch 1, once
    report = run_sweep(SPEC, data, tmp_path / "sweep", max_models=2, backend="ray")
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker died mid-task...
    assert (report.trained, report.groups) == (12, 6)  # ...and Ray ran its task again
    assert count_keys(tmp_path / "sweep") == (12, 12)  # every (configuration, seed) exactly once
    assert_same(rows(tmp_path / "sweep"), local_rows)


@needs_ray
def test_a_task_that_raises_is_reported_and_the_others_are_stored(tmp_path, data, local_rows, ray_cluster, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "raise:2")
    with pytest.raises(GroupsFailedError) as info:
        run_sweep(SPEC, data, tmp_path, max_models=2, backend="ray")
    error = info.value
    assert [f.group.index for f in error.failures] == [2]
    assert "RuntimeError" in error.failures[0].error and "group 2 raised on purpose" in error.failures[0].error
    message = str(error)
    assert "1 of 6 group(s) failed" in message and "group 2 (2 x 32-8-10" in message and "rerun" in message
    assert (error.report.trained, error.report.groups) == (10, 5)
    stored = rows(tmp_path)
    assert len(stored) == 10 and 2 not in {r[-2] for r in stored}
    # the rerun trains the failed group only
    monkeypatch.delenv(FAULT_ENV)
    report = run_sweep(SPEC, data, tmp_path, max_models=2, backend="ray")
    assert (report.skipped, report.trained, report.groups) == (10, 2, 1)
    assert count_keys(tmp_path) == (12, 12)
    assert_same(rows(tmp_path), local_rows)


# 20 models in 10 groups of 2 (about 0.2 s each): the driver is killed when the first is stored
KILL_FLAGS = ["--data", "synthetic", "--hidden", "64,64", "--epochs", "12", "--batch-size", "64", "--lr", "0.3",
              "--grid", "dropout1=0:0.9:0.1", "--grid", "weight_decay=0,0.001", "--seeds", "1", "--max-models", "2"]  # fmt: skip


@needs_ray
def test_a_killed_driver_resumes(tmp_path, ray_cluster, sigkill_sweep_when_stored):
    out = tmp_path / "killed"
    args = ["run", *KILL_FLAGS, "--backend", "ray", "--address", ray_cluster, "--out", str(out)]
    returncode = sigkill_sweep_when_stored(args, out, lambda d: count_keys(d)[0], timeout=90, what="the driver")
    assert returncode == -signal.SIGKILL, "the sweep finished before its driver could be killed: make it longer"
    after_kill = rows(out)
    print(f"driver killed with {len(after_kill)} of 20 results stored")
    assert 2 <= len(after_kill) < 20 and len(after_kill) % 2 == 0  # whole groups of 2, never half of one

    # the rerun (here through the CLI, on the session's Ray) trains the rest, each model once
    result = runner.invoke(app, ["sweep", "run", *KILL_FLAGS, "--backend", "ray", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{len(after_kill)} stored result(s) skipped" in result.output and "ray: one task per group" in result.output
    assert count_keys(out) == (20, 20)
    final = rows(out)
    assert set(map(repr, after_kill)) <= set(map(repr, final))  # stored rows are kept as they were
    straight = tmp_path / "straight"  # and it all equals an uninterrupted local sweep
    assert runner.invoke(app, ["sweep", "run", *KILL_FLAGS, "--out", str(straight)]).exit_code == 0
    assert_same(final, rows(straight))


@needs_ray
def test_a_group_too_large_for_the_workers_is_refused_before_the_store_is_opened(tmp_path, data, ray_cluster):
    # the group size is planned, and its memory checked, by a task on a worker: its error is the user's
    spec = SweepSpec(base={"hidden": (100_000, 100_000), "epochs": 1}, grid={"lr": (0.1, 0.5)})
    with pytest.raises(MlplabError, match="needs at least .* of memory") as info:
        run_sweep(spec, data, tmp_path, backend="ray")
    assert "Ray" not in type(info.value).__name__ and "Traceback" not in str(info.value)
    assert not (tmp_path / FILENAME).exists()


def test_without_ray_the_backend_says_how_to_install_it(tmp_path, data, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r'needs Ray.*pip install "mlplab\[ray\]"'):
        run_sweep(SPEC, data, tmp_path / "lib", backend="ray")
    result = runner.invoke(
        app, ["sweep", "run", "--data", "synthetic", "--backend", "ray", "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 2
    assert 'pip install "mlplab[ray]"' in result.output and "--backend" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "c").exists() and not (tmp_path / "lib").exists()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"backend": "spark"}, "backend"),
        ({"address": "auto"}, "address"),  # a Ray option without backend="ray"
        ({"backend": "ray", "device": "cuda:1"}, "device"),
        ({"backend": "ray", "device": "cuda", "gpus_per_task": 0}, "gpus_per_task"),
        ({"backend": "ray", "gpus_per_task": 1.5}, "gpus_per_task"),
        ({"backend": "ray", "cpus_per_task": 0}, "cpus_per_task"),
        ({"backend": "ray", "callbacks": [GroupCallback()]}, "callbacks"),  # per-epoch hooks cannot cross processes
    ],
)
def test_bad_backend_arguments_are_refused_before_any_work(tmp_path, data, kwargs, field):
    with pytest.raises(ConfigError) as info:
        run_sweep(SPEC, data, tmp_path / "out", **kwargs)
    assert info.value.field == field
    assert not (tmp_path / "out").exists()


def test_task_resources():
    assert task_resources("cpu", None, None) == ("cpu", 1, 0.0)
    assert task_resources("cuda", 4, None) == ("cuda", 4, 1.0)
    assert task_resources("cpu", 2, 0.5) == ("cuda", 2, 0.5)  # GPUs per task mean training on cuda


def test_cli_backend_flags(tmp_path):
    result = runner.invoke(app, ["sweep", "run", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert all(flag in result.output for flag in ("--backend", "--address", "--cpus-per-task", "--gpus-per-task"))
    for flags, named in (
        (["--backend", "spark"], "--backend"),
        (["--address", "auto"], "--address"),
        (["--backend", "ray", "--cpus-per-task", "0"], "--cpus-per-task"),
        (["--backend", "ray", "--device", "cuda:3"], "--device"),
    ):
        result = runner.invoke(app, ["sweep", "run", "--data", "synthetic", *flags, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and named in result.output, (flags, result.output)
        assert len(result.output.strip().splitlines()) <= 3 and "Traceback" not in result.output  # one wrapped line
    # the help starts fast: Ray is imported only when a sweep runs on it
    code = (
        "import sys; from typer.testing import CliRunner; from mlplab.cli import app; "
        "r = CliRunner().invoke(app, ['sweep', 'run', '--help']); assert r.exit_code == 0, r.output; "
        "print('ray' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert shown.stdout.strip() == "False"
