"""What each part of the report runs, and what it hands to the page: a :class:`PartOutput`.

A part is one experiment of :mod:`mlplab.experiments` (run through its store: a rerun with nothing
changed trains nothing), the distribution-shift study (its parts stored as JSON), the House Prices
cross-validation (stored as JSON with the settings and data it came from), or a check computed on
the spot in float64 (the pReLU derivative, the tanh identity, the L1 update, the scratch gradients
against autograd, the memory kept for the backward pass: under a second each).

Every part returns its conclusions (:class:`mlplab.experiments.base.Conclusion`, the keyed ones
read by the verdicts of :mod:`mlplab.report.chapter`), its figures as PNG files and its tables; a
part that cannot run here (no House Prices data, Fashion-MNIST-only work on synthetic data) says
why and how to fix it in :attr:`PartOutput.skipped` instead of failing the whole report.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch
from torch.nn import functional as F

from mlplab.errors import DataError
from mlplab.experiments.base import Conclusion, StoredParts, comparison
from mlplab.stats import paired

if TYPE_CHECKING:
    from mlplab.report.core import ReportConfig


@dataclass(frozen=True)
class Figure:
    """A figure of a part: its title and the PNG file it was drawn into."""

    title: str
    path: Path


@dataclass(frozen=True)
class Table:
    """A table of a part and, when it is stored, the CSV file that holds it."""

    name: str
    frame: pd.DataFrame
    csv: Path | None = None


@dataclass
class PartOutput:
    """What one part hands to the page."""

    name: str  # e.g. "mlp-hidden", "backprop"
    title: str
    command: str  # the command that reruns this part alone
    seconds: float = 0.0  # wall time of this part in this report run (stores reused: seconds)
    conclusions: list[Conclusion] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # Markdown (the shift study's own tables)
    skipped: str | None = None  # why this part did not run, and the fix

    def finding(self, key: str) -> Conclusion | None:
        """The conclusion named ``key``, or None (see :attr:`mlplab.experiments.base.Conclusion.key`)."""
        return next((c for c in self.conclusions if c.key == key), None)


PartRunner = Callable[["ReportConfig"], PartOutput]


def _flags(config: ReportConfig) -> str:
    return (" --quick" if config.quick else "") + ("" if config.device == "cpu" else f" --device {config.device}")


# ---- the experiments -------------------------------------------------------------------------


def experiment(name: str) -> PartRunner:
    """The part that runs experiment ``name`` into ``OUT/runs/NAME`` (reusing what is stored there)."""

    def run(config: ReportConfig) -> PartOutput:
        from mlplab import experiments

        module = experiments.module(name)
        out = config.runs / name
        command = f"mlplab run {name}{_flags(config)} --out {out}" + (" --synthetic" if config.synthetic else "")
        settings = module.Config(
            quick=config.quick,
            device=config.device,
            out=str(out),
            data="synthetic" if config.synthetic else "fashion-mnist",
            data_dir=config.data_dir,
            progress=config.progress,
        )
        result = module.run(settings)
        folder = result.save(settings.folder(name))
        return PartOutput(
            name,
            experiments.summary(name),
            command,
            conclusions=list(result.conclusions),
            figures=[Figure(f.title or f.name, folder / "figures" / f"{f.name}.png") for f in result.figures],
            tables=[Table(key, frame, folder / "tables" / f"{key}.csv") for key, frame in result.tables.items()],
        )

    return run


# ---- checks computed on the spot (float64, a second at most) ---------------------------------


def activation_checks(config: ReportConfig) -> PartOutput:
    """d2l 4.1's exercises 1 and 3: the pReLU derivative and tanh(x) + 1 = 2 sigmoid(2x), checked numerically."""
    from mlplab.scratch.activations import prelu_grad

    x = torch.linspace(-20, 20, 40_001, dtype=torch.float64)
    x = x[x != 0].requires_grad_(True)  # the derivative jumps at 0: undefined there
    alpha = torch.tensor([0.25], dtype=torch.float64)
    (by_autograd,) = torch.autograd.grad(F.prelu(x, alpha).sum(), x)
    the_log = torch.where(x >= 0, 1.0, alpha)  # the log's answer: 1 for x >= 0, alpha for x < 0
    x = x.detach()
    log_error = float((by_autograd - the_log).abs().max())
    scratch_error = float((by_autograd - prelu_grad(x, alpha)).abs().max())
    identity_error = float((torch.tanh(x) + 1 - 2 * torch.sigmoid(2 * x)).abs().max())
    n = len(x)
    table = pd.DataFrame(
        [
            {"check": "d/dx pReLU(x), the log's formula vs autograd", "points": n, "max_abs_difference": log_error},
            {"check": "d/dx pReLU(x), mlplab.scratch vs autograd", "points": n, "max_abs_difference": scratch_error},
            {"check": "tanh(x) + 1 - 2 sigmoid(2x)", "points": n, "max_abs_difference": identity_error},
        ]
    )
    points = f"{n:,} points of [-20, 20] (0 left out), float64"
    span = f"{points}, alpha = 0.25"
    conclusions = [
        Conclusion(
            f"the log's pReLU derivative (1 for x >= 0, alpha below) equals autograd's to {log_error:.1e} on {span}",
            {"max_abs_difference": log_error, "points": n},
            "prelu-derivative",
        ),
        Conclusion(
            f"tanh(x) + 1 - 2 sigmoid(2x) is at most {identity_error:.1e} in magnitude on {points}: "
            "rounding error only. The proof: 2 sigmoid(2x) - 1 = (1 - e^(-2x)) / (1 + e^(-2x)) = tanh(x)",
            {"max_abs_difference": identity_error, "points": n},
            "tanh-identity",
        ),
    ]
    return PartOutput("activation-checks", "d2l 4.1's exercises checked numerically", "mlplab report --sections mlp",
                      conclusions=conclusions, tables=[Table("activation_checks", table)])  # fmt: skip


