"""The notebooks of docs/notebooks, executed cell by cell in a real Jupyter kernel of this Python.

Each notebook runs with its default parameters (the small budgets of its ``parameters`` cell) in
a fresh kernel started from ``sys.executable`` through a kernelspec written to a temporary
folder, so the kernel is this virtual environment's and never another one found on the machine.
A cell that raises fails the test with the cell and its traceback (``nbclient``'s
``CellExecutionError``). The executed outputs are then checked for what the notebooks are for:
one live figure per training run, updated in place; results shown as HTML.

The notebook extra (``pip install -e ".[notebook]"``) must be installed; without it these tests
are skipped, except under CI (``CI`` set), where they fail. Notebooks that read Fashion-MNIST or
House Prices (their ``metadata.mlplab.data``) need the real data ($MLPLAB_DATA, which CI sets).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "docs" / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 240  # seconds per cell: each takes a few on a 2-core machine; generous for a busy one
LIVE_TEXT = re.compile(r"^training curves after epoch (\d+) of (\d+): ")


def _require(module: str):
    """The module, or a skip (a failure under CI, which installs the notebook extra)."""
    try:
        return __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is missing: CI must install the notebook extra (pip install -e '.[notebook]')")
        pytest.skip(f"{module} is not installed: pip install -e '.[notebook]' to run the notebooks")


@pytest.fixture(scope="module")
def kernel_manager_factory(tmp_path_factory):
    """Makes kernel managers for a kernelspec that runs ``sys.executable -m ipykernel_launcher``."""
    _require("nbclient")
    _require("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path_factory.mktemp("kernels")
    spec = kernels / "mlplab-test"
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "mlplab test", "language": "python"}))

    def make() -> KernelManager:
        specs = KernelSpecManager(kernel_dirs=[str(kernels)])
        return KernelManager(kernel_name="mlplab-test", kernel_spec_manager=specs)

    return make


def _house_prices_dir(real_data: str | None) -> Path | None:
    from mlplab.house.data import FILES

    if not real_data:
        return None
    folder = Path(real_data) / "house-prices"
    found = all(any((folder / name).is_file() for name in FILES[kind].names) for kind in ("train", "test"))
    return folder if found else None


def _execute(path: Path, workdir: Path, make_km, env: dict[str, str]):
    """``path`` executed in a new kernel whose working folder is ``workdir``; the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    km = make_km()
    client = NotebookClient(
        nb, km=km, timeout=CELL_TIMEOUT, startup_timeout=120, resources={"metadata": {"path": str(workdir)}}
    )
    try:
        client.execute(env=env)
    finally:
        if km.has_kernel:  # a kernel manager passed in is the caller's to shut down
            km.shutdown_kernel(now=True)
    return nb


def _outputs(nb, kind: str | None = None):
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if kind is None or output.output_type == kind:
                yield index, output


def test_notebooks_are_stored_without_outputs():
    """What is in git is the source: no outputs, no execution counts, a tagged parameters cell."""
    nbformat = _require("nbformat")
    assert len(NOTEBOOKS) == 7, [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None for c in code), path.name
        assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1, path.name
        assert 5 <= len(nb.cells) <= 14, (path.name, len(nb.cells))
        assert set(nb.metadata["mlplab"]["data"]) <= {"fashion-mnist", "house-prices"}, path.name


