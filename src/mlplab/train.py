"""Training: ``fit(model, data, config) -> History`` for any ``nn.Module``.

One loop for every experiment of the chapter (the book copies ``train_ch3`` into each section).
Data is device-resident (see :mod:`mlplab.data.batching`); evaluation runs in eval mode under
``no_grad``; a non-finite loss ends training with status ``"diverged"``; a checkpoint after every
epoch lets an interrupted run resume to exactly the weights an uninterrupted run ends with.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import math
import os
import pickle
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mlplab.atomic import save_torch
from mlplab.data.augment import AUGMENTS, augment, image_side
from mlplab.data.batching import Data, Split, batches, num_batches
from mlplab.errors import ConfigError, MlplabError, check_choice, check_int, check_real, check_seed
from mlplab.lock import folder_lock
from mlplab.scratch.sgd import SGD as ScratchSGD

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine")
LOSSES = ("cross_entropy", "mse")
PRECISIONS = ("fp32", "bf16")  # fp32: float32 throughout; bf16: matrix products in bfloat16 (autocast)
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d{1,4})?|mps)$")
MAX_EPOCHS = 1_000_000  # a typo guard: more passes than anyone trains an MLP for
MAX_BATCH_SIZE = 2**31 - 1  # torch index limit


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Validated on construction; errors name the field, the value and the range.

    The loss minimized is ``data_loss + l1 * sum |w|`` (plus the L2 term of ``weight_decay``), both
    penalties over the same parameters: all of them, or the weight matrices only when
    ``decay_biases`` is False. ``l1`` is part of the loss for every optimizer (for adamw too, whose
    L2 term is decoupled); the training loss that ``fit`` reports is the data loss alone.
    """

    epochs: int = 10  # passes over the training set
    batch_size: int = 256  # examples per SGD step (the book's Fashion-MNIST default)
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.1  # learning rate (> 0)
    weight_decay: float = 0.0  # L2 penalty lambda (>= 0); decoupled for adamw
    l1: float = 0.0  # L1 penalty on the decayed parameters (>= 0): the loss gets + l1 * sum |w|
    decay_biases: bool = True  # False: decay weights only, as the book's concise version (4.5.3)
    momentum: float = 0.0  # SGD's heavy-ball momentum in [0, 1) (torch.optim.SGD's); sgd only
    schedule: str = "constant"  # constant | cosine (annealed to 0 over the run's steps)
    augment: str = "none"  # none | flip | shift | flip+shift (square images only)
    loss: str = "cross_entropy"  # cross_entropy (classification, reports accuracy) | mse
    seed: int = 0  # seeds the batch order and dropout masks
    device: str = "cpu"  # cpu | cuda | cuda:N | mps
    # fp32 | bf16: bf16 runs the forward pass's matrix products (and so their backward) in bfloat16
    # under torch.autocast, weights, optimizer and loss kept in float32 (see `precision_context`)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_seed("seed", self.seed)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSSES)
        # the float32 maximum bounds both: a larger factor cannot even multiply a float32 weight
        check_real("lr", self.lr, 0.0, low_open=True, what="the learning rate")
        check_real("weight_decay", self.weight_decay, 0.0, what="weight decay")
        check_real("l1", self.l1, 0.0, what="the L1 penalty")
        check_real("momentum", self.momentum, 0.0, 1.0, high_open=True, what="momentum")
        if self.momentum and self.optimizer != "sgd":
            raise ConfigError(
                "momentum", self.momentum, f"momentum is SGD's; {self.optimizer} has its own (betas): use momentum 0"
            )
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("augment", self.augment, AUGMENTS)
        check_device(self.device)
        check_choice("precision", self.precision, PRECISIONS)
        if self.precision == "bf16" and self.device.startswith("mps"):
            raise ConfigError("precision", self.precision, "bf16 autocast is for cpu and cuda devices: use fp32 on mps")


