"""Checking the arrays the shift estimators are given, once, with messages that say how to fix them.

Every estimator of :mod:`mlplab.shift` accepts numpy arrays, torch tensors or nested lists and
converts them here to float64 / int64 numpy arrays. Bad input raises :class:`ShiftInputError`,
which is both a :class:`~mlplab.errors.DataError` (so the CLI prints it cleanly) and a
``ValueError`` (what numpy-style code expects).
"""

from __future__ import annotations

import numpy as np

from mlplab.errors import DataError

ROW_SUM_TOL = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; 1e-3 still catches logits


class ShiftInputError(DataError, ValueError):
    """An array given to a shift estimator has the wrong shape, range or content."""


def as_numpy(x: object) -> np.ndarray:
    """``x`` as a numpy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(x)


def check_matrix(name: str, x: object, n_cols: int | None = None) -> np.ndarray:
    """A finite, non-empty 2-D float64 array (n, d); ``n_cols`` fixes d when given."""
    a = as_numpy(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ShiftInputError(f"{name} must be a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.ndim != 2:
        raise ShiftInputError(
            f"{name} must be 2-D (n, d), got shape {a.shape}. Fix: reshape it, e.g. X.reshape(len(X), -1)"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ShiftInputError(f"{name} is empty (shape {a.shape}); it needs at least one row and one column")
    if n_cols is not None and a.shape[1] != n_cols:
        raise ShiftInputError(f"{name} has {a.shape[1]} columns, expected {n_cols} (the shapes disagree)")
    if not np.all(np.isfinite(a)):
        raise ShiftInputError(f"{name} contains {int(np.sum(~np.isfinite(a)))} NaN or infinite values")
    return a


def check_probs(name: str, probs: object, n_classes: int | None = None) -> np.ndarray:
    """Class probabilities: a 2-D array (n, k) of non-negative rows that each sum to 1."""
    p = check_matrix(name, probs, n_classes)
    if p.shape[1] < 2:
        raise ShiftInputError(f"{name} has {p.shape[1]} column; class probabilities need k >= 2 columns")
    if np.any(p < 0):
        raise ShiftInputError(
            f"{name} has negative entries (min {p.min():.3g}); probabilities must be >= 0. "
            "Fix: pass softmax outputs, not logits"
        )
    sums = p.sum(axis=1)
    bad = np.abs(sums - 1.0) > ROW_SUM_TOL
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ShiftInputError(
            f"{name} row {i} sums to {sums[i]:.6g}, not 1 ({int(bad.sum())} of {len(p)} rows are off). "
            "Fix: pass softmax probabilities, e.g. torch.softmax(logits, dim=1)"
        )
    return p


def check_labels(name: str, labels: object, n: int, n_classes: int) -> np.ndarray:
    """Integer class labels (n,) in ``[0, n_classes)``."""
    y = as_numpy(labels)
    if y.ndim != 1:
        raise ShiftInputError(f"{name} must be 1-D (n,), got shape {y.shape}")
    if len(y) != n:
        raise ShiftInputError(f"{name} has {len(y)} labels but the probabilities have {n} rows (the shapes disagree)")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
            raise ShiftInputError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ShiftInputError(
            f"{name} has labels in [{y.min()}, {y.max()}], outside [0, {n_classes}) "
            f"(the probabilities have {n_classes} columns)"
        )
    return y


def check_weights(name: str, w: object, n_classes: int | None = None) -> np.ndarray:
    """Non-negative finite weights (k,), not all zero."""
    a = as_numpy(w).astype(np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ShiftInputError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if n_classes is not None and len(a) != n_classes:
        raise ShiftInputError(f"{name} has {len(a)} entries but there are {n_classes} classes")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or not np.any(a > 0):
        raise ShiftInputError(f"{name} must be finite, >= 0 and not all zero; got {np.array2string(a, precision=3)}")
    return a
