"""A batched ReLU MLP's SGD step by hand: backward and update fused (the CPU's step; opt-in on CUDA).

On a CPU a batched step's matrix products are compute-bound and fast, and what else the step does
is bound by memory traffic: every pass over a (K, B, H) activation or a (K, n_in, n_out) weight
tensor reads and writes megabytes. Autograd plus a separate optimizer makes several such passes
that this step does not:

- **The SGD update inside the weight-gradient product.** ``W <- W - lr * A^T dZ`` is one
  ``baddbmm_`` into ``W`` (``beta = 1``, ``alpha = -1``) once ``dZ`` carries the learning rate, so
  no gradient tensor is written and read back, and there is no separate update pass. The learning
  rate ``lr_k / B`` (and the mean's ``1 / B``) multiplies the output layer's gradient, a
  (K, B, n_outputs) tensor: backpropagation is linear, so every gradient below it carries the
  factor too. Weight decay is ``W <- W (1 - lr_k wd_k)`` before the update, the same
  ``W - lr (g + wd W)``.
- **Dropout and ReLU backward in one pass.** With ``A = relu(Z) * gate`` (a kept unit's gate is
  ``s_k = 1 / (1 - p_k) >= 1``), ``dZ = dA * s_k * 1[A > 0]``: ``threshold_backward`` of ``A``
  and, when the layer above is narrower (the output layer), ``s_k`` folded into the small
  gradient that ``dA`` is computed from rather than multiplied into ``dA``.
- **Forward in place.** ``Z`` is turned into ``A`` where it lies.

The update order is the optimizer's: each layer's input gradient ``dA = dZ W^T`` is taken before
that layer's weights move, so every gradient is the one at the step's starting weights.

This is :class:`mlplab.sweep.optim.BatchedSGD`'s update for ReLU networks without L1 and with one
input width (the padded rows of mixed widths would need their gradient masked before the update),
on live models: a step whose loss is non-finite for some model is not taken here, and the
caller's autograd step (which freezes that model) runs it instead. The same numbers as that step
up to float rounding (``p - lr g`` against ``p - (lr g)`` summed in another order); tested
against it in ``tests/test_sweep_fused.py``.

In ``precision="bf16"`` the products read bfloat16 operands as autocast's would: the batch, the
activations and gradients in bfloat16, the weights as bfloat16 copies refreshed from the float32
weights at every step; the losses are float32, and each weight gradient ``A^T dZ`` (bfloat16,
summed in float32 by the product) is subtracted from the float32 weights, so the update cannot be
folded into the product there. Tested against the autograd step under autocast in
``tests/test_precision.py``.

**Capturable** (``alive`` given; what a CUDA device gets, where the step is captured in a CUDA
graph and reading a loss back would wait for the GPU): the step reads no value back to the host.
It updates ``alive &= isfinite(losses)`` on the device and takes every model's step, a dead
model's with its output gradient set to zero (``torch.where``, since ``0 * nan`` is nan) and no
weight decay: it stops learning at the step its loss turned non-finite, as with the autograd
step, and its history up to that epoch is the autograd step's. Its parameters stay as they were
while its forward pass stays finite (``W - A^T 0 = W``) but turn non-finite where its activations
overflow (``A^T 0`` is nan where ``A`` is inf), as ``fit``'s do when it runs out a diverged epoch;
so the test metrics of the epoch it diverged in may differ from the autograd step's (both are
those of a diverged model). Masking its activations instead would cost a pass over each of them.

**Compiled** (``compiled=True``): the elementwise work around the products, dropout with ReLU
(``relu(Z) * where(U >= p_k, s_k, 0)`` from the (B, H) uniforms, no (K, B, H) gate written),
its backward and the loss with its gradient, as ``torch.compile``'d kernels: one pass over each
activation instead of four. The products stay cuBLAS / oneDNN calls with the update fused in.
Compiling needs a C++ compiler on a CPU and Triton on CUDA, and costs seconds once per shape
(about 20 s for the first on a CPU, mostly loading the compiler). On this project's 2-core CPU it
ties with the plain fused step in fp32, where the products bound the step, and was 4-12% faster in
bf16 (BENCHMARKS.md); on CUDA, where elementwise work is most of a step, it waits to be measured.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from mlplab.errors import ConfigError
from mlplab.sweep.optim import BatchedOptimizer, BatchedSGD
from mlplab.train import widened

LOSSES = ("cross_entropy", "mse")


def supports(model, optimizer: BatchedOptimizer, loss: str) -> bool:
    """Whether :class:`FusedReluSGD` can take this group's steps (else the autograd step does)."""
    return (
        type(optimizer) is BatchedSGD
        and not any(optimizer.has_l1)
        and model.activation == "relu"
        and model.input_mask is None
        and loss in LOSSES
    )


