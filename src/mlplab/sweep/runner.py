"""Running a sweep: expand the spec, plan groups, skip what is stored, train the rest, store each group."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mlplab.atomic import OutputError, remove_stale
from mlplab.data import Data, Split, fashion_mnist_data
from mlplab.data.synthetic import classification_blobs, high_dim_linear, polynomial
from mlplab.errors import ConfigError, check_choice
from mlplab.sweep.batched import GroupCallback, TrialResult, check_step_options, train_group
from mlplab.sweep.fused import check_compiled_kernels
from mlplab.sweep.planner import Group, check_memory, default_max_models, plan
from mlplab.sweep.spec import SweepSpec, Trial
from mlplab.sweep.store import SweepStore, store_error, writer_lock
from mlplab.train import check_targets, resolve_device

DATA_SETS = ("fashion-mnist", "synthetic", "poly", "linear-200")
BACKENDS = ("local", "ray")  # where run_sweep trains: here, or one Ray task per group (ray_backend)
# (training rows, inputs, outputs) of each data set, outputs being classes or the target width: a
# sweep is planned, and its memory checked, before the data is loaded (or downloaded); run_sweep
# checks again on the data it is given.
DATA_SIZES = {
    "fashion-mnist": (60_000, 784, 10),
    "synthetic": (2048, 32, 10),
    "poly": (100, 20, 1),
    "linear-200": (20, 200, 1),
}
# the data sets with float targets: their trials need loss=mse (the others: cross_entropy)
REGRESSION_SETS = frozenset({"poly", "linear-200"})


def synthetic_data(n_train: int = 2048, n_test: int = 512, n_features: int = 32, n_classes: int = 10) -> Data:
    """Gaussian blobs (``mlplab.data.synthetic.classification_blobs``, generator seed 0).

    A small stand-in for Fashion-MNIST with which sweeps run in seconds (tests, demos); the
    classes overlap (spread 0.5), so a one-hidden-layer MLP reaches about 78% test accuracy, not 100%.
    """
    both = classification_blobs(n_train + n_test, n_features, n_classes, torch.Generator().manual_seed(0), spread=0.5)
    return Data(Split(both.X[:n_train], both.y[:n_train]), Split(both.X[n_train:], both.y[n_train:]))


def sweep_data(name: str, data_dir: str | os.PathLike[str] | None = None) -> Data:
    """The data set a sweep trains on (one of :data:`DATA_SETS`).

    - ``fashion-mnist``: the real images (``data_dir``, else searched, else downloaded).
    - ``synthetic``: Gaussian blobs, see :func:`synthetic_data`.
    - ``poly``: the polynomial of d2l 4.4 (``mlplab.data.synthetic.polynomial``, 100 train and
      100 test rows of the features ``x^i / i!``, i < 20; generator seed 0). Degree ``d`` is a
      model with ``n_inputs = d + 1``, which reads the first ``d + 1`` columns.
    - ``linear-200``: the high-dimensional linear regression of d2l 4.5 (200 inputs, 20 train
      and 100 test rows, w = 0.01, b = 0.05, noise 0.01; ``synthetic.high_dim_linear``, seed 0).

    The last two have float targets of shape (n, 1) (:data:`REGRESSION_SETS`): train them with
    ``loss=mse``.
    """
    if name == "fashion-mnist":
        return fashion_mnist_data(data_dir)
    if name == "synthetic":
        return synthetic_data()
    if name == "poly":
        return polynomial(n_train=100, n_test=100, max_degree=20, generator=torch.Generator().manual_seed(0))
    if name == "linear-200":
        return high_dim_linear(20, 100, 200, w=0.01, b=0.05, noise=0.01, generator=torch.Generator().manual_seed(0))
    raise ConfigError("data", name, f"expected one of {', '.join(DATA_SETS)}")


def sweep_folder(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """``path`` as a Path; an empty one is refused (``Path("")`` would silently be the current folder)."""
    if str(path) == "":
        raise OutputError(f"{flag} is an empty path. Fix: give a path such as runs/dropout.")
    return Path(path)


def sweep_trials(spec: SweepSpec, n_inputs: int, n_outputs: int) -> list[Trial]:
    """The trials of ``spec`` for data of ``n_inputs`` columns and ``n_outputs`` outputs; raises
    if a trial reads more columns than the data has. The first step of :func:`plan_sweep`."""
    trials = spec.trials(n_inputs=n_inputs, n_outputs=n_outputs)
    for t in trials:
        if t.model.n_inputs > n_inputs:
            raise ConfigError(
                "n_inputs",
                t.model.n_inputs,
                f"the data has {n_inputs} input columns and a model reads its first n_inputs: "
                f"use n_inputs <= {n_inputs}",
            )
    return trials


def check_trial_targets(trials: Sequence[Trial], data: Data) -> None:
    """Refuse a loss that does not suit the data's targets (mse with class labels, cross_entropy
    with float targets): each loss of ``trials`` once, in trial order, before any training."""
    for loss in dict.fromkeys(t.train.loss for t in trials):
        check_targets(loss, data)


def plan_sweep(
    spec: SweepSpec, n_train: int, n_inputs: int, n_outputs: int, device: torch.device, max_models: int | None = None
) -> tuple[list[Trial], int, list[Group]]:
    """The trials, the group size and the groups of a sweep; raises if the largest group cannot fit.

    ``n_inputs`` is the data's column count: the trials' default input width, and the most a
    trial may read (a trial with fewer reads the first columns). ``n_outputs`` is the number of
    classes, or the width of a regression target. Pure planning: nothing is loaded, trained or
    written, so a CLI can call it before any work.
    """
    trials = sweep_trials(spec, n_inputs, n_outputs)
    k = max_models if max_models is not None else default_max_models(trials, device)
    groups = plan(trials, k)
    check_memory(groups, device, n_train)
    return trials, k, groups


def fingerprint(data: Data) -> str:
    """Shapes plus a SHA-256 of every 97th row: tells data sets apart cheaply."""
    digest = hashlib.sha256()
    for split in (data.train, data.test):
        for t in (split.X, split.y):
            digest.update(str(tuple(t.shape)).encode())
            digest.update(t[::97].detach().cpu().contiguous().numpy().tobytes())
    train, test = data.train.X, data.test.X
    return f"train {tuple(train.shape)}, test {tuple(test.shape)}, sha256 {digest.hexdigest()[:16]}"


@contextlib.contextmanager
def _store_errors(store: SweepStore) -> Iterator[None]:
    """A last net: an ``sqlite3`` error that escaped the store's own methods names the file too."""
    try:
        yield
    except sqlite3.Error as exc:
        raise store_error(store.path, exc) from None


