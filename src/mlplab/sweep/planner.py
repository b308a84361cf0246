"""Planning: which trials train together as one batched model.

Trials that share every shape-defining setting (hidden widths, activation, output size, whether
layers have biases), the loss, the optimizer, the batch size, the number of epochs and the seed
(hence the mini-batch order and the dropout-mask stream) form one group: one stack of ``K``
models trained by a single forward and backward per step. Learning rate, weight decay, the L1
penalty, dropout probabilities and initialization may differ inside a group; they are per-model
tensors (or per-model initial weights). So may the input width: a model with ``n_inputs`` below
the data's column count sees the first ``n_inputs`` columns, its first weight matrix padded with
zero rows to the group's widest (``mlplab.sweep.batched``), so that the polynomial degrees of one
seed (d2l 4.4) train as one group.

Large groups are cut into near-equal chunks of at most ``max_models`` models (memory on a GPU,
cache on a CPU). The plan depends only on the list of trials and ``max_models``, so a resumed
sweep re-plans the same groups; because a group is stored in one transaction, a group is either
entirely stored or entirely retrained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mlplab.errors import check_int
from mlplab.resources import check_fits
from mlplab.sweep.spec import MAX_TRIALS, Trial

# On a CPU a chunk is sized so that one layer's activations (K, B, H) stay in the last-level cache:
# per-model-epoch time measured on the 784-256-256-10 grid was flat for K in 8..32 and 20-40%
# worse at K = 100 (tensors of 26 MB thrash the 32 MB L3 and fresh allocations page-fault).
CPU_ACTIVATION_BYTES = 8 * 2**20
GPU_MEMORY_FRACTION = 0.5  # of the free device memory a group may plan to use
BYTES_PER_FLOAT = 4


def group_key(trial: Trial) -> tuple:
    """What trials must share to be trained in one batched model (not ``n_inputs``: see above).

    The first four entries are the stacked shape (``BatchedMLP.from_trials`` checks them).
    """
    m, t = trial.model, trial.train
    return (
        m.hidden, m.activation, m.n_outputs, m.bias, t.loss, t.optimizer, t.batch_size, t.epochs, t.seed, t.precision
    )  # fmt: skip


@dataclass(frozen=True)
class Group:
    """Trials trained together. ``index`` is the group's position in the full plan."""

    index: int
    trials: tuple[Trial, ...]

    def __len__(self) -> int:
        return len(self.trials)

    @property
    def first(self) -> Trial:
        return self.trials[0]

    def without(self, keys: set[str] | frozenset[str]) -> Group:
        """The same group minus the trials whose key is in ``keys`` (already stored)."""
        return Group(self.index, tuple(t for t in self.trials if t.key not in keys))

    def describe(self) -> str:
        """``20 x 784-256-256-10 relu sgd, batch 256, 10 epochs, seed 0`` (inputs ``2..20`` when they differ)."""
        m, t = self.first.model, self.first.train
        widths = {u.model.n_inputs for u in self.trials}
        inputs = f"{min(widths)}..{max(widths)}" if len(widths) > 1 else str(m.n_inputs)
        return (
            f"{len(self)} x {'-'.join([inputs, *map(str, m.sizes[1:])])} {m.activation} {t.optimizer}, "
            f"batch {t.batch_size}, {t.epochs} epochs, seed {t.seed}"
        )


def bytes_per_model(
    trial: Trial, eval_rows: int = 2048, n_train: int | None = None, n_inputs: int | None = None
) -> int:
    """A generous estimate of the memory one model of a group needs while it trains.

    Parameters, gradients and update temporaries (plus Adam's two moments); per layer the
    pre-activation, activation, dropout gate and gradient of a (B, H) batch; the evaluation chunk.
    With ``n_train`` (training rows) a batch is at most that many rows, as in training; with
    ``n_inputs`` (the group's widest) the first layer is as wide as its padded stack.
    """
    sizes = trial.model.sizes
    if n_inputs is not None:
        sizes = [max(sizes[0], n_inputs), *sizes[1:]]
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    states = 3 + (2 if trial.train.optimizer in ("adam", "adamw") else 0)
    batch = trial.train.batch_size if n_train is None else min(trial.train.batch_size, n_train)
    activations = 4 * batch * sum(sizes[1:]) + 2 * eval_rows * max(sizes[1:])
    return BYTES_PER_FLOAT * (states * n_params + activations)


def default_max_models(trials: Sequence[Trial], device: torch.device | str) -> int:
    """How many models a group may hold on ``device`` (at least 1, at most ``MAX_TRIALS``)."""
    if not trials:
        return 1
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_model = max(bytes_per_model(t) for t in trials)
        return min(MAX_TRIALS, max(1, int(free * GPU_MEMORY_FRACTION // per_model)))
    widest = max(t.train.batch_size * max(t.model.sizes[1:]) * BYTES_PER_FLOAT for t in trials)
    return min(MAX_TRIALS, max(1, CPU_ACTIVATION_BYTES // widest))


def check_memory(groups: Sequence[Group], device: torch.device | str, n_train: int | None = None) -> None:
    """Raise ``ResourceError`` (with the size needed) when the largest group would not fit on ``device``.

    Called before any training, so ``--hidden 1000000000`` is refused in milliseconds instead of
    failing (or swapping) inside a 3 TB allocation. The estimate is :func:`bytes_per_model` summed
    over the group's models.
    """
    if not groups:
        return
    needs = [
        sum(bytes_per_model(t, n_train=n_train, n_inputs=max(u.model.n_inputs for u in g.trials)) for t in g.trials)
        for g in groups
    ]
    worst = max(range(len(groups)), key=needs.__getitem__)
    group = groups[worst]
    fix = "narrower --hidden or a smaller --batch-size"
    if len(group) > 1:
        fix = f"a smaller --max-models (this group has {len(group)}), {fix}"
    check_fits(f"the group {group.describe()}", needs[worst], device, fix)


def plan(trials: Sequence[Trial], max_models: int) -> list[Group]:
    """Groups of trials in order of first appearance, each cut into near-equal chunks.

    Example: 100 same-shape trials with ``max_models=32`` give 4 groups of 25, not 32+32+32+4;
    10 with ``max_models=4`` give 4+3+3.
    """
    check_int("max_models", max_models, 1, MAX_TRIALS)
    by_key: dict[tuple, list[Trial]] = {}
    for t in trials:
        by_key.setdefault(group_key(t), []).append(t)
    groups: list[Group] = []
    for members in by_key.values():
        chunks = math.ceil(len(members) / max_models)
        base, extra = divmod(len(members), chunks)
        start = 0
        for i in range(chunks):
            size = base + (i < extra)  # sizes differ by at most one
            groups.append(Group(len(groups), tuple(members[start : start + size])))
            start += size
    return groups
