"""A torch ``nn.Module`` factory as a scikit-learn-style regressor, trained by :func:`mlplab.train.fit`.

:class:`TorchRegressor` is how the learner's own network enters the House Prices comparison
(:mod:`mlplab.house.own`): ``fit(X, y)`` calls the factory with the number of input features,
builds the module under a seeded RNG, and trains it with the chapter's one loop
(``mlplab.train.fit``: mini-batches, Adam, weight decay, dropout in train mode, evaluation in eval
mode) on the mean squared error of standardized targets; ``predict(X)`` undoes the
standardization. The registered ``mlp`` member (:class:`mlplab.house.models.MLPRegressor`) trains
the same way in spirit (standardized ``log1p`` prices, Adam, dropout, weight decay) but with its
own full-batch loop, written for its four members batched into one computation; an arbitrary
module cannot be batched like that, so it goes through ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from mlplab.errors import ConfigError, check_seed
from mlplab.train import TrainConfig

#: Constructor parameters, in order: what ``get_params`` returns and ``sklearn.base.clone`` copies.
_PARAMS = ("module", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "l1", "schedule", "standardize")
_ROWS_PROBED = 2  # rows of X the module is tried on before training, to check its output shape


class TorchRegressor:
    """Train the ``nn.Module`` that ``module(n_features)`` builds on ``(X, y)``; predict with it.

    Training minimizes ``mean((f(x) - t)^2)`` over mini-batches, where ``t = (y - mean(y)) / std(y)``
    (training rows' mean and standard deviation, as the ``mlp`` member standardizes its target)
    when ``standardize`` is set, else ``t = y``; predictions are ``f(x) * std(y) + mean(y)``. The
    module's parameters are drawn under ``torch.manual_seed(random_state)`` (a forked RNG: the
    caller's is untouched); ``random_state`` also seeds the batch order and dropout masks.

    Parameters
    ----------
    module : callable
        ``module(n_features) -> nn.Module``: an ``nn.Module`` subclass or a function. The module
        maps a float32 batch of shape (B, n_features) to outputs of shape (B, 1) or (B,).
    epochs, batch_size, optimizer, lr, weight_decay, l1, schedule
        As :class:`mlplab.train.TrainConfig` (validated by it; ``loss`` is always ``mse``).
    standardize : bool
        Train on standardized targets (default). Without it a module whose output starts near 0
        must first learn a bias of about 12 (``log1p`` of a typical price).
    random_state : int, optional
        Seed of the initialization, batch order and dropout. ``None`` means 0; cross-validation
        sets it to each fold's seed (``mlplab.house.folds.fold_seed``).

    Example
    -------
    >>> from torch import nn
    >>> def net(n_features):
    ...     return nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, 1))
    >>> reg = TorchRegressor(net, epochs=5).fit(np.random.rand(50, 3), np.random.rand(50))
    >>> reg.predict(np.random.rand(4, 3)).shape
    (4,)
    """

    def __init__(
        self,
        module: Callable[[int], nn.Module],
        *,
        epochs: int = 100,
        batch_size: int = 64,
        optimizer: str = "adamw",
        lr: float = 0.001,
        weight_decay: float = 0.1,
        l1: float = 0.0,
        schedule: str = "cosine",
        standardize: bool = True,
        random_state: int | None = None,
    ) -> None:
        if not callable(module) or isinstance(module, nn.Module):
            what = "an nn.Module instance" if isinstance(module, nn.Module) else type(module).__name__
            raise ConfigError(
                "module",
                what,
                "TorchRegressor needs a factory, module(n_features) -> nn.Module: the class or a function "
                "(an instance cannot be re-initialized for every fold)",
            )
        self.module = module
        self.epochs, self.batch_size, self.optimizer = epochs, batch_size, optimizer
        self.lr, self.weight_decay, self.l1, self.schedule = lr, weight_decay, l1, schedule
        self.standardize = standardize
        self.random_state = random_state
        self.config(0)  # every training field is checked here, by TrainConfig itself
        if random_state is not None:
            check_seed("random_state", random_state)

    # -- scikit-learn's estimator protocol (so that sklearn.base.clone copies one) ---------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (``deep`` is accepted for scikit-learn and ignored)."""
        return {name: getattr(self, name) for name in (*_PARAMS, "random_state")}

    def set_params(self, **params: Any) -> TorchRegressor:
        """Set constructor parameters (re-validated as the constructor validates them)."""
        unknown = set(params) - {*_PARAMS, "random_state"}
        if unknown:
            raise ConfigError("params", sorted(unknown), f"TorchRegressor takes {', '.join(_PARAMS)}, random_state")
        merged = {**self.get_params(), **params}
        checked = TorchRegressor(merged.pop("module"), **merged)  # raises before anything changes
        vars(self).update(vars(checked))
        return self

    def __repr__(self) -> str:
        """``TorchRegressor(net, lr=0.003)``: the factory and the parameters that differ from the defaults."""
        defaults = TorchRegressor(self.module).get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if k != "module" and v != defaults[k]]
        return f"TorchRegressor({', '.join([self._name(), *changed])})"

    # -- training -----------------------------------------------------------------------------------
    def config(self, seed: int) -> TrainConfig:
        """The :class:`~mlplab.train.TrainConfig` that :meth:`fit` trains with."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            weight_decay=self.weight_decay,
            l1=self.l1,
            schedule=self.schedule,
            loss="mse",
            seed=seed,
        )

    def fit(self, X: np.ndarray, y: np.ndarray) -> TorchRegressor:
        """Build the module for ``X.shape[1]`` features and train it on ``X`` (n, d), ``y`` (n,).

        Raises
        ------
        ConfigError
            The factory does not return an ``nn.Module``, the module's output for a batch of B
            rows is not of shape (B, 1) or (B,), or training diverged or ended with its loss above
            twice its start (both: a learning rate too large for this module).
        """
        from mlplab.data.batching import Data, Split
        from mlplab.train import fit

        seed = 0 if self.random_state is None else int(self.random_state)
        x = torch.as_tensor(np.asarray(X, dtype=np.float32))
        target = np.asarray(y, dtype=np.float64).reshape(-1)
        self.y_mean_, self.y_std_ = (
            (float(target.mean()), float(target.std()) or 1.0) if self.standardize else (0.0, 1.0)
        )
        t = torch.as_tensor(((target - self.y_mean_) / self.y_std_).astype(np.float32))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self.module(x.shape[1])
        self.module_ = self._checked(net, x)
        history = fit(self.module_, Data(Split(x, t), Split(x[:0], t[:0])), self.config(seed))
        if not history.ok:
            raise ConfigError(
                "lr",
                self.lr,
                f"training {self._name()} ended with status {history.status!r} (final training loss "
                f"{history.final.train_loss:.3g}, initial {history.initial_loss:.3g}): try a smaller learning rate, "
                "e.g. TorchRegressor(..., lr=...) with a tenth of it",
            )
        self.history_ = history
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for ``X`` (m, d), in eval mode and without gradients; shape (m,)."""
        x = torch.as_tensor(np.asarray(X, dtype=np.float32))
        self.module_.eval()
        with torch.no_grad():
            out = self.module_(x).reshape(len(x), -1)
        return out[:, 0].numpy().astype(np.float64) * self.y_std_ + self.y_mean_

    def _name(self) -> str:
        return getattr(self.module, "__name__", type(self.module).__name__)

    def _checked(self, net: object, x: torch.Tensor) -> nn.Module:
        """``net`` if it is an ``nn.Module`` whose output for a few rows of ``x`` has one value per row."""
        name = self._name()
        if not isinstance(net, nn.Module):
            raise ConfigError(
                f"{name}(n_features)",
                type(net).__name__,
                f"must return an nn.Module (got a {type(net).__name__}); a function that returns a "
                "scikit-learn-style regressor takes no arguments",
            )
        probe = x[:_ROWS_PROBED]
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                out = net(probe)
        except RuntimeError as exc:
            raise ConfigError(
                f"{name}(n_features={x.shape[1]})",
                f"a module failing on input of shape {tuple(probe.shape)}",
                f"it must take float32 batches (B, {x.shape[1]}); torch said: {' '.join(str(exc).split())[:200]}",
            ) from None
        finally:
            net.train(was_training)
        shape = tuple(getattr(out, "shape", ()))
        if not isinstance(out, torch.Tensor) or shape not in ((len(probe), 1), (len(probe),)):
            raise ConfigError(
                f"{name}(n_features={x.shape[1]}) output shape",
                shape,
                f"for a batch of {len(probe)} rows it must be ({len(probe)}, 1) or ({len(probe)},): one "
                "predicted log1p(SalePrice) per house (end the network with nn.Linear(..., 1))",
            )
        return net
