"""Atomic file output: write to a temporary name beside the target, rename when complete.

A killed process therefore leaves either the old file or the new one, never half of one. The
data is flushed to disk (``fsync``) before the rename and the folder after it, so a power cut
cannot leave a renamed but empty file either.

Temporary files are named ``.STEM.tmp-PID-XXXX.SUFFIX``: a process killed by SIGKILL cannot
remove its own, so :func:`remove_stale` removes those whose process no longer runs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from mlplab.errors import MlplabError

_TEMP_RE = re.compile(r"^\..*\.tmp-(\d+)-[^.]+")
_umask_lock = threading.Lock()


class OutputError(MlplabError):
    """An output that cannot be written: the message names the path and the cause."""


def describe_os_error(exc: OSError) -> str:
    """``"no space left on the device"``, ``"permission denied"``: the cause of ``exc`` in words."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return exc.strerror or str(exc)


def output_error(path: str | os.PathLike[str], exc: OSError, what: str = "cannot write") -> OutputError:
    """An :class:`OutputError` for ``exc`` raised while writing ``path``, with the usual fixes."""
    cause = describe_os_error(exc)
    fix = {
        errno.ENOSPC: "free some space (or pick another --out) and run the command again",
        errno.EDQUOT: "free some space (or pick another --out) and run the command again",
    }.get(exc.errno, "pick a folder you can write to (--out)")
    return OutputError(f"{what} {path}: {cause}. Fix: {fix}.")


def _umask() -> int:
    """The process umask. Linux reports it in /proc (read-only, thread-safe); elsewhere it can
    only be read by setting it, which is done under a lock so mlplab's own threads never race."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def prepare_dir(directory: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``directory`` (and parents) or raise :class:`OutputError` saying why it cannot be."""
    directory = Path(directory)
    if str(directory) == "":
        raise OutputError(f"the {what} is an empty path. Fix: name a folder, e.g. --out runs/name.")
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"the {what} {directory} is a file, not a folder. Fix: pick another --out.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(directory, exc, f"cannot create the {what}") from exc
    return directory


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    The temporary file keeps ``path``'s suffix (some writers choose the format from it), gets the
    usual permissions (``0666 & ~umask``), is fsynced before the rename, and is removed if the
    block raises. An ``OSError`` while creating, syncing or renaming becomes an
    :class:`OutputError` naming ``path``; errors raised inside the block pass through.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.tmp-{os.getpid()}-", suffix=path.suffix, dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        os.close(fd)
    except OSError as exc:
        raise output_error(path, exc) from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise output_error(path, exc) from exc
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise output_error(path, exc) from exc
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (newlines kept as given)."""
    return write_bytes(path, text.encode("utf-8"))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return True
    return True


def remove_stale(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` in ``directory`` whose writer has died.

    Returns the removed paths. A temp file of a process that still runs is left alone, so this
    is safe beside a concurrent writer; a missing folder is simply empty.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match and entry.is_file(follow_symlinks=False) and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def save_torch(obj: object, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically.

    Serialized in memory first, then written with :func:`write_bytes`: torch's own file writer
    reports a full disk as ``unexpected pos 2112 vs 2006``, while a plain write says ENOSPC, which
    :class:`OutputError` turns into "no space left on the device" with the path.
    """
    import io

    import torch  # here, not at the top: the rest of this module is needed by commands that never load torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())