def cross_entropy_grad(out: Tensor, y: Tensor, lr: Tensor) -> tuple[Tensor, Tensor]:
    """Per-model mean cross-entropy (K,) of logits ``out`` (K, B, C) against labels ``y`` (B,), and its gradient times ``lr``.

    The gradient of model k's mean loss wrt its logits is ``(softmax(out) - onehot(y)) / B``;
    it is returned multiplied by ``lr`` (K, 1, 1), as the fused update wants it.
    """
    K, B = out.shape[:2]
    logp = torch.log_softmax(out, dim=-1)  # (K, B, C)
    index = y.view(1, B, 1).expand(K, B, 1)
    losses = -logp.gather(2, index).squeeze(2).mean(1)  # (K,)
    grad = logp.exp_().scatter_add_(2, index, torch.full((K, B, 1), -1.0, device=out.device))
    return losses, grad.mul_(lr / B)


def squared_error_grad(out: Tensor, y: Tensor, lr: Tensor) -> tuple[Tensor, Tensor]:
    """Per-model mean squared error (K,) of ``out`` (K, B, k) against ``y`` (B,) or (B, k), and its gradient times ``lr``."""
    diff = out - y.reshape(out.shape[1:])  # (K, B, k)
    losses = diff.square().flatten(1).mean(1)
    return losses, diff.mul_(lr * (2.0 / diff[0].numel()))


LOSS_GRADS: dict[str, Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]] = {
    "cross_entropy": cross_entropy_grad, "mse": squared_error_grad,
}  # fmt: skip


def relu_dropout(Z: Tensor, U: Tensor, p: Tensor, s: Tensor) -> Tensor:
    """``A = relu(Z) * (1[U >= p_k] s_k)``: (K, B, H) from ``Z`` (K, B, H), uniforms ``U`` (B, H), ``p``, ``s`` (K, 1, 1).

    The compiled form of ``relu(Z) * gate``: the same products (a dropped unit's is ``relu(Z) * 0``,
    nan where ``Z`` is inf or nan, as the eager gate gives) in one pass, without writing the gate.
    """
    return (Z.clamp_min(0.0) * torch.where(U >= p, s, 0.0)).to(Z.dtype)


def relu_dropout_backward(dA: Tensor, A: Tensor, s: Tensor) -> Tensor:
    """``dZ = dA s_k 1[A > 0]`` for ``A = relu(Z) * gate`` (``A > 0`` exactly where ``Z > 0`` and the unit was kept)."""
    return torch.ops.aten.threshold_backward(dA, A, 0.0).mul_(s)


