"""A sweep's results in one SQLite file, ``DIR/sweep.sqlite``, written group by group.

Each finished group is inserted in one transaction (all its models or none), in WAL mode with
``synchronous=FULL``: a sweep killed at any instant, even by SIGKILL, leaves every group that
had committed and nothing of the one in flight. The key of a result is :attr:`Trial.key`
(configuration + seed) and is the table's primary key, so a result can never be stored twice;
a rerun skips the stored keys. One writer at a time holds ``DIR/sweep.lock`` (an ``flock``,
released by the kernel when its process dies).

Tables
------
``results``: key, config (JSON of ``Trial.params()``), seed, status (ok | diverged), epochs (run),
final_train_loss, final_train_acc, final_test_loss, final_test_acc, seconds, history (JSON list of
epoch records), group_index, device, created (UTC ISO time).
``runs``: one row per ``run_sweep`` call: spec JSON, device, group size, counts, start and end.
``meta``: schema version and the fingerprint of the data the sweep trains on.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Sequence

from mlplab.errors import MlplabError
from mlplab.sweep.batched import TrialResult

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process lock; the primary key still forbids duplicates
    fcntl = None  # type: ignore[assignment]

FILENAME = "sweep.sqlite"
LOCKNAME = "sweep.lock"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'diverged')),
    epochs INTEGER NOT NULL,
    final_train_loss REAL,
    final_train_acc REAL,
    final_test_loss REAL,
    final_test_acc REAL,
    seconds REAL NOT NULL,
    history TEXT NOT NULL,
    group_index INTEGER NOT NULL,
    device TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spec TEXT NOT NULL,
    device TEXT NOT NULL,
    max_models INTEGER NOT NULL,
    planned INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    trained INTEGER,
    started TEXT NOT NULL,
    finished TEXT
);
"""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class SweepStore:
    """The results database of one sweep directory.

    Use as a context manager; ``SweepStore(dir, create=False)`` opens an existing sweep read-only.
    """

    def __init__(self, directory: str | os.PathLike[str], create: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILENAME
        if create:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            with self.conn:
                self.conn.executescript(_SCHEMA)
                self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        else:
            if not self.path.exists():
                raise MlplabError(
                    f"{self.directory} holds no sweep ({FILENAME} is missing). "
                    f"Fix: run `mlplab sweep run ... --out {self.directory}` first, or give the folder it wrote."
                )
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0)
        self.conn.row_factory = sqlite3.Row
        try:
            version = self.meta().get("schema_version")
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise MlplabError(f"{self.path} is not a readable sweep database ({exc}). Fix: use another --out.") from exc
        if version != str(SCHEMA_VERSION):
            self.conn.close()
            raise MlplabError(f"{self.path} has schema version {version}; this mlplab reads {SCHEMA_VERSION}")

    def __enter__(self) -> "SweepStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def meta(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT name, value FROM meta")}

    def bind_data(self, fingerprint: str) -> None:
        """Record which data this sweep trains on, or refuse data other than what it was started on."""
        stored = self.meta().get("data")
        if stored is None:
            with self.conn:
                self.conn.execute("INSERT INTO meta VALUES ('data', ?)", (fingerprint,))
        elif stored != fingerprint:
            raise MlplabError(
                f"{self.directory} holds a sweep on other data ({stored}), not {fingerprint}. "
                "Fix: use the same --data as before, or a new --out folder."
            )

    def keys(self) -> set[str]:
        """Keys of every stored result."""
        return {r[0] for r in self.conn.execute("SELECT key FROM results")}

    def add_group(self, results: Sequence[TrialResult], group_index: int, device: str) -> None:
        """Insert a finished group's results in one transaction (all or nothing)."""
        created = _now()
        rows = []
        for r in results:
            final = r.history.final
            rows.append((
                r.trial.key, json.dumps(r.trial.params()), r.trial.seed, r.history.status, final.epoch,
                _finite(final.train_loss), _finite(final.train_acc), _finite(final.test_loss), _finite(final.test_acc),
                r.seconds, json.dumps([rec.to_dict() for rec in r.history.records]), group_index, device, created,
            ))  # fmt: skip
        try:
            with self.conn:
                self.conn.executemany(f"INSERT INTO results VALUES ({', '.join('?' * 14)})", rows)
        except sqlite3.IntegrityError as exc:
            raise MlplabError(f"a result of group {group_index} is already stored in {self.path} ({exc})") from exc

    def start_run(self, spec: dict[str, Any], device: str, max_models: int, planned: int, skipped: int) -> int:
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (spec, device, max_models, planned, skipped, started) VALUES (?, ?, ?, ?, ?, ?)",
                (json.dumps(spec), device, max_models, planned, skipped, _now()),
            )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, trained: int) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET trained = ?, finished = ? WHERE id = ?", (trained, _now(), run_id))

    def rows(self) -> list[sqlite3.Row]:
        """Every stored result, in insertion order."""
        return list(self.conn.execute("SELECT * FROM results ORDER BY rowid"))

    def runs(self) -> list[sqlite3.Row]:
        return list(self.conn.execute("SELECT * FROM runs ORDER BY id"))


@contextlib.contextmanager
def writer_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``DIR/sweep.lock`` exclusively, or fail at once if another run holds it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(directory / LOCKNAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MlplabError(
                f"another `mlplab sweep run` is writing to {directory}. "
                "Fix: wait for it to finish, or use another --out folder."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
