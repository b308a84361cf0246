"""A sweep's results in one SQLite file, ``DIR/sweep.sqlite``, written group by group.

Each finished group is inserted in one transaction (all its models or none), in WAL mode with
``synchronous=FULL``: a sweep killed at any instant, even by SIGKILL, leaves every group that
had committed and nothing of the one in flight. The key of a result is :attr:`Trial.key`
(configuration + seed) and is the table's primary key, so a result can never be stored twice
(a group delivered again is skipped key by key, in its transaction); a rerun skips the stored keys. One writer at a time holds ``DIR/sweep.lock`` (an ``flock``,
released by the kernel when its process dies; see :mod:`mlplab.lock`).

Hostile files are refused, never repaired: a ``sweep.sqlite`` that is a symbolic link, that is
not an SQLite database, that fails ``PRAGMA quick_check`` (a truncated file, a zeroed page) or
that is some other program's database raises an :class:`~mlplab.errors.MlplabError` naming the
file, and the file is left byte for byte as it was. Every ``sqlite3`` error on open, read or write
becomes such an error too (a full disk: an :class:`~mlplab.atomic.OutputError` saying so).

Tables
------
``results``: key, config (JSON of ``Trial.params()``), seed, status (``mlplab.train.STATUSES``), epochs (run),
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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mlplab.atomic import OutputError, prepare_dir
from mlplab.errors import MlplabError
from mlplab.lock import folder_lock
from mlplab.sweep.batched import TrialResult
from mlplab.train import STATUSES

FILENAME = "sweep.sqlite"
LOCKNAME = "sweep.lock"
HOLDER = "mlplab sweep run"  # names the lock's owner in the "another ... is writing" message
SCHEMA_VERSION = 2  # 2: a trained-out model may also end "failed: at chance" / "failed: loss rose"
_MIGRATES = {"1"}  # older versions this mlplab upgrades in place when it writes (reads them as they are)
_TABLES = {"meta", "results", "runs"}

_STATUSES = ", ".join(f"'{s}'" for s in STATUSES)
_RESULTS = f"""results (
    key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({_STATUSES})),
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
)"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {_RESULTS};
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


