"""Where data sets are looked for, and how they are downloaded safely.

A folder the caller names (``--data-dir``) is the only place searched: it must exist and be a
folder, and a file missing from it is an error, never silently replaced by another copy (a typo
in the flag would otherwise train on whatever the cache holds). Without ``--data-dir``, every
loader searches the same places in the same order (first match wins):

1. ``$MLPLAB_DATA/<dataset>``,
2. the user cache, ``platformdirs.user_cache_dir("mlplab")/<dataset>`` (downloads go here),
3. a system folder, if the data set has one (Debian's ``/usr/share/datasets/...``).

Downloads go to a temporary file beside the target, are verified, then renamed into place, so
an interrupted or corrupt download never leaves a half-written file under the real name. A
download is stopped as soon as it grows past the most the file can hold (``max_bytes``), and
temporary files left by killed downloads are removed before the next one starts.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from mlplab import atomic
from mlplab.atomic import OutputError, atomic_path, describe_os_error
from mlplab.errors import DataError, check_int, check_real

ENV_VAR = "MLPLAB_DATA"

ProgressFn = Callable[[int, "int | None"], None]  # (bytes so far, total bytes or None)
MAX_TIMEOUT = 3600.0  # seconds: an hour without a byte is a dead connection, not a slow one
MAX_RETRIES = 100
CHUNK = 1 << 16


@dataclass(frozen=True)
class SearchDir:
    """One place a loader looks in: ``label`` says why it is on the list (for ``data info``)."""

    label: str
    path: Path


def cache_dir() -> Path:
    """The user cache folder of mlplab, e.g. ``~/.cache/mlplab`` on Linux."""
    return Path(platformdirs.user_cache_dir("mlplab"))


def check_data_dir(data_dir: str | os.PathLike[str]) -> Path:
    """``data_dir`` as a Path, or :class:`DataError` unless it is an existing folder."""
    if isinstance(data_dir, str) and not data_dir.strip():
        raise DataError("--data-dir is an empty path. Fix: name the folder that holds the data files.")
    path = Path(data_dir).expanduser()
    leave_out = f"or leave --data-dir out to search ${ENV_VAR}, the user cache and the system folder"
    try:
        is_dir = stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"--data-dir {path} does not exist. Fix: check the spelling, {leave_out}.") from None
    except (OSError, ValueError) as exc:  # no permission on a parent; a NUL byte in the name
        cause = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        raise DataError(
            f"--data-dir {path} cannot be opened: {cause}. Fix: pick a folder you can read, {leave_out}."
        ) from None
    if not is_dir:
        raise DataError(f"--data-dir {path} is not a folder. Fix: pass the folder that holds the files, {leave_out}.")
    return path


def search_dirs(
    dataset: str, data_dir: str | os.PathLike[str] | None = None, system_dir: str | None = None
) -> list[SearchDir]:
    """The folders to search for ``dataset``, in order (see the module docstring).

    A given ``data_dir`` is the only folder, and must exist (:class:`DataError` otherwise).
    """
    if data_dir is not None:
        return [SearchDir("--data-dir", check_data_dir(data_dir))]
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(SearchDir(f"${ENV_VAR}", Path(env).expanduser() / dataset))
    dirs.append(SearchDir("user cache", cache_dir() / dataset))
    if system_dir is not None:
        dirs.append(SearchDir("system", Path(system_dir)))
    return dirs


def find_first(
    dataset: str, names: Sequence[str], data_dir: str | os.PathLike[str] | None = None, system_dir: str | None = None
) -> Path | None:
    """The first existing file called one of ``names`` in the :func:`search_dirs` order, or None.

    A folder that cannot be looked into (no permission) raises :class:`DataError` naming it,
    rather than being skipped: the user would not know why their copy was ignored.
    """
    for place in search_dirs(dataset, data_dir, system_dir):
        for name in names:
            path = place.path / name
            try:
                if path.is_file():
                    return path
            except OSError as exc:  # is_file() swallows only "missing", not EACCES
                raise DataError(
                    f"cannot look for {name} in {place.path} ({place.label}): {describe_os_error(exc)}. "
                    f"Fix: make the folder readable, or move the files elsewhere."
                ) from None
    return None


def sha256_of(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks (memory stays flat for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    urls: Sequence[str],
    dest: Path,
    verify: Callable[[Path], None],
    *,
    timeout: float = 30.0,
    retries: int = 3,
    progress: ProgressFn | None = None,
    max_bytes: int | None = None,
) -> Path:
    """Download the first of ``urls`` that works to ``dest``, atomically.

    Parameters
    ----------
    urls : sequence of str
        Mirrors, tried in order; each gets ``retries`` attempts with exponential back-off.
    dest : Path
        Final location. Written only after ``verify`` accepted the downloaded file.
    verify : callable
        Called with the temporary file's path; raises :class:`DataError` if the content is wrong.
    timeout : float
        Seconds without data before an attempt is abandoned: a finite number in (0, 3600].
    retries : int
        Attempts per mirror, 1 to 100.
    progress : callable, optional
        Called as ``progress(bytes_so_far, total_or_None)`` while downloading.
    max_bytes : int, optional
        The most the file can hold. A mirror announcing more (Content-Length) is refused at
        once, and a transfer is stopped as soon as more than this arrived, so an endless or
        hostile response cannot fill the disk. Nothing is left behind either way.

    Raises
    ------
    ConfigError
        ``timeout``, ``retries`` or ``max_bytes`` out of range.
    DataError
        When no mirror delivered a file that passed ``verify`` (the message lists every attempt),
        or ``dest`` cannot be written (no space, no permission).
    """
    check_download_options(timeout, retries)
    if max_bytes is not None:
        check_int("max_bytes", max_bytes, 1)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(dest, exc) from None
    atomic.remove_stale(dest.parent)  # temp files of killed downloads would stay forever
    failures: list[str] = []
    for url in urls:
        for attempt in range(1, retries + 1):
            try:
                with atomic_path(dest) as tmp:
                    with open(tmp, "wb") as out:
                        _fetch(url, out, timeout, progress, max_bytes)
                    verify(tmp)
                return dest
            except _WriteFailed as exc:  # the disk, not the mirror: no other mirror helps
                raise _write_error(dest, exc.error) from None
            except OutputError as exc:  # atomic_path could not create or rename the temp file
                cause = exc.__cause__
                raise (_write_error(dest, cause) if isinstance(cause, OSError) else DataError(str(exc))) from None
            except (OSError, urllib.error.URLError, http.client.HTTPException, DataError) as exc:
                failures.append(f"{url} (attempt {attempt}): {str(exc) or type(exc).__name__}")
                if isinstance(exc, DataError):
                    break  # the mirror serves wrong content: retrying will not help
                if attempt < retries:
                    time.sleep(min(2.0 ** (attempt - 1), 8.0))
    tried = "\n  ".join(failures) if failures else "no mirror to download from"
    raise DataError(
        f"could not download {dest.name}:\n  {tried}\n"
        f"Fix: check the network, or put the file in {dest.parent} (or any folder given with "
        f"--data-dir or ${ENV_VAR}) yourself."
    )


def check_download_options(timeout: object, retries: object) -> None:
    """Raise :class:`~mlplab.errors.ConfigError` unless ``timeout`` is in (0, 3600] s and ``retries`` in [1, 100]."""
    check_real("timeout", timeout, 0.0, MAX_TIMEOUT, low_open=True, what="the timeout in seconds")
    check_int("retries", retries, 1, MAX_RETRIES)


class _WriteFailed(Exception):
    """Writing the downloaded bytes failed (disk full...): told apart from a network error."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _write_error(dest: Path, exc: OSError) -> DataError:
    return DataError(
        f"cannot write the download {dest}: {describe_os_error(exc)}. Fix: free some space in "
        f"{dest.parent} or make it writable, or put the files in a folder of your own and pass --data-dir."
    )


def _fetch(url: str, out, timeout: float, progress: ProgressFn | None, max_bytes: int | None) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "mlplab"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        total_bytes = int(total) if total and total.isdigit() else None
        if max_bytes is not None and total_bytes is not None and total_bytes > max_bytes:
            raise DataError(
                f"the server announces {total_bytes:,} bytes, more than the {max_bytes:,} this file can "
                "hold, so the download was stopped before it began"
            )
        done = 0
        while chunk := response.read(CHUNK):
            done += len(chunk)
            if max_bytes is not None and done > max_bytes:
                raise DataError(
                    f"more than {max_bytes:,} bytes arrived, the most this file can hold, so the download "
                    "was stopped (the server sends something else, or never ends)"
                )
            try:
                out.write(chunk)
            except OSError as exc:
                raise _WriteFailed(exc) from exc
            if progress is not None:
                progress(done, total_bytes)
