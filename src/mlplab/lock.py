"""One writer per output folder: an exclusive ``flock`` on a lock file inside it.

``with folder_lock(directory, "run.lock", "mlplab train"):`` holds the lock for the block or
raises :class:`LockedError` at once when another process holds it. The kernel releases a
``flock`` when its process dies, so a killed run never leaves a stale lock behind. Take the lock
before any work (loading data, training), so the second of two commands started together is
refused before it has done anything.

The lock is re-entrant within a process (a CLI command that took it may call a library function
that takes it again); the lock file is opened with ``O_NOFOLLOW``, so a symlink planted in its
place is refused, not followed into another folder.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from mlplab.atomic import output_error, prepare_dir
from mlplab.errors import MlplabError

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process lock (the stores' primary keys still forbid duplicates)
    fcntl = None  # type: ignore[assignment]

_held: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) of a held lock file -> depth
_guard = threading.Lock()


class LockedError(MlplabError):
    """Another process is writing to the folder."""


@contextlib.contextmanager
def folder_lock(directory: str | os.PathLike[str], name: str, holder: str) -> Iterator[Path]:
    """Hold ``directory/name`` exclusively while the block runs; yield the folder.

    Parameters
    ----------
    directory : path
        Created if missing (an empty path or an existing file is an :class:`OutputError`); a
        folder created here is removed again if the block raises before writing anything in it.
    name : str
        The lock file's name, e.g. ``"run.lock"``.
    holder : str
        The command that takes it, for the message when it is busy (``"mlplab train"``).
    """
    created = not Path(directory).exists()
    directory = prepare_dir(directory)
    path = directory / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise MlplabError(
                f"{path} is a symbolic link; mlplab does not follow links for its lock "
                "files. Fix: remove the link, or use another --out."
            ) from None
        raise output_error(path, exc, "cannot create the lock file") from exc
    key = None
    try:
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino)
        with _guard:
            depth = _held.get(key, 0)
            if depth == 0 and fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    key = None
                    raise LockedError(
                        f"another `{holder}` is writing to {directory}. "
                        "Fix: wait for it to finish, or use another --out folder."
                    ) from None
            _held[key] = depth + 1
        try:
            yield directory
        except BaseException:
            # a folder this call made, failed before anything but the lock went in (say, the data
            # would not load): removed again, so a failed start leaves no empty output behind
            if created and [p.name for p in directory.iterdir()] == [name]:
                path.unlink()
                directory.rmdir()
            raise
    finally:
        if key is not None:
            with _guard:
                _held[key] -= 1
                if _held[key] == 0:
                    del _held[key]
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
