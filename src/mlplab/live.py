"""Live training curves: the book's ``d2l.Animator`` figure, redrawn while training runs.

The book draws its curves with ``d2l.Animator``, which shows only inside Jupyter and prints
``<Figure ...>`` in a script (d2l-en #1961). :class:`LivePlot` is a :class:`mlplab.train.Callback`
that draws the same figure (train and test loss and accuracy against the epoch,
:func:`mlplab.plots.training_curves`) after every epoch, and the same code works in both places:

=========================  ===============================================================
where, and how made        what it draws after each epoch
=========================  ===============================================================
Jupyter, ``LivePlot()``    one figure in the cell's output, updated in place
Jupyter, ``path=P``        that figure, and the PNG file ``P`` too
script, ``LivePlot()``     the PNG file ``live.png`` in the working folder (:data:`DEFAULT_PATH`)
script, ``path=P``         the PNG file ``P``
``show=False``             only the file ``P`` when a path is given; without one, nothing
=========================  ===============================================================

A file is rewritten atomically (:func:`mlplab.atomic.write_bytes`): a viewer never sees half a
PNG. Where it is, is said once, on the first write (one line, not one per epoch). Nothing is
drawn, and matplotlib is not even imported, when nothing is shown (``show=False`` and no path):
the callback then only keeps the run's :attr:`LivePlot.history`, which Jupyter shows later as a
table with its curves. Training never waits on more than one drawing per epoch (``every`` draws
less often), and a LivePlot never changes training: it reads the records ``fit`` hands it.

:class:`LiveSweepPlot` does the same for :func:`mlplab.sweep.run_sweep`: the test accuracy (test
loss for a regression) of every configuration, its mean over the seeds trained so far, against
the epoch, with the best so far drawn bold.
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from mlplab.atomic import write_bytes
from mlplab.display import in_jupyter
from mlplab.errors import ConfigError, check_int
from mlplab.sweep.runner import SweepCallback
from mlplab.train import Callback, EpochRecord, History, TrainConfig

DEFAULT_PATH = Path("live.png")  # where a script's LivePlot() draws, relative to the working folder
MAX_LEGEND = 8  # more configurations than this: only the best one is named in the legend


def _png_path(path: str | os.PathLike[str] | None) -> Path | None:
    """``path`` as a Path, or a ConfigError unless it names a ``.png`` file (not a folder)."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise ConfigError("path", path, "a PNG file name such as live.png, or None for no file")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError("path", str(path), "the live figure is a PNG: give a name ending in .png, e.g. live.png")
    if path.is_dir():
        raise ConfigError("path", str(path), "this is a folder: give a file name inside it, e.g. live.png")
    return path


def _ipython_display(bundle: dict[str, str]) -> Any:
    """Show ``bundle`` (raw MIME data) as a new output of the running cell; returns its update handle."""
    from IPython.display import display

    return display(bundle, raw=True, display_id=True)


class LiveFigure:
    """Where a live figure goes: one output of the notebook cell, updated in place, and/or a PNG
    file rewritten atomically, whose path is said once.

    Parameters
    ----------
    path : Path, optional
        The PNG file to rewrite at every :meth:`show`; None: no file.
    inline : bool
        Show the figure in the running Jupyter cell (needs a kernel: see :func:`mlplab.display.in_jupyter`).
    what : str
        What the figure is, for the one line that says where the file is.
    stream : text stream, optional
        Where that line goes (default ``sys.stderr`` at the time).
    """

    def __init__(self, path: Path | None, inline: bool, what: str, stream: TextIO | None = None) -> None:
        self.path, self.inline, self.what, self.stream = path, inline, what, stream
        self._handle: Any = None
        self._said = False

    @property
    def active(self) -> bool:
        """Whether anything is shown at all (when not, nothing needs drawing)."""
        return self.inline or self.path is not None

    def new_output(self) -> None:
        """The next :meth:`show` starts a new output in the cell that runs then (a new training run)."""
        self._handle = None

    def show(self, png: bytes, text: str) -> None:
        """Show ``png`` (``text`` is its plain-text stand-in) in the cell and/or write it to the file."""
        if self.inline:
            bundle = {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}
            if self._handle is None:
                self._handle = _ipython_display(bundle)
            else:
                self._handle.update(bundle, raw=True)
        if self.path is not None:
            write_bytes(self.path, png)
            if not self._said:
                self._said = True
                print(
                    f"{self.what}: {self.path.resolve()} (rewritten after every epoch)", file=self.stream or sys.stderr
                )


def _surface(path: str | os.PathLike[str] | None, show: bool, what: str, stream: TextIO | None) -> LiveFigure:
    """The rule of the module docstring's table: inline in Jupyter, else a file (``live.png`` by default)."""
    if not isinstance(show, bool):
        raise ConfigError("show", show, "True (show the figure: inline in Jupyter, else as a file) or False")
    file = _png_path(path)
    inline = show and in_jupyter()
    if file is None and show and not inline:
        file = DEFAULT_PATH
    return LiveFigure(file, inline, what, stream)