def l1_update(config: ReportConfig) -> PartOutput:
    """d2l 4.5's exercise 3: one SGD step on ``squared loss + lambda ||w||_1``, by autograd and by two formulas."""
    g = torch.Generator().manual_seed(0)
    n, d, lr, lam = 5, 200, 0.003, 3.0  # the chapter's batch 5, 200 features and lr 0.003
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    b = torch.zeros((), dtype=torch.float64)
    wt = w.clone().requires_grad_(True)
    loss = ((X @ wt + b - y) ** 2 / 2).mean() + lam * wt.abs().sum()
    (grad,) = torch.autograd.grad(loss, wt)
    step = w - lr * grad  # what SGD does
    data_grad = X.T @ (X @ w + b - y) / n
    the_log = w - lr * lam - lr * data_grad  # the log's: w <- w - eta lambda - eta/|B| sum x (w x + b - y)
    with_sign = w - lr * lam * torch.sign(w) - lr * data_grad
    log_error, sign_error = float((step - the_log).abs().max()), float((step - with_sign).abs().max())
    negative = w < 0
    differs = (step - the_log).abs() > 1e-12
    wrong = int(differs.sum())
    table = pd.DataFrame(
        [
            {"update": "the log's: w - eta*lambda - eta*grad", "max_abs_difference_from_autograd": log_error,
             "weights_that_differ": wrong},
            {"update": "w - eta*lambda*sign(w) - eta*grad", "max_abs_difference_from_autograd": sign_error,
             "weights_that_differ": int(((step - with_sign).abs() > 1e-12).sum())},
        ]
    )  # fmt: skip
    text = (
        f"one SGD step (eta {lr:g}, lambda {lam:g}, {d} weights, batch {n}) on the L1-penalized loss: the log's update "
        f"differs from autograd's on {wrong} of {d} weights, by up to {log_error:.2g} (2 eta lambda = "
        f"{2 * lr * lam:.2g}); "
        + (f"they are exactly the {int(negative.sum())} negative weights, which it pushes away from 0"
           if torch.equal(differs, negative) else f"{int(negative.sum())} weights are negative")
        + f"; with sign(w) in place of 1 it matches to {sign_error:.1e}: the gradient of lambda |w| is lambda sign(w)"
    )  # fmt: skip
    values = {"log_error": log_error, "sign_error": sign_error, "negative": int(negative.sum()), "differ": wrong,
              "weights": d}  # fmt: skip
    return PartOutput("l1-update", "d2l 4.5's exercise 3: the L1 update checked by autograd",
                      "mlplab report --sections weight-decay", conclusions=[Conclusion(text, values, "l1-update")],
                      tables=[Table("l1_update", table)])  # fmt: skip


