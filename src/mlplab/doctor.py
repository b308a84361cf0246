"""The doctor: the chapter's failure modes, caught from a configuration before any training.

``check(model_config, train_config)`` returns :class:`Findings` (a list of :class:`Finding`, shown
as a table in Jupyter) in milliseconds, from the settings alone (no data):

- **Weight decay that flips or erases the weights** (d2l 4.5). Plain SGD (and AdamW's decoupled
  decay) multiply every weight by ``1 - lr * wd`` at each step before the gradient is added. At
  ``lr = 0.5, wd = 3`` that factor is ``-0.5``: the weights flip sign and the gradient cannot
  build anything, so every model ends at chance. A positive factor can still leave no weight
  after an epoch: ``(1 - lr * wd) ** steps``. Adam's ``weight_decay`` is added to the gradient
  and then normalized away (coupled L2), which is not the decay it looks like: a note.
- **Variance that vanishes or explodes through the layers** (d2l 4.8). With weights of variance
  ``sigma^2`` a linear layer multiplies the variance of its input by ``n_in sigma^2`` on the way
  forward and that of the gradient by ``n_out sigma^2`` on the way back; the activation passes on
  ``E[phi(z)^2]`` and ``E[phi'(z)^2]`` of its Gaussian input, computed by quadrature
  (:func:`layer_variances`): half for ReLU, while tanh and sigmoid saturate (sigmoid's outputs keep a
  second moment of at least 1/4, its slope at most 1/4 squares to 1/16). The products over the
  layers are the predicted factors; Xavier's ``sigma^2 = 2 / (n_in + n_out)`` keeps each linear
  step near 1. Either factor beyond ``1e±9`` is flagged. Known cases: the chapter's 784-256-10 at
  ``normal:0.01`` (forward 1e-3, backward 1.3e-5) and 784-256-256-256-10 (1.6e-7, 2.1e-9; it
  trains, slowly) pass; four hidden layers at ``normal:0.01`` (backward 2.7e-11), sigmoid on 10
  Xavier layers (backward 7.6e-15: the vanishing gradient of 4.8.1) and ``normal:1`` on 8 layers
  (7e17) are flagged.
- **Too much dropout on the first hidden layer** (d2l 4.6): ``p >= 0.8`` keeps a fifth of the inputs.
- **A batch larger than the training set**: every step sees the whole set (gradient descent).

:func:`probe` trains a copy of the model on a few batches (``mlplab doctor --probe``);
:class:`DoctorCallback` watches :func:`mlplab.train.fit` once per epoch (``mlplab train`` keeps it
on and stores the findings in ``OUT/doctor.json``); :func:`explain` reads a stored run or sweep and
groups its failed models by the finding that explains them (``mlplab doctor DIR``);
:func:`check_trials` counts findings over a sweep's configurations (``mlplab doctor --grid``, and
``sweep run``, which stores them in ``OUT/doctor.json``); :class:`SweepDoctorCallback` runs the
training-time checks on every model of a batched sweep (``sweep run`` adds its findings, per model).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mlplab.errors import MlplabError
from mlplab.init import parse_init
from mlplab.models import ModelConfig
from mlplab.train import Callback, TrainConfig, num_batches

SEVERITIES = ("error", "warning", "note")
VARIANCE_LIMIT = 1e9  # a predicted signal factor beyond 1e9 (or below 1e-9) over the network is flagged
SHRINK_LIMIT = 1e-3  # weight decay alone leaving less than this of a weight after one epoch is flagged
# first-layer dropout: in the 4.6 grid (bench/results/dropout-grid, 3 seeds) p1 = 0.8 still reaches 0.81 (a
# note), p1 = 0.9 falls to 0.48 against 0.85 (a warning)
FIRST_DROPOUT_NOTE, FIRST_DROPOUT_WARNING = 0.8, 0.9


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

    def _repr_html_(self) -> str:
        """How Jupyter shows a finding: a one-row table (see :class:`Findings`)."""
        from mlplab.display import findings_html

        return findings_html([self])


class Findings(list[Finding]):
    """What :func:`check` and :func:`probe` return: a plain list of :class:`Finding`, worst first,
    which Jupyter shows as a table (severity, check, what was seen, why, the fix)."""

    def _repr_html_(self) -> str:
        """One table of all the findings; a sentence saying so when there are none."""
        from mlplab.display import findings_html

        return findings_html(self)


def check(model: ModelConfig, train: TrainConfig, n_train: int = 60_000) -> Findings:
    """The findings for training ``model`` with ``train`` on ``n_train`` examples, worst first.

    Parameters
    ----------
    model : ModelConfig
    train : TrainConfig
    n_train : int
        Training examples (Fashion-MNIST's 60,000 by default): sets the steps per epoch.
    """
    findings = _weight_decay(train, n_train) + _variance(model) + _dropout(model) + _batch(train, n_train)
    return Findings(sorted(findings, key=lambda f: SEVERITIES.index(f.severity)))


def refuse_errors(findings: list[Finding], what: str) -> None:
    """Raise :class:`~mlplab.errors.MlplabError` when a finding is an error (``--force`` goes on anyway)."""
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise MlplabError(f"{what}: {errors[0]} Or add --force to train anyway (`mlplab doctor` explains the checks).")


def check_trials(trials, n_train: int = 60_000) -> tuple[list[tuple[Finding, int]], int]:
    """Findings over a sweep's trials, each with how many configurations it concerns (seeds counted
    once), and the number of configurations checked.

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
    return sorted(found, key=lambda fk: SEVERITIES.index(fk[0].severity)), len(checked)


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
    momentum = train.momentum if train.optimizer == "sgd" else 0.0
    eta = lr * wd
    steps = num_batches(n_train, train.batch_size)
    # the largest lr * wd that keeps an epoch's shrink above the limit (momentum m stretches it by 1 / (1 - m))
    limit = (1 - momentum) * (1 - SHRINK_LIMIT ** (1 / steps))
    suggestion = float(f"{limit / lr / 10:.1g}")  # ten times below it, one significant digit
    safe = (f"keep lr * wd below {limit:.2g} ({steps} steps per epoch), e.g. --weight-decay {suggestion:g} at "
            f"lr {lr:g}")  # fmt: skip
    flip_at = (1 + math.sqrt(momentum)) ** 2  # 1 without momentum: the factor 1 - lr * wd reaches 0
    if eta >= flip_at:
        saw = (f"every {train.optimizer} step multiplies the weights by 1 - lr * wd = 1 - {lr:g} * {wd:g} = {1 - eta:.3g}"
               if momentum == 0 else
               f"lr * wd = {lr:g} * {wd:g} = {eta:.3g} >= (1 + sqrt(momentum {momentum:g}))^2 = {flip_at:.3g}: "
               "the decay's update has a root <= 0")  # fmt: skip
        return [Finding(
            "error", "weight-decay-flips", saw,
            "A factor <= 0 flips (or zeroes) every weight at each step, so no gradient can build anything: "
            "every model ends at chance (d2l 4.5, the update w <- (1 - lr wd) w - lr g).", safe,
        )]  # fmt: skip
    shrink = decay_radius(eta, momentum) ** steps
    if shrink < SHRINK_LIMIT:
        formula = (
            f"(1 - {lr:g} * {wd:g})^{steps}" if momentum == 0 else f"(its rate per step, momentum {momentum:g})^{steps}"
        )
        return [Finding(
            "warning", "weight-decay-erases",
            f"weight decay alone shrinks every weight by {formula} = {shrink:.2g} per epoch",
            "The gradient has to rebuild the weights each epoch against a penalty that erases them (d2l 4.5).",
            safe,
        )]  # fmt: skip
    return []


