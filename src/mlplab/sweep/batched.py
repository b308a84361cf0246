"""K same-shape MLPs as one batched model, trained together (one forward and backward per step).

Parameters are stacked on a leading model axis: layer ``l`` has weights ``W_l`` of shape
``(K, n_in, n_out)`` (the transpose of ``nn.Linear.weight``) and biases ``b_l`` of shape
``(K, 1, n_out)`` (none at all when the models are built with ``bias=False``). A mini-batch
``X`` of shape (B, d) is shared by all models, so

    Z_1 = X W_1 + b_1,   A_l = g(Z_l) * M_l,   Z_{l+1} = A_l W_{l+1} + b_{l+1}   # (K, B, n)

is a chain of ``torch.baddbmm`` calls (``torch.bmm`` without biases; the first on ``X`` expanded
without a copy). The loss of model k is its own mean loss, as ``mlplab.train.fit`` computes it:
cross-entropy of its logits against integer labels, or (``loss="mse"``, regression) the mean
squared error over all B x n_outputs entries against float targets of shape (B,) or (B, k).
Backpropagating the sum of the K losses gives every model exactly its own gradient, because no
parameter is shared. Autograd does the backward (``torch.func.vmap`` over ``functional_call``
was slower than the stacked ``baddbmm``), except on a CPU (on CUDA with ``fused=True``) for
ReLU groups trained by SGD without L1: there :mod:`mlplab.sweep.fused` takes the step by hand,
the update fused into the weight-gradient products, which cuts the time beside the matrix
products by about half (a hand-written backward alone, without the fusion, had measured no
faster than autograd). An L1 penalty ``l1_k * sum |w|`` (per model, on the parameters weight
decay applies to) is not added to the loss: its gradient ``l1_k * sign(w)`` is added to
the data gradient in the optimizer (``mlplab.sweep.optim``), the same sum autograd forms in fit.

Input width may differ per model (the polynomial degrees of d2l 4.4, one feature column per
power): model k sees the first ``d_k`` columns of the data. ``W_1`` is stacked at the group's
widest ``d = max_k d_k``, model k's own ``(d_k, n_out)`` weights on top of ``d - d_k`` zero rows,
and ``X`` is the first ``d`` columns; the zero rows add nothing to ``Z_1``. Their gradient
``X^T dZ_1`` is not zero, so it is multiplied by a per-model mask ``1[i < d_k]`` of shape
(K, d, 1) before the update: a row with zero value and zero gradient never moves (SGD, weight
decay, L1 with ``sign(0) = 0``, Adam whose moments stay 0), so the padding stays exactly 0 and
model k trains as fit trains a model of ``d_k`` inputs on ``X[:, :d_k]``. With one width for
all models there is no mask and no multiply.

Dropout (d2l 4.6; Srivastava et al. 2014) uses a documented common-random-numbers scheme so
that it is vectorized *and* independent of how trials are grouped: for seed ``s`` and hidden
layer ``l`` one ``torch.Generator`` on the training device, seeded with
``dropout_seed(s, l)``, draws ``U`` of shape (B, H_l) per training step, and model k keeps unit
``(i, j)`` iff ``U[i, j] >= p_k``; kept units are scaled by ``1 / (1 - p_k)``:

    M_l[k] = 1[U >= p_k] / (1 - p_k)                                                # (K, B, H)

Every model with seed ``s`` thus sees the same uniforms (the same way it sees the same batch
order): a configuration trains identically whichever trials share its group, and two
configurations differing only in ``p`` use nested masks, which sharpens comparisons between
grid cells. Each model's masks are i.i.d. Bernoulli(1 - p), as ``nn.Dropout``'s are, but not
the same draws (``nn.Dropout`` uses the global RNG, one call per layer); CPU and CUDA
generators give different streams.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlplab.data.batching import Data, Split, batches, num_batches
from mlplab.errors import ConfigError
from mlplab.models import ModelConfig, build_mlp
from mlplab.sweep.fused import FusedReluSGD, check_compiled_kernels
from mlplab.sweep.fused import supports as fused_supports
from mlplab.sweep.optim import make_batched_optimizer
from mlplab.sweep.planner import group_key
from mlplab.sweep.spec import Trial
from mlplab.train import (
    DIVERGED,
    INITIAL_LOSS_ROWS,
    EpochRecord,
    GraphReplay,
    History,
    check_targets,
    forward_in,
    outcome,
    resolve_device,
)

DROPOUT_STREAM = 0x5EED_D0  # a constant mixed into dropout_seed, so dropout never reuses the init or order seed


def dropout_seed(seed: int, layer: int) -> int:
    """The seed of hidden layer ``layer``'s (0-based) dropout generator for trial seed ``seed``.

    ``numpy.random.SeedSequence((seed, DROPOUT_STREAM, layer))``'s first 63-bit word: well mixed,
    stable across versions, distinct per layer.
    """
    state = np.random.SeedSequence((seed, DROPOUT_STREAM, layer)).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def _relu(Z: Tensor, slope: Tensor | None) -> Tensor:
    return F.relu(Z)


def _sigmoid(Z: Tensor, slope: Tensor | None) -> Tensor:
    return torch.sigmoid(Z)


def _tanh(Z: Tensor, slope: Tensor | None) -> Tensor:
    return torch.tanh(Z)


def _prelu(Z: Tensor, slope: Tensor | None) -> Tensor:
    return torch.where(Z >= 0, Z, slope * Z)  # slope (K, 1, 1): one learnable slope per model and layer


# g(Z, slope) for each name of mlplab.models.ACTIVATIONS; only pReLU uses its per-model slope.
BATCHED_ACTIVATIONS: dict[str, Callable[[Tensor, Tensor | None], Tensor]] = {
    "relu": _relu, "sigmoid": _sigmoid, "tanh": _tanh, "prelu": _prelu,
}  # fmt: skip


class ReluDropout(torch.autograd.Function):
    """``relu(Z) * gate`` for a dropout gate of 0s and ``1 / (1 - p)``s, in two passes forward, two back.

    Forward ``A = relu(Z) * gate`` in place on one new tensor; backward
    ``dZ = dA * gate * 1[A > 0]``: ``A > 0`` exactly where ``Z > 0`` and the unit was kept (a kept
    unit's gate is >= 1), so these are the numbers autograd computes for ``F.relu(Z) * gate``, to
    the bit, from the saved output, with no mask of ``Z``'s sign and one intermediate fewer.
    """

    @staticmethod
    def forward(ctx, Z: Tensor, gate: Tensor) -> Tensor:
        A = Z.clamp_min(0.0).mul_(gate)
        ctx.save_for_backward(A, gate)
        return A

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dA: Tensor) -> tuple[Tensor, None]:
        A, gate = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(dA, A, 0.0).mul_(gate), None


class BatchedMLP:
    """K MLPs of one shape and activation with stacked parameters (see the module docstring).

    Attributes
    ----------
    weights : list of Tensor (K, n_in, n_out), one per layer
        The first layer's ``n_in`` is the widest model's input count; narrower models' rows
        beyond their own are zero.
    biases : list of Tensor (K, 1, n_out), one per layer; empty for models without biases
    slopes : list of Tensor (K, 1, 1), one per hidden layer for ``prelu``, else empty
    input_widths : list of int
        Each model's own input count ``d_k`` (its ``ModelConfig.n_inputs``).
    input_mask : Tensor of shape (K, n_in, 1) or None
        ``1[i < d_k]``: which rows of ``weights[0]`` model k has; None when all widths are equal.
    """

    def __init__(
        self,
        weights: list[Tensor],
        biases: list[Tensor],
        slopes: list[Tensor],
        activation: str,
        input_widths: Sequence[int] | None = None,
    ) -> None:
        self.weights, self.biases, self.slopes, self.activation = weights, biases, slopes, activation
        self._act = BATCHED_ACTIVATIONS[activation]
        widest = weights[0].shape[1]
        self.input_widths = [widest] * weights[0].shape[0] if input_widths is None else list(input_widths)
        if len(self.input_widths) != weights[0].shape[0] or max(self.input_widths) > widest:
            raise ConfigError("input_widths", self.input_widths, f"one width <= {widest} per model")
        self.input_mask: Tensor | None = None
        if min(self.input_widths) < widest:
            rows = torch.arange(widest, device=weights[0].device)  # (d,)
            widths = torch.tensor(self.input_widths, device=weights[0].device).view(-1, 1)  # (K, 1)
            self.input_mask = (rows < widths).to(weights[0].dtype).unsqueeze(-1)  # (K, d, 1)

    @classmethod
    def from_trials(cls, trials: Sequence[Trial], device: torch.device | str = "cpu") -> BatchedMLP:
        """Stack the initial weights ``build_mlp(trial.model, Generator().manual_seed(seed))`` of each trial.

        These are exactly the weights ``mlplab.train.fit`` would start from, for any init scheme;
        a model with fewer inputs than the widest has its first weight matrix padded with zero
        rows. Trials with the same model config and seed share one draw.
        """
        if not trials or len({group_key(t)[:4] for t in trials}) != 1:
            raise ConfigError(
                "trials", len(trials), "a batched model needs one or more trials of one shape and activation"
            )
        built: dict[tuple, tuple[list[Tensor], list[Tensor], list[Tensor]]] = {}
        per_model = []
        for t in trials:
            ident = (t.model, t.seed)
            if ident not in built:
                net = build_mlp(t.model, torch.Generator().manual_seed(t.seed))
                linears = [m for m in net if isinstance(m, nn.Linear)]
                built[ident] = (
                    [lin.weight.detach() for lin in linears],  # (n_out, n_in) each
                    [lin.bias.detach() for lin in linears if lin.bias is not None],  # (n_out,) each, or none
                    [m.weight.detach() for m in net if isinstance(m, nn.PReLU)],  # (1,) per hidden layer
                )
            per_model.append(built[ident])
        widths = [t.model.n_inputs for t in trials]
        widest = max(widths)

        def stacked(kind: int, layer: int, transform: Callable[[Tensor], Tensor]) -> Tensor:
            return torch.stack([transform(ps[kind][layer]) for ps in per_model]).to(device).requires_grad_(True)

        def padded(w: Tensor) -> Tensor:
            return F.pad(w.t(), (0, 0, 0, widest - w.shape[1]))  # (widest, n_out): zero rows below

        first = per_model[0]
        weights = [stacked(0, 0, padded)]  # (K, widest, n_out)
        weights += [stacked(0, layer, lambda w: w.t()) for layer in range(1, len(first[0]))]  # (K, n_in, n_out)
        biases = [stacked(1, layer, lambda b: b.view(1, -1)) for layer in range(len(first[1]))]  # (K, 1, n_out)
        slopes = [stacked(2, layer, lambda a: a.view(1, 1)) for layer in range(len(first[2]))]  # (K, 1, 1)
        return cls(weights, biases, slopes, trials[0].model.activation, widths)

    @property
    def n_models(self) -> int:
        return self.weights[0].shape[0]

    @property
    def n_inputs(self) -> int:
        """The widest model's input count: ``forward`` reads that many columns of ``X``."""
        return self.weights[0].shape[1]

    def parameters(self) -> list[Tensor]:
        return [*self.weights, *self.biases, *self.slopes]

    def is_bias(self) -> list[bool]:
        """Which of ``parameters()`` are not weight matrices (not decayed when ``decay_biases`` is False)."""
        return [False] * len(self.weights) + [True] * (len(self.biases) + len(self.slopes))

    def mask_grads(self, grads: Sequence[Tensor]) -> None:
        """Zero, in place, the gradient of the padded rows of ``weights[0]`` (``grads`` match ``parameters()``)."""
        if self.input_mask is not None:
            grads[0].mul_(self.input_mask)  # (K, d, n_out) * (K, d, 1)

    def forward(self, X: Tensor, gates: Sequence[Tensor | None] = ()) -> Tensor:
        """Outputs (logits, or regression predictions) of all K models.

        Parameters
        ----------
        X : Tensor of shape (B, D), shared by the models; only its first ``n_inputs`` columns are read
        gates : per hidden layer a dropout gate (K, B, H) or None; empty in evaluation

        Returns
        -------
        Tensor of shape (K, B, n_outputs)
        """
        if X.shape[1] != self.n_inputs:
            X = X[:, : self.n_inputs]  # (B, d); train_group slices its data once, so this is rare
        A = X.expand(self.n_models, *X.shape)  # (K, B, d), a view
        last = len(self.weights) - 1
        for layer, W in enumerate(self.weights):
            Z = torch.baddbmm(self.biases[layer], A, W) if self.biases else torch.bmm(A, W)  # (K, B, n_out)
            if layer == last:
                return Z
            gate = gates[layer] if layer < len(gates) else None
            if gate is not None and self.activation == "relu":
                A = ReluDropout.apply(Z, gate)  # (K, B, H): the same numbers in fewer passes
            else:
                A = self._act(Z, self.slopes[layer] if self.slopes else None)
                if gate is not None:
                    A = A * gate  # (K, B, H)
        raise AssertionError("unreachable")

    def to_module(self, k: int, config: ModelConfig) -> nn.Sequential:
        """Model ``k`` as the ``nn.Sequential`` that ``build_mlp(config)`` builds, with its weights.

        The first layer gets model k's own ``n_inputs`` rows, without the padding.
        """
        if config.n_inputs != self.input_widths[k] or config.bias != bool(self.biases):
            raise ConfigError(
                "config",
                f"n_inputs={config.n_inputs}, bias={config.bias}",
                f"model {k} has n_inputs={self.input_widths[k]}, bias={bool(self.biases)}: pass its own trial's model",
            )
        net = build_mlp(config)
        linears = [m for m in net if isinstance(m, nn.Linear)]
        prelus = [m for m in net if isinstance(m, nn.PReLU)]
        with torch.no_grad():
            for layer, (lin, W) in enumerate(zip(linears, self.weights)):
                lin.weight.copy_((W[k, : config.n_inputs] if layer == 0 else W[k]).t())
            for lin, b in zip(linears, self.biases):
                lin.bias.copy_(b[k, 0])
            for act, a in zip(prelus, self.slopes):
                act.weight.copy_(a[k].view(1))
        return net


class DropoutStreams:
    """The per-layer uniform streams of one seed and the per-model keep thresholds.

    Parameters
    ----------
    seed : int
    p : Tensor of shape (K, L), the dropout probability of each model after each hidden layer
    device : torch.device
    """

    def __init__(self, seed: int, p: Tensor, device: torch.device) -> None:
        self.p = p.to(device=device, dtype=torch.float32)  # (K, L)
        self.scale = 1.0 / (1.0 - self.p)  # (K, L)
        self.scales = [self.scale[:, layer].view(-1, 1, 1) for layer in range(p.shape[1])]  # (K, 1, 1) each
        self.thresholds = [self.p[:, layer].view(-1, 1, 1) for layer in range(p.shape[1])]  # (K, 1, 1) each
        self.generators = [  # a stream only for layers that some model drops
            torch.Generator(device=device).manual_seed(dropout_seed(seed, layer))
            if bool((p[:, layer] > 0).any())
            else None
            for layer in range(p.shape[1])
        ]
        self.device = device

    def draw(
        self, batch: int, widths: Sequence[int], out: Sequence[Tensor | None] | None = None
    ) -> list[Tensor | None]:
        """One training step's uniforms: a (B, H) tensor per hidden layer, None where no model drops.

        A layer's stream advances only in layers that some model drops, but it depends on nothing
        else, so a model's masks are the same in any group with its seed. ``out`` (from an earlier
        call with the same shapes) is refilled in place instead of allocating: what a CUDA graph
        needs, with the same numbers.
        """
        uniforms: list[Tensor | None] = []
        for layer, width in enumerate(widths):
            gen = self.generators[layer]
            if gen is None:
                uniforms.append(None)
                continue
            U = out[layer] if out is not None else torch.empty(batch, width, device=self.device)
            uniforms.append(U.uniform_(generator=gen))  # what torch.rand(batch, width, generator=gen) draws
        return uniforms

    def gates_from(self, uniforms: Sequence[Tensor | None]) -> list[Tensor | None]:
        """The (K, B, H) gates ``1[U >= p_k] / (1 - p_k)`` of :meth:`draw`'s uniforms (None stays None)."""
        out: list[Tensor | None] = []
        for layer, U in enumerate(uniforms):
            if U is None:
                out.append(None)
                continue
            p = self.thresholds[layer]  # (K, 1, 1)
            K, (B, H) = p.shape[0], U.shape
            # 1[U >= p] straight into a float tensor, then scaled in place: on a CPU a third of
            # the time of (U >= p) * scale, whose boolean intermediate is slow to write and read
            gate = torch.ge(U, p, out=torch.empty(K, B, H, device=U.device, dtype=U.dtype))
            out.append(gate.mul_(self.scales[layer]))  # (K, B, H)
        return out

    def gates(self, batch: int, widths: Sequence[int]) -> list[Tensor | None]:
        """One (K, B, H) gate per hidden layer for the next step: :meth:`draw` then :meth:`gates_from`."""
        return self.gates_from(self.draw(batch, widths))


@dataclass
class TrialResult:
    """What training one trial produced; ``seconds`` is its share of its group's wall time."""

    trial: Trial
    history: History
    seconds: float


class GroupCallback:
    """Progress hooks of :func:`train_group`; they observe, never change training."""

    def on_group_begin(self, n_models: int, epochs: int, batches_per_epoch: int) -> None: ...

    def on_batch_end(self, epoch: int, batch: int) -> None: ...

    def on_epoch_end(self, epoch: int, n_alive: int) -> None: ...

    def on_models_epoch(
        self, epoch: int, trials: Sequence[Trial], records: Sequence[EpochRecord | None], model: BatchedMLP, data: Data
    ) -> None:
        """After each epoch: every model's record (None for one that has stopped) and the weights.

        For checks that read the models (``mlplab.doctor.SweepDoctorCallback``); nothing here may
        change them.
        """


def per_model_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of each of K models' logits (K, B, C) against the shared labels y (B,): (K, B)."""
    K = logits.shape[0]
    return F.cross_entropy(logits.flatten(0, 1), y.repeat(K), reduction="none").view(K, -1)


def per_model_squared_error(out: Tensor, y: Tensor) -> Tensor:
    """Squared errors of each of K models' outputs (K, B, k) against the shared targets y: (K, B * k).

    ``y`` has shape (B,) or (B, k) and is reshaped to (B, k) as fit's ``F.mse_loss(out,
    y.reshape(out.shape))`` reshapes it, so a row's mean is that model's mse over the batch.
    """
    target = y.reshape(out.shape[1:]).expand_as(out)  # (K, B, k), a view
    return F.mse_loss(out, target, reduction="none").flatten(1)


# loss name of TrainConfig.loss -> per-model per-entry losses (K, m); a row's mean is fit's batch loss
PER_MODEL_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cross_entropy": per_model_cross_entropy, "mse": per_model_squared_error,
}  # fmt: skip


