"""Data: Fashion-MNIST (IDX, checksums, sources), synthetic sets, device-resident batching."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from mlplab.data import fashion_mnist, synthetic
from mlplab.data.batching import Data, Split, batches, num_batches
from mlplab.data.idx import IdxError, read_idx, write_idx

__all__ = [
    "Data", "IdxError", "Split", "batches", "fashion_mnist", "fashion_mnist_data", "num_batches",
    "read_idx", "read_once", "synthetic", "write_idx",
]  # fmt: skip


def fashion_mnist_data(
    data_dir: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Data:
    """Fashion-MNIST as flat float32 tensors in [0, 1] on ``device``.

    Returns a :class:`Data` with ``train.X`` of shape (60000, 784), ``train.y`` (60000,) int64,
    ``test.X`` (10000, 784) and ``test.y`` (10000,): exactly what the book's
    ``ToTensor()`` pipeline yields, computed once instead of once per item per epoch.
    """
    key = (os.fspath(data_dir) if data_dir is not None else None, str(device))
    if _read is not None and key in _read:
        return _read[key]
    raw = fashion_mnist.load(data_dir, download=download)

    def split(images, labels) -> Split:
        X = torch.from_numpy(images.reshape(len(images), -1)).to(device).float().div_(255.0)
        return Split(X, torch.from_numpy(labels.astype("int64")).to(device))

    data = Data(split(raw.train_images, raw.train_labels), split(raw.test_images, raw.test_labels))
    if _read is not None:
        _read[key] = data
    return data


_read: dict[tuple[str | None, str], Data] | None = None  # the loads of an active read_once() block


@contextlib.contextmanager
def read_once() -> Iterator[None]:
    """Within the block, :func:`fashion_mnist_data` reads each folder once per device.

    For a program that runs many experiments in one process (``mlplab report``): every later call
    with the same ``data_dir`` and ``device`` returns the same tensors, so no caller may change
    them in place (mlplab's own code never does). Outside such a block every call reads the files.
    """
    global _read
    outer, _read = _read, {} if _read is None else _read
    try:
        yield
    finally:
        _read = outer