class StoreError(MlplabError):
    """A ``sweep.sqlite`` that cannot be used as it is (damaged, foreign, a link, locked)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def damaged(path: str | os.PathLike[str], detail: object) -> StoreError:
    """The error for a store whose content cannot be read: names it, says how to recover."""
    detail = " ".join(str(detail).split())  # quick_check reports over several lines; the CLI prints one
    return StoreError(
        f"{path} is damaged: not a readable sweep database ({detail}). Fix: move it away and "
        "rerun to start over, or restore a copy; mlplab never overwrites it."
    )


def store_error(path: str | os.PathLike[str], exc: sqlite3.Error, writing: bool = True) -> MlplabError:
    """An ``sqlite3`` error raised on ``path`` as an mlplab error naming the file, the cause and the fix.

    SQLite reports its causes only as text ("database or disk is full", "attempt to write a
    readonly database", "database is locked"); what is none of those is damage.
    """
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, sqlite3.IntegrityError):  # not a stored key (add_group skips those): a row the table refuses
        return StoreError(
            f"{path} refused a result this run was storing ({text}): its table's constraints differ "
            "from this mlplab's (another version, or a process that changed it). Fix: use the mlplab "
            "that wrote it, or another --out folder."
        )
    if "full" in lowered:  # SQLITE_FULL
        return OutputError(
            f"cannot write {path}: no space left on the device ({text}). Fix: free some space (or "
            "pick another --out) and run the command again; the groups already stored are kept "
            "and the rerun resumes."
        )
    if "locked" in lowered or "busy" in lowered:
        return StoreError(
            f"{path} is in use by another process ({text}). Fix: wait for it to finish, or use another --out folder."
        )
    if any(word in lowered for word in ("readonly", "read-only", "unable to open", "permission", "i/o error")):
        if writing:
            return OutputError(
                f"cannot write {path}: {text} (permission denied, a read-only file system or a "
                "failing disk). Fix: pick a folder you can write to (--out)."
            )
        return StoreError(
            f"cannot read {path}: {text}. Fix: make sure you may read the file and write its folder "
            f"(SQLite creates {FILENAME}-shm beside it), or copy the folder somewhere writable."
        )
    return damaged(path, text)


def writer_lock(directory: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Path]:
    """Hold ``DIR/sweep.lock`` exclusively (re-entrant in a process), or raise ``LockedError`` at once.

    Take it before any work: loading data, opening the store, reading the stored keys.
    """
    return folder_lock(directory, LOCKNAME, HOLDER)


class SweepStore:
    """The results database of one sweep directory.

    Use as a context manager; ``SweepStore(dir, create=False)`` opens an existing sweep read-only.
    A writer (``create=True``) should hold :func:`writer_lock` first. Opening checks the file
    (``PRAGMA quick_check``, a few milliseconds for a few hundred results) and refuses a damaged
    or foreign database, or a symbolic link, without changing it.
    """

    def __init__(self, directory: str | os.PathLike[str], create: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILENAME
        if self.path.is_symlink():  # followed, it would read or write another folder's sweep
            raise StoreError(
                f"{self.path} is a symbolic link; mlplab does not follow links to a sweep's results. "
                "Fix: replace the link by a copy of the file, or use the folder it points into."
            )
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"{self.path} is not a file. Fix: move it away, or use another folder.")
        if create:
            prepare_dir(self.directory, "sweep folder")
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            uri = self.path.absolute().as_uri()  # quoted: '#', '?' and '%' in a folder name stay in the path
        else:
            if not self.path.exists():
                raise StoreError(
                    f"{self.directory} holds no sweep ({FILENAME} is missing). "
                    f"Fix: run `mlplab sweep run ... --out {self.directory}` first, or give the folder it wrote."
                )
            fresh = False
            uri = self.path.absolute().as_uri() + "?mode=ro"
        sidecars = [self.path.with_name(FILENAME + suffix) for suffix in ("-wal", "-shm")]
        existing = [p.exists() for p in sidecars]
        try:
            self.conn = sqlite3.connect(uri, uri=True, timeout=30.0)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, create) from None
        self.writing = create
        self.conn.row_factory = sqlite3.Row
        try:
            self._open(create, fresh)
        except BaseException:
            self.close()
            # reading a damaged WAL-mode file leaves an empty -wal and its -shm behind: remove what we made
            if not any(existing) and sidecars[0].exists() and sidecars[0].stat().st_size == 0:
                for p in sidecars:
                    with contextlib.suppress(OSError):
                        p.unlink()
            raise

    def _open(self, create: bool, fresh: bool) -> None:
        """Check the file before anything is written to it, then create the schema if asked."""
        with self._errors():
            if not fresh:
                problems = [r[0] for r in self.conn.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise damaged(self.path, "; ".join(problems[:3]))
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if (tables or not create) and "meta" not in tables:  # never add tables to another program's database
                raise StoreError(
                    f"{self.path} is not a sweep's database (its tables: {', '.join(sorted(tables)) or 'none'}). "
                    "Fix: give the folder that `mlplab sweep run` wrote, or move the file away."
                )
            version = self.meta().get("schema_version") if tables else str(SCHEMA_VERSION)
            if create and version in _MIGRATES:
                self._migrate(version)
                version = str(SCHEMA_VERSION)
            if version != str(SCHEMA_VERSION) and not (not create and version in _MIGRATES):
                raise StoreError(
                    f"{self.path} has schema version {version}; this mlplab reads {SCHEMA_VERSION}. "
                    "Fix: use the mlplab that wrote it, or another --out folder."
                )
            if create:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
                with self.conn:
                    self.conn.executescript(_SCHEMA)
                    self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif not _TABLES <= tables:
                raise damaged(self.path, f"tables missing: {', '.join(sorted(_TABLES - tables))}")

    def _migrate(self, version: str) -> None:
        """Upgrade a version-1 store in one transaction: the results table is rebuilt with the
        wider status check (SQLite cannot alter a CHECK), every row copied as it is."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("ALTER TABLE results RENAME TO results_old")
            self.conn.execute(f"CREATE TABLE {_RESULTS}")
            self.conn.execute("INSERT INTO results SELECT * FROM results_old")
            self.conn.execute("DROP TABLE results_old")
            self.conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn any ``sqlite3`` error inside the block into an mlplab error naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, self.writing) from None

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def meta(self) -> dict[str, str]:
        with self._errors():
            return {r[0]: r[1] for r in self.conn.execute("SELECT name, value FROM meta")}

    def bind_data(self, fingerprint: str) -> None:
        """Record which data this sweep trains on, or refuse data other than what it was started on."""
        stored = self.meta().get("data")
        if stored is None:
            with self._errors(), self.conn:
                self.conn.execute("INSERT INTO meta VALUES ('data', ?)", (fingerprint,))
        elif stored != fingerprint:
            raise MlplabError(
                f"{self.directory} holds a sweep on other data ({stored}), not {fingerprint}. "
                "Fix: use the same --data as before, or a new --out folder."
            )

    def keys(self) -> set[str]:
        """Keys of every stored result."""
        with self._errors():
            return {r[0] for r in self.conn.execute("SELECT key FROM results")}

    def add_group(self, results: Sequence[TrialResult], group_index: int, device: str) -> int:
        """Insert a finished group's results in one transaction (all or nothing); return how many were new.

        Idempotent: a result whose key is already stored is skipped inside the same transaction
        (``ON CONFLICT (key) DO NOTHING``), so a group delivered twice (a retried Ray task, see
        :mod:`mlplab.sweep.ray_backend`) neither duplicates a row nor fails, and the stored row
        is kept as it was. A key is a configuration and a seed, whose training is deterministic.
        """
        created = _now()
        rows = []
        for r in results:
            final = r.history.final
            rows.append(
                (
                    r.trial.key,
                    json.dumps(r.trial.params()),
                    r.trial.seed,
                    r.history.status,
                    final.epoch,
                    _finite(final.train_loss),
                    _finite(final.train_acc),
                    _finite(final.test_loss),
                    _finite(final.test_acc),
                    r.seconds,
                    json.dumps([rec.to_dict() for rec in r.history.records]),
                    group_index,
                    device,
                    created,
                )
            )
        with self._errors(), self.conn:
            before = self.conn.total_changes
            self.conn.executemany(
                f"INSERT INTO results VALUES ({', '.join('?' * 14)}) ON CONFLICT (key) DO NOTHING", rows
            )
            return self.conn.total_changes - before

    def start_run(self, spec: dict[str, Any], device: str, max_models: int, planned: int, skipped: int) -> int:
        with self._errors(), self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (spec, device, max_models, planned, skipped, started) VALUES (?, ?, ?, ?, ?, ?)",
                (json.dumps(spec), device, max_models, planned, skipped, _now()),
            )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, trained: int) -> None:
        with self._errors(), self.conn:
            self.conn.execute("UPDATE runs SET trained = ?, finished = ? WHERE id = ?", (trained, _now(), run_id))

    def rows(self) -> list[sqlite3.Row]:
        """Every stored result, in insertion order."""
        with self._errors():
            return list(self.conn.execute("SELECT * FROM results ORDER BY rowid"))

    def runs(self) -> list[sqlite3.Row]:
        with self._errors():
            return list(self.conn.execute("SELECT * FROM runs ORDER BY id"))