def decay_radius(eta: float, momentum: float = 0.0) -> float:
    """How much weight decay alone shrinks a weight per SGD step: the spectral radius of its update.

    With ``eta = lr * wd`` and heavy-ball momentum ``m`` the decay-only update is
    ``w_{t+1} = (1 + m - eta) w_t - m w_{t-1}``, whose roots solve ``r^2 - (1 + m - eta) r + m = 0``;
    the largest ``|r|`` is the rate (``|1 - eta|`` without momentum, ``sqrt(m)`` for complex roots).
    """
    b = 1 + momentum - eta
    disc = b * b - 4 * momentum
    if disc < 0:
        return math.sqrt(momentum)
    return max(abs(b + math.sqrt(disc)), abs(b - math.sqrt(disc))) / 2


def _activation_moments(activation: str, variance: float) -> tuple[float, float]:
    """``(E[phi(z)^2], E[phi'(z)^2])`` for ``z ~ N(0, variance)``: what an activation passes on.

    Computed by 64-point Gauss-Hermite quadrature, so a saturating activation is taken as it is:
    tanh is the identity only near 0 (for large ``variance`` it passes at most 1), and sigmoid's
    outputs have mean 1/2, so their second moment is at least 1/4 while its slope is at most 1/4.
    ReLU gives exactly ``(variance / 2, 1 / 2)`` (d2l 4.8's He derivation), pReLU at its initial
    slope 0.25 ``((1 + 0.25^2) / 2 * variance, (1 + 0.25^2) / 2)``.
    """
    import torch

    from mlplab.scratch import activations  # the project's activations beside their derivatives

    nodes, weights = _gauss_hermite()
    z = math.sqrt(variance) * nodes
    if activation == "prelu":
        alpha = torch.tensor([activations.PRELU_INIT], dtype=z.dtype)
        value, slope = activations.prelu(z, alpha), activations.prelu_grad(z, alpha)
    else:
        f, derivative = activations.OUTPUT_DERIVATIVES[activation]  # the derivative reads the output
        value = f(z)
        slope = derivative(value).to(z.dtype)
    return float(weights @ value**2), float(weights @ slope**2)


