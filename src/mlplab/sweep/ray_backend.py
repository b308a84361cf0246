"""Sweeps on Ray: each planned group is one Ray task; this process stores the groups as they finish.

``run_sweep(spec, data, out, backend="ray")`` (``mlplab sweep run ... --backend ray``) plans the
same groups as the local backend (:mod:`mlplab.sweep.planner`), drops the stored ones, puts the
data in Ray's object store once (``ray.put``) and submits one task per group that is left, each
training its group with :func:`mlplab.sweep.batched.train_group` on a worker. The driver (this
process, which holds the sweep's writer lock and is the only one to open ``sweep.sqlite``) waits
with ``ray.wait`` and writes each finished group with ``SweepStore.add_group``: one transaction
per group, as the local backend writes them, so a killed driver loses no finished group and a
rerun trains only the groups that were not committed.

Faults
------
- A worker that dies mid-task (killed, out of memory, a lost node) is retried by Ray, up to
  :data:`TASK_RETRIES` times (``max_retries``). Training is deterministic, so a retry computes the
  same results.
- A task that raises is not retried (``retry_exceptions=False``: the same inputs would raise
  again). Its group is reported with its error and the other groups go on; at the end
  :class:`GroupsFailedError` lists every failed group. A rerun retrains them (and only them).
- Store writes are idempotent: ``add_group`` skips a key already stored, inside the group's
  transaction, so a group delivered twice cannot duplicate a row.

Which Ray
---------
Without ``address``, a local Ray instance sized to the machine is started (no dashboard) and shut
down at the end. With it, an existing cluster is joined: ``"auto"`` on one of its nodes, or
``"ray://HEAD:10001"`` (Ray Client) from elsewhere; mlplab disconnects at the end and leaves the
cluster running. A Ray the caller has initialized already (``ray.init(...)`` before
``run_sweep``, e.g. with a ``runtime_env``) is used as it is and left running. The workers import
mlplab: on a cluster, install the same mlplab (and torch) on every node, or give a ``runtime_env``.

Test hook
---------
:data:`FAULT_ENV` (``MLPLAB_RAY_TEST_FAULT``), read by the driver when it submits the tasks and
passed to them, injects faults for the tests (never set it otherwise): a comma list of
``kill:GROUP:MARKER`` (the task of plan group GROUP kills its own worker with SIGKILL after its
first epoch, once: it first creates the file MARKER, holding the worker's pid, and an attempt
that finds MARKER trains on) and ``raise:GROUP`` (that task raises ``RuntimeError`` after its
first epoch, on every attempt).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplab.atomic import remove_stale
from mlplab.data import Data
from mlplab.errors import ConfigError, MlplabError, check_int, check_real
from mlplab.sweep.batched import GroupCallback, TrialResult, check_step_options
from mlplab.sweep.planner import Group, plan
from mlplab.sweep.runner import (
    SweepCallback,
    SweepReport,
    _store_errors,
    check_trial_targets,
    fingerprint,
    sweep_folder,
    sweep_trials,
)
from mlplab.sweep.spec import SweepSpec, Trial
from mlplab.sweep.store import FILENAME, SweepStore, writer_lock

if TYPE_CHECKING:
    from types import ModuleType

INSTALL_HINT = 'pip install "mlplab[ray]"'
TASK_RETRIES = 3  # Ray's max_retries for a task whose worker died; an exception is never retried
FAULT_ENV = "MLPLAB_RAY_TEST_FAULT"  # test-only fault injection (see the module docstring)
MAX_LISTED = 5  # failed groups GroupsFailedError's message names (its .failures holds them all)
_FAULT_RE = re.compile(r"^(?:kill:(\d+):(.+)|raise:(\d+))$")


def import_ray(field: str = "backend") -> ModuleType:
    """The ``ray`` module, or a :class:`ConfigError` on ``field`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        detail = "" if isinstance(exc, ModuleNotFoundError) and exc.name == "ray" else f" ({exc})"
        raise ConfigError(
            field, "ray", f"it needs Ray, which is not installed here{detail}; install it with {INSTALL_HINT}"
        ) from None
    return ray


@dataclass(frozen=True)
class GroupFailure:
    """A group whose Ray task failed: the group, its error on one line, and Ray's full report."""

    group: Group
    error: str
    details: str


class GroupsFailedError(MlplabError):
    """Some groups' tasks failed on Ray; every other group was stored (``report`` says how many).

    ``failures`` lists the failed groups with their errors. Rerunning the same sweep retrains
    exactly those groups: the stored ones are skipped.
    """

    def __init__(self, failures: Sequence[GroupFailure], report: SweepReport) -> None:
        self.failures, self.report = list(failures), report
        listed = "; ".join(
            f"group {f.group.index} ({f.group.describe()}): {f.error}" for f in self.failures[:MAX_LISTED]
        )
        more = f"; and {len(self.failures) - MAX_LISTED} more" if len(self.failures) > MAX_LISTED else ""
        super().__init__(
            f"{len(self.failures)} of {report.groups + len(self.failures)} group(s) failed on Ray and "
            f"were not stored: {listed}{more}. The {report.trained} other result(s) this run trained are "
            f"stored in {report.directory}. Fix: see the error(s); rerunning the same sweep retrains only the failed groups."
        )


def task_resources(device: str, cpus_per_task: int | None, gpus_per_task: float | None) -> tuple[str, int, float]:
    """``(task device, CPUs, GPUs)`` of each task from ``run_sweep``'s arguments, checked.

    Ray hands each task its GPUs (as ``CUDA_VISIBLE_DEVICES``), so a task's device is ``cuda``,
    never ``cuda:N``; ``gpus_per_task > 0`` means ``cuda``, and ``device="cuda"`` alone means one
    GPU per task.
    """
    if device not in ("cpu", "cuda"):
        allowed = (
            "Ray gives each task its GPU: use cuda (and gpus_per_task)"
            if isinstance(device, str) and device.startswith("cuda:")
            else "with backend='ray' tasks train on cpu or cuda"
        )
        raise ConfigError("device", device, allowed)
    cpus = 1 if cpus_per_task is None else cpus_per_task
    check_int("cpus_per_task", cpus, 1, 1024)
    gpus = (1.0 if device == "cuda" else 0.0) if gpus_per_task is None else gpus_per_task
    check_real("gpus_per_task", gpus, 0.0, 1024.0, what="a GPU count")
    if gpus > 1 and gpus != int(gpus):
        raise ConfigError("gpus_per_task", gpus, "Ray takes a fraction below 1 (to share a GPU) or a whole number")
    if device == "cuda" and gpus == 0:
        raise ConfigError(
            "gpus_per_task", gpus, "device='cuda' needs GPUs: give gpus_per_task > 0 (1, or 0.5 to share one)"
        )
    return ("cuda" if gpus > 0 else "cpu"), cpus, float(gpus)


def check_callbacks(callbacks: Sequence[object]) -> None:
    """Refuse callbacks of which nothing would run with Ray (see ``run_sweep``'s docstring)."""
    for cb in callbacks:
        if not isinstance(cb, SweepCallback):
            raise ConfigError(
                "callbacks",
                type(cb).__name__,
                "with backend='ray' groups train in Ray workers, where per-batch and per-epoch hooks "
                "cannot be called; pass SweepCallback objects (on_sweep_begin and on_group_end run on "
                "the driver) or train with backend='local'",
            )


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[tuple[ModuleType, bool]]:
    """Ray, initialized while the block runs: ``(ray, started)``, ``started`` when this call began it.

    A Ray that is initialized already is used as it is and left running; one that this call
    initialized (a local instance, or a connection to ``address``) is shut down (disconnected) after.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray, False
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if address is None:
        kwargs["include_dashboard"] = False
    else:
        kwargs["address"] = address
    environ = dict(os.environ)
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ConnectionError, TimeoutError, ValueError (a bad address), ...
        where = f"the Ray cluster at {address!r}" if address is not None else "a local Ray instance"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise MlplabError(
            f"cannot start or reach {where}: {type(exc).__name__}: {first}. Fix: on a node of a running "
            "cluster give the address auto, from elsewhere ray://HEAD:10001 (the head's Ray Client port); "
            "without an address a local instance is started."
        ) from None
    try:
        yield ray, True
    finally:
        ray.shutdown()
        _restore_environ(environ)


def _restore_environ(before: dict[str, str]) -> None:
    """Undo what ``ray.init`` set in this process's environment and ``ray.shutdown`` leaves behind
    (``PYTHONBREAKPOINT`` pointing at Ray's debugger, ``RAY_*``), so a later ``breakpoint()`` or
    subprocess does not inherit them."""
    for name in [n for n in os.environ if n == "PYTHONBREAKPOINT" or n.startswith("RAY_")]:
        if name in before:
            os.environ[name] = before[name]
        else:
            del os.environ[name]


def _faults() -> dict[int, str]:
    """The test-only faults of :data:`FAULT_ENV`: group index -> its entry."""
    text = os.environ.get(FAULT_ENV, "").strip()
    faults: dict[int, str] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        match = _FAULT_RE.match(entry)
        if match is None:
            raise ConfigError(FAULT_ENV, entry, "a test-only hook: kill:GROUP:MARKER or raise:GROUP, comma-separated")
        faults[int(match.group(1) or match.group(3))] = entry
    return faults


class _Fault(GroupCallback):
    """The injected fault of one task (tests only), after the group's first epoch."""

    def __init__(self, entry: str, index: int) -> None:
        self.entry, self.index = entry, index

    def on_epoch_end(self, epoch: int, n_alive: int) -> None:
        if epoch != 1:
            return
        if self.entry.startswith("raise:"):
            raise RuntimeError(f"{FAULT_ENV}: group {self.index} raised on purpose")
        marker = self.entry.split(":", 2)[2]
        try:
            with open(marker, "x", encoding="utf-8") as f:  # only the first attempt creates it
                f.write(str(os.getpid()))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)


def _plan_task(trials: Sequence[Trial], device: str, n_train: int, max_models: int | None, share: float) -> int:
    """On a worker, with a task's resources: the group size, after the memory check of its groups.

    ``share`` is the fraction of a GPU a task holds (``gpus_per_task`` below 1): the default group
    size is cut to that share of what the whole GPU would take, since as many tasks share it.
    """
    from mlplab.sweep.planner import check_memory, default_max_models
    from mlplab.train import resolve_device

    resolved = resolve_device(device)
    k = max_models if max_models is not None else max(1, int(default_max_models(trials, resolved) * share))
    check_memory(plan(trials, k), resolved, n_train)
    return k


def _train_task(
    index: int,
    trials: Sequence[Trial],
    data: Data,
    device: str,
    threads: int,
    tf32: bool,
    step: dict[str, Any],
    fault: str | None,
) -> tuple[list[TrialResult], str]:
    """On a worker: train one group; its results and the device they trained on."""
    import torch

    from mlplab.sweep.batched import train_group
    from mlplab.sweep.runner import tf32_matmuls
    from mlplab.train import resolve_device

    torch.set_num_threads(threads)
    resolved = resolve_device(device)
    callbacks = [_Fault(fault, index)] if fault else []
    with tf32_matmuls(tf32, resolved):
        results = train_group(trials, data, resolved, callbacks, **step)  # cuda_graphs, fused, compiled
    return results, str(resolved)


def _error_text(exc: BaseException) -> tuple[str, str]:
    """A failed task's error on one line (the task's own exception where Ray kept it), and in full."""
    cause = getattr(exc, "cause", None)
    shown = cause if isinstance(cause, BaseException) else exc
    first = (str(shown).strip().splitlines() or [""])[0][:300]
    return f"{type(shown).__name__}: {first}", str(exc)


def _remote_cause(exc: BaseException) -> MlplabError | None:
    """The mlplab error a task raised (a bad device, a group that cannot fit), if it was one."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, MlplabError) else None


def run_sweep_on_ray(
    spec: SweepSpec,
    data: Data,
    out: str | os.PathLike[str],
    *,
    device: str = "cpu",
    max_models: int | None = None,
    callbacks: Sequence[GroupCallback] = (),
    tf32: bool = False,
    cuda_graphs: bool | None = None,
    fused: bool | None = None,
    compiled: bool = False,
    address: str | None = None,
    cpus_per_task: int | None = None,
    gpus_per_task: float | None = None,
) -> SweepReport:
    """``run_sweep(..., backend="ray")``: see :func:`mlplab.sweep.runner.run_sweep` and this module.

    Everything that can be checked here is checked before Ray starts: the arguments, the trials,
    the loss against the data's targets, the callbacks, that Ray is installed; then the writer lock
    is taken, Ray started or joined, the group size planned by a task on a worker (the workers'
    memory is what must hold a group), and only then is the store opened. A rerun of a finished
    sweep (every trial stored, for this data) starts no Ray at all.
    """
    t0 = time.perf_counter()
    out = sweep_folder(out)
    task_device, cpus, gpus = task_resources(device, cpus_per_task, gpus_per_task)
    if tf32 and task_device != "cuda":
        raise ConfigError("tf32", True, "TF32 exists on NVIDIA GPUs only; use it with device='cuda' (GPUs per task)")
    if cuda_graphs and task_device != "cuda":
        raise ConfigError("cuda_graphs", True, "CUDA graphs need CUDA tasks: device='cuda' (GPUs per task)")
    check_step_options(fused, compiled)
    step = {"cuda_graphs": cuda_graphs, "fused": fused, "compiled": compiled}  # train_group's, in each task
    if max_models is not None:
        check_int("max_models", max_models, 1)
    trials = sweep_trials(spec, data.train.X.shape[1], data.n_outputs)
    check_trial_targets(trials, data)
    check_callbacks(callbacks)
    faults = _faults()
    import_ray()
    data_print = fingerprint(data)
    with writer_lock(out), contextlib.ExitStack() as session:
        if _all_stored(out, trials, data_print):  # a finished sweep rerun: nothing to train, no Ray to start
            ray, k, groups = None, max_models or _local_group_size(trials, task_device), []
        else:
            ray, started = session.enter_context(ray_session(address))
            if started and address is None and not os.environ.get("RAY_ADDRESS"):  # a local instance
                _check_fits_local(ray, cpus, gpus)
            share = min(gpus, 1.0) if task_device == "cuda" else 1.0
            k = _plan_on_worker(
                ray, trials, task_device, len(data.train.y), max_models, share, task_options(cpus, gpus)
            )
            groups = plan(trials, k)
        with SweepStore(out) as store, _store_errors(store):
            remove_stale(out)
            store.bind_data(data_print)
            stored = store.keys()
            todo = [g for g in (g.without(stored) for g in groups) if len(g)]
            skipped = len(trials) - sum(len(g) for g in todo)
            run_id = store.start_run(spec.to_dict(), f"ray {task_device}", k, len(trials), skipped)
            for cb in callbacks:
                if isinstance(cb, SweepCallback):
                    cb.on_sweep_begin(todo, skipped)
            trained, failures = 0, []
            if todo:
                trainer = ray.remote(_train_task).options(**task_options(cpus, gpus))
                data_ref = ray.put(data.to("cpu"))  # once, for every task
                trained, failures = _drive(
                    ray, trainer, todo, data_ref, store, callbacks, task_device, cpus, tf32, step, faults
                )
            store.finish_run(run_id, trained)
    report = SweepReport(out, len(trials), skipped, trained, len(todo) - len(failures), k, time.perf_counter() - t0)
    if failures:
        raise GroupsFailedError(sorted(failures, key=lambda f: f.group.index), report)
    return report


def task_options(cpus: int, gpus: float) -> dict[str, Any]:
    """The Ray options of every task: its resources; retried when its worker dies, never when it raises."""
    return {"num_cpus": cpus, "num_gpus": gpus, "max_retries": TASK_RETRIES, "retry_exceptions": False}


def _all_stored(out: Path, trials: Sequence[Trial], data_fingerprint: str) -> bool:
    """Whether ``out`` holds every trial already, for this data (read-only; a damaged store raises)."""
    if not (out / FILENAME).is_file() or (out / FILENAME).is_symlink():
        return False
    with SweepStore(out, create=False) as store:
        return store.meta().get("data") == data_fingerprint and {t.key for t in trials} <= store.keys()


def _local_group_size(trials: Sequence[Trial], device: str) -> int:
    """The group size a CPU worker would plan (it depends on the trials only); 0 (unknown) for CUDA."""
    from mlplab.sweep.planner import default_max_models

    return default_max_models(trials, "cpu") if device == "cpu" else 0


def _plan_on_worker(
    ray: ModuleType,
    trials: Sequence[Trial],
    device: str,
    n_train: int,
    max_models: int | None,
    share: float,
    opts: dict[str, Any],
) -> int:
    """The group size, planned (and the memory of the groups checked) by a task with a task's resources."""
    try:
        return ray.get(ray.remote(_plan_task).options(**opts).remote(trials, device, n_train, max_models, share))
    except ray.exceptions.RayError as exc:
        cause = _remote_cause(exc)
        if cause is not None:  # a group that cannot fit, CUDA missing on the worker: the user's to fix
            raise cause from None
        raise MlplabError(
            f"planning the sweep on a Ray worker failed: {_error_text(exc)[0]}. Fix: check that the "
            "workers can import this mlplab (installed on every node, or a runtime_env)."
        ) from None


def _check_fits_local(ray: ModuleType, cpus: int, gpus: float) -> None:
    """On the local instance mlplab started (it cannot grow), a task larger than it would wait forever."""
    have = ray.cluster_resources()
    for name, want, field in (("CPU", cpus, "cpus_per_task"), ("GPU", gpus, "gpus_per_task")):
        if want > have.get(name, 0):
            raise ConfigError(
                field,
                want,
                f"the local Ray instance has {have.get(name, 0):g} {name}(s), so such a task could never "
                f"start: ask for at most {have.get(name, 0):g}, or join a larger cluster (address)",
            )


def _drive(
    ray: ModuleType,
    trainer: Any,
    todo: Sequence[Group],
    data_ref: Any,
    store: SweepStore,
    callbacks: Sequence[GroupCallback],
    device: str,
    threads: int,
    tf32: bool,
    step: dict[str, Any],
    faults: dict[int, str],
) -> tuple[int, list[GroupFailure]]:
    """Submit one task per group, store each as it finishes: (results stored, failed groups)."""
    pending = {
        trainer.remote(g.index, g.trials, data_ref, device, threads, tf32, step, faults.get(g.index)): g for g in todo
    }
    trained, failures = 0, []
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                group = pending.pop(ref)
                try:
                    results, where = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task raised, or its worker died TASK_RETRIES + 1 times
                    error, details = _error_text(exc)
                    failures.append(GroupFailure(group, error, details))
                    continue
                trained += store.add_group(results, group.index, where)  # one transaction; a stored key is skipped
                for cb in callbacks:
                    if isinstance(cb, SweepCallback):
                        cb.on_group_end(group, results)
    finally:
        for ref in pending:  # the driver stopped early (Ctrl-C, a full disk): the rest need not run
            with contextlib.suppress(Exception):
                ray.cancel(ref)
    return trained, failures