def precision_context(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """Where the forward pass runs: under bfloat16 autocast for ``"bf16"``, as it is for ``"fp32"``.

    ``torch.autocast`` runs matrix products (``addmm``, ``baddbmm``, ``bmm``) in bfloat16 and
    keeps the weights, their gradients and the optimizer in float32; the losses are computed in
    float32 from the bfloat16 outputs. bfloat16 has float32's range (no loss scaling needed) and 8
    bits of mantissa (about 3 significant digits per product). On a CPU with AVX-512 BF16 a
    product is several times faster than in float32; on NVIDIA GPUs it runs on the tensor cores.
    The cast weights are not cached (``cache_enabled=False``): each weight is cast once per
    step anyway, and a cache would not survive a CUDA graph's capture.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    check_choice("precision", precision, PRECISIONS)
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)


def widened(out: torch.Tensor) -> torch.Tensor:
    """``out`` in float32 where autocast left it in bfloat16; any other tensor as it is (a float64 model's too)."""
    return out.float() if out.dtype == torch.bfloat16 else out


def forward_in(precision: str, device: torch.device | str, forward, *args) -> torch.Tensor:
    """``forward(*args)`` under :func:`precision_context`, its output :func:`widened` for the loss."""
    with precision_context(precision, device):
        out = forward(*args)
    return widened(out)


def check_device(name: object, field: str = "device") -> None:
    """Raise :class:`ConfigError` unless ``name`` is spelled cpu, cuda, cuda:N or mps."""
    if not (isinstance(name, str) and _DEVICE_RE.match(name)):
        raise ConfigError(field, name, "expected cpu, cuda, cuda:N or mps")


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``, with a clear error when it is not available here."""
    check_device(name)
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ConfigError("device", name, f"this machine has {n} CUDA device(s): use cuda or cuda:0 to cuda:{n - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", name, "MPS is not available on this machine; use --device cpu")
    return device


@dataclass
class EpochRecord:
    """Metrics of one epoch. Accuracies are None for regression (mse) losses.

    ``train_loss``/``train_acc`` are averaged over the epoch's mini-batches as they were trained
    (as the book's ``train_epoch_ch3`` does); test metrics are measured after the epoch, in eval mode.
    """

    epoch: int  # 1-based
    train_loss: float
    train_acc: float | None
    test_loss: float
    test_acc: float | None
    seconds: float  # wall time of the epoch's training and evaluation

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-safe dict: non-finite numbers become None."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in dataclasses.asdict(self).items()
        }


DIVERGED = "diverged"  # a non-finite loss: training stops there
AT_CHANCE = "failed: at chance"  # trained to the end, but test accuracy is no better than guessing
LOSS_ROSE = "failed: loss rose"  # trained to the end, but the training loss ends far above its start
STATUSES = ("ok", DIVERGED, AT_CHANCE, LOSS_ROSE)
LOSS_ROSE_FACTOR = 2.0  # "far above": more than twice the loss of the initial weights


def outcome(final: EpochRecord, initial_loss: float | None, n_classes: int | None, n_test: int) -> str:
    """How a run that has not diverged ended: ``ok`` or the reason it failed (see :data:`STATUSES`).

    - ``failed: loss rose``: the final training loss is more than ``LOSS_ROSE_FACTOR`` times the
      loss of the initial weights (``mlplab train --lr 10000`` ends at 8e6 from 2.3).
    - ``failed: at chance``: a classifier whose test accuracy is not above the upper end of the
      95% binomial interval around chance, ``1/k + 1.96 sqrt((1/k)(1 - 1/k) / n_test)``: weight
      decay 3 at lr 0.5 leaves every model at 0.1000 on Fashion-MNIST (1/k = 0.1, bound 0.106).
    """
    if not math.isfinite(final.train_loss):
        return DIVERGED
    if initial_loss is not None and math.isfinite(initial_loss) and final.train_loss > LOSS_ROSE_FACTOR * initial_loss:
        return LOSS_ROSE
    if n_classes and final.test_acc is not None and n_test > 0:
        chance = 1.0 / n_classes
        if final.test_acc <= chance + 1.96 * math.sqrt(chance * (1 - chance) / n_test):
            return AT_CHANCE
    return "ok"


@dataclass
class History:
    """What ``fit`` returns: one record per finished epoch, and how training ended."""

    records: list[EpochRecord] = field(default_factory=list)
    status: str = "ok"  # one of STATUSES; see outcome()
    initial_loss: float | None = None  # training loss of the initial weights (on up to INITIAL_LOSS_ROWS rows)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def final(self) -> EpochRecord:
        if not self.records:
            raise MlplabError("this history has no epochs")
        return self.records[-1]

    def column(self, name: str) -> list[float | None]:
        """The values of one metric over epochs, e.g. ``history.column("test_acc")``."""
        return [getattr(r, name) for r in self.records]

    def to_dict(self) -> dict:
        initial = self.initial_loss if self.initial_loss is not None and math.isfinite(self.initial_loss) else None
        return {"status": self.status, "initial_loss": initial, "epochs": [r.to_dict() for r in self.records]}

    @classmethod
    def from_dict(cls, data: dict) -> History:
        nan = float("nan")
        records = [
            EpochRecord(**{k: (nan if v is None and k.endswith("loss") else v) for k, v in r.items()})
            for r in data["epochs"]
        ]
        return cls(records, data["status"], data.get("initial_loss"))

    # Jupyter's displays (mlplab.display draws them; nothing is imported until one is asked for)

    def _repr_html_(self) -> str:
        """The status, the training curves and a table of the epochs."""
        from mlplab.display import history_html

        return history_html(self)

    def _repr_png_(self) -> bytes | None:
        """The training curves (:func:`mlplab.plots.training_curves`); None without epochs."""
        from mlplab.display import history_png

        return history_png(self) if self.records else None

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        """HTML and PNG from one drawing of the curves (IPython would otherwise draw them twice)."""
        from mlplab.display import history_html, history_png

        if not self.records:
            return {"text/html": history_html(self)}
        png = history_png(self)
        return {"text/html": history_html(self, png), "image/png": base64.b64encode(png).decode("ascii")}


class Callback:
    """Hooks called by :func:`fit`; override the ones you need (progress bars, logging)."""

    def on_train_begin(self, config: TrainConfig, batches_per_epoch: int, history: History) -> None:
        """``history`` is the run's own: it holds the epochs restored from a checkpoint, and each
        new epoch is appended to it before :meth:`on_epoch_end` is called."""

    def on_batch_end(self, epoch: int, batch: int) -> None: ...

    def on_epoch_end(self, record: EpochRecord) -> None: ...

    def on_train_end(self, history: History) -> None: ...


def trains_by_hand(model: object) -> bool:
    """True for a model with hand-written gradients (:class:`mlplab.scratch.MLP`): ``fit`` then uses
    its ``loss_and_grads`` and the hand-written SGD instead of autograd. The one place that decides."""
    return callable(getattr(model, "loss_and_grads", None))


def trainable(model: nn.Module) -> list[torch.Tensor]:
    """The parameters that training updates (those that require a gradient), in module order."""
    return [p for p in model.parameters() if p.requires_grad]


def penalized(params: Sequence[torch.Tensor], decay_biases: bool) -> list[torch.Tensor]:
    """The parameters that weight decay and the L1 penalty apply to: all of them, or with
    ``decay_biases=False`` those of two or more dimensions (weight matrices, not biases or slopes)."""
    return [p for p in params if decay_biases or p.ndim >= 2]


def l1_penalty(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum |w|`` over ``params``: the L1 norm whose multiple ``TrainConfig.l1`` adds to the loss.

    Its gradient is ``sign(w)`` (0 at w = 0), which autograd gives ``abs``.
    """
    return torch.stack([p.abs().sum() for p in params]).sum()


class PlainSGD:
    """SGD without momentum: ``torch.optim.SGD(groups, lr, foreach=True)`` without ``torch.optim``.

    ``p <- p - lr (g + wd p)`` for every parameter ``p`` of each group (its own ``lr`` and
    ``weight_decay``), computed as torch's foreach path computes it (``_foreach_add`` of the decay,
    then ``_foreach_add_`` with ``alpha=-lr``): the same weights to the bit, and ``state_dict`` is
    torch's key for key, so checkpoints written by either load into the other (both tested).

    Why not torch's class: building any ``torch.optim`` optimizer imports ``torch._dynamo`` (and
    with it ``torch._inductor`` and pandas), 0.7-1.0 s of a 2-core CPU process's 3 s to its first
    step; and its ``step`` wrapper (hooks, profiling, group bookkeeping) with ``zero_grad`` costs
    about 0.1 ms of a 1.5 ms chapter-MLP step. Momentum, Adam and AdamW keep torch's classes.

    Parameters
    ----------
    groups : sequence of dict
        Parameter groups as ``torch.optim`` takes them: ``{"params": [...], "weight_decay": wd}``,
        optionally ``"lr"``.
    lr : float
        The learning rate of groups that give none; ``param_groups[i]["lr"]`` may be set between
        steps (a schedule does).
    """

    def __init__(self, groups: Sequence[dict], lr: float) -> None:
        self.defaults = {"lr": lr, **_SGD_DEFAULTS}
        self.param_groups = [{**self.defaults, **group, "params": list(group["params"])} for group in groups]
        self.state: dict = {}  # torch keeps momentum buffers here; plain SGD has none

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor | None] | None = None) -> None:
        """One update from ``grads``, one per parameter in ``param_groups`` order (default: each ``p.grad``).

        ``p.grad`` is left holding the step's gradient, as ``backward`` would leave it; a parameter
        whose gradient is None (the loss did not reach it) does not move, as ``torch.optim`` skips it.
        """
        params = self._params()
        grads = [p.grad for p in params] if grads is None else list(grads)
        if len(grads) != len(params):
            raise ValueError(f"got {len(grads)} gradients for {len(params)} parameters")
        start = 0
        for group in self.param_groups:
            own = grads[start : start + len(group["params"])]
            start += len(group["params"])
            pairs = [(p, g) for p, g in zip(group["params"], own) if g is not None]
            if not pairs:
                continue
            ps, gs = [p for p, _ in pairs], [g for _, g in pairs]
            for p, g in pairs:
                p.grad = g
            if group["weight_decay"] != 0:
                gs = torch._foreach_add(gs, ps, alpha=group["weight_decay"])
            torch._foreach_add_(ps, gs, alpha=-group["lr"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's ``.grad`` (to None, or to zeros in place), as ``torch.optim`` does."""
        for p in self._params():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    def state_dict(self) -> dict:
        """``torch.optim.SGD``'s: no per-parameter state; each group's settings, its parameters as indices."""
        index = itertools.count()
        return {
            "state": {},
            "param_groups": [
                {**{k: v for k, v in group.items() if k != "params"}, "params": [next(index) for _ in group["params"]]}
                for group in self.param_groups
            ],
        }

    def load_state_dict(self, state: dict) -> None:
        """Take each group's settings from ``state`` (this class's or ``torch.optim.SGD``'s without momentum)."""
        saved = state["param_groups"]
        if state["state"] or any(group.get("momentum", 0) != 0 for group in saved):
            raise ValueError("the saved optimizer state has momentum; this optimizer is SGD without momentum")
        theirs, ours = ([len(g["params"]) for g in groups] for groups in (saved, self.param_groups))
        if theirs != ours:
            raise ValueError(f"the saved parameter groups hold {theirs} parameters, this optimizer's {ours}")
        for group, stored in zip(self.param_groups, saved):
            group.update({k: v for k, v in stored.items() if k != "params"})

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]


# torch.optim.SGD's defaults beside lr, with momentum 0 (what its state_dict holds for each group)
_SGD_DEFAULTS = {
    "momentum": 0,
    "dampening": 0,
    "weight_decay": 0,
    "nesterov": False,
    "maximize": False,
    "foreach": True,
    "differentiable": False,
    "fused": None,
}


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer | PlainSGD | ScratchSGD:
    """The optimizer of ``config`` over ``model``'s parameters.

    SGD without momentum (the chapter's) is :class:`PlainSGD`, ``torch.optim.SGD``'s update
    without ``torch.optim``; momentum, Adam and AdamW are torch's own classes.

    With ``decay_biases=False`` only parameters with two or more dimensions (weight matrices) are
    decayed; biases and pReLU slopes are not (:func:`penalized` decides, for the L1 term as well).

    A model with hand-written gradients (``loss_and_grads``, i.e. :class:`mlplab.scratch.MLP`) gets
    the hand-written :class:`mlplab.scratch.SGD` with the same weight-decay rule; it has no Adam
    and no L1 penalty, and it trains in float32 only.
    """
    if trains_by_hand(model):
        if config.optimizer != "sgd":
            raise ConfigError(
                "optimizer",
                config.optimizer,
                "the scratch MLP is trained by hand-written SGD only: use sgd, or the concise model",
            )
        if config.l1 != 0:
            raise ConfigError(
                "l1", config.l1, "the scratch MLP's hand-written SGD has no L1 penalty: use l1=0, or the concise model"
            )
        if config.momentum != 0:
            raise ConfigError(
                "momentum",
                config.momentum,
                "the scratch MLP's hand-written SGD has no momentum: use 0, or the concise model",
            )
        if config.precision != "fp32":
            raise ConfigError(
                "precision",
                config.precision,
                "the scratch MLP's hand-written forward and backward are float32: use fp32, or the concise model",
            )
        decay = [config.decay_biases or p.ndim >= 2 for p in model.params]
        return ScratchSGD(model.params, config.lr, config.weight_decay, decay)
    params = trainable(model)
    if config.decay_biases or config.weight_decay == 0:
        groups: list[dict] = [{"params": params, "weight_decay": config.weight_decay}]
    else:
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
    if config.optimizer == "sgd" and config.momentum == 0:
        return PlainSGD(groups, lr=config.lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, foreach=True)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    try:
        return cls(groups, lr=config.lr, fused=True)
    except (RuntimeError, TypeError):  # fused kernels missing for this device or torch version
        return cls(groups, lr=config.lr, foreach=True)


def scheduled_lr(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of step ``step`` (0-based) of ``total_steps`` under ``config.schedule``.

    ``constant``: ``lr`` throughout. ``cosine``: ``lr * (1 + cos(pi * step / total_steps)) / 2``,
    from ``lr`` at the first step towards 0 at the last (SGDR's annealing without restarts, as
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``T_max = total_steps`` stepped per batch).
    """
    if config.schedule == "constant":
        return config.lr
    return config.lr * (1 + math.cos(math.pi * step / total_steps)) / 2


def set_lr(optimizer: torch.optim.Optimizer | PlainSGD | ScratchSGD, lr: float) -> None:
    """Set the learning rate of every parameter group (or of the hand-written SGD)."""
    if isinstance(optimizer, ScratchSGD):
        optimizer.lr = lr
        return
    for group in optimizer.param_groups:
        group["lr"] = lr


def loss_function(name: str):
    """Mean loss over a batch: cross-entropy on logits, or mean squared error."""
    if name == "cross_entropy":
        return F.cross_entropy
    return lambda out, y: F.mse_loss(out, y.reshape(out.shape))


def check_targets(loss: str, data: Data) -> None:
    """Raise ``ConfigError`` unless ``data``'s targets suit ``loss``: int64 class labels for
    ``cross_entropy``, floating-point targets for ``mse``."""
    dtype = data.train.y.dtype
    if loss == "mse" and not dtype.is_floating_point:
        raise ConfigError(
            "loss",
            loss,
            f"mse (regression) needs float targets, but the data has {dtype} class labels: "
            "use loss=cross_entropy for this data, or regression data (float targets) for mse",
        )
    if loss == "cross_entropy" and dtype != torch.int64:
        raise ConfigError(
            "loss",
            loss,
            f"cross_entropy needs int64 class labels, but the data's targets are {dtype}"
            + (" (regression): use loss=mse for this data" if dtype.is_floating_point else ": convert them to int64"),
        )


def per_example_loss(name: str):
    """Unreduced loss (B,): cross-entropy on logits, or squared error averaged over outputs."""
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y, reduction="none")
    return lambda out, y: F.mse_loss(out, y.reshape(out.shape), reduction="none").reshape(len(out), -1).mean(dim=1)


def _train_step(
    model,
    optimizer,
    loss: str,
    l1: float = 0.0,
    l1_params: Sequence[torch.Tensor] = (),
    precision: str = "fp32",
    device: torch.device | str = "cpu",
):
    """One update on a mini-batch, ``step(X, y[, w]) -> (loss, outputs)``; ``w`` weighs each example.

    By autograd for an ``nn.Module``, on ``loss + l1 * sum |p|`` over ``l1_params`` (the returned
    loss is the data term only), its forward pass under :func:`precision_context`; by the model's
    own gradients for a model with ``loss_and_grads`` (:class:`mlplab.scratch.MLP`, whose backward
    pass starts from softmax cross-entropy, in float32).
    """
    if trains_by_hand(model):
        if loss != "cross_entropy":
            raise ConfigError("loss", loss, "the scratch MLP's hand-written gradients are for cross_entropy only")

        def manual_step(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            value, grads, out = model.loss_and_grads(X, y, return_logits=True)
            optimizer.step(grads)
            return value, out

        return manual_step
    loss_fn, per_example = loss_function(loss), per_example_loss(loss)
    plain_sgd = isinstance(optimizer, PlainSGD)
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def autograd_step(
        X: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = forward_in(precision, device, model, X)
        value = loss_fn(out, y) if w is None else (w * per_example(out, y)).mean()
        objective = value + l1 * l1_penalty(l1_params) if l1 and l1_params else value
        if plain_sgd:  # no zero_grad and no backward's accumulation into .grad: the gradients go to the step
            optimizer.step(torch.autograd.grad(objective, params, allow_unused=True))
            return value, out
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        return value, out

    return autograd_step


def check_graphable(
    model, optimizer, config: TrainConfig, device: torch.device, sample_weight=None, field: str = "cuda_graphs"
) -> None:
    """What :class:`_GraphedStep` can replay, or a ConfigError on ``field`` naming what it cannot."""
    if trains_by_hand(model):
        raise ConfigError(field, True, "the scratch MLP's steps are not captured: use the concise model")
    if not isinstance(optimizer, PlainSGD) or config.schedule != "constant":
        raise ConfigError(
            field,
            True,
            f"a captured step bakes in its learning rate: use sgd without momentum and a constant schedule "
            f"(not {config.optimizer}, momentum {config.momentum}, schedule {config.schedule})",
        )
    if sample_weight is not None:
        raise ConfigError(field, True, "steps with sample weights are not captured: drop one or the other")
    if device.type != "cuda":
        raise ConfigError(field, True, f"CUDA graphs need a CUDA device, not {device}")


class GraphReplay:
    """A step run eagerly ``WARMUP`` times on a side stream, then captured once as a CUDA graph and replayed.

    ``replay(step, *static)`` runs ``step(*static)`` and returns what it returns (for a replay,
    the captured outputs: static tensors the next replay overwrites). The step must read and
    write only tensors that outlive it, its inputs being ``static`` buffers the caller refills
    before each call; the warm-up on a side stream is what the CUDA graph documentation asks for
    before a capture. Shared by ``fit``'s :class:`_GraphedStep` and the sweep's group step.
    """

    WARMUP = 3

    def __init__(self) -> None:
        self.graph: torch.cuda.CUDAGraph | None = None
        self.side: torch.cuda.Stream | None = None  # the warm-up steps' stream
        self.outputs = None
        self.warm = 0

    def __call__(self, step, *static):
        device = static[0].device  # the first static input is a tensor (the batch)
        if self.graph is None and self.warm < self.WARMUP:
            if self.side is None:
                self.side = torch.cuda.Stream(device=device)
            current = torch.cuda.current_stream(device)
            self.side.wait_stream(current)
            with torch.cuda.stream(self.side):
                out = step(*static)
            current.wait_stream(self.side)
            self.warm += 1
            return out
        if self.graph is None:  # capturing records the work without running it: replay it below
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = step(*static)
        self.graph.replay()
        return self.outputs


class _GraphedStep:
    """``step(X, y)`` replayed from a CUDA graph for every full batch, as the sweep's steps are.

    The batch is copied into static buffers and handed to :class:`GraphReplay`: after its warm-up
    steps every full batch is one launch instead of the forward, backward and update kernels and
    their Python. The returned loss and outputs are the graph's static tensors, overwritten by the
    next replay (``fit`` reads them before it). A smaller last batch runs eagerly. Dropout draws
    from the default CUDA generator, which graphs advance on every replay.
    """

    def __init__(self, step, batch_size: int) -> None:
        self.step, self.batch_size = step, batch_size
        self.replay = GraphReplay()
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(y) != self.batch_size:
            return self.step(X, y)
        if self.static is None:
            self.static = (torch.empty_like(X), torch.empty_like(y))
        Xs, ys = self.static
        Xs.copy_(X)
        ys.copy_(y)
        return self.replay(self.step, Xs, ys)


@torch.no_grad()
def evaluate(
    model: nn.Module, split: Split, loss: str = "cross_entropy", batch_size: int = 8192, precision: str = "fp32"
) -> tuple[float, float | None]:
    """Mean loss and accuracy (None for mse) of ``model`` on ``split``, in eval mode, no grad.

    ``precision="bf16"`` runs the forward pass as training under that precision runs it
    (:func:`precision_context`), the loss in float32.
    """
    was_training = model.training
    model.eval()
    loss_fn = loss_function(loss)
    total = torch.zeros((), dtype=torch.float64, device=split.X.device)
    correct = torch.zeros((), dtype=torch.int64, device=split.X.device)
    try:
        for X, y in batches(split, batch_size, shuffle=False):
            out = forward_in(precision, split.X.device, model, X)
            total += loss_fn(out, y).double() * len(y)
            if loss == "cross_entropy":
                correct += (out.argmax(dim=1) == y).sum()
    finally:
        model.train(was_training)
    n = len(split)
    if n == 0:  # nothing to evaluate on (e.g. importance-weighted training without target labels)
        return math.nan, None
    return total.item() / n, (correct.item() / n if loss == "cross_entropy" else None)


def _weighted_batches(
    split: Split, weights: torch.Tensor | None, batch_size: int, order: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """``batches(split, batch_size, order)`` with each example's weight, or None without weights.

    With weights the batches index a split of row numbers, so the permutation drawn from
    ``order`` is the same one, and the examples, labels and weights are picked together.
    """
    if weights is None:
        for X, y in batches(split, batch_size, order):
            yield X, y, None
        return
    index = Split(split.X, torch.arange(len(split), device=split.X.device))
    for X, idx in batches(index, batch_size, order):
        yield X, split.y.index_select(0, idx), weights.index_select(0, idx)


def fit(
    model: nn.Module,
    data: Data,
    config: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    sample_weight: torch.Tensor | None = None,
    progress: bool = False,
    cuda_graphs: bool = False,
) -> History:
    """Train ``model`` on ``data.train``, evaluating on ``data.test`` after every epoch.

    Parameters
    ----------
    model : nn.Module or mlplab.scratch.MLP
        Maps a batch ``X`` of shape (B, d) to outputs (B, k); trained in place. A model with
        ``loss_and_grads`` (the scratch MLP) is trained with its own gradients and hand-written SGD.
    data : Data
        Train and test splits; moved to ``config.device`` once.
    config : TrainConfig
        With ``l1 > 0`` each step minimizes ``loss + l1 * sum |w|`` (see :class:`TrainConfig`);
        the recorded training loss is the data loss alone, comparable across ``l1``.
    callbacks : sequence of Callback
        Progress hooks; they observe, they never change training.
    checkpoint : path, optional
        Written atomically after every epoch (model, optimizer, RNG states, history).
    resume : bool
        Continue from ``checkpoint`` if it exists. Its config must equal ``config`` except for
        ``epochs`` (which may grow) and ``device`` (:data:`RESUME_MAY_CHANGE`): a run started on a
        CPU continues on a GPU and back, its weights, optimizer state and batch order moved over.
        The result equals an uninterrupted run's, bit for bit on a CPU; a run moved to another
        kind of device goes on with that device's rounding, and its dropout masks come from a
        stream seeded by ``(seed, epochs done)`` (:func:`moved_seed`).
    sample_weight : Tensor of shape (n_train,), optional
        Loss weight of each training example: a mini-batch's loss is ``(1/B) sum_i w_i l_i``
        (d2l 4.9.3; :func:`mlplab.shift.fit_weighted` rescales them to mean 1). Needs an autograd
        model; the reported ``train_loss`` is the weighted one.
    progress : bool
        Show a progress bar and a row per epoch while training (terminal or Jupyter), as
        ``mlplab train`` does; off by default (a library call is silent unless asked).
    cuda_graphs : bool
        On CUDA, replay each full-batch step from a CUDA graph (:class:`_GraphedStep`), for an
        autograd model trained by plain SGD on a constant schedule without sample weights. Off by
        default until measured on a GPU (issue #15).

    Returns
    -------
    History
        Per-epoch metrics; ``status`` is ``"diverged"`` if the training loss became non-finite,
        in which case training stopped after that epoch, ``"failed: at chance"`` or ``"failed:
        loss rose"`` when it trained to the end but learned nothing (:func:`outcome`), else ``"ok"``.
    """
    if progress:
        from mlplab.progress import epoch_progress  # rich only when asked for

        with epoch_progress() as display:
            return fit(
                model,
                data,
                config,
                callbacks=[*callbacks, display],
                checkpoint=checkpoint,
                resume=resume,
                sample_weight=sample_weight,
                cuda_graphs=cuda_graphs,
            )
    check_targets(config.loss, data)
    if config.augment != "none":
        image_side(data.train.X.shape[1])  # square images, or a ConfigError before any work
    device = resolve_device(config.device)
    model.to(device)
    data = data.to(device)
    optimizer = make_optimizer(model, config)
    l1_params = penalized(trainable(model), config.decay_biases) if config.l1 else []
    step = _train_step(model, optimizer, config.loss, config.l1, l1_params, config.precision, device)
    if cuda_graphs:
        check_graphable(model, optimizer, config, device, sample_weight)
        step = _GraphedStep(step, config.batch_size)
    weights = None
    if sample_weight is not None:
        if trains_by_hand(model):
            raise ConfigError("sample_weight", "given", "the scratch MLP's gradients are for the plain mean loss only")
        if sample_weight.shape != (len(data.train),):
            raise ConfigError(
                "sample_weight", tuple(sample_weight.shape), f"one weight per training example: ({len(data.train)},)"
            )
        weights = sample_weight.to(device=device, dtype=torch.float32)
    classify = config.loss == "cross_entropy"
    order = torch.Generator().manual_seed(config.seed)  # mini-batch order (CPU generator)
    history = History()
    rng_devices = [device] if device.type == "cuda" else []
    n_batches = num_batches(len(data.train), config.batch_size)

    ckpt = Path(checkpoint) if checkpoint is not None else None
    # One writer per checkpoint folder (re-entrant: `mlplab train` already holds it for the whole run).
    lock = folder_lock(ckpt.parent, RUN_LOCK, "mlplab train") if ckpt is not None else contextlib.nullcontext()
    # Dropout draws from the global RNG; fork it so fit neither depends on nor disturbs the caller's.
    with lock, torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(config.seed)
        if resume and ckpt is not None and ckpt.exists():
            history = _restore(ckpt, model, optimizer, order, config, device, rng_devices)
        if history.initial_loss is None:
            head = Split(data.train.X[:INITIAL_LOSS_ROWS], data.train.y[:INITIAL_LOSS_ROWS])
            history.initial_loss = evaluate(model, head, config.loss, precision=config.precision)[0]
        start = len(history.records)
        n_classes = data.n_classes if classify and len(data.test) else None
        for cb in callbacks:
            cb.on_train_begin(config, n_batches, history)
        for epoch in range(start + 1, config.epochs + 1):
            if history.status == DIVERGED:
                break
            t0 = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for b, (X, y, w) in enumerate(_weighted_batches(data.train, weights, config.batch_size, order)):
                if config.schedule != "constant":
                    set_lr(optimizer, scheduled_lr(config, (epoch - 1) * n_batches + b, config.epochs * n_batches))
                X = augment(X, config.augment, order)  # X itself when augment is "none"
                loss, out = step(X, y) if w is None else step(X, y, w)
                with torch.no_grad():
                    loss_sum.add_(loss.detach(), alpha=len(y))  # in float64, one kernel
                    if classify:
                        correct += (out.argmax(dim=1) == y).sum()
                for cb in callbacks:
                    cb.on_batch_end(epoch, b)
            n = len(data.train)
            train_loss = loss_sum.item() / n
            test_loss, test_acc = evaluate(model, data.test, config.loss, precision=config.precision)
            record = EpochRecord(
                epoch,
                train_loss,
                correct.item() / n if classify else None,
                test_loss,
                test_acc,
                time.perf_counter() - t0,
            )
            history.records.append(record)
            history.status = outcome(record, history.initial_loss, n_classes, len(data.test))
            if ckpt is not None:
                _save(ckpt, model, optimizer, order, config, history, rng_devices)
            for cb in callbacks:
                cb.on_epoch_end(record)
    for cb in callbacks:
        cb.on_train_end(history)
    return history


CHECKPOINT_VERSION = 1
_DEFAULTS = dataclasses.asdict(TrainConfig())
# what a resumed run may change: train longer (a constant schedule), or on another device
RESUME_MAY_CHANGE = ("epochs", "device")
# the initial weights' loss is measured on this many training rows: enough for outcome()'s "more than
# twice the initial loss", and cheap even for a group (100 models' forward pass on 8,192 rows was
# 3.4 s of a CPU sweep's 5.9 s to its first step)
INITIAL_LOSS_ROWS = 2048
RUN_LOCK = "run.lock"  # the lock file of a run folder (see mlplab.lock)


def _save(
    path: Path,
    model,
    optimizer,
    order: torch.Generator,
    config: TrainConfig,
    history: History,
    rng_devices: list[torch.device],
) -> None:
    state = {
        "version": CHECKPOINT_VERSION,
        "config": dataclasses.asdict(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "order_rng": order.get_state(),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": [torch.cuda.get_rng_state(d) for d in rng_devices],
        "history": history.to_dict(),
    }
    save_torch(state, path)


def _restore(
    path: Path, model, optimizer, order: torch.Generator, config: TrainConfig, device, rng_devices: list[torch.device]
) -> History:
    state = load_checkpoint(path, device)
    # a field that an older checkpoint lacks (l1) was trained at its default
    stored = {**_DEFAULTS, **dict(state["config"])}
    current = dataclasses.asdict(config)
    changed = [k for k in current if k not in RESUME_MAY_CHANGE and stored.get(k) != current[k]]
    if changed:
        diffs = ", ".join(f"{k}: {stored.get(k)!r} -> {current[k]!r}" for k in changed)
        raise MlplabError(
            f"cannot resume from {path}: the config changed ({diffs}). "
            "Fix: use the original settings, or a new output folder to start over."
        )
    history = History.from_dict(state["history"])
    check_resumed_epochs(config, stored.get("epochs"), path.parent)
    if len(history.records) > config.epochs:
        raise ConfigError(
            "epochs",
            config.epochs,
            f"the run in {path.parent} has already trained "
            f"{len(history.records)} epochs; give --epochs {len(history.records)} or more to resume it",
        )
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MlplabError(
            f"cannot resume from {path}: its weights do not fit this model ({first}). "
            "Fix: resume with the run's own settings (see its config.json), or use a new "
            "output folder."
        ) from None
    order.set_state(state["order_rng"].cpu())
    if str(stored.get("device", "cpu")).split(":")[0] == device.type:
        torch.set_rng_state(state["cpu_rng"].cpu())
        for d, s in zip(rng_devices, state["cuda_rng"]):
            torch.cuda.set_rng_state(s.cpu(), d)
    else:  # moved to another kind of device: its dropout stream was never drawn from, so it is
        # seeded afresh from (seed, epochs done), not left at the seed (a repeat of epoch 1's draws)
        torch.manual_seed(moved_seed(config.seed, len(history.records)))
    return history


def moved_seed(seed: int, epochs_done: int) -> int:
    """The global RNG seed of a run resumed on another kind of device after ``epochs_done`` epochs."""
    return (seed * 1_000_003 + epochs_done) % 2**63


def check_resumed_epochs(config: TrainConfig, stored_epochs: object, where: str | os.PathLike[str]) -> None:
    """Refuse to resume a scheduled run to other epochs: the schedule spans the run's epochs, so
    training longer would change every earlier step's learning rate (a constant one may grow)."""
    if config.schedule != "constant" and stored_epochs not in (None, config.epochs):
        raise ConfigError(
            "epochs",
            config.epochs,
            f"the run in {where} anneals its learning rate over {stored_epochs} epochs "
            f"({config.schedule} schedule); resume it with --epochs {stored_epochs}, or start a new run",
        )


_CHECKPOINT_KEYS = ("version", "config", "model", "optimizer", "order_rng", "cpu_rng", "cuda_rng", "history")


def load_checkpoint(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint written by :func:`fit`, safely: it can never run code.

    ``torch.load(weights_only=True)`` unpickles tensors and plain containers only, so a crafted
    file that would execute something on load is refused. The structure is then checked, so a
    damaged or foreign file is a clear :class:`MlplabError`, not a ``KeyError`` mid-resume.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise MlplabError(
            f"refusing checkpoint {path}: it holds objects other than tensors and plain "
            f"data, which mlplab never writes ({str(exc).splitlines()[0]}). It may be crafted "
            "to run code. Fix: delete it and train again, or resume from a checkpoint "
            "mlplab wrote."
        ) from None
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise MlplabError(f"cannot read checkpoint {path}: {exc}. Fix: delete it to start over.") from None
    if not isinstance(state, dict) or any(k not in state for k in _CHECKPOINT_KEYS):
        raise MlplabError(
            f"{path} is not an mlplab checkpoint (it lacks the expected entries). "
            "Fix: delete it to start over, or use another output folder."
        )
    if state.get("version") != CHECKPOINT_VERSION:
        raise MlplabError(f"checkpoint {path} has version {state.get('version')!r}, expected {CHECKPOINT_VERSION}")
    try:
        History.from_dict(state["history"])
        dict(state["config"])
    except Exception:
        raise MlplabError(
            f"checkpoint {path} is damaged (its history or config is not what mlplab writes). "
            "Fix: delete it to start over."
        ) from None
    return state
