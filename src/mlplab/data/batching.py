"""Device-resident data: a whole split is one tensor on the device, a batch is an index slice.

No per-item Python and no DataLoader workers: one ``randperm`` per epoch from an explicit
generator, then ``index_select`` per batch. This is what makes small MLPs train at the speed of
their matrix multiplications rather than of their input pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mlplab.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Features and targets of one split, on one device.

    Attributes
    ----------
    X : Tensor of shape (n, d)
    y : Tensor of shape (n,) (class indices, int64) or (n,) / (n, k) (regression targets)
    """

    X: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.X.shape[0] != self.y.shape[0]:
            raise ValueError(f"X has {self.X.shape[0]} rows but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return self.X.shape[0]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.X.to(device), self.y.to(device))


@dataclass(frozen=True)
class Data:
    """A training split and a test split."""

    train: Split
    test: Split

    def to(self, device: torch.device | str) -> Data:
        return Data(self.train.to(device), self.test.to(device))

    @property
    def is_classification(self) -> bool:
        """True for integer class labels, False for floating-point (regression) targets."""
        return not (self.train.y.is_floating_point() or self.train.y.is_complex())

    @property
    def n_classes(self) -> int:
        """Number of classes of integer labels: one more than the largest label in either split.

        Raises ``ConfigError`` for floating-point (regression) targets: use :attr:`n_outputs`.
        """
        if not self.is_classification:
            raise ConfigError(
                "data", str(self.train.y.dtype), "float targets are regression data and have no classes: use n_outputs"
            )
        return int(max(self.train.y.max(), self.test.y.max())) + 1

    @property
    def n_outputs(self) -> int:
        """Outputs a model of this data needs: ``n_classes`` for labels, else the target width.

        Targets of shape (n,) have width 1, (n, k) width k (what ``fit``'s mse compares with
        outputs of shape (B, k)).
        """
        if self.is_classification:
            return self.n_classes
        return math.prod(self.train.y.shape[1:])


def num_batches(n: int, batch_size: int) -> int:
    """Batches per epoch when the last, smaller batch is kept."""
    return -(-n // batch_size)


def batches(
    split: Split, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(X_batch, y_batch)`` over one epoch; the last batch may be smaller.

    The permutation is drawn on the CPU from ``generator`` (so the batch order for a seed is the
    same on every device) and moved to the data's device once per epoch.
    """
    n = len(split)
    if shuffle:
        order = torch.randperm(n, generator=generator).to(split.X.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield split.X.index_select(0, idx), split.y.index_select(0, idx)
    else:
        for start in range(0, n, batch_size):
            yield split.X[start : start + batch_size], split.y[start : start + batch_size]
