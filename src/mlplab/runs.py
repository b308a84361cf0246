"""Writing a training run's outputs: config, history (JSON and CSV), curves; all atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from mlplab.atomic import write_text
from mlplab.train import History

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")


def write_json(path: Path, obj: object) -> Path:
    """Write ``obj`` as indented, strict JSON (no NaN), atomically."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


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
