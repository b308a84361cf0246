"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): finding, verifying, downloading and loading it.

Each of the four IDX files is looked for in the folders of :func:`mlplab.data.sources.search_dirs`
as ``NAME.gz`` or raw ``NAME``: only in ``--data-dir`` when it is given (a file missing there is
an error), else in ``$MLPLAB_DATA/fashion-mnist``, the user cache and Debian's
``/usr/share/datasets/fashion-mnist``. The SHA-256 of the decompressed content must equal the
upstream value, so Debian's re-compressed copies and the upstream ``.gz`` files are both
accepted. A missing file is downloaded into the user cache (when no ``--data-dir`` is given).

No file is read or downloaded past the size its :class:`FileSpec` implies, so a corrupt or
hostile file (a gzip bomb, an endless download) is refused instead of filling memory or disk.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlplab import atomic
from mlplab.data import sources
from mlplab.data.idx import IdxError, parse_idx, read_bytes
from mlplab.errors import DataError

DATASET = "fashion-mnist"
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)
CLASS_NAMES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


@dataclass(frozen=True)
class FileSpec:
    """One upstream file: its name (without .gz), expected shape and SHA-256 of the raw content."""

    name: str
    shape: tuple[int, ...]
    sha256: str

    @property
    def nbytes(self) -> int:
        """Size of the decompressed file: 4-byte magic, 4 bytes per dimension, one byte per value."""
        return 4 + 4 * len(self.shape) + math.prod(self.shape)

    @property
    def max_download(self) -> int:
        """The most a ``.gz`` download may bring: twice the raw size plus 1 MiB.

        The upstream ``.gz`` files are smaller than the raw ones (26 MB for 47 MB of training
        images), and even incompressible data grows by a few bytes only; the margin still
        accepts a mirror that serves the raw file under the ``.gz`` name.
        """
        return 2 * self.nbytes + (1 << 20)


FILES: dict[str, FileSpec] = {
    "train_images": FileSpec("train-images-idx3-ubyte", (60000, 28, 28),
                             "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": FileSpec("train-labels-idx1-ubyte", (60000,),
                             "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": FileSpec("t10k-images-idx3-ubyte", (10000, 28, 28),
                            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": FileSpec("t10k-labels-idx1-ubyte", (10000,),
                            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}  # fmt: skip


@dataclass(frozen=True)
class FashionMNIST:
    """The four arrays and where each came from.

    Attributes
    ----------
    train_images : ndarray of shape (60000, 28, 28), uint8
    train_labels : ndarray of shape (60000,), uint8 in [0, 10)
    test_images : ndarray of shape (10000, 28, 28), uint8
    test_labels : ndarray of shape (10000,), uint8 in [0, 10)
    paths : dict
        Key (``"train_images"`` ...) -> the file it was read from.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    paths: dict[str, Path] = field(default_factory=dict)


def find_file(key: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first existing file for ``key`` (gzipped or not) in the search order, or None."""
    name = FILES[key].name
    return sources.find_first(DATASET, [f"{name}.gz", name], data_dir, SYSTEM_DIR)


def load_file(key: str, path: Path) -> np.ndarray:
    """Read and verify one file: IDX structure, SHA-256 of the content, shape, label range.

    Nothing past the spec's size (:attr:`FileSpec.nbytes`) is read or decompressed.
    """
    spec = FILES[key]
    content = read_bytes(path, max_bytes=spec.nbytes)
    digest = sources.sha256_of(content)
    if digest != spec.sha256:
        raise DataError(
            f"{path}: SHA-256 of the content is {digest}, expected {spec.sha256} for {spec.name}; "
            "the file is corrupt or is not Fashion-MNIST. Fix: delete it and run `mlplab data fetch`."
        )
    array = parse_idx(content, str(path))
    if array.shape != spec.shape or array.dtype != np.uint8:  # cannot happen with a good hash
        raise IdxError(f"{path}: shape {array.shape} {array.dtype}, expected {spec.shape} uint8")
    return array


def fetch(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    progress: sources.ProgressFn | None = None,
    timeout: float = 30.0,
    retries: int = 3,
) -> dict[str, Path]:
    """Locate every file, downloading missing ones into the user cache; return key -> path.

    With ``data_dir`` only that folder is searched and nothing is downloaded. ``timeout`` (a
    number of seconds in (0, 3600]) and ``retries`` (1 to 100) are checked even when nothing
    needs downloading, so a bad flag is reported the first time it is given.

    Raises
    ------
    ConfigError
        ``timeout`` or ``retries`` out of range.
    DataError
        When ``data_dir`` is not a folder, a file is missing and ``download`` is False or
        ``data_dir`` is given, or the download failed.
    """
    sources.check_download_options(timeout, retries)
    atomic.remove_stale(sources.cache_dir() / DATASET)  # temp files of killed downloads
    found: dict[str, Path] = {}
    for key, spec in FILES.items():
        path = find_file(key, data_dir)
        if path is None:
            if data_dir is not None:
                folder = sources.check_data_dir(data_dir)
                raise DataError(
                    f"Fashion-MNIST file {spec.name}(.gz) not found in --data-dir {folder} (only that "
                    f"folder is searched when it is given). Fix: copy the four IDX files there, or leave "
                    f"--data-dir out to use the files of `mlplab data fetch`, `apt-get install "
                    f"dataset-fashion-mnist` or ${sources.ENV_VAR}."
                )
            if not download:
                looked = ", ".join(str(d.path) for d in sources.search_dirs(DATASET, data_dir, SYSTEM_DIR))
                raise DataError(
                    f"Fashion-MNIST file {spec.name}(.gz) not found (looked in: {looked}). "
                    f"Fix: run `mlplab data fetch`, `apt-get install dataset-fashion-mnist`, or "
                    f"point --data-dir / ${sources.ENV_VAR} at a folder holding the four IDX files."
                )
            dest = sources.cache_dir() / DATASET / f"{spec.name}.gz"
            path = sources.download(
                [m + f"{spec.name}.gz" for m in MIRRORS],
                dest,
                functools.partial(load_file, key),
                timeout=timeout,
                retries=retries,
                progress=progress,
                max_bytes=spec.max_download,
            )
        found[key] = path
    return found


def load(data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> FashionMNIST:
    """Load and verify Fashion-MNIST (see the module docstring for where it is looked for)."""
    paths = fetch(data_dir, download=download)
    arrays = {key: load_file(key, path) for key, path in paths.items()}
    return FashionMNIST(**arrays, paths=paths)