def _autocast_input(X: Tensor, precision: str) -> Tensor:
    """The shared batch in the products' dtype: cast once, before ``forward`` expands it to K models.

    Autocast would cast the expanded (K, B, d) view instead, writing K copies of the batch.
    """
    return X.to(torch.bfloat16) if precision == "bf16" else X


@torch.no_grad()
def evaluate_batched(
    model: BatchedMLP, split: Split, rows: int = 2048, loss: str = "cross_entropy", precision: str = "fp32"
) -> tuple[Tensor, Tensor | None]:
    """Mean loss and accuracy of every model on ``split`` (no dropout, no grad).

    Parameters
    ----------
    model : BatchedMLP
    split : Split with labels (B,) for ``cross_entropy``, targets (B,) or (B, k) for ``mse``
    rows : int, rows evaluated at once
    loss : str, ``cross_entropy`` or ``mse`` (as ``TrainConfig.loss``)
    precision : str, ``fp32`` or ``bf16`` (as ``TrainConfig.precision``: the forward pass as training runs it)

    Returns
    -------
    (loss, accuracy) : Tensors of shape (K,), float64, on the split's device
        ``accuracy`` is None for ``mse``, as ``mlplab.train.evaluate`` returns None there.
    """
    K = model.n_models
    per_entry, classify = PER_MODEL_LOSSES[loss], loss == "cross_entropy"
    total = torch.zeros(K, dtype=torch.float64, device=split.X.device)
    correct = torch.zeros(K, dtype=torch.int64, device=split.X.device)
    for X, y in batches(split, rows, shuffle=False):
        out = forward_in(precision, X.device, model.forward, _autocast_input(X, precision))  # (K, b, C)
        total += per_entry(out, y).mean(1).double() * len(y)  # (K,)
        if classify:
            correct += (out.argmax(-1) == y).sum(1)
    n = len(split)
    return total / n, (correct.double() / n if classify else None)