@functools.lru_cache(maxsize=1)
def _gauss_hermite(points: int = 64):
    """Nodes and weights with ``E[f(x)] = sum(weights * f(nodes))`` for ``x ~ N(0, 1)`` (float64 tensors)."""
    import numpy as np
    import torch

    nodes, weights = np.polynomial.hermite_e.hermegauss(points)
    return torch.from_numpy(nodes), torch.from_numpy(weights / math.sqrt(2 * math.pi))


def layer_variances(model: ModelConfig, input_second_moment: float = 1.0) -> tuple[list[float], float]:
    """Predicted variance of every Linear layer's output at init, and the backward factor.

    Forward (the mean-field recursion of d2l 4.8's derivation, with the activation taken exactly):
    ``Var(z_1) = n_in sigma_1^2 E[X^2]`` and ``Var(z_l) = n_in sigma_l^2 E[phi(z_{l-1})^2]``.
    Backward: the variance of ``dL/dX`` over that of ``dL/dz_L``, the product over layers of
    ``n_out sigma_l^2`` times ``E[phi'(z_l)^2]`` after each hidden layer. Zero biases, weights of
    mean 0; for ReLU it is exactly the linear ``n sigma^2 / 2`` per layer.

    Returns
    -------
    (list of float, one per Linear layer, input layer first; float)
    """
    init = parse_init(model.init)
    sizes = model.sizes
    second_moment, variances, log_backward = float(input_second_moment), [], 0.0
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        var = init.std_for(n_in, n_out) ** 2
        variances.append(n_in * var * second_moment)
        log_backward += math.log(n_out * var)
        if i < len(sizes) - 2:  # an activation follows every layer but the last
            second_moment, slope = _activation_moments(model.activation, variances[-1])
            log_backward += math.log(slope) if slope > 0 else -math.inf
    return variances, math.exp(log_backward)


def variance_factors(model: ModelConfig, input_second_moment: float = 1.0) -> tuple[float, float]:
    """Predicted (forward, backward) variance factors of the whole network at initialization.

    Forward: ``Var(z_L) / E[X^2]`` (the logits' variance over the input's second moment), backward:
    ``Var(dL/dX) / Var(dL/dz_L)``; see :func:`layer_variances`. For ReLU both are independent of
    the input scale; for tanh and sigmoid, which saturate, they depend on it (``E[X^2]``, 1 by default).
    """
    variances, backward = layer_variances(model, input_second_moment)
    return variances[-1] / input_second_moment, backward


