"""Synthetic data sets of the chapter, each drawn from an explicit ``torch.Generator``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mlplab.data.batching import Data, Split

POLY_TRUE_W = (5.0, 1.2, -3.4, 5.6)  # d2l 4.4: y = 5 + 1.2x - 3.4x^2/2! + 5.6x^3/3! + eps


def linear(
    w: Sequence[float] | torch.Tensor,
    b: float,
    n: int,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Split:
    """Linear regression data ``y = X w + b + eps`` (d2l 3.3 and 4.5).

    ``X ~ N(0, 1)`` of shape (n, len(w)), ``eps ~ N(0, noise^2)``; returns a Split with
    ``y`` of shape (n, 1).
    """
    w = torch.as_tensor(w, dtype=torch.float32).reshape(-1, 1)
    X = torch.randn(n, w.shape[0], generator=generator)  # (n, d)
    y = X @ w + b + noise * torch.randn(n, 1, generator=generator)  # (n, 1)
    return Split(X, y)


def high_dim_linear(
    n_train: int = 20,
    n_test: int = 100,
    n_features: int = 200,
    w: float = 0.01,
    b: float = 0.05,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Data:
    """The weight-decay chapter's high-dimensional linear regression (d2l 4.5.2).

    ``y = 0.05 + sum_i 0.01 x_i + eps`` with ``X ~ N(0, 1)`` of shape (n, 200) and
    ``eps ~ N(0, 0.01^2)`` by default: with 20 training rows and 200 inputs, an unregularized
    linear model overfits at once. Both splits come from :func:`linear`, the training split drawn
    first from ``generator``; ``y`` has shape (n, 1).
    """
    true_w = torch.full((n_features,), float(w))
    train = linear(true_w, b, n_train, noise, generator)
    return Data(train, linear(true_w, b, n_test, noise, generator))


def polynomial_features(x: torch.Tensor, max_degree: int) -> torch.Tensor:
    """Features ``x^i / i!`` for ``i = 0 .. max_degree - 1`` (d2l 4.4), shape (n, max_degree).

    Dividing by ``i!`` (``gamma(i + 1)``) keeps the high powers from blowing up the gradients.
    """
    powers = torch.arange(max_degree, dtype=x.dtype)
    scale = torch.tensor([math.factorial(i) for i in range(max_degree)], dtype=x.dtype)
    return x.reshape(-1, 1).pow(powers) / scale  # (n, max_degree)


def polynomial(
    n_train: int = 100,
    n_test: int = 100,
    max_degree: int = 20,
    true_w: Sequence[float] = POLY_TRUE_W,
    noise: float = 0.1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Data:
    """The chapter's polynomial regression data (d2l 4.4).

    ``x ~ N(0, 1)``; features ``x^i / i!`` for ``i < max_degree``; true weights ``true_w`` padded
    with zeros to ``max_degree``; ``y = features @ w + eps`` with ``eps ~ N(0, noise^2)``.
    Returns train and test splits with ``X`` of shape (n, max_degree) and ``y`` of shape (n, 1).
    """
    if len(true_w) > max_degree:
        raise ValueError(f"true_w has {len(true_w)} coefficients but max_degree is {max_degree}")
    w = torch.zeros(max_degree, dtype=dtype)
    w[: len(true_w)] = torch.tensor(true_w, dtype=dtype)
    x = torch.randn(n_train + n_test, generator=generator, dtype=dtype)
    features = polynomial_features(x, max_degree)
    y = features @ w + noise * torch.randn(n_train + n_test, generator=generator, dtype=dtype)
    y = y.reshape(-1, 1)
    return Data(Split(features[:n_train], y[:n_train]), Split(features[n_train:], y[n_train:]))


def classification_blobs(
    n: int, n_features: int, n_classes: int, generator: torch.Generator | None = None, spread: float = 2.0
) -> Split:
    """Gaussian blobs, one per class, for fast classification tests: X (n, d), y (n,) int64."""
    centers = spread * torch.randn(n_classes, n_features, generator=generator)
    y = torch.randint(n_classes, (n,), generator=generator)
    X = centers[y] + torch.randn(n, n_features, generator=generator)
    return Split(X, y)
