"""Mini-batch stochastic gradient descent with weight decay, in place (d2l "Weight Decay").

For each parameter ``w`` with gradient ``g`` of the mean mini-batch loss:

    w <- w - lr * (g + lam * w)

``lam * w`` is the gradient of the L2 penalty ``lam / 2 * ||w||^2``
(:func:`mlplab.scratch.regularization.l2_grad`), so this is SGD on ``loss + lam/2 ||w||^2``,
the same update as ``torch.optim.SGD(weight_decay=lam)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mlplab.errors import ConfigError, check_real


class SGD:
    """Plain SGD over a list of tensors, updated in place.

    Parameters
    ----------
    params : list of Tensor
        The list is held, not copied (an ``MLP`` moved to another device replaces the tensors in it).
    lr : float
        Learning rate (> 0).
    weight_decay : float
        ``lam`` of the L2 penalty (>= 0).
    decay : sequence of bool, optional
        Which parameters are decayed (default: all). ``MLP.weight_mask()`` decays weight matrices only.
    """

    def __init__(
        self, params: list[Tensor], lr: float, weight_decay: float = 0.0, decay: Sequence[bool] | None = None
    ) -> None:
        check_real("lr", lr, 0.0, low_open=True, what="the learning rate")
        check_real("weight_decay", weight_decay, 0.0, what="weight decay")
        decay = [True] * len(params) if decay is None else [bool(d) for d in decay]
        if len(decay) != len(params):
            raise ConfigError("decay", decay, f"give one flag per parameter ({len(params)})")
        self.params, self.lr, self.weight_decay, self.decay = params, float(lr), float(weight_decay), decay

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """``w <- w - lr * (g + lam * w)`` for every parameter (``lam = 0`` where not decayed)."""
        if len(grads) != len(self.params):
            raise ValueError(f"got {len(grads)} gradients for {len(self.params)} parameters")
        lam = self.weight_decay
        for w, g, decayed in zip(self.params, grads, self.decay):
            if decayed and lam > 0:
                g = torch.add(g, w, alpha=lam)  # + l2_grad(w, lam), in one pass
            w.sub_(g, alpha=self.lr)

    def state_dict(self) -> dict:
        """The hyperparameters (plain SGD keeps no other state); stored in checkpoints."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, "decay": list(self.decay)}

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.weight_decay, self.decay = float(state["lr"]), float(state["weight_decay"]), list(state["decay"])
