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

from mlplab.errors import ConfigError
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
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError("lr", self.lr, "a positive number (the book uses 5)")
        if not self.weight_decay >= 0:
            raise ConfigError("weight_decay", self.weight_decay, "a number >= 0")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError("batch_size", self.batch_size, "an integer >= 1 (the book uses 64)")
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ConfigError("epochs", self.epochs, "an integer >= 1 (the book uses 100)")


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
    ``nn.MSELoss`` over shuffled minibatches, but written out (closed-form gradient of the
    squared error, Adam's update by hand) and batched over ``k`` independent nets, so that the
    book's five folds train together in a few seconds instead of 9,500 small optimizer calls.

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
    k, n, d = X.shape
    bound = 1.0 / math.sqrt(d)
    weight = torch.empty(k, d).uniform_(-bound, bound, generator=generator)
    bias = torch.empty(k).uniform_(-bound, bound, generator=generator)
    beta1, beta2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults
    m_w, v_w = torch.zeros_like(weight), torch.zeros_like(weight)
    m_b, v_b = torch.zeros_like(bias), torch.zeros_like(bias)
    rows = torch.arange(k).unsqueeze(1)
    step = 0
    for _ in range(config.epochs):
        order = torch.stack([torch.randperm(n, generator=generator) for _ in range(k)])
        for idx in order.split(config.batch_size, dim=1):
            xb, yb = X[rows, idx], y[rows, idx]  # (k, b, d), (k, b)
            resid = torch.baddbmm(bias.view(k, 1, 1), xb, weight.unsqueeze(2)).squeeze(2) - yb
            g_w = torch.bmm(resid.unsqueeze(1), xb).squeeze(1) * (2.0 / idx.shape[1])
            g_b = resid.sum(1) * (2.0 / idx.shape[1])
            if config.weight_decay:
                g_w = g_w + config.weight_decay * weight
                g_b = g_b + config.weight_decay * bias
            step += 1
            c1, c2 = 1.0 - beta1**step, 1.0 - beta2**step
            for p, g, m, v in ((weight, g_w, m_w, v_w), (bias, g_b, m_b, v_b)):
                m.mul_(beta1).add_(g, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                p.addcdiv_(m, (v / c2).sqrt_().add_(eps), value=-config.lr / c1)
    return weight, bias


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
    if not (isinstance(k, int) and 2 <= k <= len(train)):
        raise ConfigError("k", k, f"an integer from 2 to the number of rows ({len(train)})")
    pre = BookPreprocessor().fit(pd.concat([train, test], ignore_index=True))
    X = torch.tensor(pre.transform(train), dtype=torch.float32)
    y = torch.tensor(train[TARGET].to_numpy(), dtype=torch.float32)
    rest, val = book_folds(X.shape[0], k)
    weight, bias = train_linear(X[rest], y[rest], config, torch.Generator().manual_seed(seed))
    pred_train, pred_val = _predict(weight, bias, X[rest]), _predict(weight, bias, X[val])
    train_scores = tuple(book_log_rmse(pred_train[i], y[rest[i]]) for i in range(k))
    val_scores = tuple(book_log_rmse(pred_val[i], y[val[i]]) for i in range(k))
    return BookCVResult(train_scores, val_scores)