def _build_failures() -> tuple[type[BaseException], ...]:
    """torch's exception types for a backend that failed to build kernels (where this torch has them)."""
    found = []
    for module, name in (("torch._dynamo.exc", "BackendCompilerFailed"), ("torch._inductor.exc", "InductorError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):  # renamed or moved in another torch version
            continue
    return tuple(found)


def _cannot_build(what: str, error: BaseException, field: str) -> ConfigError:
    """The ConfigError for a backend that could not build ``what``, with torch's reason and the fix."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = next((line for line in lines if not line.endswith("raised:")), type(error).__name__)[:200]
    fix = "drop --compiled" if field.startswith("--") else "train with compiled=False"
    return ConfigError(
        field,
        True,
        f"torch.compile could not build {what} on this machine ({reason}); it needs a C++ compiler on a CPU "
        f"(apt-get install g++) and Triton on CUDA, or {fix}",
    )


@functools.cache
def compiled_kernel(f: Callable) -> Callable:
    """``torch.compile(f)``, made once per function for every group: compiled on its first call,
    again when a shape changes (then for dynamic shapes), and reused by later groups.

    A machine that cannot build the kernels (no C++ compiler for a CPU, no Triton for CUDA) gets
    a :class:`~mlplab.errors.ConfigError` at the first call that says so, not the compiler's trace
    (:func:`check_compiled_kernels` says it before any work).
    """
    compiled = torch.compile(f)
    failures = _build_failures()

    @functools.wraps(f)
    def call(*args):
        try:
            return compiled(*args)
        except failures as error:  # the backend could not build kernels: not a bug in the traced code
            raise _cannot_build(f.__name__, error, "compiled") from error

    return call


def _probe(x: Tensor) -> Tensor:
    """The smallest kernel: whether this machine can build any (:func:`check_compiled_kernels`)."""
    return x * 2 + 1


@functools.cache
def _probe_failure(device_type: str, probe: Callable) -> BaseException | None:
    try:
        torch.compile(probe)(torch.ones(4, device=device_type))
    except _build_failures() as error:
        return error
    return None


def check_compiled_kernels(device: torch.device | str, field: str = "compiled") -> None:
    """Raise a ConfigError on ``field`` now, before any work, where ``torch.compile`` cannot build
    kernels for ``device``: one tiny kernel is built and run, once per process and device type
    (seconds the first time, most of it loading the compiler, which the step's own kernels need anyway).
    """
    error = _probe_failure(torch.device(device).type, _probe)
    if error is not None:
        raise _cannot_build("kernels", error, field) from error


class FusedReluSGD:
    """Forward, loss, backward and SGD update of a :class:`~mlplab.sweep.batched.BatchedMLP`, by hand.

    Parameters
    ----------
    model : BatchedMLP
        ReLU activations, one input width (:func:`supports`).
    optimizer : BatchedSGD
        Its per-model learning rates and weight decays are used; its ``step`` is not called.
    loss : str
        ``cross_entropy`` (integer labels) or ``mse`` (float targets (B,) or (B, k)).
    precision : str
        ``fp32``, or ``bf16``: the products in bfloat16, the weights and the update in float32.
    alive : Tensor of shape (K,), bool, optional
        Given, the step is capturable (see the module docstring): it updates ``alive`` in place
        and never hands a step back. Without it a step with a non-finite loss is handed back.
    compiled : bool
        The elementwise work as ``torch.compile``'d kernels (see the module docstring).
    """

    def __init__(
        self,
        model,
        optimizer: BatchedSGD,
        loss: str,
        precision: str = "fp32",
        alive: Tensor | None = None,
        compiled: bool = False,
    ) -> None:
        if not supports(model, optimizer, loss):
            raise ValueError("FusedReluSGD needs a ReLU model without input padding, BatchedSGD without L1")
        self.model, self.alive, self.compiled = model, alive, compiled
        self.bf16 = precision == "bf16"
        if self.bf16:  # the products' operands: bfloat16 copies of the float32 weights, refreshed each step
            self.weight_copies = [W.to(torch.bfloat16) for W in model.weights]
            self.bias_copies = [b.to(torch.bfloat16) for b in model.biases]
            self.grads = [torch.empty_like(W, dtype=torch.bfloat16) for W in model.weights]  # A^T dZ
        self.loss_grad = LOSS_GRADS[loss]
        self.relu_dropout, self.relu_dropout_backward = relu_dropout, relu_dropout_backward
        if compiled:
            self.loss_grad, self.relu_dropout, self.relu_dropout_backward = map(
                compiled_kernel, (self.loss_grad, relu_dropout, relu_dropout_backward)
            )
        self.lr = optimizer.lr  # (K, 1, 1)
        # per parameter 1 - lr wd (K, 1, 1), or None where no model decays it (weights, then biases)
        self.shrink = [1 - optimizer.lr * wd if decay else None
                       for wd, decay in zip(optimizer.weight_decay, optimizer.has_decay)]  # fmt: skip

    def forward(self, X: Tensor, uniforms: Sequence[Tensor | None], streams) -> list[Tensor]:
        """Every layer's input and the output: ``[X expanded, A_1, ..., A_L-1, output]``, no autograd.

        ``uniforms`` are the step's dropout uniforms (B, H) per hidden layer, None where no model
        drops, and ``streams`` the group's :class:`~mlplab.sweep.batched.DropoutStreams`.
        """
        m = self.model
        weights, biases = self.operands()
        if self.bf16:
            X = X.to(torch.bfloat16)
        gates = None if self.compiled else streams.gates_from(uniforms)
        A = X.expand(m.n_models, *X.shape)  # (K, B, d), a view
        acts = [A]
        for layer, W in enumerate(weights):
            Z = torch.baddbmm(biases[layer], A, W) if biases else torch.bmm(A, W)  # (K, B, n_out)
            if layer < len(m.weights) - 1:
                U = uniforms[layer] if layer < len(uniforms) else None
                if U is None:
                    Z = Z.clamp_min_(0.0)
                elif self.compiled:
                    Z = self.relu_dropout(Z, U, streams.thresholds[layer], streams.scales[layer])
                else:
                    Z = Z.clamp_min_(0.0).mul_(gates[layer])
                A = Z
            acts.append(Z)
        return acts

    def operands(self) -> tuple[list[Tensor], list[Tensor]]:
        """The weights and biases the products read: the model's, or in bf16 their refreshed bfloat16 copies."""
        m = self.model
        if not self.bf16:
            return m.weights, m.biases
        for copy, p in zip((*self.weight_copies, *self.bias_copies), (*m.weights, *m.biases)):
            copy.copy_(p)
        return self.weight_copies, self.bias_copies

    def losses(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(per-model mean losses (K,), their gradient wrt out times lr_k)``, as ``F.cross_entropy`` / ``F.mse_loss``."""
        return self.loss_grad(widened(out), y, self.lr)  # the loss in float32 (bf16: from the bfloat16 outputs)

    def backward_update(
        self,
        acts: list[Tensor],
        grad_out: Tensor,
        uniforms: Sequence[Tensor | None],
        streams,
        shrink: Sequence[Tensor | None],
    ) -> None:
        """Backpropagate ``grad_out`` (it carries lr) and update every layer in place, top layer first.

        ``uniforms`` and ``streams`` as in :meth:`forward`; ``shrink`` holds per parameter
        (weights, then biases) its ``1 - lr wd`` (K, 1, 1) or None.
        """
        m = self.model
        n_weights = len(m.weights)
        dZ = grad_out.to(acts[-1].dtype)
        for layer in reversed(range(n_weights)):
            W, A = m.weights[layer], acts[layer]
            Wp = self.weight_copies[layer] if self.bf16 else W  # the weights the forward pass multiplied by
            dA = None
            if layer:  # the input gradient at the starting weights, before W moves
                dropped, s = (layer - 1 < len(uniforms) and uniforms[layer - 1] is not None), streams.scales[layer - 1]
                fold = dropped and dZ.shape[-1] < A.shape[-1]  # scale the smaller tensor
                dA = torch.bmm((dZ * s).to(dZ.dtype) if fold else dZ, Wp.transpose(1, 2))  # (K, B, n_in)
                if dropped and not fold:
                    dA = self.relu_dropout_backward(dA, A, s)
                else:
                    dA = torch.ops.aten.threshold_backward(dA, A, 0.0)  # relu's and dropout's zeros
            if shrink[layer] is not None:
                W.mul_(shrink[layer])
            if self.bf16:  # the product in bfloat16 (float32 accumulation), the update in float32
                W.sub_(torch.bmm(A.transpose(1, 2), dZ, out=self.grads[layer]))
            else:
                W.baddbmm_(A.transpose(1, 2), dZ, alpha=-1.0)  # W - lr * A^T dZ
            if m.biases:
                b = m.biases[layer]
                if shrink[n_weights + layer] is not None:
                    b.mul_(shrink[n_weights + layer])
                b.sub_(dZ.sum(1, keepdim=True, dtype=b.dtype))
            dZ = dA

    @torch.no_grad()
    def __call__(
        self, X: Tensor, y: Tensor, uniforms: Sequence[Tensor | None], streams
    ) -> tuple[Tensor, Tensor] | None:
        """One step: ``(losses (K,), outputs (K, B, n_out))``, or None, untouched, if a loss is not finite.

        ``uniforms`` and ``streams`` as in :meth:`forward`. A capturable step never returns None.
        """
        acts = self.forward(X, uniforms, streams)
        losses, grad_out = self.losses(acts[-1], y)
        shrink = self.shrink
        if self.alive is None:
            if not bool(torch.isfinite(losses).all()):  # the autograd step freezes the model instead
                return None
        else:  # dead models (from now on, or before) get a zero gradient and no decay
            self.alive &= torch.isfinite(losses)
            live = self.alive.view(-1, 1, 1)  # (K, 1, 1)
            grad_out = torch.where(live, grad_out, 0.0)
            shrink = [None if f is None else torch.where(live, f, 1.0) for f in shrink]
        self.backward_update(acts, grad_out, uniforms, streams, shrink)
        return losses, acts[-1]
