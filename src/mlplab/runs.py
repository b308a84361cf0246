"""A training run's folder, owned by one object: :class:`RunDir`.

``OUT/`` holds ``config.json`` (what was trained), ``history.json``/``history.csv`` (one record
per finished epoch), ``curves.png`` and ``checkpoint.pt`` (written after every epoch, so
``--resume`` continues from the last finished one), plus ``run.lock``. Every file is written
atomically. :meth:`RunDir.open` takes the folder's lock before any work, so two commands never
write one folder, and removes the temporary files of a writer that was killed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

from mlplab.atomic import remove_stale, write_text
from mlplab.errors import MlplabError
from mlplab.lock import folder_lock
from mlplab.train import (
    RESUME_MAY_CHANGE,
    RUN_LOCK,
    Callback,
    History,
    TrainConfig,
    check_resumed_epochs,
    load_checkpoint,
)

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")


def write_json(path: Path, obj: object) -> Path:
    """Write ``obj`` as indented, strict JSON (no NaN), atomically."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_json(path: Path, what: str = "file") -> object:
    """Parse the JSON file ``path``; a damaged one is an :class:`MlplabError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MlplabError(
            f"cannot read the {what} {path}: {exc}. Fix: restore it, or delete the folder's run and start over."
        ) from None


def history_csv(history: History) -> str:
    """The history as CSV text, one row per epoch; empty cells for missing values."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for record in history.records:
        writer.writerow({k: ("" if v is None else v) for k, v in record.to_dict().items()})
    return buffer.getvalue()


def save_history(out: Path, history: History) -> None:
    """``out/history.json`` (a list of per-epoch objects) and ``out/history.csv``."""
    write_json(out / "history.json", [r.to_dict() for r in history.records])
    write_text(out / "history.csv", history_csv(history))


class HistoryWriter(Callback):
    """Saves the run's history after every epoch, so a killed run leaves its records so far."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.history: History | None = None

    def on_train_begin(self, config: TrainConfig, batches_per_epoch: int, history: History) -> None:
        self.history = history  # fit's own: restored epochs included

    def on_epoch_end(self, record) -> None:
        save_history(self.out, self.history)


class RunDir:
    """The folder of one training run (see the module docstring).

    Parameters
    ----------
    path : path
        The folder; created if missing. An empty path or an existing file is refused.
    """

    CONFIG = "config.json"
    CHECKPOINT = "checkpoint.pt"
    OUTPUTS = (CONFIG, "history.json", CHECKPOINT)  # any of these means the folder holds a run

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @contextlib.contextmanager
    def open(self, resume: bool) -> Iterator[RunDir]:
        """Hold the folder for the block: locked, stale temp files removed, checked for ``resume``.

        Without ``resume`` a folder that already holds a run is refused (nothing is overwritten);
        with it, whatever is stored is continued.
        """
        with folder_lock(self.path, RUN_LOCK, "mlplab train"):
            remove_stale(self.path)
            existing = [name for name in self.OUTPUTS if (self.path / name).exists()]
            if existing and not resume:
                raise MlplabError(
                    f"{self.path} already holds a run ({', '.join(existing)}). Fix: add --resume "
                    "to continue it, or pick another --out."
                )
            yield self

    def stored_config(self) -> dict | None:
        """The run's ``config.json`` as a dict, None when there is none; a damaged one is an error."""
        path = self.path / self.CONFIG
        if not path.exists():
            return None
        config = read_json(path, "run config")
        if not isinstance(config, dict) or not isinstance(config.get("train", {}), dict):
            raise MlplabError(
                f"{path} is not a run config (expected an object with impl, model and train). "
                "Fix: restore it, or pick another --out."
            )
        return config

    def check_resume(self, config: dict, train_config: TrainConfig) -> None:
        """Refuse to resume with settings other than the stored run's (``epochs`` may grow, ``device`` change).

        Checked before anything is written, so a refused resume leaves the folder as it was.
        """
        stored = self.stored_config()
        check_resumed_epochs(train_config, (stored or {}).get("train", {}).get("epochs"), self.path)
        if stored is not None:
            # a field TrainConfig gained later (precision) is at its default in a run stored before
            stored = {**stored, "train": {**dataclasses.asdict(TrainConfig()), **stored.get("train", {})}}
            diffs = differences(stored, config, exempt=tuple(f"train.{name}" for name in RESUME_MAY_CHANGE))
            if diffs:
                raise MlplabError(
                    f"cannot resume the run in {self.path}: {'; '.join(diffs)}. Fix: use the run's "
                    "own settings (see its config.json), or pick another --out."
                )
        if self.checkpoint.exists():
            done = len(load_checkpoint(self.checkpoint)["history"]["epochs"])
            if done > train_config.epochs:
                raise MlplabError(
                    f"the run in {self.path} has already trained {done} epochs, more than "
                    f"--epochs {train_config.epochs}. Fix: give --epochs {done} or more."
                )

    def write_config(self, config: dict) -> None:
        write_json(self.path / self.CONFIG, config)

    def writer(self) -> HistoryWriter:
        """The callback that keeps ``history.json``/``.csv`` current after every epoch."""
        return HistoryWriter(self.path)

    def resume_hint(self) -> str:
        """What an interrupted run has saved and the command that continues it."""
        try:
            done = len(load_checkpoint(self.checkpoint)["history"]["epochs"]) if self.checkpoint.exists() else 0
        except MlplabError:
            done = 0
        if done == 0:
            return f"no epoch had finished; {self.path} holds the settings. Start it again with: mlplab train --out {self.path} --resume"
        return (
            f"{done} finished epoch(s) are saved in {self.path}. Continue with: mlplab train --out {self.path} --resume"
        )

    def finish(self, history: History, title: str, findings: list | None = None) -> None:
        """Write the final history, ``curves.png`` and the doctor's findings (``doctor.json``)."""
        from mlplab.plots import save_figure, training_curves  # matplotlib only when a run ends

        save_history(self.path, history)
        if findings is not None:
            write_json(self.path / "doctor.json", [dataclasses.asdict(f) for f in findings])
        save_figure(training_curves(history, title=title), self.path / "curves.png")


def differences(
    stored: dict, current: dict, prefix: str = "", *, exempt: tuple[str, ...] = (), word: str = "given"
) -> list[str]:
    """``"train.lr: stored 0.1, given 0.5"`` for every setting that differs, but the ``exempt`` ones.

    Nested dicts are compared entry by entry (dotted names); tuples and lists compare equal, as JSON stores them.
    """
    out = []
    for key in sorted(set(stored) | set(current)):
        name = f"{prefix}{key}"
        if name in exempt:
            continue
        a, b = (json.loads(json.dumps(d.get(key))) for d in (stored, current))  # tuples and lists compare equal
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{name}.", exempt=exempt, word=word)
        elif a != b:
            out.append(f"{name}: stored {a!r}, {word} {b!r}")
    return out