def _variance(model: ModelConfig) -> list[Finding]:
    forward, backward = variance_factors(model)
    beyond = [f for f in (backward, forward) if not 1 / VARIANCE_LIMIT <= f <= VARIANCE_LIMIT]
    if not beyond:
        return []
    kind = "vanish" if beyond[0] < 1 else "explode"  # the gradients' factor first: it is what trains
    return [Finding(
        "warning", {"vanish": "variance-vanishes", "explode": "variance-explodes"}[kind],
        f"{model.init} with {model.activation} on {'-'.join(map(str, model.sizes))} multiplies the variance of the "
        f"activations by about {forward:.1g} on the way forward and of the gradients by {backward:.1g} on the way back",
        f"Signals that {kind} through the layers leave the first layers untrained (d2l 4.8).",
        "use --init xavier (sigmoid, tanh) or --init he (ReLU), or fewer layers",
    )]  # fmt: skip


def _dropout(model: ModelConfig) -> list[Finding]:
    p = model.dropout_per_layer[0] if model.dropout_per_layer else 0.0
    if p < FIRST_DROPOUT_NOTE:
        return []
    return [Finding(
        "warning" if p >= FIRST_DROPOUT_WARNING else "note", "dropout-first-layer", f"dropout {p:g} after the first hidden layer keeps {1 - p:.0%} of its units",
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


@dataclass
class Explanation:
    """What the doctor makes of stored results: which failed models its findings explain.

    ``causes`` maps a finding's check to (one such finding, how many failed or diverged models it
    concerns); ``flagged_ok`` counts models that ended ``ok`` yet got a warning or an error, with
    their mean test accuracy beside that of the unflagged ``ok`` models (a warning on a model that
    trained to a much lower accuracy was right; one at the same accuracy was a false alarm).
    """

    models: int
    failed: int  # failed or diverged
    causes: dict[str, tuple[Finding, int]]
    unexplained: int  # failed models no finding accounts for
    flagged_ok: int
    flagged_ok_acc: float | None = None  # mean test accuracy of flagged_ok models
    unflagged_ok_acc: float | None = None  # and of the ok models with no finding

    def lines(self) -> list[str]:
        out = [f"{self.failed} of {self.models} model(s) failed or diverged"]
        for finding, count in self.causes.values():
            out.append(f"{count} of them: {finding}")
        if self.unexplained:
            out.append(f"{self.unexplained} failed model(s) match no check: look at their curves (mlplab sweep plot)")
        if self.flagged_ok:
            accs = ""
            if self.flagged_ok_acc is not None and self.unflagged_ok_acc is not None:
                accs = f": mean test accuracy {self.flagged_ok_acc:.4f}, against {self.unflagged_ok_acc:.4f} unflagged"
            out.append(f"{self.flagged_ok} model(s) ended ok despite a warning{accs}")
        return out


def explain(path: str | os.PathLike[str]) -> Explanation:
    """Read a run folder (``config.json``, ``history.json``) or a sweep folder (``sweep.sqlite``) and
    say which failures the config checks explain, grouped by cause."""
    path = Path(path)
    if (path / "sweep.sqlite").exists():
        return _explain_sweep(path)
    if (path / "config.json").exists():
        return _explain_run(path)
    raise MlplabError(f"{path} holds neither a run (config.json) nor a sweep (sweep.sqlite). Fix: give the folder "
                      "that `mlplab train --out` or `mlplab sweep run --out` wrote.")  # fmt: skip


def _tally(cases: list[tuple[ModelConfig, TrainConfig, str, float | None]], n_train: int) -> Explanation:
    causes: dict[str, tuple[Finding, int]] = {}
    failed = unexplained = 0
    flagged_acc: list[float] = []
    unflagged_acc: list[float] = []
    flagged_ok = 0
    for model, train, status, acc in cases:
        serious = [f for f in check(model, train, n_train) if f.severity != "note"]
        if status == "ok":
            flagged_ok += bool(serious)
            if acc is not None:
                (flagged_acc if serious else unflagged_acc).append(acc)
            continue
        failed += 1
        if not serious:
            unexplained += 1
        for finding in serious:
            first, count = causes.get(finding.check, (finding, 0))
            causes[finding.check] = (first, count + 1)

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return Explanation(len(cases), failed, causes, unexplained, flagged_ok, mean(flagged_acc), mean(unflagged_acc))


def _explain_run(path: Path) -> Explanation:
    from mlplab.runs import RunDir
    from mlplab.train import load_checkpoint

    config = RunDir(path).stored_config()
    model = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["model"].items()})
    train = TrainConfig(**config["train"])
    # the status is the last checkpoint's (a run killed before its first epoch has none: judged as not failed)
    history = load_checkpoint(path / "checkpoint.pt")["history"] if (path / "checkpoint.pt").exists() else None
    status = history["status"] if history else "ok"
    acc = history["epochs"][-1]["test_acc"] if history and history["epochs"] else None
    return _tally([(model, train, status, acc)], 60_000)