def test_kernel_runs_this_python(kernel_manager_factory, tmp_path):
    """The kernel is started from this interpreter, so it imports this checkout's mlplab."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    path = tmp_path / "which.ipynb"
    nbformat.write(
        new_notebook(cells=[new_code_cell("import sys, mlplab; print(sys.executable); print(mlplab.__file__)")]), path
    )
    nb = _execute(path, tmp_path, kernel_manager_factory, dict(os.environ))
    executable, module = nb.cells[0].outputs[0].text.split()
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert Path(module).resolve() == Path(__import__("mlplab").__file__).resolve()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_manager_factory, isolated_sources, tmp_path):
    """Every cell runs without an error; every live figure was updated in place to its last epoch."""
    import conftest  # the real-data gate: where the loaders find Fashion-MNIST, looked up before any patching

    nbformat = _require("nbformat")
    needs = nbformat.read(path, as_version=4).metadata["mlplab"]["data"]
    fashion_mnist = conftest.REAL_FASHION_MNIST
    env = {k: v for k, v in os.environ.items() if k != "MLPLAB_DATA"}
    real_data = isolated_sources  # the $MLPLAB_DATA of the session (conftest hides it from the tests)
    if real_data:
        env["MLPLAB_DATA"] = real_data
    missing = []
    if "fashion-mnist" in needs and fashion_mnist is None:
        missing.append("Fashion-MNIST")
    if "house-prices" in needs and _house_prices_dir(real_data) is None:
        missing.append("House Prices")
    if missing:
        message = f"{path.name} reads {' and '.join(missing)}: set MLPLAB_DATA to the folder holding them"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if fashion_mnist is not None and "fashion-mnist" in needs and "MLPLAB_DATA" not in env:
        env["MLPLAB_DATA"] = str(fashion_mnist.parent)  # the loader looks in $MLPLAB_DATA/fashion-mnist
    env["OMP_NUM_THREADS"] = "1"  # tiny models: one thread is as fast, and immune to a busy second core

    t0 = time.perf_counter()
    nb = _execute(path, tmp_path, kernel_manager_factory, env)
    seconds = time.perf_counter() - t0
    print(f"{path.name}: {seconds:.1f} s")

    errors = [o for _, o in _outputs(nb, "error")]
    assert not errors, errors
    uses_live = any("LivePlot(" in c.source for c in nb.cells if c.cell_type == "code")
    live = [(i, o) for i, o in _outputs(nb, "display_data") if LIVE_TEXT.match(o.data.get("text/plain", ""))]
    assert bool(live) == uses_live, path.name
    for index, output in live:
        done, planned = map(int, LIVE_TEXT.match(output.data["text/plain"]).groups())
        assert done == planned, (path.name, index, output.data["text/plain"])  # updated to the last epoch
        assert output.data["image/png"].startswith("iVBORw0KGgo")  # base64 of the PNG signature
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "LivePlot(" in cell.source and "for " not in cell.source:
            # one fit call in the cell: one figure, updated in place (not one figure per epoch)
            assert sum(i == index for i, _ in live) == 1, (path.name, index)
    results = [o for _, o in _outputs(nb, "execute_result")]
    assert any("text/html" in o.data or "text/markdown" in o.data for o in results), f"{path.name}: no rich result"


def test_an_executed_notebook_shows_results_as_html(kernel_manager_factory, tmp_path):
    """A History, the doctor's findings and an experiment's Result show as HTML in a kernel (synthetic data)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [
        "import torch\n"
        "from mlplab.live import LivePlot\n"
        "from mlplab.models import ModelConfig, build_mlp\n"
        "from mlplab.sweep.runner import synthetic_data\n"
        "from mlplab.train import TrainConfig, fit\n"
        "data = synthetic_data(512, 256)\n"
        "net = build_mlp(ModelConfig(hidden=(16,), n_inputs=32, init='xavier'), torch.Generator().manual_seed(0))\n"
        "live = LivePlot(every=2)\n"
        "history = fit(net, data, TrainConfig(epochs=5), callbacks=[live])",
        "history",
        "from mlplab import doctor\ndoctor.check(ModelConfig(hidden=(256,)), TrainConfig(lr=0.5, weight_decay=3.0))",
        "from mlplab import experiments\n"
        "experiments.run('mlp-hidden', quick=True, seeds=2, widths=(8, 16), epochs=2, data='synthetic')",
        "import os; print(sorted(os.listdir('.')))",
    ]
    path = tmp_path / "displays.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in cells]), path)
    env = {k: v for k, v in os.environ.items() if k != "MLPLAB_DATA"}
    nb = _execute(path, tmp_path, kernel_manager_factory, env)
    fit_outputs = nb.cells[0].outputs
    assert [o.output_type for o in fit_outputs] == ["display_data"]  # one figure, drawn at epochs 2, 4, 5
    assert fit_outputs[0].data["text/plain"] == "training curves after epoch 5 of 5: ok"
    history, findings, result = (nb.cells[i].outputs[0].data for i in (1, 2, 3))
    assert "<table" in history["text/html"] and "data:image/png;base64," in history["text/html"]
    assert "image/png" in history
    assert "weight-decay-flips" in findings["text/html"]
    assert "Conclusions" in result["text/html"] and "best width" in result["text/html"]
    assert "live.png" not in nb.cells[4].outputs[0].text  # in Jupyter no file is written unless asked