@contextlib.contextmanager
def tf32_matmuls(enabled: bool, device: torch.device) -> Iterator[None]:
    """Let CUDA matmuls use TF32 (10-bit mantissa) while the block runs; restore the setting after."""
    if not enabled:
        yield
        return
    if device.type != "cuda":
        raise ConfigError("tf32", True, "TF32 exists on NVIDIA GPUs only; use it with --device cuda")
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


class SweepCallback(GroupCallback):
    """Progress hooks of :func:`run_sweep` (plus the per-group hooks of ``train_group``)."""

    def on_sweep_begin(self, groups: Sequence[Group], n_skipped: int) -> None: ...

    def on_group_end(self, group: Group, results: Sequence[TrialResult]) -> None: ...


@dataclass
class SweepReport:
    """What one ``run_sweep`` call did."""

    directory: Path
    planned: int  # trials in the spec
    skipped: int  # already stored when the run began
    trained: int  # trained and stored by this run
    groups: int  # batched groups trained by this run
    max_models: int  # the chunk size used
    seconds: float


def run_sweep(
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
    progress: bool = False,
    backend: str = "local",
    address: str | None = None,
    cpus_per_task: int | None = None,
    gpus_per_task: float | None = None,
) -> SweepReport:
    """Train every trial of ``spec`` not yet stored in ``out/sweep.sqlite``, one group at a time.

    Groups (see :mod:`mlplab.sweep.planner`) are planned from all trials, then stored ones are
    dropped, so a rerun of an interrupted sweep retrains exactly the groups that were not
    committed and gets the results an uninterrupted run would have got.

    With ``backend="ray"`` each group is one Ray task (:mod:`mlplab.sweep.ray_backend`): the
    data goes to Ray's object store once, groups train in parallel on the Ray workers, and this
    process stores each one as it finishes, in one transaction, with the same resume semantics.
    A worker that dies mid-task is retried by Ray; a group whose training raises is reported (by
    :class:`~mlplab.sweep.ray_backend.GroupsFailedError`, after every other group is stored).
    Callbacks with Ray: the :class:`SweepCallback` hooks ``on_sweep_begin`` and ``on_group_end``
    run here, on the driver (groups end in the order they finish); the per-batch and per-epoch
    hooks are not called, since training runs in other processes, and a callback that has only
    those (a plain ``GroupCallback``, the doctor's ``SweepDoctorCallback``) is refused.

    Parameters
    ----------
    spec : SweepSpec
    data : Data
        Classification data (int64 labels, for trials with ``loss="cross_entropy"``) or
        regression data (float targets (n,) or (n, k), for ``loss="mse"``); its fingerprint is
        bound to ``out`` on the first run. Trials may read fewer columns than it has.
    out : path
        The sweep directory; created if missing, resumed if it holds a sweep. Its writer lock
        (``out/sweep.lock``) is taken before the store is opened; a caller that holds it already
        (the CLI, before loading data) may hold it on: the lock is re-entrant within a process.
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    max_models : int, optional
        Models per group; default from the device's memory (GPU) or cache (CPU).
    callbacks : sequence of GroupCallback or SweepCallback
    tf32 : bool
        CUDA only: matmuls in TF32 (several times faster on A100/H100-class GPUs, about 3 decimal
        digits per product instead of 7). Off by default; results then differ from ``fit``'s at
        the 1e-3 level.
    cuda_graphs : bool, optional
        CUDA only: replay each training step from a CUDA graph (default on CUDA; see
        ``mlplab.sweep.batched.train_group``). Same results, fewer kernel launches.
    fused : bool, optional
        How ReLU groups trained by SGD without L1 take their steps, as in ``train_group``: the
        hand-fused step (None: on a CPU, and wherever ``compiled``; True: on any device) or the
        autograd step (False). The same results up to float rounding; not part of a trial's key,
        so a rerun with another step reuses what is stored (as with ``device``).
    compiled : bool
        The fused step's elementwise work ``torch.compile``'d (it asks for the fused step). With
        the local backend a machine that cannot build the kernels is refused before any work; a
        Ray worker that cannot fails its groups' tasks.
    progress : bool
        Show the bars and a line per finished group while training (terminal or Jupyter), as
        ``mlplab sweep run`` does; off by default. With Ray: the groups bar and the lines.
    backend : {"local", "ray"}
        ``local`` trains here, one group after another; ``ray`` on Ray (``pip install "mlplab[ray]"``).
    address : str, optional
        Ray only: an existing cluster, ``"auto"`` (from one of its nodes) or ``"ray://HEAD:10001"``;
        default, a local Ray instance sized to this machine, started and shut down by this call.
        A Ray that the caller has already initialized (``ray.init(...)``) is used as it is, and
        left running.
    cpus_per_task : int, optional
        Ray only: CPUs a task reserves, and the torch threads it trains with (default 1).
    gpus_per_task : float, optional
        Ray only: GPUs a task reserves (default 1 with ``device="cuda"``, else 0); above 0, tasks
        train on ``cuda`` (a fraction below 1 shares a GPU between tasks). With Ray, ``device``
        is ``cpu`` or ``cuda`` (Ray chooses the GPU) and is where the tasks train; the group size
        is planned, and the memory checked, by a task on a worker. Each result's ``device``
        column says where it trained.

    Returns
    -------
    SweepReport

    Raises
    ------
    MlplabError
        Before any training: a bad spec or device, a loss that does not suit the data's targets
        (``ConfigError`` on ``loss``: mse with class labels, cross_entropy with float targets), a
        model wider than the data, a group that cannot fit in memory, another writer holding the
        lock, a damaged store; with Ray: Ray not installed, a cluster that cannot be reached.
        During it: a store that cannot be written (a full disk); the groups committed before are
        kept and a rerun resumes after them. With Ray, after the sweep: ``GroupsFailedError``
        listing the groups whose task failed (the others are stored; a rerun retrains those).
    """
    check_choice("backend", backend, BACKENDS)
    check_step_options(fused, compiled)
    if backend == "local":
        for name, value in (("address", address), ("cpus_per_task", cpus_per_task), ("gpus_per_task", gpus_per_task)):
            if value is not None:
                raise ConfigError(name, value, "applies to backend='ray' only: pass backend='ray', or leave it out")
    if progress:
        from mlplab.sweep.progress import sweep_progress  # rich only when asked for

        with sweep_progress() as display:
            return run_sweep(
                spec,
                data,
                out,
                device=device,
                max_models=max_models,
                callbacks=[*callbacks, display],
                tf32=tf32,
                cuda_graphs=cuda_graphs,
                fused=fused,
                compiled=compiled,
                backend=backend,
                address=address,
                cpus_per_task=cpus_per_task,
                gpus_per_task=gpus_per_task,
            )
    if backend == "ray":
        from mlplab.sweep.ray_backend import run_sweep_on_ray  # ray only when asked for

        return run_sweep_on_ray(
            spec,
            data,
            out,
            device=device,
            max_models=max_models,
            callbacks=callbacks,
            tf32=tf32,
            cuda_graphs=cuda_graphs,
            fused=fused,
            compiled=compiled,
            address=address,
            cpus_per_task=cpus_per_task,
            gpus_per_task=gpus_per_task,
        )
    t0 = time.perf_counter()
    step = {"cuda_graphs": cuda_graphs, "fused": fused, "compiled": compiled}  # train_group's
    resolved = resolve_device(device)
    if compiled:  # before the folder or the store is touched
        check_compiled_kernels(resolved)
    out = sweep_folder(out)
    trials, k, groups = plan_sweep(spec, len(data.train.y), data.train.X.shape[1], data.n_outputs, resolved, max_models)
    check_trial_targets(trials, data)
    with tf32_matmuls(tf32, resolved), writer_lock(out), SweepStore(out) as store, _store_errors(store):
        remove_stale(out)  # temp files of a killed `sweep plot` (their writers are dead)
        store.bind_data(fingerprint(data))
        stored = store.keys()
        todo = [g for g in (g.without(stored) for g in groups) if len(g)]
        skipped = len(trials) - sum(len(g) for g in todo)
        run_id = store.start_run(spec.to_dict(), str(resolved), k, len(trials), skipped)
        for cb in callbacks:
            if isinstance(cb, SweepCallback):
                cb.on_sweep_begin(todo, skipped)
        trained = 0
        data = data.to(resolved)
        for group in todo:
            results = train_group(group.trials, data, resolved, callbacks, **step)
            store.add_group(results, group.index, str(resolved))
            trained += len(results)
            for cb in callbacks:
                if isinstance(cb, SweepCallback):
                    cb.on_group_end(group, results)
        store.finish_run(run_id, trained)
    return SweepReport(out, len(trials), skipped, trained, len(todo), k, time.perf_counter() - t0)