def _explain_sweep(path: Path) -> Explanation:
    from mlplab.sweep.spec import make_trial, parse_value
    from mlplab.sweep.store import SweepStore

    with SweepStore(path, create=False) as store:
        rows = store.rows()
        data = store.meta().get("data", "")
    sizes = [int(n) for n in re.findall(r"train \((\d+), (\d+)\)", data)[0]] if "train (" in data else [60_000, 784]
    cases = []
    for row in rows:
        values = {name: parse_value(name, value) for name, value in json.loads(row["config"]).items()}
        trial = make_trial(values, row["seed"], n_inputs=sizes[1])
        cases.append((trial.model, trial.train, row["status"], row["final_test_acc"]))
    return _tally(cases, sizes[0])


# --- at the first steps, from the data ------------------------------------------------------

PROBE_BATCHES = 5  # mini-batches the probe trains on (a copy of the model: the caller's is untouched)
INIT_LOSS_SLACK = 1.0  # a loss at init more than 1 + ln(k) / 2 away from ln(k) is noted
# Only a note: over 5 inits x 1 and 4 hidden layers x seeds 0-2 on Fashion-MNIST (BENCHMARKS.md),
# the large first losses of normal:0.1 (up to 6.7) and of normal:1 on one layer (165 to 233) all
# trained; the one failure (normal:1 on 4 layers, 2e5 to 7e5) is flagged by the gradient checks.
# the first layer's ||grad|| / ||W|| at init, 784-256-...-10 at normal:0.01 on a Fashion-MNIST-like batch:
# 4e-2 (1 hidden layer), 5e-3 (2), 5e-4 (3: trains, slowly), 6e-5 (4), 7e-7 (6); Xavier/He: 5e-2 to 1e-1
RELATIVE_GRAD_LOW, RELATIVE_GRAD_HIGH = 1e-4, 1e2
DEAD_LIMIT = 0.5  # more than half the ReLUs of a layer silent on a whole batch is flagged


def probe(model, data, train: TrainConfig, batches: int = PROBE_BATCHES) -> Findings:
    """Findings from a few mini-batches of real data (seconds): input scale, loss at init against
    ``ln k``, gradient norms first to last layer, dead ReLUs, a learning rate that raises the loss.

    ``model`` is a concise ``nn.Module`` (``mlplab.models.build_mlp``); it is copied, never trained.
    """
    import copy

    import torch
    import torch.nn.functional as F

    from mlplab.train import make_optimizer

    net = copy.deepcopy(model).train()
    X, y = data.train.X[: train.batch_size * batches], data.train.y[: train.batch_size * batches]
    k = data.n_classes
    out: list[Finding] = []
    scale = float(X.abs().max())
    if scale > 10:
        out.append(Finding(
            "warning", "input-scale", f"the inputs reach {scale:g} (pixels 0-255?)",
            "Large inputs make the first layer's pre-activations huge at init, as a too-large init would (d2l 4.8).",
            "scale the inputs to [0, 1] (divide by 255), as the book's ToTensor() does",
        ))  # fmt: skip
    first = slice(0, train.batch_size)
    hidden: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: hidden.append(o))
        for m in net.modules()
        if isinstance(m, torch.nn.ReLU)
    ]
    loss = F.cross_entropy(net(X[first]), y[first])
    for h in hooks:
        h.remove()
    expected = math.log(k)
    if abs(loss.item() - expected) > INIT_LOSS_SLACK + expected * 0.5 or not math.isfinite(loss.item()):
        out.append(Finding(
            "note", "init-loss", f"the loss at initialization is {loss.item():.3g}, not about ln({k}) = {expected:.3g}",
            "Near-zero initial weights give every class the same probability, so the first loss is ln k; far from "
            "it, the initial outputs are already large (d2l 4.8). One hidden layer often recovers; deep nets less so.",
            "use smaller initial weights (--init xavier or he)",
        ))  # fmt: skip
    out += dead_relu_findings(hidden, "on the first batch")
    net.zero_grad()
    loss.backward()
    out += gradient_findings(
        [w.grad for w in net.parameters() if w.ndim >= 2],
        [w for w in net.parameters() if w.ndim >= 2],
        "at initialization",
    )
    before = loss.item()
    optimizer = make_optimizer(net, train)
    for b in range(batches):
        part = slice(b * train.batch_size, (b + 1) * train.batch_size)
        if part.start >= len(X):
            break
        optimizer.zero_grad()
        F.cross_entropy(net(X[part]), y[part]).backward()
        optimizer.step()
    with torch.no_grad():
        after = F.cross_entropy(net.eval()(X[first]), y[first]).item()
    if not math.isfinite(after) or after > before * 1.1:
        out.append(Finding(
            "warning", "lr-raises-loss", f"{batches} steps at lr {train.lr:g} take the loss from {before:.3g} to {after:.3g}",
            "A learning rate too large for the loss's curvature overshoots: the loss rises instead of falling (d2l 4.2, exercise 3).",
            f"try --lr {train.lr / 10:g}",
        ))  # fmt: skip
    return Findings(sorted(out, key=lambda f: SEVERITIES.index(f.severity)))


