"""The doctor: the chapter's failure modes, caught from a configuration before any training.

``check(model_config, train_config)`` returns a list of :class:`Finding` in milliseconds, from
the settings alone (no data):

- **Weight decay that flips or erases the weights** (d2l 4.5). Plain SGD (and AdamW's decoupled
  decay) multiply every weight by ``1 - lr * wd`` at each step before the gradient is added. At
  ``lr = 0.5, wd = 3`` that factor is ``-0.5``: the weights flip sign and the gradient cannot
  build anything, so every model ends at chance. A positive factor can still leave no weight
  after an epoch: ``(1 - lr * wd) ** steps``. Adam's ``weight_decay`` is added to the gradient
  and then normalized away (coupled L2), which is not the decay it looks like: a note.
- **Variance that vanishes or explodes through the layers** (d2l 4.8). With weights of variance
  ``sigma^2`` a linear layer multiplies the variance of its input by ``n_in sigma^2`` on the way
  forward and that of the gradient by ``n_out sigma^2`` on the way back; the activation multiplies
  them by its gain (1/2 for ReLU, about 1/16 for sigmoid near 0, 1 for tanh). The products over
  the layers are the predicted factors; Xavier's ``sigma^2 = 2 / (n_in + n_out)`` keeps each step
  near 1. Their geometric mean (how much a weight update of the first layer is scaled) beyond
  ``1e±9`` is flagged. The limit is set by known cases, to be calibrated on stored sweeps: the
  chapter's 784-256-10 at ``normal:0.01`` (1.1e-4) and 784-256-256-256-10 (1.8e-8; it trains,
  slowly) pass; four hidden layers at ``normal:0.01`` (2.4e-10), sigmoid on 10 Xavier layers
  (3e-13) and ``normal:1`` on 8 layers (6e18) are flagged.
- **Too much dropout on the first hidden layer** (d2l 4.6): ``p >= 0.8`` keeps a fifth of the inputs.
- **A batch larger than the training set**: every step sees the whole set (gradient descent).

The probe and training-time checks of the issue are not here yet.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from mlplab.errors import MlplabError
from mlplab.init import parse_init
from mlplab.models import ModelConfig
from mlplab.train import TrainConfig, num_batches

SEVERITIES = ("error", "warning", "note")
# (forward, backward) variance gain of each activation for inputs near 0 (d2l 4.8): ReLU keeps half
# of a symmetric input's second moment and passes half the gradients; sigmoid's slope is 1/4 at 0.
ACTIVATION_GAIN = {"relu": (0.5, 0.5), "prelu": ((1 + 0.25**2) / 2, (1 + 0.25**2) / 2), "tanh": (1.0, 1.0),
                   "sigmoid": (1 / 16, 1 / 16)}  # fmt: skip
VARIANCE_LIMIT = 1e9  # a predicted signal factor beyond 1e9 (or below 1e-9) over the network is flagged
SHRINK_LIMIT = 1e-3  # weight decay alone leaving less than this of a weight after one epoch is flagged
FIRST_DROPOUT_LIMIT = 0.8


@dataclass(frozen=True)
class Finding:
    """One thing the doctor saw: how bad, what (with numbers), why it matters, what to change."""

    severity: str  # error | warning | note
    check: str  # a short id, e.g. "weight-decay-flips"
    saw: str  # what it saw, with the numbers
    why: str  # why it matters, with the book's section
    fix: str  # a concrete change

    def __str__(self) -> str:
        return f"{self.severity}: {self.saw}. {self.why} Fix: {self.fix}"


def check(model: ModelConfig, train: TrainConfig, n_train: int = 60_000) -> list[Finding]:
    """The findings for training ``model`` with ``train`` on ``n_train`` examples, worst first.

    Parameters
    ----------
    model : ModelConfig
    train : TrainConfig
    n_train : int
        Training examples (Fashion-MNIST's 60,000 by default): sets the steps per epoch.
    """
    findings = _weight_decay(train, n_train) + _variance(model) + _dropout(model) + _batch(train, n_train)
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def refuse_errors(findings: list[Finding], what: str) -> None:
    """Raise :class:`~mlplab.errors.MlplabError` when a finding is an error (``--force`` goes on anyway)."""
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise MlplabError(f"{what}: {errors[0]} Or add --force to train anyway (`mlplab doctor` explains the checks).")


def check_trials(trials, n_train: int = 60_000) -> list[tuple[Finding, int]]:
    """Findings over a sweep's trials, each with how many configurations it concerns (seeds counted once).

    The first finding of each check stands for all of them (its numbers are one configuration's).
    """
    seen: dict[str, tuple[Finding, set]] = {}
    checked: set[str] = set()
    for trial in trials:
        key = json.dumps(trial.params(), sort_keys=True)  # the configuration, whatever its seed
        if key in checked:
            continue
        checked.add(key)
        for finding in check(trial.model, trial.train, n_train):
            seen.setdefault(finding.check, (finding, set()))[1].add(key)
    found = [(first, len(keys)) for first, keys in seen.values()]
    return sorted(found, key=lambda fk: SEVERITIES.index(fk[0].severity))


def _weight_decay(train: TrainConfig, n_train: int) -> list[Finding]:
    lr, wd = train.lr, train.weight_decay
    if wd == 0:
        return []
    if train.optimizer == "adam":
        return [Finding(
            "note", "adam-coupled-decay", f"Adam with weight_decay {wd:g} adds {wd:g} * w to the gradient",
            "Adam then divides the gradient by its running scale, so the decay is not lr * wd per step (d2l 4.5 "
            "derives it for SGD).", "use --optimizer adamw for decoupled decay w <- w - lr * wd * w",
        )]  # fmt: skip
    factor = 1 - lr * wd
    steps = num_batches(n_train, train.batch_size)
    limit = 1 - SHRINK_LIMIT ** (1 / steps)  # the largest lr * wd that keeps an epoch's shrink above the limit
    suggestion = float(f"{limit / lr / 10:.1g}")  # ten times below it, one significant digit
    safe = (f"keep lr * wd below {limit:.2g} ({steps} steps per epoch), e.g. --weight-decay {suggestion:g} at "
            f"lr {lr:g}")  # fmt: skip
    if factor <= 0:
        return [Finding(
            "error", "weight-decay-flips",
            f"every {train.optimizer} step multiplies the weights by 1 - lr * wd = 1 - {lr:g} * {wd:g} = {factor:.3g}",
            "A factor <= 0 flips (or zeroes) every weight at each step, so no gradient can build anything: "
            "every model ends at chance (d2l 4.5, the update w <- (1 - lr wd) w - lr g).", safe,
        )]  # fmt: skip
    shrink = factor**steps
    if shrink < SHRINK_LIMIT:
        return [Finding(
            "warning", "weight-decay-erases",
            f"weight decay alone shrinks every weight by (1 - {lr:g} * {wd:g})^{steps} = {shrink:.2g} per epoch",
            "The gradient has to rebuild the weights each epoch against a penalty that erases them (d2l 4.5).",
            safe,
        )]  # fmt: skip
    return []


def variance_factors(model: ModelConfig) -> tuple[float, float]:
    """Predicted (forward, backward) variance factors of the whole network at initialization.

    Forward: the product over layers of ``n_in sigma_l^2`` times the activation's forward gain
    after each hidden layer; backward: of ``n_out sigma_l^2`` times its backward gain (d2l 4.8).
    """
    init = parse_init(model.init)
    sizes = model.sizes
    gain_f, gain_b = ACTIVATION_GAIN[model.activation]
    log_f = log_b = 0.0
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        var = init.std_for(n_in, n_out) ** 2
        hidden = i < len(sizes) - 2  # an activation follows every layer but the last
        log_f += math.log(n_in * var) + (math.log(gain_f) if hidden else 0.0)
        log_b += math.log(n_out * var) + (math.log(gain_b) if hidden else 0.0)
    return math.exp(log_f), math.exp(log_b)


def _variance(model: ModelConfig) -> list[Finding]:
    forward, backward = variance_factors(model)
    signal = math.sqrt(forward * backward)
    if 1 / VARIANCE_LIMIT <= signal <= VARIANCE_LIMIT:
        return []
    kind = "vanish" if signal < 1 else "explode"
    return [Finding(
        "warning", {"vanish": "variance-vanishes", "explode": "variance-explodes"}[kind],
        f"{model.init} with {model.activation} on {'-'.join(map(str, model.sizes))} multiplies the variance of the "
        f"activations by about {forward:.1g} on the way forward and of the gradients by {backward:.1g} on the way back",
        f"Signals that {kind} through the layers leave the first layers untrained (d2l 4.8).",
        "use --init xavier (sigmoid, tanh) or --init he (ReLU), or fewer layers",
    )]  # fmt: skip


def _dropout(model: ModelConfig) -> list[Finding]:
    p = model.dropout_per_layer[0] if model.dropout_per_layer else 0.0
    if p < FIRST_DROPOUT_LIMIT:
        return []
    return [Finding(
        "warning", "dropout-first-layer", f"dropout {p:g} after the first hidden layer keeps {1 - p:.0%} of its units",
        "The first layer sees the inputs; dropping most of it starves every later layer (d2l 4.6's advice: less "
        "dropout near the input).", "use --dropout 0.2 on the first hidden layer (0.5 on later ones)",
    )]  # fmt: skip


def _batch(train: TrainConfig, n_train: int) -> list[Finding]:
    if train.batch_size <= n_train:
        return []
    return [Finding(
        "warning", "batch-larger-than-data", f"batch size {train.batch_size:,} is more than the {n_train:,} training examples",
        "Every step then sees the whole set: plain gradient descent, one step per epoch.",
        f"use --batch-size {min(256, n_train)}",
    )]  # fmt: skip
