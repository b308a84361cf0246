"""An MLP with a hand-written backward pass (d2l "Forward Propagation, Backward Propagation, and
Computational Graphs"; "Implementation of Multilayer Perceptrons from Scratch").

Forward pass, for hidden layers ``l = 1 .. L-1`` and the output layer ``L``, ``A_0 = X``:

    Z_l = A_{l-1} W_l + b_l        (B, n_l)    W_l of shape (n_{l-1}, n_l)
    H_l = f(Z_l)                   (B, n_l)    f = relu | sigmoid | tanh | prelu(., alpha_l)
    A_l = dropout(H_l)             (B, n_l)    inverted dropout, the identity in evaluation
    O   = A_{L-1} W_L + b_L        (B, n_L)    logits
    loss = mean_i CE(O_i, y_i)                 softmax cross-entropy

Backward pass, the chain rule applied layer by layer from the output back (``dV`` = ``dloss/dV``):

    dO   = (softmax(O) - onehot(y)) / B
    dW_l = A_{l-1}^T dZ_l,   db_l = sum_i dZ_l[i]            (dZ_L = dO)
    dA_{l-1} = dZ_l W_l^T                                      (not computed for l = 1: X is data)
    dH_{l-1} = dA_{l-1} * m_{l-1} / (1 - p)                    (dropout's mask)
    dZ_{l-1} = dH_{l-1} * f'(Z_{l-1})
    dalpha_{l-1} = sum over the batch and units of dH_{l-1} * min(0, Z_{l-1})     (pReLU only)

Everything runs under ``torch.no_grad()`` on tensors that do not require gradients: no autograd
graph is ever built; the tests check every gradient against ``torch.autograd`` in float64.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mlplab.errors import ConfigError, MlplabError, check_probability
from mlplab.init import InitSpec, parse_init
from mlplab.scratch.activations import NAMES, OUTPUT_DERIVATIVES, PRELU_INIT, prelu, prelu_grad, prelu_grad_alpha
from mlplab.scratch.dropout import dropout, dropout_grad
from mlplab.scratch.init import init_weight
from mlplab.scratch.losses import softmax_cross_entropy_and_grad


@dataclass
class LayerTape:
    """What the forward pass keeps of one hidden layer until the backward pass has used it."""

    z: Tensor | None  # (B, n) pre-activation, for pReLU (its derivatives read z); else None
    h: Tensor | None  # (B, n) activation output f(z), for relu/sigmoid/tanh (f' reads h); else None
    mask: Tensor | None  # (B, n) bool keep-mask of dropout; None when nothing was dropped
    out: Tensor  # (B, n) the next layer's input: f(z), or f(z) * mask / (1 - p)


@dataclass
class Tape:
    """The computational graph's intermediate values that the backward pass needs.

    ``X`` is the caller's input batch (needed for ``dW_1``); ``layers`` holds one
    :class:`LayerTape` per hidden layer.
    """

    X: Tensor  # (B, n_0)
    layers: list[LayerTape]

    def nbytes(self) -> int:
        """Bytes of the tensors the forward pass created and keeps (``X`` excluded), each counted once."""
        seen: dict[int, int] = {}
        for layer in self.layers:
            for t in (layer.h, layer.z, layer.mask, layer.out):
                if t is not None:
                    seen[t.data_ptr()] = t.untyped_storage().nbytes()
        return sum(seen.values())


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) < 2:
        raise ConfigError("sizes", sizes, "give the widths of all layers, input to output, e.g. [784, 256, 10]")
    for i, n in enumerate(sizes):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"sizes[{i}]", n, "layer widths must be integers >= 1")
    return list(sizes)


def _check_dropout(dropout: float | Sequence[float] | None, n_hidden: int) -> tuple[float, ...]:
    values = [dropout] if isinstance(dropout, (int, float)) else list(dropout or ())
    if not values:  # None or (): no dropout, as in ModelConfig
        return (0.0,) * n_hidden
    if any(p != 0 for p in values) and n_hidden == 0:
        raise ConfigError("dropout", dropout, "dropout needs at least one hidden layer")
    if len(values) == 1:
        values = values * n_hidden
    if len(values) != n_hidden:
        raise ConfigError(
            "dropout", dropout, f"give one probability for all hidden layers or one per hidden layer ({n_hidden})"
        )
    for i, p in enumerate(values):
        check_probability(f"dropout[{i}]", p)  # [0, 1), as every model: p = 1 would train nothing
    return tuple(float(p) for p in values)


class MLP:
    """A multilayer perceptron with hand-written forward and backward passes (no autograd).

    Parameters
    ----------
    sizes : sequence of int
        Widths of all layers, input to output, e.g. ``[784, 256, 10]`` (two entries: softmax
        regression).
    activation : str
        Of the hidden layers: ``relu``, ``sigmoid``, ``tanh`` or ``prelu`` (one learnable slope per
        hidden layer, starting at 0.25 like ``nn.PReLU()``).
    dropout : float or sequence of float, optional
        Dropout probability after each hidden layer: one value for all or one per hidden layer,
        each in [0, 1) as in every model config. None or (): no dropout.
    init : str or InitSpec
        Weight initialization: ``normal:STD``, ``xavier``, ``xavier_normal`` or ``he`` (see
        :mod:`mlplab.scratch.init`); biases start at 0.
    generator : torch.Generator, optional
        Source of the initial weights and then of the dropout masks (the global generator when
        None, as ``nn.Linear``/``nn.Dropout`` use). With equally seeded generators, a scratch MLP
        and ``mlplab.models.build_mlp`` start from the same weights.
    dtype : torch.dtype, optional
        Of the parameters; default ``torch.get_default_dtype()`` (float32 unless changed), as
        ``nn.Linear``. float64 for gradient checks.
    device : str or torch.device

    Attributes
    ----------
    params : list of Tensor
        ``[W_1, b_1, W_2, b_2, ..., W_L, b_L]`` with ``W_l`` of shape ``(n_{l-1}, n_l)`` and ``b_l``
        of shape ``(n_l,)``; for ``activation="prelu"`` followed by the slopes
        ``[alpha_1, ..., alpha_{L-1}]``, each of shape ``(1,)``. So ``params[2l]``,
        ``params[2l + 1]`` are always layer ``l + 1``'s weight and bias.
    training : bool
        True (the default) applies dropout; see :meth:`train` and :meth:`eval`.

    Example
    -------
    >>> net = MLP([784, 256, 10], generator=torch.Generator().manual_seed(0))
    >>> X, y = torch.rand(32, 784), torch.randint(10, (32,))
    >>> loss, grads = net.loss_and_grads(X, y)
    >>> [tuple(g.shape) for g in grads]
    [(784, 256), (256,), (256, 10), (10,)]
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        dropout: float | Sequence[float] | None = None,
        init: str | InitSpec = "normal:0.01",
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        dtype = torch.get_default_dtype() if dtype is None else dtype  # as nn.Linear: torch.set_default_dtype applies
        self.sizes = _check_sizes(sizes)
        if activation not in NAMES:
            raise ConfigError("activation", activation, f"expected one of {', '.join(NAMES)}")
        self.activation = activation
        self.n_layers = len(self.sizes) - 1
        self.dropout = _check_dropout(dropout, self.n_layers - 1)
        self.init = parse_init(init)
        self.generator = generator
        self.training = True
        self.params: list[Tensor] = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            self.params += [init_weight(self.init, n_in, n_out, generator, dtype), torch.zeros(n_out, dtype=dtype)]
        if activation == "prelu":
            self.params += [torch.full((1,), PRELU_INIT, dtype=dtype) for _ in range(self.n_layers - 1)]
        self.to(device)

    def __repr__(self) -> str:
        drop = "" if not any(self.dropout) else f", dropout={list(self.dropout)}"
        return f"MLP({self.sizes}, activation={self.activation!r}{drop}, init={str(self.init)!r})"

    # -- parameters --------------------------------------------------------------------------

    @property
    def weights(self) -> list[Tensor]:
        """``[W_1, ..., W_L]``, each of shape ``(n_{l-1}, n_l)``."""
        return self.params[0 : 2 * self.n_layers : 2]

    @property
    def biases(self) -> list[Tensor]:
        """``[b_1, ..., b_L]``, each of shape ``(n_l,)``."""
        return self.params[1 : 2 * self.n_layers : 2]

    @property
    def alphas(self) -> list[Tensor]:
        """pReLU slopes ``[alpha_1, ..., alpha_{L-1}]`` (shape (1,) each); empty for other activations."""
        return self.params[2 * self.n_layers :]

    def param_names(self) -> list[str]:
        """``["W1", "b1", ..., "WL", "bL", "alpha1", ...]``, in ``params`` order."""
        names = [f"{kind}{l}" for l in range(1, self.n_layers + 1) for kind in ("W", "b")]
        return names + [f"alpha{l}" for l in range(1, len(self.alphas) + 1)]

    def parameters(self) -> Iterator[Tensor]:
        """The tensors of ``params``, as ``nn.Module.parameters()`` yields them."""
        return iter(self.params)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.params)

    # -- modes, devices, state (what ``mlplab.train.fit`` uses) ------------------------------

    def train(self, mode: bool = True) -> MLP:
        """Training mode: dropout on."""
        self.training = bool(mode)
        return self

    def eval(self) -> MLP:
        """Evaluation mode: dropout is the identity."""
        return self.train(False)

    def to(self, device: str | torch.device) -> MLP:
        """Move the parameters to ``device`` (in the ``params`` list) and return the model."""
        device = torch.device(device)
        self.params[:] = [p.to(device) for p in self.params]
        gen = self.generator
        if gen is not None and gen.device.type != device.type:
            # masks must be drawn on the data's device: continue with a generator seeded from this one
            seed = int(torch.randint(2**62, (1,), generator=gen))
            self.generator = torch.Generator(device).manual_seed(seed)
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """Parameters by name (``W1``, ``b1``, ..., ``alpha1``), and the dropout generator's state."""
        state = {name: p.detach().clone() for name, p in zip(self.param_names(), self.params)}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy a :meth:`state_dict` into this model's parameters, in place."""
        names = self.param_names()
        keys = [k for k in state if k != "generator"]
        if keys != names:
            raise MlplabError(
                f"this state has parameters {keys}, but {self!r} has {names}. "
                "Fix: load it into an MLP of the same sizes and activation."
            )
        for name, p in zip(names, self.params):
            if state[name].shape != p.shape:
                raise MlplabError(
                    f"parameter {name} has shape {tuple(state[name].shape)} in the state "
                    f"but {tuple(p.shape)} in {self!r}"
                )
            p.copy_(state[name])
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"].cpu())

    # -- forward and backward ----------------------------------------------------------------

    def _flat(self, X: Tensor) -> Tensor:
        X = X.reshape(X.shape[0], -1)  # (B, n_0), as nn.Flatten does
        if X.shape[1] != self.sizes[0]:
            raise ConfigError("X.shape", tuple(X.shape), f"this MLP takes {self.sizes[0]} features per example")
        return X

    def _hidden(self, A: Tensor, i: int, keep: bool) -> tuple[Tensor, LayerTape | None]:
        """Hidden layer ``i + 1`` on its input ``A``: its output, and its tape if ``keep``."""
        Z = torch.addmm(self.biases[i], A, self.weights[i])  # (B, n) = A W + b
        if self.activation == "prelu":
            H = prelu(Z, self.alphas[i])
        else:
            H = OUTPUT_DERIVATIVES[self.activation][0](Z)
        out, mask = dropout(H, self.dropout[i], self.training, self.generator)
        if not keep:
            return out, None
        if self.activation == "prelu":  # pReLU's derivatives read Z; H is kept only as `out`
            return out, LayerTape(z=Z, h=None, mask=mask, out=out)
        return out, LayerTape(z=None, h=H, mask=mask, out=out)

    @torch.no_grad()
    def forward(self, X: Tensor) -> Tensor:
        """Logits of shape (B, n_L) for ``X`` of shape (B, n_0); keeps nothing for a backward pass.

        Dropout is applied in training mode, as in ``nn.Module``s; call :meth:`eval` to predict.
        """
        A = self._flat(X)
        for i in range(self.n_layers - 1):
            A, _ = self._hidden(A, i, keep=False)
        return torch.addmm(self.biases[-1], A, self.weights[-1])

    __call__ = forward

    @torch.no_grad()
    def forward_train(self, X: Tensor) -> tuple[Tensor, Tape]:
        """Logits (B, n_L) and the :class:`Tape` of intermediate values the backward pass needs."""
        A = X = self._flat(X)
        layers = []
        for i in range(self.n_layers - 1):
            A, layer = self._hidden(A, i, keep=True)
            layers.append(layer)
        return torch.addmm(self.biases[-1], A, self.weights[-1]), Tape(X, layers)

    @torch.no_grad()
    def backward(self, tape: Tape, grad_logits: Tensor) -> list[Tensor]:
        """Gradients of the loss by ``params`` (same order), from ``dloss/dlogits`` (B, n_L).

        The chain rule layer by layer, output to input (see the module doc); the gradient by the
        input ``X`` is never formed.
        """
        L, weights, alphas = self.n_layers, self.weights, self.alphas
        dW: list[Tensor] = [None] * L  # type: ignore[list-item]
        db: list[Tensor] = [None] * L  # type: ignore[list-item]
        dalpha: list[Tensor] = [None] * len(alphas)  # type: ignore[list-item]
        dZ = grad_logits  # (B, n_L)
        for i in reversed(range(L)):  # layer i + 1, whose input is A_i
            A = tape.X if i == 0 else tape.layers[i - 1].out  # (B, n_i)
            dW[i] = torch.mm(A.T, dZ)  # (n_i, n_{i+1})
            db[i] = dZ.sum(dim=0)  # (n_{i+1},)
            if i == 0:
                break
            below = tape.layers[i - 1]  # the hidden layer that produced A_i
            dA = torch.mm(dZ, weights[i].T)  # (B, n_i)
            dH = dropout_grad(dA, below.mask, self.dropout[i - 1])
            if self.activation == "prelu":
                dalpha[i - 1] = (dH * prelu_grad_alpha(below.z)).sum().reshape(1)  # (1,)
                dZ = dH.mul_(prelu_grad(below.z, alphas[i - 1]))
            else:
                dZ = dH.mul_(OUTPUT_DERIVATIVES[self.activation][1](below.h))
        return [g for pair in zip(dW, db) for g in pair] + dalpha

    def loss_and_grads(self, X: Tensor, y: Tensor, *, return_logits: bool = False):
        """Mean softmax cross-entropy over the batch and its gradients by ``params``.

        Parameters
        ----------
        X : Tensor of shape (B, n_0)
        y : Tensor of shape (B,), int64 class indices
        return_logits : bool
            Also return the logits (B, n_L) of this forward pass (``fit`` counts accuracy with them).

        Returns
        -------
        loss : 0-dim Tensor
        grads : list of Tensor
            One per entry of ``params``, same shapes and order (pReLU slopes last).
        logits : Tensor of shape (B, n_L), only if ``return_logits``
        """
        logits, tape = self.forward_train(X)
        loss, grad_logits = softmax_cross_entropy_and_grad(logits, y)
        grads = self.backward(tape, grad_logits)
        return (loss, grads, logits) if return_logits else (loss, grads)

    # -- memory ------------------------------------------------------------------------------

    def saved_bytes_per_sample(self) -> int:
        """Bytes per example that a training forward pass keeps until the backward pass.

        Per hidden layer of width ``n`` (``s`` = bytes per element of ``dtype``), the tensors of a
        :class:`LayerTape`:

        - ``n s`` for what the activation's derivative reads: ``H = f(Z)`` (relu, sigmoid, tanh)
          or ``Z`` (pReLU);
        - ``n s`` for the next layer's input when it is not that tensor: the dropped-out output
          (dropout, p > 0, training mode) or, for pReLU, ``H``;
        - ``n`` for dropout's boolean mask.

        Plus ``n_L s`` for the gradient by the logits that the loss hands to the backward pass.
        The input batch is not counted (prediction needs it as much). Prediction keeps none of
        these: each layer's values can be freed as soon as the next layer is computed.
        For 784-256-10, ReLU, float32: ``256 * 4 + 10 * 4 = 1064`` bytes.
        """
        s = self.params[0].element_size()
        total = self.sizes[-1] * s
        for n, p in zip(self.sizes[1:-1], self.dropout):
            dropped = p > 0 and self.training
            total += n * s
            if dropped or self.activation == "prelu":
                total += n * s
            if dropped:
                total += n
        return total