def dead_relu_findings(hidden: list, when: str) -> list[Finding]:
    """``dead-relus`` for each hidden layer whose ReLU outputs (B, n) are 0 for every row in more than half its units."""
    out = []
    for i, h in enumerate(hidden):
        dead = float((h <= 0).all(dim=0).float().mean())
        if dead > DEAD_LIMIT:
            out.append(Finding(
                "warning", "dead-relus", f"{dead:.0%} of the ReLUs of hidden layer {i + 1} are 0 for every row {when}",
                "A unit that is 0 for every input gets no gradient and never recovers (d2l 4.1).",
                "use --init he, a smaller learning rate, or --activation prelu",
            ))  # fmt: skip
    return out


def gradient_findings(grads: list, weights: list, when: str) -> list[Finding]:
    """``gradients-vanish`` when the first layer's relative gradient ``||g|| / ||W||`` (how far one
    unit-lr step moves it) is below ``RELATIVE_GRAD_LOW``; ``gradients-explode`` when a layer's is above
    ``RELATIVE_GRAD_HIGH``."""
    relative = [float(g.norm() / w.detach().norm()) for g, w in zip(grads, weights) if g is not None]
    out = []
    if relative and relative[0] < RELATIVE_GRAD_LOW:
        out.append(Finding(
            "warning", "gradients-vanish",
            f"{when} the first layer's gradient is {relative[0]:.1g} of its weights' norm (last layer: {relative[-1]:.1g})",
            "Gradients that vanish towards the input leave the first layers untrained (d2l 4.8).",
            "use --init xavier or he, or fewer layers",
        ))  # fmt: skip
    if relative and max(relative) > RELATIVE_GRAD_HIGH:
        out.append(Finding(
            "warning", "gradients-explode", f"{when} a layer's gradient is {max(relative):.1g} times its weights' norm",
            "Exploding gradients throw the weights far in one step (d2l 4.8).",
            "use --init xavier or he, or a smaller learning rate",
        ))  # fmt: skip
    return out


# --- during training ------------------------------------------------------------------------------

PROBE_ROWS = 512  # rows the training-time checks look at after each epoch (about 1/100 of an epoch's work)


