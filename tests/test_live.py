"""LivePlot and LiveSweepPlot: a PNG rewritten atomically in a script, one display updated in place in Jupyter."""

from __future__ import annotations

import base64
import io
import math
import subprocess
import sys
import types

import pytest
import torch
from PIL import Image
from torch import nn

import mlplab.live as live
import mlplab.plots
from mlplab.data import Data, synthetic
from mlplab.display import in_jupyter
from mlplab.errors import ConfigError
from mlplab.live import LivePlot, LiveSweepPlot
from mlplab.models import ModelConfig, build_mlp
from mlplab.sweep.runner import synthetic_data
from mlplab.train import TrainConfig, fit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data() -> Data:
    return synthetic_data(n_train=256, n_test=128)


def small_net(seed: int = 0) -> nn.Module:
    return build_mlp(ModelConfig(hidden=(8,), n_inputs=32, init="xavier"), torch.Generator().manual_seed(seed))


def decode(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


class FakeHandle:
    """Stands in for IPython's DisplayHandle: records the first bundle and every update."""

    def __init__(self, bundle: dict[str, str]) -> None:
        self.bundles = [bundle]

    def update(self, bundle: dict[str, str], raw: bool = False) -> None:
        assert raw
        self.bundles.append(bundle)


@pytest.fixture
def jupyter(monkeypatch) -> list[FakeHandle]:
    """As if in a Jupyter kernel: each new display is a FakeHandle, appended to the returned list."""
    handles: list[FakeHandle] = []

    def display(bundle):
        handles.append(FakeHandle(bundle))
        return handles[-1]

    monkeypatch.setattr(live, "in_jupyter", lambda: True)
    monkeypatch.setattr(live, "_ipython_display", display)
    return handles


# ---- in a script -------------------------------------------------------------------------------


def test_in_a_script_it_rewrites_live_png_after_every_epoch_and_says_where_once(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    writes = []
    real_write = live.write_bytes
    monkeypatch.setattr(live, "write_bytes", lambda path, png: writes.append(path) or real_write(path, png))
    said = io.StringIO()
    plot = LivePlot(stream=said)
    history = fit(small_net(), data, TrainConfig(epochs=3, lr=0.5), callbacks=[plot])
    assert writes == [live.DEFAULT_PATH] * 3  # one atomic write per epoch, through mlplab.atomic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.png"]  # no temporary file left behind
    assert decode((tmp_path / "live.png").read_bytes()).size == (600, 400)  # 6 x 4 inches at 100 dpi
    assert said.getvalue() == f"live training curves: {tmp_path / 'live.png'} (rewritten after every epoch)\n"
    assert plot.history is history and len(history.records) == 3


def test_a_given_path_every_and_the_one_line(data, tmp_path):
    said = io.StringIO()
    path = tmp_path / "curves" / "run.png"
    plot = LivePlot(path, every=2, stream=said)
    drawn = []
    plot.figure.show = lambda png, text: drawn.append(text)  # what would be drawn, in order
    fit(small_net(), data, TrainConfig(epochs=5), callbacks=[plot])
    assert [t.split(":")[0] for t in drawn] == [f"training curves after epoch {e} of 5" for e in (2, 4, 5)]
    plot = LivePlot(path, stream=said)
    fit(small_net(), data, TrainConfig(epochs=2), callbacks=[plot])
    decode(path.read_bytes())
    assert said.getvalue().count("\n") == 1  # said once, by the one LivePlot that wrote


def test_nothing_is_drawn_when_nothing_is_shown(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mlplab.plots, "png_bytes", lambda *a, **k: pytest.fail("drew a figure nobody sees"))
    plot = LivePlot(show=False)
    history = fit(small_net(), data, TrainConfig(epochs=2), callbacks=[plot])
    assert list(tmp_path.iterdir()) == [] and plot.path is None
    assert plot.history is history  # the records are kept, to be shown later


def test_show_false_with_a_path_writes_only_the_file(data, tmp_path, jupyter):
    plot = LivePlot(tmp_path / "only.png", show=False, stream=io.StringIO())
    fit(small_net(), data, TrainConfig(epochs=2), callbacks=[plot])
    assert jupyter == [] and (tmp_path / "only.png").is_file()


def test_a_run_that_stops_early_is_drawn_at_its_last_epoch(tmp_path, gen):
    data = Data(
        synthetic.linear([1.0, 2.0], 0.0, 200, generator=gen), synthetic.linear([1.0, 2.0], 0.0, 50, generator=gen)
    )
    plot = LivePlot(tmp_path / "d.png", every=50, logy=True, stream=io.StringIO())
    drawn = []
    show = plot.figure.show
    plot.figure.show = lambda png, text: drawn.append(text) or show(png, text)
    history = fit(nn.Linear(2, 1), data, TrainConfig(epochs=100, batch_size=10, lr=50.0, loss="mse"), callbacks=[plot])
    assert history.status == "diverged" and len(history.records) < 50
    assert drawn == [f"training curves after epoch {len(history.records)} of 100: diverged"]
    decode((tmp_path / "d.png").read_bytes())


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"path": "curves.jpg"}, "path"),
        ({"path": ""}, "path"),
        ({"path": 3}, "path"),
        ({"every": 0}, "every"),
        ({"dpi": 5}, "dpi"),
        ({"show": "yes"}, "show"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        LivePlot(**kwargs)
    assert err.value.field == field


def test_a_folder_is_not_a_png_path(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(ConfigError, match="folder"):
        LivePlot(tmp_path / "x.png")


# ---- in Jupyter --------------------------------------------------------------------------------


def test_in_jupyter_one_figure_is_updated_in_place_and_no_file_is_written(data, tmp_path, monkeypatch, jupyter):
    monkeypatch.chdir(tmp_path)
    said = io.StringIO()
    plot = LivePlot(stream=said)
    fit(small_net(), data, TrainConfig(epochs=3), callbacks=[plot])
    assert len(jupyter) == 1  # one output in the cell ...
    bundles = jupyter[0].bundles  # ... shown after epoch 1, updated after epochs 2 and 3
    assert [b["text/plain"].split(":")[0] for b in bundles] == [
        f"training curves after epoch {e} of 3" for e in (1, 2, 3)
    ]
    for bundle in bundles:
        decode(base64.b64decode(bundle["image/png"]))
    assert list(tmp_path.iterdir()) == [] and said.getvalue() == ""
    fit(small_net(1), data, TrainConfig(epochs=2), callbacks=[plot])
    assert len(jupyter) == 2 and len(jupyter[1].bundles) == 2  # another run: a new output, in its own cell


def test_in_jupyter_a_given_path_is_written_too(data, tmp_path, jupyter):
    said = io.StringIO()
    fit(small_net(), data, TrainConfig(epochs=2), callbacks=[LivePlot(tmp_path / "also.png", stream=said)])
    assert len(jupyter) == 1 and (tmp_path / "also.png").is_file() and "also.png" in said.getvalue()


def fake_ipython(monkeypatch, shell) -> None:
    module = types.ModuleType("IPython")
    module.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", module)


def test_in_jupyter_detects_a_kernel_without_importing_ipython(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not in_jupyter()
    assert "IPython" not in sys.modules  # asking did not import it
    fake_ipython(monkeypatch, None)  # IPython imported, but no shell running
    assert not in_jupyter()
    fake_ipython(monkeypatch, types.SimpleNamespace(config={"TerminalIPythonApp": {}}))  # the terminal ipython
    assert not in_jupyter()
    fake_ipython(monkeypatch, types.SimpleNamespace(config={"IPKernelApp": {"connection_file": "k.json"}}))
    assert in_jupyter()
    fake_ipython(monkeypatch, types.SimpleNamespace(kernel=object(), config={}))
    assert in_jupyter()


# ---- sweeps ------------------------------------------------------------------------------------


def test_live_sweep_curves_are_the_mean_over_seeds_of_what_is_stored(data, tmp_path):
    from mlplab.sweep import SweepSpec, load_histories, run_sweep, summarize
    from mlplab.sweep.results import load_results

    spec = SweepSpec(base={"hidden": (8,), "epochs": 3, "init": "xavier"}, grid={"lr": [0.05, 0.5]}, seeds=(0, 1))
    said = io.StringIO()
    plot = LiveSweepPlot(tmp_path / "sweep.png", stream=said)
    run_sweep(spec, data, tmp_path / "sweep", callbacks=[plot])
    decode((tmp_path / "sweep.png").read_bytes())
    assert said.getvalue().count("\n") == 1 and "sweep.png" in said.getvalue()
    means = plot.means()
    assert sorted(means) == ["lr=0.05", "lr=0.5"]  # labelled by what varies; seeds averaged
    stored = load_histories(tmp_path / "sweep")
    for lr, label in ((0.05, "lr=0.05"), (0.5, "lr=0.5")):
        rows = stored[stored["lr"] == lr].groupby("epoch")["test_acc"].mean()
        assert means[label] == pytest.approx(rows.tolist())
    summary = summarize(load_results(tmp_path / "sweep"))
    assert "<table" in summary._repr_html_()  # a sweep's results are DataFrames: Jupyter shows them already
    top = summary.loc[summary["final_test_acc_mean"].idxmax()]
    label, value = plot.best()
    assert label == f"lr={top['lr']:g}" and value == pytest.approx(top["final_test_acc_mean"])


def test_each_sweep_starts_its_own_live_figure(data, tmp_path, jupyter):
    from mlplab.sweep import SweepSpec, run_sweep

    plot = LiveSweepPlot()
    for name, grid in (("first", {"lr": [0.05, 0.5]}), ("second", {"dropout1": [0.0, 0.5]})):
        spec = SweepSpec(base={"hidden": (8,), "epochs": 2, "init": "xavier"}, grid=grid, seeds=(0,))
        run_sweep(spec, data, tmp_path / name, callbacks=[plot])
    assert len(jupyter) == 2  # one display per sweep, in the cell
    assert sorted(plot.means()) == ["dropout1=0", "dropout1=0.5"]  # the second sweep's curves only
    assert jupyter[1].bundles[-1]["text/plain"].startswith("sweep curves: 2 of 2 configurations")


def test_live_sweep_in_jupyter_is_one_display(data, tmp_path, jupyter):
    from mlplab.sweep import SweepSpec, run_sweep

    spec = SweepSpec(base={"hidden": (8,), "epochs": 2, "init": "xavier"}, grid={"dropout1": [0.0, 0.5]}, seeds=(0,))
    plot = LiveSweepPlot()
    run_sweep(spec, data, tmp_path / "sweep", callbacks=[plot])
    assert len(jupyter) == 1 and plot.path is None
    last = jupyter[0].bundles[-1]
    assert last["text/plain"].startswith("sweep curves: 2 of 2 configurations, best dropout1=")
    decode(base64.b64decode(last["image/png"]))
    assert all(not math.isnan(v) for values in plot.means().values() for v in values)


def test_a_liveplot_that_shows_nothing_never_imports_matplotlib(tmp_path):
    code = (
        "import sys\n"
        "from mlplab.live import LivePlot\n"
        "from mlplab.models import ModelConfig, build_mlp\n"
        "from mlplab.sweep.runner import synthetic_data\n"
        "from mlplab.train import TrainConfig, fit\n"
        "import torch\n"
        "net = build_mlp(ModelConfig(hidden=(4,), n_inputs=32), torch.Generator().manual_seed(0))\n"
        "fit(net, synthetic_data(64, 32), TrainConfig(epochs=2), callbacks=[LivePlot(show=False)])\n"
        "print('matplotlib' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False" and list(tmp_path.iterdir()) == []
