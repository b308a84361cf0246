"""The book's House Prices baseline, exactly as Dive into Deep Learning trains it.

A single ``nn.Linear`` layer on the :class:`~mlplab.house.features.BookPreprocessor` features,
trained on the *raw* prices with mean squared error, Adam (learning rate 5, no weight decay),
minibatches of 64 reshuffled every epoch, 100 epochs, and scored with the book's log-RMSE:
predictions clamped to at least 1, then ``sqrt(mean((log pred - log price)^2))``.
:func:`book_protocol_cv` runs the book's K-fold protocol: contiguous folds of
``n // k`` rows (``torch`` slicing, no shuffling) over the preprocessed training rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from mlplab.errors import check_int, check_real
from mlplab.house.data import TARGET
from mlplab.house.features import BookPreprocessor


@dataclass
class BookConfig:
    """The book's hyperparameters (``k, num_epochs, lr, weight_decay, batch_size``)."""

    lr: float = 5.0  # Adam learning rate, on raw prices (the book's value)
    weight_decay: float = 0.0  # Adam's (coupled) weight decay
    batch_size: int = 64  # minibatch size, reshuffled every epoch
    epochs: int = 100  # passes over the training rows

    def __post_init__(self) -> None:
        check_real("lr", self.lr, 0.0, low_open=True, what="the learning rate (the book's is 5)")
        check_real("weight_decay", self.weight_decay, 0.0, what="the weight decay")
        check_int("batch_size", self.batch_size, 1)
        check_int("epochs", self.epochs, 1)


def book_log_rmse(pred: np.ndarray | torch.Tensor, price: np.ndarray | torch.Tensor) -> float:
    """The book's metric: ``sqrt(mean((log(max(pred, 1)) - log(price))^2))``.

    Parameters
    ----------
    pred, price : array, shape (n,) or (n, 1)
        Predicted and true prices (not logs).
    """
    p = np.clip(np.asarray(pred, dtype=np.float64).reshape(-1), 1.0, None)
    y = np.asarray(price, dtype=np.float64).reshape(-1)
    return float(np.sqrt(np.mean((np.log(p) - np.log(y)) ** 2)))