def eval_rows_for(model: BatchedMLP, budget_bytes: int | None = None) -> int:
    """Rows of the test set evaluated at once: a (K, rows, widest) activation within the budget.

    The default budget is 32 MiB on a GPU (fewer, larger launches) and 8 MiB on a CPU, where an
    activation that stays in the cache between the layers made the dropout grid's test
    evaluation about a fifth faster than 32 MiB chunks (0.67-0.78 s against 0.86-0.93 s for 20
    models, ``bench/bench_limit.py``'s machine).
    """
    if budget_bytes is None:
        budget_bytes = (8 if model.weights[0].device.type == "cpu" else 32) * 2**20
    widest = max(W.shape[2] for W in model.weights)
    return max(256, budget_bytes // (4 * model.n_models * widest))


def check_step_options(fused: bool | None, compiled: bool, field: str = "compiled") -> None:
    """Refuse ``compiled=True`` with ``fused=False``: the compiled kernels are the fused step's.

    ``field`` names the option in the error: ``compiled`` from Python, ``--compiled`` from the CLI.
    """
    if compiled and fused is False:
        fix = (
            "drop --no-fused, or --compiled"
            if field.startswith("--")
            else "leave fused at None or True, or drop compiled"
        )
        raise ConfigError(field, True, f"the compiled kernels are the fused step's: {fix}")


def wants_fused(device_type: str, fused: bool | None, compiled: bool) -> bool:
    """Whether ``train_group(fused=..., compiled=...)`` asks for the fused step on this kind of device.

    ``fused`` decides when given; left at None, the fused step is wanted on a CPU (measured faster
    there) and wherever ``compiled`` is asked for (its kernels are the fused step's), else not
    (CUDA keeps the autograd step until a GPU has measured the fused one).
    """
    return fused if fused is not None else (device_type == "cpu" or compiled)


def host_reads_are_free(device: torch.device) -> bool:
    """Whether reading a value of ``device`` back to the host costs nothing (a CPU) or waits for the device."""
    return device.type == "cpu"


class _Step:
    """One training step of a group, eager or replayed from a CUDA graph.

    The step (dropout gates, forward, per-model losses, backward, optimizer update, the epoch's
    running sums) reads and writes only tensors that live as long as the group, so on CUDA it can
    be captured once as a graph (``torch.cuda.graphs``) and replayed for every full batch: one
    launch instead of about 60 kernels and their Python, which is what bounds a step of a
    batched group on a GPU (the kernels themselves take well under a millisecond). The batch and
    the step's dropout uniforms are copied into static buffers first, drawn from the same streams
    in the same order as in eager mode, so a graphed group computes the same numbers. A smaller
    last batch runs eagerly. The first ``GraphReplay.WARMUP`` full batches run eagerly on a side stream, as
    the CUDA graph documentation asks, before the capture.
    """

    def __init__(
        self,
        model: BatchedMLP,
        optimizer,
        streams: DropoutStreams,
        widths: Sequence[int],
        alive: Tensor,
        loss_sum: Tensor,
        correct: Tensor,
        graphed: bool,
        loss: str = "cross_entropy",
        fused: bool | None = None,
        precision: str = "fp32",
        compiled: bool = False,
    ) -> None:
        self.model, self.optimizer, self.streams, self.widths = model, optimizer, streams, list(widths)
        self.precision = precision
        self.per_entry, self.classify = PER_MODEL_LOSSES[loss], loss == "cross_entropy"
        self.params = model.parameters()
        self.alive, self.loss_sum, self.correct = alive, loss_sum, correct
        self.graphed = graphed
        # the hand-fused SGD step (mlplab.sweep.fused) where it applies (ReLU nets, SGD without
        # L1) and is wanted (wants_fused); where the host cannot read the losses for free it is
        # the capturable step, which keeps `alive` itself
        self.capturable = not host_reads_are_free(alive.device)
        self.fused = (
            FusedReluSGD(model, optimizer, loss, precision, alive if self.capturable else None, compiled)
            if wants_fused(alive.device.type, fused, compiled) and fused_supports(model, optimizer, loss)
            else None
        )
        self.replay = GraphReplay()
        self.static: tuple[Tensor, Tensor, list[Tensor | None]] | None = None  # batch and uniforms

    def run(self, X: Tensor, y: Tensor, U: Sequence[Tensor | None]) -> None:
        """The step itself, on whatever tensors it is given (eager, or being captured)."""
        # the fused step takes it (the host-checked one while every model lives and every loss is finite)
        taken = (
            self.fused(X, y, U, self.streams)
            if self.fused is not None and (self.capturable or bool(self.alive.all()))
            else None
        )
        if taken is not None:
            losses, out = taken
        else:
            gates = self.streams.gates_from(U)
            # (K, B, C), in float32 for the losses where autocast left bfloat16
            out = forward_in(self.precision, X.device, self.model.forward, _autocast_input(X, self.precision), gates)
            losses = self.per_entry(out, y).mean(1)  # (K,)
            grads = torch.autograd.grad(losses.sum(), self.params)
        with torch.no_grad():
            if taken is None:
                self.model.mask_grads(grads)
                self.alive &= torch.isfinite(losses)
                # on a CPU the host reads `alive` for free; on CUDA that would wait for the GPU
                self.optimizer.step(grads, self.alive, all_alive=not self.capturable and bool(self.alive.all()))
            self.loss_sum += losses.double() * len(y)
            if self.classify:
                self.correct += (out.argmax(-1) == y).sum(1)

    def __call__(self, X: Tensor, y: Tensor, full: bool) -> None:
        if not (self.graphed and full):
            self.run(X, y, self.streams.draw(len(y), self.widths))
            return
        Us = self.streams.draw(len(y), self.widths, out=self.static[2] if self.static else None)
        if self.static is None:
            self.static = (torch.empty_like(X), torch.empty_like(y), Us)
        Xs, ys, _ = self.static
        Xs.copy_(X)
        ys.copy_(y)
        self.replay(self.run, Xs, ys, Us)


def train_group(
    trials: Sequence[Trial],
    data: Data,
    device: str | torch.device = "cpu",
    callbacks: Sequence[GroupCallback] = (),
    model: BatchedMLP | None = None,
    cuda_graphs: bool | None = None,
    fused: bool | None = None,
    compiled: bool = False,
) -> list[TrialResult]:
    """Train trials of one group (see ``planner.group_key``) as one batched model.

    Each trial trains as ``mlplab.train.fit(build_mlp(trial.model, Generator().manual_seed(seed)),
    data, trial.train)`` would: same initial weights, same mini-batch order (one ``randperm`` per
    epoch from ``Generator().manual_seed(seed)``), same loss (cross-entropy, or mse; plus the L1
    term) and optimizer update, test metrics after every epoch in evaluation mode (accuracies
    None for mse). A trial whose ``n_inputs`` is below the data's column count trains as fit on
    the first ``n_inputs`` columns would. Two differences: dropout masks follow the scheme of the
    module docstring, and a model whose training loss turns non-finite is frozen at that step
    (fit runs out the epoch; the capturable fused step, ``fused=True`` on CUDA, stops its learning
    there, its weights turning non-finite where its forward overflowed); either way it stops after
    that epoch with status ``"diverged"``.

    Parameters
    ----------
    trials : sequence of Trial sharing ``planner.group_key``
    data : Data
        int64 class labels for ``loss="cross_entropy"``, float targets (n,) or (n, k) for
        ``"mse"``; at least as many columns as the widest trial's ``n_inputs``.
    device : str or torch.device
    callbacks : sequence of GroupCallback
    model : BatchedMLP, optional
        ``BatchedMLP.from_trials(trials, device)`` to train in place, to keep the trained weights
        (e.g. ``model.to_module(k, trials[k].model)``); by default a fresh one is built and dropped.
    cuda_graphs : bool, optional
        Replay each full-batch step from a CUDA graph (see :class:`_Step`); default: on CUDA
        devices. Same results, several times fewer launches; ``False`` runs every step eagerly.
    fused : bool, optional
        Take the steps of ReLU groups trained by SGD without L1 with the hand-fused step of
        :mod:`mlplab.sweep.fused` (the same numbers up to float rounding, fewer passes over
        memory): by default on a CPU, where it is measured faster, and wherever ``compiled`` is
        asked for; ``True`` on any device (on CUDA its capturable form, which a CUDA graph
        replays); ``False`` always uses the autograd step.
    compiled : bool
        The fused step's elementwise work as ``torch.compile``'d kernels (a C++ compiler on a
        CPU, Triton on CUDA; seconds of compiling once per shape). It is the fused step's, so it
        asks for that step (``fused=False`` with it is a ConfigError); groups the fused step does
        not cover (tanh, Adam, L1) still train by autograd.

    Returns
    -------
    list of TrialResult, in the order of ``trials``
    """
    check_step_options(fused, compiled)
    first = trials[0]
    if any(group_key(t) != group_key(first) for t in trials):
        raise ConfigError(
            "trials", len(trials), "all trials of a group must share shape, optimizer, batch size, epochs and seed"
        )
    cfg = first.train
    check_targets(cfg.loss, data)
    widest, columns = max(t.model.n_inputs for t in trials), data.train.X.shape[1]
    if widest > columns:
        raise ConfigError(
            "n_inputs",
            widest,
            f"the data has {columns} input columns and a model reads its first n_inputs: use n_inputs <= {columns}",
        )
    device = resolve_device(str(device))
    if compiled:  # a machine that cannot build the kernels is told so before any work
        check_compiled_kernels(device)
    graphed = device.type == "cuda" if cuda_graphs is None else bool(cuda_graphs)
    if graphed and device.type != "cuda":
        raise ConfigError("cuda_graphs", True, f"CUDA graphs need a CUDA device, not {device}")
    data = data.to(device)
    if widest < columns:  # the columns no model reads are dropped once, not sliced per batch
        data = Data(*(Split(s.X[:, :widest].contiguous(), s.y) for s in (data.train, data.test)))
    K = len(trials)
    t_start = time.perf_counter()
    if model is None:
        model = BatchedMLP.from_trials(trials, device)
    elif model.n_models != K or model.weights[0].device.type != device.type:
        raise ConfigError("model", f"{model.n_models} models on {model.weights[0].device}", f"expected {K} on {device}")
    params = model.parameters()

    def per_model(values: Sequence[float]) -> Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)

    lr = per_model([t.train.lr for t in trials])
    wd = per_model([t.train.weight_decay for t in trials])
    wd_bias = per_model([t.train.weight_decay if t.train.decay_biases else 0.0 for t in trials])
    l1_per_param = None  # no L1 term at all unless some model has one
    if any(t.train.l1 for t in trials):
        l1 = per_model([t.train.l1 for t in trials])
        l1_bias = per_model([t.train.l1 if t.train.decay_biases else 0.0 for t in trials])
        l1_per_param = [l1_bias if b else l1 for b in model.is_bias()]
    optimizer = make_batched_optimizer(
        cfg.optimizer, params, lr, [wd_bias if b else wd for b in model.is_bias()], l1_per_param
    )
    streams = DropoutStreams(
        cfg.seed, torch.tensor([t.model.dropout_per_layer for t in trials]).reshape(K, len(first.model.hidden)), device
    )

    order = torch.Generator().manual_seed(cfg.seed)  # the same batch order as fit for this seed
    n = len(data.train)
    n_batches = num_batches(n, cfg.batch_size)
    eval_rows = eval_rows_for(model)
    alive = torch.ones(K, dtype=torch.bool, device=device)
    loss_sum = torch.zeros(K, dtype=torch.float64, device=device)  # the epoch's running sums, zeroed each epoch
    correct = torch.zeros(K, dtype=torch.int64, device=device)
    step = _Step(
        model,
        optimizer,
        streams,
        first.model.hidden,
        alive,
        loss_sum,
        correct,
        graphed,
        cfg.loss,
        fused,
        cfg.precision,
        compiled,
    )
    head = Split(data.train.X[:INITIAL_LOSS_ROWS], data.train.y[:INITIAL_LOSS_ROWS])
    # each model's loss before training
    initial = evaluate_batched(model, head, eval_rows, cfg.loss, cfg.precision)[0].tolist()
    histories = [History(initial_loss=loss) for loss in initial]
    classify = cfg.loss == "cross_entropy"
    n_classes = data.n_classes if classify and len(data.test) else None  # as fit judges "at chance"
    no_acc = [None] * K
    finished = [False] * K
    for cb in callbacks:
        cb.on_group_begin(K, cfg.epochs, n_batches)
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        loss_sum.zero_()
        correct.zero_()
        for b, (X, y) in enumerate(batches(data.train, cfg.batch_size, order)):
            step(X, y, full=len(y) == cfg.batch_size)
            for cb in callbacks:
                cb.on_batch_end(epoch, b)
        test_loss, test_acc = evaluate_batched(model, data.test, eval_rows, cfg.loss, cfg.precision)
        train_loss = (loss_sum / n).tolist()
        train_acc = (correct.double() / n).tolist() if classify else no_acc
        test_acc = test_acc.tolist() if test_acc is not None else no_acc
        test_loss, alive_now = test_loss.tolist(), alive.tolist()
        seconds = (time.perf_counter() - t0) / K
        records: list[EpochRecord | None] = [None] * K
        for k in range(K):
            if finished[k]:
                continue
            record = records[k] = EpochRecord(epoch, train_loss[k], train_acc[k], test_loss[k], test_acc[k], seconds)
            histories[k].records.append(record)
            histories[k].status = outcome(record, initial[k], n_classes, len(data.test))  # as fit judges
            if not alive_now[k] or histories[k].status == DIVERGED:
                histories[k].status = DIVERGED
                finished[k] = True
        for cb in callbacks:
            cb.on_models_epoch(epoch, trials, records, model, data)
            cb.on_epoch_end(epoch, K - sum(finished))
        if all(finished):
            break
    share = (time.perf_counter() - t_start) / K
    return [TrialResult(t, h, share) for t, h in zip(trials, histories)]
