"""Writing a training run's outputs: config, history (JSON and CSV), curves; all atomically."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from mlplab.train import History

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, obj: object) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


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
    write_text_atomic(out / "history.csv", history_csv(history))