def train_linear(
    X: torch.Tensor, y: torch.Tensor, config: BookConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train the book's linear net(s) on features ``X`` and raw prices ``y``.

    Equivalent to ``nn.Linear(d, 1)`` trained with ``torch.optim.Adam(lr, weight_decay)`` on
    ``nn.MSELoss`` over shuffled minibatches, but batched over ``k`` independent nets, so that the
    book's five folds train together in a few seconds instead of 9,500 small optimizer calls: the
    gradient of the squared error is written out, ``d/dw mean((x w + b - y)^2) = 2/b x^T r`` with
    residuals ``r`` over a minibatch of ``b`` rows, and the update is the sweep engine's
    :class:`~mlplab.sweep.optim.BatchedAdam` (torch's Adam, one model per leading index).

    Parameters
    ----------
    X : Tensor, shape (k, n, d)
        Training features of each of the ``k`` nets (float32).
    y : Tensor, shape (k, n)
        Their prices.
    generator : torch.Generator
        Draws the initialization (``nn.Linear``'s default, uniform in +-1/sqrt(d)) and, every
        epoch, one permutation of the ``n`` rows per net.

    Returns
    -------
    weight : Tensor, shape (k, d)
    bias : Tensor, shape (k,)
    """
    from mlplab.sweep.optim import BatchedAdam  # here: mlplab.sweep loads the whole engine

    k, n, d = X.shape
    bound = 1.0 / math.sqrt(d)
    weight = torch.empty(k, d).uniform_(-bound, bound, generator=generator).view(k, 1, d)
    bias = torch.empty(k).uniform_(-bound, bound, generator=generator).view(k, 1, 1)
    decay = torch.full((k,), float(config.weight_decay))  # coupled (L2), as torch.optim.Adam's
    adam = BatchedAdam([weight, bias], torch.full((k,), float(config.lr)), [decay, decay], decoupled=False)
    alive = torch.ones(k, dtype=torch.bool)  # (k,): every net trains to the end
    rows = torch.arange(k).unsqueeze(1)
    for _ in range(config.epochs):
        order = torch.stack([torch.randperm(n, generator=generator) for _ in range(k)])
        for idx in order.split(config.batch_size, dim=1):
            xb, yb = X[rows, idx], y[rows, idx]  # (k, b, d), (k, b)
            resid = torch.baddbmm(bias, xb, weight.transpose(1, 2)).squeeze(2) - yb  # (k, b)
            scale = 2.0 / idx.shape[1]
            g_w = torch.bmm(resid.unsqueeze(1), xb) * scale  # (k, 1, d)
            g_b = resid.sum(1).view(k, 1, 1) * scale  # (k, 1, 1)
            adam.step([g_w, g_b], alive)
    return weight.view(k, d), bias.view(k)


def _predict(weight: torch.Tensor, bias: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Outputs of net(s) ``(weight (k, d), bias (k,))`` on ``X`` (k, m, d): shape (k, m)."""
    return torch.baddbmm(bias.view(-1, 1, 1), X, weight.unsqueeze(2)).squeeze(2)


def fit_predict_baseline(
    train: pd.DataFrame, test: pd.DataFrame, config: BookConfig | None = None, seed: int = 0
) -> np.ndarray:
    """Fit the book's baseline on ``train`` and predict prices for ``test``.

    As in the book, the preprocessing statistics come from the features of ``train`` and
    ``test`` together (never from a price).

    Parameters
    ----------
    train : DataFrame, shape (n_train, 81)
        Checked training rows (with ``SalePrice``).
    test : DataFrame, shape (n_test, >= 80)
        Checked rows to predict.

    Returns
    -------
    ndarray, shape (n_test,)
        Predicted prices, clamped to at least 1 (the book's clamp).
    """
    config = config or BookConfig()
    pre = BookPreprocessor().fit(pd.concat([train, test], ignore_index=True))
    X = torch.tensor(pre.transform(train), dtype=torch.float32)
    y = torch.tensor(train[TARGET].to_numpy(), dtype=torch.float32)
    weight, bias = train_linear(X[None], y[None], config, torch.Generator().manual_seed(seed))
    pred = _predict(weight, bias, torch.tensor(pre.transform(test), dtype=torch.float32)[None])
    return np.clip(pred.numpy().astype(np.float64).reshape(-1), 1.0, None)


@dataclass(frozen=True)
class BookCVResult:
    """Per-fold book log-RMSE of :func:`book_protocol_cv`.

    Attributes
    ----------
    train_scores, val_scores : tuple of float, length k
        Log-RMSE on the fold's training rows and on its validation rows after the last epoch.
    """

    train_scores: tuple[float, ...]
    val_scores: tuple[float, ...]

    @property
    def train_mean(self) -> float:
        """The book's "avg train log rmse"."""
        return float(np.mean(self.train_scores))

    @property
    def val_mean(self) -> float:
        """The book's "avg valid log rmse"."""
        return float(np.mean(self.val_scores))


def book_folds(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's ``get_k_fold_data`` split as index tensors.

    Fold ``i`` validates on the contiguous block ``i*(n//k) .. (i+1)*(n//k) - 1`` and trains on
    the other blocks, in order; the last ``n % k`` rows belong to no fold.

    Returns
    -------
    train : LongTensor, shape (k, (k - 1) * (n // k))
    val : LongTensor, shape (k, n // k)
    """
    size = n // k
    blocks = torch.arange(k * size).view(k, size)
    train = torch.stack([blocks[torch.arange(k) != i].reshape(-1) for i in range(k)])
    return train, blocks


def book_protocol_cv(
    train: pd.DataFrame,
    test: pd.DataFrame,
    k: int = 5,
    config: BookConfig | None = None,
    seed: int = 0,
) -> BookCVResult:
    """The book's K-fold protocol, as in ``k_fold(k, train_features, ...)``.

    Features are preprocessed over ``train`` and ``test`` together, then fold ``i`` validates on
    rows ``i*(n//k) .. (i+1)*(n//k) - 1`` of ``train`` and trains on the other full folds (the
    last ``n % k`` rows are never used, as in the book). A fresh net per fold; the ``k`` nets
    train side by side (see :func:`train_linear`).

    Returns
    -------
    BookCVResult
    """
    config = config or BookConfig()
    check_int("k", k, 2, len(train))
    pre = BookPreprocessor().fit(pd.concat([train, test], ignore_index=True))
    X = torch.tensor(pre.transform(train), dtype=torch.float32)
    y = torch.tensor(train[TARGET].to_numpy(), dtype=torch.float32)
    rest, val = book_folds(X.shape[0], k)
    weight, bias = train_linear(X[rest], y[rest], config, torch.Generator().manual_seed(seed))
    pred_train, pred_val = _predict(weight, bias, X[rest]), _predict(weight, bias, X[val])
    train_scores = tuple(book_log_rmse(pred_train[i], y[rest[i]]) for i in range(k))
    val_scores = tuple(book_log_rmse(pred_val[i], y[val[i]]) for i in range(k))
    return BookCVResult(train_scores, val_scores)