class DoctorCallback(Callback):
    """Checks during :func:`mlplab.train.fit`, once per epoch, each finding reported once with its epoch.

    Non-finite loss; test accuracy still at chance after an epoch; the fraction of dead ReLUs
    growing past half; the first layer's relative gradient vanishing or exploding. The model is
    read, never changed (one extra forward and backward on ``PROBE_ROWS`` rows per epoch, gradients
    cleared after). ``on_finding`` is called with each new finding (the CLI prints it);
    ``findings`` keeps them all.

    Parameters
    ----------
    model : nn.Module
        The model being trained (a concise one; the dead-unit and gradient checks need autograd).
    X, y : Tensor
        A few training rows, e.g. ``data.train.X[:512]``, on the model's device.
    """

    def __init__(self, model, X, y, on_finding=None) -> None:
        self.model, self.X, self.y = model, X, y
        self.on_finding = on_finding
        self.findings = Findings()
        self._seen: set[str] = set()
        self._k = int(y.max()) + 1 if len(y) else 2

    def _report(self, finding: Finding) -> None:
        if finding.check in self._seen:
            return
        self._seen.add(finding.check)
        self.findings.append(finding)
        if self.on_finding is not None:
            self.on_finding(finding)

    def on_epoch_end(self, record) -> None:
        import torch
        import torch.nn.functional as F

        e = record.epoch
        if not math.isfinite(record.train_loss):
            self._report(Finding("error", "loss-not-finite", f"the training loss became {record.train_loss} in epoch {e}",
                                 "A step overflowed: the learning rate or the initial weights are too large (d2l 4.8).",
                                 "lower --lr by 10x, or use --init xavier / he"))  # fmt: skip
            return
        chance = 1 / self._k
        if record.test_acc is not None and record.test_acc <= chance + 0.02:
            self._report(Finding(
                "warning", "stuck-at-chance", f"test accuracy {record.test_acc:.4f} after epoch {e}, chance is {chance:.2f}",
                "Nothing has been learned yet; if it stays there, the settings stop learning (d2l 4.5, 4.8).",
                "run `mlplab doctor` with these settings, or `mlplab doctor --probe`",
            ))  # fmt: skip
        if not hasattr(self.model, "parameters") or not callable(getattr(self.model, "zero_grad", None)):
            return  # the scratch MLP has no autograd graph to probe
        was_training = self.model.training
        hidden: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: hidden.append(o.detach()))
                 for m in self.model.modules() if isinstance(m, torch.nn.ReLU)]  # fmt: skip
        try:
            self.model.eval()
            loss = F.cross_entropy(self.model(self.X), self.y)
            grads = torch.autograd.grad(loss, [p for p in self.model.parameters() if p.ndim >= 2], allow_unused=True)
        finally:
            for h in hooks:
                h.remove()
            self.model.train(was_training)
        weights = [p for p in self.model.parameters() if p.ndim >= 2]
        for finding in dead_relu_findings(hidden, f"after epoch {e}") + gradient_findings(
            grads, weights, f"after epoch {e}"
        ):
            self._report(finding)


class SweepDoctorCallback:
    """:class:`DoctorCallback`'s checks for every model of a batched sweep, once per epoch.

    A ``mlplab.sweep.batched.GroupCallback``: after each epoch each live classifier of the group is
    read back as its ``nn.Sequential`` (``BatchedMLP.to_module``, a copy: training is untouched)
    and checked on the first ``PROBE_ROWS`` training rows, as ``fit``'s callback checks one model.
    Each check is reported once per model, with its epoch; ``on_finding(trial, finding)`` is called
    for each new one and ``findings`` keeps them all as ``(trial, finding)``.
    """

    def __init__(self, on_finding=None) -> None:
        self.on_finding = on_finding
        self.findings: list[tuple[object, Finding]] = []
        self._watchers: dict[str, DoctorCallback] = {}

    def on_group_begin(self, n_models: int, epochs: int, batches_per_epoch: int) -> None: ...

    def on_batch_end(self, epoch: int, batch: int) -> None: ...

    def on_epoch_end(self, epoch: int, n_alive: int) -> None: ...

    def on_models_epoch(self, epoch, trials, records, model, data) -> None:
        X, y = data.train.X[:PROBE_ROWS], data.train.y[:PROBE_ROWS]
        for k, (trial, record) in enumerate(zip(trials, records)):
            if record is None or trial.train.loss != "cross_entropy":
                continue  # stopped, or a regression (the checks are a classifier's)
            net = model.to_module(k, trial.model).to(X.device)
            watcher = self._watchers.get(trial.key)
            if watcher is None:
                watcher = self._watchers[trial.key] = DoctorCallback(net, X[:, : trial.model.n_inputs], y)
                watcher.on_finding = lambda finding, trial=trial: self._found(trial, finding)
            watcher.model = net
            watcher.on_epoch_end(record)

    def _found(self, trial, finding: Finding) -> None:
        self.findings.append((trial, finding))
        if self.on_finding is not None:
            self.on_finding(trial, finding)
