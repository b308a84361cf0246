"""Where data sets are looked for, and how they are downloaded safely.

Every loader searches the same places in the same order (first match wins):

1. the folder the caller names (``--data-dir``),
2. ``$MLPLAB_DATA/<dataset>``,
3. the user cache, ``platformdirs.user_cache_dir("mlplab")/<dataset>`` (downloads go here),
4. a system folder, if the data set has one (Debian's ``/usr/share/datasets/...``).

Downloads go to a temporary file beside the target, are verified, then renamed into place, so
an interrupted or corrupt download never leaves a half-written file under the real name.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import platformdirs

from mlplab.atomic import atomic_path
from mlplab.errors import DataError

ENV_VAR = "MLPLAB_DATA"

ProgressFn = Callable[[int, "int | None"], None]  # (bytes so far, total bytes or None)


@dataclass(frozen=True)
class SearchDir:
    """One place a loader looks in: ``label`` says why it is on the list (for ``data info``)."""

    label: str
    path: Path


def cache_dir() -> Path:
    """The user cache folder of mlplab, e.g. ``~/.cache/mlplab`` on Linux."""
    return Path(platformdirs.user_cache_dir("mlplab"))


def search_dirs(
    dataset: str, data_dir: str | os.PathLike[str] | None = None, system_dir: str | None = None
) -> list[SearchDir]:
    """The folders to search for ``dataset``, in order (see the module docstring)."""
    dirs = []
    if data_dir is not None:
        dirs.append(SearchDir("--data-dir", Path(data_dir).expanduser()))
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
    """The first existing file called one of ``names`` in the :func:`search_dirs` order, or None."""
    for place in search_dirs(dataset, data_dir, system_dir):
        for name in names:
            path = place.path / name
            if path.is_file():
                return path
    return None


def sha256_of(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def download(
    urls: Sequence[str],
    dest: Path,
    verify: Callable[[Path], None],
    *,
    timeout: float = 30.0,
    retries: int = 3,
    progress: ProgressFn | None = None,
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
        Seconds without data before an attempt is abandoned.
    progress : callable, optional
        Called as ``progress(bytes_so_far, total_or_None)`` while downloading.

    Raises
    ------
    DataError
        When no mirror delivered a file that passed ``verify``; the message lists every attempt.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        for attempt in range(1, retries + 1):
            try:
                with atomic_path(dest) as tmp:
                    with open(tmp, "wb") as out:
                        _fetch(url, out, timeout, progress)
                    verify(tmp)
                return dest
            except (OSError, urllib.error.URLError, DataError) as exc:
                failures.append(f"{url} (attempt {attempt}): {exc}")
                if isinstance(exc, DataError):
                    break  # the mirror serves wrong content: retrying will not help
                if attempt < retries:
                    time.sleep(min(2.0 ** (attempt - 1), 8.0))
    raise DataError(
        f"could not download {dest.name}:\n  " + "\n  ".join(failures) + "\n"
        f"Fix: check the network, or put the file in {dest.parent} (or any folder given with "
        f"--data-dir or ${ENV_VAR}) yourself."
    )


def _fetch(url: str, out, timeout: float, progress: ProgressFn | None) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "mlplab"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        total_bytes = int(total) if total and total.isdigit() else None
        done = 0
        while chunk := response.read(1 << 16):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total_bytes)
