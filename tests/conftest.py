"""Shared fixtures: small generated data sets, an isolated data search path, the real-data gate."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mlplab.data import fashion_mnist, sources
from mlplab.data.idx import encode_idx, write_idx


def _installed_fashion_mnist() -> Path | None:
    """The first folder of the loader's own search order that holds all four files: what
    `scripts/train.sh` or `mlplab data fetch` installed ($MLPLAB_DATA, the user cache, Debian's)."""
    for place in sources.search_dirs(fashion_mnist.DATASET, None, fashion_mnist.SYSTEM_DIR):
        if all(
            (place.path / f"{spec.name}.gz").is_file() or (place.path / spec.name).is_file()
            for spec in fashion_mnist.FILES.values()
        ):
            return place.path
    return None


REAL_FASHION_MNIST = _installed_fashion_mnist()  # looked up before any test patches the search paths

# Tests use tiny tensors: one thread is as fast, and immune to a busy second core (OpenMP threads
# that wait for each other can slow a 2-thread run down tenfold on a shared machine).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_sources(tmp_path_factory, monkeypatch):
    """No test sees the user's cache, $MLPLAB_DATA or /usr/share unless it sets them itself."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setattr(sources, "cache_dir", lambda: cache)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", str(tmp_path_factory.mktemp("system")))
    monkeypatch.setattr(fashion_mnist, "MIRRORS", ())  # never the network
    real = os.environ.get(sources.ENV_VAR)
    monkeypatch.delenv(sources.ENV_VAR, raising=False)
    return real


@pytest.fixture
def real_fashion_mnist() -> Path:
    """The real Fashion-MNIST folder, found as the loaders find it ($MLPLAB_DATA, which CI sets;
    the user cache; Debian's /usr/share/datasets); the smoke tests skip only where none exists."""
    if REAL_FASHION_MNIST is None:
        pytest.skip(
            "no Fashion-MNIST installed: run `bash scripts/train.sh` or `mlplab data fetch`, "
            "or set MLPLAB_DATA to the folder holding fashion-mnist/"
        )
    return REAL_FASHION_MNIST


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch) -> Path:
    """A tiny, valid Fashion-MNIST look-alike (96 train, 48 test images) with matching checksums.

    The module's FILES table is patched to the generated files' shapes and SHA-256 values, so the
    loader's verification runs for real on them.
    """
    rng = np.random.default_rng(0)
    folder = tmp_path / "fmnist"
    folder.mkdir()
    n = {"train": 96, "test": 48}
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        labels = np.arange(n[split], dtype=np.uint8) % 10
        # noise plus a bright band of rows whose position is the class, so that a small model
        # learns it within a few epochs (and a run that learns nothing is told apart from one that does)
        images = rng.integers(0, 60, (n[split], 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 * label + 4 : 2 * label + 7, 4:24] += 180
        images = images.astype(np.uint8)
        arrays[f"{split}_images"] = (f"{prefix}-images-idx3-ubyte", images)
        arrays[f"{split}_labels"] = (f"{prefix}-labels-idx1-ubyte", labels)
    specs = {}
    for key, (name, array) in arrays.items():
        write_idx(folder / f"{name}.gz", array)
        specs[key] = fashion_mnist.FileSpec(name, array.shape, sources.sha256_of(encode_idx(array)))
    monkeypatch.setattr(fashion_mnist, "FILES", specs)
    return folder


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def device() -> str:
    """Where the device-parametrized tests train: ``cpu``, or ``$MLPLAB_TEST_DEVICE`` (e.g. ``cuda``).

    CI runs them on the CPU; on a GPU machine ``MLPLAB_TEST_DEVICE=cuda pytest tests/test_sweep_batched.py``
    checks the same equivalences on CUDA. Asking for a device that is missing fails, never skips.
    """
    name = os.environ.get("MLPLAB_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail(f"MLPLAB_TEST_DEVICE={name} but CUDA is not available; unset it to test on the CPU")
    return name


@pytest.fixture
def sigkill_sweep_when_stored():
    """Start ``python -m mlplab sweep ARGS`` (this tree's ``src`` first on ``PYTHONPATH``) and
    SIGKILL it as soon as ``count(out)`` reaches ``n`` stored results; returns its exit status.

    Fails the test if the process fails by itself; ``count`` may raise ``sqlite3.OperationalError``
    while the store's schema is not created yet. A sweep that finished first returns 0.
    """
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    src = str(Path(__file__).resolve().parents[1] / "src")

    def run(args, out: Path, count, n: int = 2, timeout: float = 60.0, what: str = "the sweep process") -> int:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlplab", "sweep", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if (out / "sweep.sqlite").exists():
                    try:
                        if count(out) >= n:
                            break
                    except sqlite3.OperationalError:  # schema not created yet
                        pass
                time.sleep(0.01)
            if proc.poll() is not None and proc.returncode != 0:
                pytest.fail(f"{what} failed on its own (exit {proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
            proc.send_signal(signal.SIGKILL)  # a no-op if it already finished: the caller's assertion says so
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()
        return proc.returncode

    return run


class _Tape:
    """Every aten op of one step, run and recorded: a CUDA graph's capture, emulated on the CPU.

    As in a graph, a replay re-runs only the tensor work, on the tensors the capture saw (an op's
    new results copied into the tensors it returned then, which later ops and the caller read),
    so whatever the step's Python decided while it was captured stays decided; a value read back
    to the host while capturing raises, as on CUDA.
    """

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        tape = self
        self.ops: list[tuple] = []

        class Recording(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func is torch.ops.aten._local_scalar_dense.default:
                    raise AssertionError("the step read a value back to the host while it was being captured")
                out = func(*args, **kwargs)
                tape.ops.append((func, args, kwargs, out))
                return out

        self.recording = Recording

    @torch.no_grad()
    def replay(self) -> None:
        from torch.utils._pytree import tree_leaves

        for func, args, kwargs, out in self.ops:
            new = func(*args, **kwargs)
            for old, fresh in zip(tree_leaves(out), tree_leaves(new)):
                if (
                    isinstance(old, torch.Tensor)
                    and old.untyped_storage().data_ptr() != fresh.untyped_storage().data_ptr()
                ):
                    old.copy_(fresh)


class EmulatedGraphReplay:
    """``mlplab.train.GraphReplay`` on the CPU: the warm-up steps run eagerly, the next full batch's
    step runs once while it is recorded (:class:`_Tape`), every later one is a replay of the tape."""

    WARMUP = 3
    made: list[EmulatedGraphReplay] = []

    def __init__(self) -> None:
        self.tape: _Tape | None = None
        self.outputs = None
        self.warm = self.replays = 0
        EmulatedGraphReplay.made.append(self)

    def __call__(self, step, *static):
        if self.tape is None and self.warm < self.WARMUP:
            self.warm += 1
            return step(*static)
        if self.tape is None:
            self.tape = _Tape()
            with self.tape.recording():
                self.outputs = step(*static)  # this batch's step, run once as it is recorded
            return self.outputs
        self.tape.replay()
        self.replays += 1
        return self.outputs


@pytest.fixture
def emulated_cuda_graphs(monkeypatch) -> list[EmulatedGraphReplay]:
    """CUDA graphs emulated on the CPU for the sweep's group step and fit's step; the replays made.

    Tests that the graphed paths (static buffers, the capturable step, what a capture freezes)
    compute what eager steps compute, without a GPU; a real CUDA graph is checked on a device.
    """
    from mlplab import train
    from mlplab.sweep import batched

    EmulatedGraphReplay.made = []
    monkeypatch.setattr(train, "GraphReplay", EmulatedGraphReplay)
    monkeypatch.setattr(batched, "GraphReplay", EmulatedGraphReplay)
    monkeypatch.setattr(batched, "host_reads_are_free", lambda device: False)  # as on CUDA
    return EmulatedGraphReplay.made