def _autograd_grads(net, X: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The gradients of the scratch MLP ``net``'s loss (no dropout) by torch.autograd, in ``net.params`` order."""
    params = [p.detach().clone().requires_grad_(True) for p in net.params]
    L, A = net.n_layers, X
    for l in range(L - 1):
        Z = A @ params[2 * l] + params[2 * l + 1]
        if net.activation == "prelu":
            A = F.prelu(Z, params[2 * L + l])
        else:
            A = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[net.activation](Z)
    logits = A @ params[2 * L - 2] + params[2 * L - 1]
    return list(torch.autograd.grad(F.cross_entropy(logits, y), params))


def backprop_checks(config: ReportConfig) -> PartOutput:
    """d2l 4.7: the hand-written backward pass against autograd, the memory training keeps, a gradient's shape."""
    from mlplab.resources import format_bytes
    from mlplab.scratch.mlp import MLP

    g = torch.Generator().manual_seed(0)
    X = torch.randn(16, 20, generator=g, dtype=torch.float64)
    y = torch.randint(5, (16,), generator=g)
    rows = []
    for activation in ("relu", "sigmoid", "tanh", "prelu"):
        net = MLP([20, 16, 12, 5], activation, init="xavier", generator=torch.Generator().manual_seed(1),
                  dtype=torch.float64)  # fmt: skip
        _, grads = net.loss_and_grads(X, y)
        for name, mine, ref in zip(net.param_names(), grads, _autograd_grads(net, X, y)):
            rel = float((mine - ref).abs().max() / ref.abs().max().clamp_min(1e-300))
            rows.append({"activation": activation, "parameter": name, "shape": "x".join(map(str, ref.shape)),
                         "max_relative_error": rel})  # fmt: skip
    grads = pd.DataFrame(rows)
    worst = grads.loc[grads["max_relative_error"].idxmax()]

    memory = []
    batch = 256
    for dropout in (0.0, 0.5):
        net = MLP([784, 256, 256, 10], "relu", dropout=dropout or None, generator=torch.Generator().manual_seed(0))
        _, tape = net.forward_train(torch.rand(batch, 784, generator=g))
        kept = tape.nbytes() + batch * 10 * 4  # and the gradient by the logits that the loss hands back
        memory.append({"model": "784-256-256-10 relu", "dropout": dropout, "batch": batch,
                       "kept_for_backward_bytes": kept, "per_example_bytes": kept / batch,
                       "formula_per_example_bytes": net.saved_bytes_per_sample(),
                       "parameter_bytes": 4 * net.num_params()})  # fmt: skip
    memory = pd.DataFrame(memory)
    high = memory.iloc[-1]

    n, m = 3, 4
    Xm = torch.randn(n, m, generator=g, dtype=torch.float64, requires_grad=True)
    (dX,) = torch.autograd.grad((torch.sin(Xm) * Xm).sum(), Xm)  # a scalar f(X)
    shape = tuple(dX.shape)
    conclusions = [
        Conclusion(
            f"the hand-written backward pass (mlplab.scratch.MLP, 20-16-12-5, batch 16, float64) equals autograd's "
            f"gradients for relu, sigmoid, tanh and prelu: the largest relative error over every parameter is "
            f"{worst['max_relative_error']:.1e} ({worst['activation']}, {worst['parameter']})",
            {"max_relative_error": float(worst["max_relative_error"]), "checked": len(grads)},
            "gradients",
        ),
        Conclusion(
            f"training keeps {format_bytes(high['kept_for_backward_bytes'])} of activations and masks for the "
            f"backward pass of one batch of {batch} ({high['per_example_bytes']:.0f} bytes per example, the formula "
            f"says {high['formula_per_example_bytes']}) through {high['model']} with dropout 0.5; prediction keeps "
            "none of it (each layer can be freed once the next is computed): why training needs more memory",
            {"kept": int(high["kept_for_backward_bytes"]), "per_example": float(high["per_example_bytes"]),
             "formula": int(high["formula_per_example_bytes"])},
            "memory",
        ),
        Conclusion(
            f"for a scalar f of an {n} x {m} matrix X, autograd's df/dX has shape {shape[0]} x {shape[1]}: "
            "the shape of X itself",
            {"shape": list(shape), "input": [n, m]},
            "gradient-shape",
        ),
    ]  # fmt: skip
    return PartOutput("backprop", "d2l 4.7: the backward pass checked, the memory it needs",
                      "mlplab report --sections backprop", conclusions=conclusions,
                      tables=[Table("gradients", grads), Table("memory", memory)])  # fmt: skip


# ---- the distribution-shift study ------------------------------------------------------------


def shift(config: ReportConfig) -> PartOutput:
    """The distribution-shift study (label, covariate, concept), resumed from ``OUT/runs/shift``."""
    from mlplab.data import fashion_mnist_data
    from mlplab.plots import save_figure
    from mlplab.shift.experiment import CovariateShiftConfig, SourceConfig, StudyConfig, run_study
    from mlplab.shift.report import concept_figure, study_markdown

    out = config.runs / "shift" / ("quick" if config.quick else "full")
    command = f"mlplab shift run{_flags(config)} --out {out} --resume"
    part = PartOutput("shift", "d2l 4.9: label, covariate and concept shift, detected and corrected", command)
    if config.synthetic:
        part.skipped = "the study shifts Fashion-MNIST itself: not run on synthetic data (leave out --synthetic)"
        return part
    if config.quick:
        study = StudyConfig.quick(device=config.device)
    else:
        study = StudyConfig(
            source=SourceConfig(device=config.device), covariate=CovariateShiftConfig(device=config.device)
        )
    data = fashion_mnist_data(config.data_dir, device=config.device)
    results = run_study(data, study, source_checkpoint=out / "source.pt", parts=StoredParts(out))
    part.notes.append(study_markdown(results))
    if "concept" in results:
        path = save_figure(concept_figure(results["concept"]), out / "concept_curves.png")
        part.figures.append(Figure("concept shift: accuracy against relabeled examples", path))
    return part


# ---- House Prices ----------------------------------------------------------------------------


HOUSE_FOLDS, HOUSE_SEED = 5, 0  # the cross-validation of the report: mlplab house cv's defaults


def _digest(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()).hexdigest()[:16]


def house(config: ReportConfig) -> PartOutput:
    """The House Prices models under the strict cross-validation (d2l 4.10), stored in ``OUT/runs/house``."""
    from mlplab.house import load
    from mlplab.house.cv import DEFAULT_MODELS, cross_validate

    command = "mlplab house cv" + (f" --data-dir {config.house_dir}" if config.house_dir else "")
    part = PartOutput("house", "d2l 4.10: House Prices, the book's baseline against mlplab's models", command)
    try:
        data = load(config.house_dir)
    except DataError as error:
        part.skipped = f"no House Prices data: {error} (mlplab report takes that folder as --house-dir)"
        return part
    folds, seed = HOUSE_FOLDS, HOUSE_SEED
    settings = {"models": list(DEFAULT_MODELS), "folds": folds, "seed": seed, "train": _digest(data.train)}
    store = StoredParts(config.runs / "house")
    stored = store.load("cv", settings)
    if stored is None:
        report = cross_validate(data.train, DEFAULT_MODELS, folds, seed, progress=config.progress or None)
        stored = {"config": settings, "seconds": report.seconds,
                  "scores": [{"name": s.name, "fold_scores": list(s.fold_scores), "seconds": s.seconds}
                             for s in report.scores]}  # fmt: skip
        store.save("cv", stored)
    scores = {s["name"]: s["fold_scores"] for s in stored["scores"]}
    table = pd.DataFrame(
        [{"model": s["name"], "mean_log_rmse": sum(s["fold_scores"]) / folds,
          "std_log_rmse": float(pd.Series(s["fold_scores"]).std(ddof=0)),
          "folds": " ".join(f"{v:.4f}" for v in s["fold_scores"]), "seconds": s["seconds"]}
         for s in stored["scores"]]
    )  # fmt: skip
    for other in ("baseline", "mlp"):
        if "best" in scores and other in scores:
            p = paired(dict(enumerate(scores["best"])), dict(enumerate(scores[other])), labels=("best", other),
                       metric="log-RMSE", higher_is_better=False)  # fmt: skip
            c = comparison(p)
            part.conclusions.append(
                Conclusion(
                    c.text.replace(f"{folds} seeds", f"the {folds} folds of shuffle {seed}"),
                    c.values,
                    f"best-vs-{other}",
                )  # fmt: skip
            )
    part.tables.append(Table("cv", table, store.path("cv")))
    return part


# ---- helpers for the verdicts -----------------------------------------------------------------


def finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def findings(parts: Mapping[str, PartOutput]) -> dict[str, Conclusion]:
    """Every keyed conclusion of ``parts`` as ``"PART:KEY"`` -> Conclusion."""
    return {f"{name}:{c.key}": c for name, part in parts.items() for c in part.conclusions if c.key}


def elapsed(runner: PartRunner, config: ReportConfig) -> PartOutput:
    """Run one part and record its wall time."""
    t0 = time.perf_counter()
    part = runner(config)
    part.seconds = time.perf_counter() - t0
    return part