class LivePlot(Callback):
    """The training curves of :func:`mlplab.train.fit`, redrawn after every epoch (the book's Animator).

    ``fit(net, data, config, callbacks=[LivePlot()])`` shows one figure in Jupyter that grows by
    an epoch at a time, and rewrites ``live.png`` in a script (see the module docstring's table).

    Parameters
    ----------
    path : str or PathLike, optional
        A PNG file rewritten (atomically) after every drawn epoch, in Jupyter too. Default: none in
        Jupyter; ``live.png`` in the working folder elsewhere, when ``show`` is True.
    show : bool
        True: show the curves as the place allows (inline in Jupyter, else as the file). False:
        only write ``path`` if one is given; without one nothing is drawn (no cost).
    every : int
        Draw after every ``every``-th epoch (and always after the last one): for long runs of
        fast epochs, where drawing (about 0.1 s) would cost more than training.
    title : str
        The figure's title.
    logy : bool
        A logarithmic y axis (the book's polynomial and weight-decay figures, d2l 4.4 and 4.5).
    dpi : int
        Resolution of the PNG (the figure is 6 x 4 inches).
    stream : text stream, optional
        Where the one line naming the file goes (default ``sys.stderr``).

    Attributes
    ----------
    history : History
        The run being trained (the one ``fit`` returns), kept after it ends: ``live.history``
        shows in Jupyter as a table with its curves.

    Examples
    --------
    >>> from mlplab.live import LivePlot
    >>> history = fit(net, data, TrainConfig(epochs=10), callbacks=[LivePlot()])  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        show: bool = True,
        every: int = 1,
        title: str = "",
        logy: bool = False,
        dpi: int = 100,
        stream: TextIO | None = None,
    ) -> None:
        check_int("every", every, 1)
        check_int("dpi", dpi, 10, 1000)
        self.figure = _surface(path, show, "live training curves", stream)
        self.every, self.title, self.logy, self.dpi = every, str(title), bool(logy), dpi
        self.history = History()
        self.epochs = 0  # the run's planned epochs: the x axis spans them from the first epoch on
        self._drawn = 0  # the last epoch drawn

    @property
    def path(self) -> Path | None:
        """The PNG file this LivePlot writes, or None."""
        return self.figure.path

    def on_train_begin(self, config: TrainConfig, batches_per_epoch: int, history: History) -> None:
        self.history, self.epochs = history, config.epochs
        self._drawn = 0
        self.figure.new_output()

    def on_epoch_end(self, record: EpochRecord) -> None:
        if record.epoch % self.every == 0 or record.epoch >= self.epochs:
            self.draw()

    def on_train_end(self, history: History) -> None:
        self.history = history
        if history.records and history.final.epoch != self._drawn:  # stopped early, or every > 1
            self.draw()

    def draw(self) -> None:
        """Draw the curves of :attr:`history` now (nothing when nothing is shown, or before any epoch)."""
        if not self.figure.active or not self.history.records:
            return
        from matplotlib.ticker import MaxNLocator

        from mlplab.plots import png_bytes, training_curves  # matplotlib only when something is shown

        last = self.history.final.epoch
        fig = training_curves(self.history, self.title)
        ax = fig.axes[0]
        ax.set_xlim(0.5, max(self.epochs, last) + 0.5)  # fixed from the start, as the Animator's
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if self.logy and _any_positive(self.history):  # a log axis of nothing but inf/NaN cannot be drawn
            ax.set_yscale("log")
        self.figure.show(
            png_bytes(fig, self.dpi), f"training curves after epoch {last} of {self.epochs}: {self.history.status}"
        )
        self._drawn = last


class LiveSweepPlot(SweepCallback):
    """Live curves of :func:`mlplab.sweep.run_sweep`: each configuration's test accuracy against the epoch.

    Each line is one configuration: the mean over its seeds trained so far of the test accuracy
    (the test loss, on a log axis, for a regression) after each epoch; the configuration whose last
    mean is best so far is drawn bold and named in the title. Lines of finished groups stay, so
    the figure fills in as the sweep goes; results that were already stored (a resumed sweep) are
    not trained and not drawn. It is drawn after every ``every``-th epoch of a group and when a
    group ends, where :class:`LivePlot` draws (inline in Jupyter, else a PNG file), with the same
    parameters. With ``run_sweep(..., backend="ray")`` groups train in Ray workers: each group's
    curves are added, whole, when it ends.

    ``run_sweep(spec, data, out, callbacks=[LiveSweepPlot()])``; an experiment hands its
    callbacks to every sweep it trains (``experiments.run("mlp-lr", callbacks=[LiveSweepPlot()])``),
    and each sweep starts a figure of its own (the curves start afresh at every ``run_sweep``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        show: bool = True,
        every: int = 1,
        title: str = "",
        dpi: int = 100,
        stream: TextIO | None = None,
    ) -> None:
        check_int("every", every, 1)
        check_int("dpi", dpi, 10, 1000)
        self.figure = _surface(path, show, "live sweep curves", stream)
        self.every, self.title, self.dpi = every, str(title), dpi
        # configuration label -> seed -> the metric after each epoch
        self.curves: dict[str, dict[int, list[float]]] = {}
        self.regression = False
        self.epochs = 0
        self._names: list[str] | None = None  # the hyperparameters that vary (the labels)
        self._total = self._skipped = 0
        self._seen: set[str] = set()  # keys of the trials whose epochs were seen (not with Ray)

    @property
    def path(self) -> Path | None:
        """The PNG file this LiveSweepPlot writes, or None."""
        return self.figure.path

    def on_sweep_begin(self, groups: Sequence[Any], n_skipped: int) -> None:
        trials = [t for g in groups for t in g.trials]
        params = [t.params() for t in trials]
        keys = list(dict.fromkeys(k for p in params for k in p))
        self._names = [k for k in keys if len({json.dumps(p.get(k)) for p in params}) > 1]
        self._total = len({json.dumps(p, sort_keys=True) for p in params})
        self._skipped = n_skipped
        self.curves, self.epochs, self._seen = {}, 0, set()  # a new sweep: a figure of its own
        self.figure.new_output()

    def on_group_begin(self, n_models: int, epochs: int, batches_per_epoch: int) -> None:
        self.epochs = max(self.epochs, epochs)

    def on_models_epoch(self, epoch, trials, records, model, data) -> None:
        for trial, record in zip(trials, records):
            self._seen.add(trial.key)
            if record is None:
                continue
            self.regression = record.test_acc is None
            value = record.test_loss if self.regression else record.test_acc
            label = trial.label(self._names).rpartition("seed=")[0].strip() or "the configuration"
            curve = self.curves.setdefault(label, {}).setdefault(trial.seed, [])
            curve.append(value if value is not None and math.isfinite(value) else math.nan)

    def on_epoch_end(self, epoch: int, n_alive: int) -> None:
        if epoch % self.every == 0:
            self.draw()

    def on_group_end(self, group: Any, results: Sequence[Any]) -> None:
        for r in results:  # a group that trained without epoch hooks (in a Ray worker): its curves at once
            if r.trial.key not in self._seen:
                self.epochs = max(self.epochs, r.trial.train.epochs)
                for record in r.history.records:
                    self.on_models_epoch(record.epoch, [r.trial], [record], None, None)
        self.draw()

    def means(self) -> dict[str, list[float]]:
        """Each configuration's mean over its seeds after each epoch (NaN where no seed got there)."""
        out = {}
        for label, seeds in self.curves.items():
            longest = max(len(c) for c in seeds.values())
            out[label] = [
                _nanmean([c[e] for c in seeds.values() if e < len(c)]) for e in range(longest)
            ]  # fmt: skip
        return out

    def best(self) -> tuple[str, float] | None:
        """The configuration whose last mean is best so far (highest accuracy, lowest loss), with it."""
        finals = [(label, m[-1]) for label, m in self.means().items() if m and not math.isnan(m[-1])]
        if not finals:
            return None
        return (min if self.regression else max)(finals, key=lambda lv: lv[1])

    def draw(self) -> None:
        """Draw the curves now (nothing when nothing is shown, or before any epoch)."""
        if not self.figure.active or not self.curves:
            return
        from matplotlib.ticker import MaxNLocator

        from mlplab.plots import plt, png_bytes  # matplotlib only when something is shown

        means, best = self.means(), self.best()
        metric = "test loss" if self.regression else "test accuracy"
        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        many = len(means) > MAX_LEGEND
        for label, values in means.items():
            epochs = range(1, len(values) + 1)
            if best is not None and label == best[0]:
                ax.plot(epochs, values, "-", color="C3", linewidth=2.5, label=f"best: {label}", zorder=3)
            elif many:
                ax.plot(epochs, values, "-", color="0.6", linewidth=0.8, alpha=0.7)
            else:
                ax.plot(epochs, values, "-", linewidth=1.2, label=label)
        ax.set_xlim(0.5, max(self.epochs, 1) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{metric} (mean over seeds)")
        if self.regression:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        done = f"{len(means)} of {self._total} configurations"
        done += f" ({self._skipped} stored results skipped)" if self._skipped else ""
        lead = f"{self.title}\n" if self.title else ""
        ax.set_title(f"{lead}{done}" + (f"; best {best[1]:.4g}" if best else ""), fontsize=9)
        text = f"sweep curves: {done}" + (f", best {best[0]} {metric} {best[1]:.4g}" if best else "")
        self.figure.show(png_bytes(fig, self.dpi), text)


def _any_positive(history: History) -> bool:
    """Whether some loss of ``history`` is finite and positive (something a log axis can show)."""
    return any(math.isfinite(v) and v > 0 for r in history.records for v in (r.train_loss, r.test_loss))


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan
