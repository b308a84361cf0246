"""How House Prices rows are split into folds, and how each fold seeds its models.

One split serves both the strict cross-validation (:mod:`mlplab.house.cv`) and the inner
cross-validation of a stacked ensemble (:class:`mlplab.house.models.Ensemble`): shuffled K-fold
(``sklearn.model_selection.KFold(k, shuffle=True, random_state=seed)``), so every row is
validated exactly once. Fold ``i`` of a run seeded with ``seed`` seeds its models with
``SeedSequence([seed, i])``: the folds get unrelated streams, the same on every run.
"""

from __future__ import annotations

import numpy as np

from mlplab.errors import check_int


def fold_indices(n_rows: int, folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold split of ``n_rows`` rows.

    Returns
    -------
    list of (ndarray, ndarray), length ``folds``
        For each fold, the indices of its training rows, shape (n_rows - n_val,), and of its
        validation rows, shape (n_val,), with n_val = n_rows // folds or one more.
    """
    from sklearn.model_selection import KFold

    check_int("folds", folds, 2, n_rows)
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.arange(n_rows)))


def fold_seed(seed: int, fold: int) -> int:
    """The model seed used in fold ``fold`` of a run seeded with ``seed`` (32 bits)."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])
