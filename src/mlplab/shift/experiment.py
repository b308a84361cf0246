"""The distribution-shift study on Fashion-MNIST: generate, detect and correct each kind of shift.

Everything returns results as data (rows of plain dicts, one per seed and variant, ready for
``pandas.DataFrame(result.rows)``); :mod:`mlplab.shift.report` turns them into tables and figures.

Protocol (what is trained on what):

- **Source classifier** (:func:`train_source`): the chapter's 784-256-10 MLP, trained with Adam
  (lr 1e-3, batch 256, 10 epochs: test accuracy about 0.87) on 50,000 training images;
  ``SourceConfig(optimizer="sgd")`` trains it the chapter's way (d2l 4.3: SGD lr 0.1), which
  ends about 0.82-0.84 and less well calibrated. The other 10,000 training images (1,000 per
  class, drawn with the source seed) are the *held-out source* data: never trained on, they give BBSE's confusion
  matrix, the calibration fit, and the concept-shift training examples. One source classifier
  serves every label-shift seed and every concept-shift seed.
- **Label shift** (:func:`label_shift_study`): per seed, target priors ``q`` (Dirichlet(alpha),
  tweak-one or knock-out) and a target sample of ``n_target`` images drawn from the 10,000-image
  *test* set with those priors. The true weights are ``q / p`` with ``p`` the held-out label
  frequencies (uniform). Each estimator gives ``w_hat``; we report ``||w_hat - w||^2 / k`` and
  the target accuracy of the predictions adjusted by ``w_hat``, against the unadjusted ones.
- **Covariate shift** (:func:`covariate_shift_study`): per seed, a source sample selected from the
  60,000 training images with probability ``sigmoid(-s z(x))`` and a target sample from the test
  set with ``sigmoid(+s z(x))``, ``z`` the standardized brightness (see
  :func:`mlplab.shift.covariate_shift_split`). Half the target is the unlabeled input to the
  domain classifier, the other half (labeled) measures target loss. Three MLPs train with the same
  seed: unweighted, weighted by the domain classifier's ``beta``, and weighted by the exact ratio
  (oracle). A second scenario, :func:`gaussian_regression_study`, is the classic case where the
  correction must help: a misspecified linear model under a Gaussian input shift (Shimodaira 2000).
- **Concept shift** (:func:`concept_shift_study`): per seed, ``n_changed`` classes are relabeled;
  ``n_train`` relabeled held-out source images train a fine-tuned copy of the source model and a
  model from scratch; learning curves are measured on the relabeled test set.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlplab.data.batching import Data, Split
from mlplab.errors import MAX_SEED, ConfigError, check_choice, check_int, check_probability, check_real
from mlplab.experiments.base import StoredParts
from mlplab.models import ModelConfig, build_mlp
from mlplab.shift.concept import concept_learning_curves
from mlplab.shift.covariate import DEFAULT_CLIP, covariate_weights, effective_sample_size
from mlplab.shift.generate import (
    LABEL_SHIFTS,
    STATISTICS,
    concept_mapping,
    covariate_shift_split,
    image_statistic,
    label_shift_priors,
    relabel,
    sample_by_priors,
)
from mlplab.shift.label import (
    CALIBRATIONS,
    LABEL_SHIFT_METHODS,
    IllConditionedWarning,
    adjust_predictions,
    fit_calibration,
    fit_label_shift,
    weight_error,
)
from mlplab.shift.weighted import fit_weighted
from mlplab.stats import MeanCI, mean_ci
from mlplab.train import Callback, TrainConfig, fit

Progress = Callable[[str], None]
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
PARTS = ("label", "covariate", "concept")
MAX_TARGET = 10_000  # the target sample is drawn from the 10,000 test images: more would only repeat them


def _quiet(_: str) -> None:
    pass


def _finite_or_none(x: float | None) -> float | None:
    """JSON has no infinity: a singular confusion matrix's condition number is stored as None."""
    return x if x is not None and math.isfinite(x) else None


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(int(s) if isinstance(s, np.integer) else s for s in seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED for s in seeds):
        raise ConfigError("seeds", seeds, f"give one or more integer seeds in [0, {MAX_SEED}]")
    if len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", seeds, "seeds must be distinct")
    return seeds


# --- configs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceConfig:
    """The source classifier and the held-out source data."""

    hidden: tuple[int, ...] = (256,)  # the chapter's 784-256-10 MLP
    epochs: int = 10  # epochs on the 50,000 training images
    optimizer: str = "adam"  # ~0.87 test accuracy after 10 epochs; "sgd": the chapter's recipe, ~0.82-0.84
    lr: float | None = None  # default: 1e-3 for adam/adamw, the chapter's 0.1 for sgd
    batch_size: int = 256
    holdout_per_class: int = 1000  # training images per class never trained on (held-out source)
    seed: int = 0  # initial weights, batch order and which images are held out
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.lr is None:
            object.__setattr__(self, "lr", 0.1 if self.optimizer == "sgd" else 1e-3)
        ModelConfig(hidden=self.hidden)
        self.train_config()
        check_int("holdout_per_class", self.holdout_per_class, 1)

    def model_config(self) -> ModelConfig:
        return ModelConfig(hidden=self.hidden)

    def train_config(self, **changes: object) -> TrainConfig:
        base = dict(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            seed=self.seed,
            device=self.device,
        )
        return TrainConfig(**{**base, **changes})


def parse_estimator(spec: str) -> tuple[str, str]:
    """``"em+bcts"`` -> ``("em", "bcts")``; ``"bbse"`` -> ``("bbse", "none")``."""
    method, _, calibration = spec.partition("+")
    calibration = calibration or "none"
    if method not in LABEL_SHIFT_METHODS or calibration not in CALIBRATIONS:
        raise ConfigError(
            "estimator",
            spec,
            f"expected METHOD[+CALIBRATION], METHOD in {', '.join(LABEL_SHIFT_METHODS)}, "
            f"CALIBRATION in {', '.join(CALIBRATIONS[1:])} (e.g. bbse, em+bcts)",
        )
    return method, calibration


@dataclass(frozen=True)
class LabelShiftConfig:
    """Label shift on the Fashion-MNIST test set."""

    kind: str = "dirichlet"  # dirichlet | tweak-one | knock-out
    alpha: float = 1.0  # Dirichlet concentration
    rho: float = 0.5  # tweak-one: prior of the tweaked class
    delta: float = 0.8  # knock-out: fraction of the class removed
    n_target: int = 5000  # target images drawn from the test set
    seeds: tuple[int, ...] = DEFAULT_SEEDS  # one target prior and sample per seed
    estimators: tuple[str, ...] = ("bbse", "bbse_soft", "bbse+bcts", "em", "em+ts", "em+bcts")  # METHOD[+CALIBRATION]
    retrain_with: str | None = None  # also retrain a class-weighted MLP with this estimator's w_hat

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))
        object.__setattr__(self, "estimators", tuple(self.estimators))
        check_choice("kind", self.kind, LABEL_SHIFTS)
        check_real("alpha", self.alpha, 0.0, low_open=True, what="the Dirichlet concentration")
        for name in ("rho", "delta"):
            check_probability(name, getattr(self, name), one=True)
        check_int("n_target", self.n_target, 1, MAX_TARGET)
        if not self.estimators:
            raise ConfigError("estimators", self.estimators, "give at least one estimator, e.g. bbse")
        for spec in self.estimators:
            parse_estimator(spec)
        if self.retrain_with is not None and self.retrain_with not in self.estimators:
            raise ConfigError("retrain_with", self.retrain_with, f"must be one of the estimators {self.estimators}")


@dataclass(frozen=True)
class CovariateShiftConfig:
    """Selection-biased covariate shift on Fashion-MNIST, and the weighted MLPs that correct it."""

    statistic: str = "brightness"  # the image statistic selection depends on (see STATISTICS)
    strength: float = 2.0  # s in sigmoid(±s z): 0 is no shift
    clip: float | None = DEFAULT_CLIP  # c in min(beta, c); None does not clip
    n_components: int | None = 50  # PCA features of the domain classifier
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    models: tuple[tuple[int, ...], ...] = ((), (256,))  # hidden widths: softmax regression, 784-256-10 MLP
    epochs: int = 10  # Adam epochs of each model
    lr: float = 1e-3
    batch_size: int = 256
    gaussian_n: int = 200  # examples per sample in the Gaussian regression scenario
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))
        object.__setattr__(self, "models", tuple(tuple(h) for h in self.models))
        if not self.models:
            raise ConfigError("models", self.models, "give at least one model, e.g. ((256,),)")
        check_choice("statistic", self.statistic, STATISTICS)
        check_real("strength", self.strength, 0.0, what="the selection strength")
        if self.clip is not None:
            check_real("clip", self.clip, 0.0, low_open=True, what="the weight cap")
        for hidden in self.models:
            ModelConfig(hidden=hidden)
        self.train_config(0)
        check_int("gaussian_n", self.gaussian_n, 1)

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, optimizer="adam", lr=self.lr, seed=seed, device=self.device
        )


@dataclass(frozen=True)
class ConceptShiftConfig:
    """Relabeled classes; fine-tuning against retraining from scratch."""

    n_changed: int = 4  # classes whose labels are permuted (a cycle)
    n_train: tuple[int, ...] = (500, 5000)  # relabeled training examples (from the held-out source)
    epochs: int = 10
    lr: float = 1e-3  # Adam, for both fine-tuning and scratch
    batch_size: int = 64
    seeds: tuple[int, ...] = DEFAULT_SEEDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))
        object.__setattr__(self, "n_train", tuple(self.n_train))
        if not self.n_train:
            raise ConfigError("n_train", self.n_train, "give at least one training-set size")
        for n in self.n_train:
            check_int("n_train", n, 1)
        check_int("n_changed", self.n_changed, 2, 10)
        TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer="adam", lr=self.lr)


@dataclass(frozen=True)
class StudyConfig:
    """The whole study: which parts to run and the config of each."""

    parts: tuple[str, ...] = PARTS
    source: SourceConfig = field(default_factory=SourceConfig)
    label: LabelShiftConfig = field(default_factory=LabelShiftConfig)
    covariate: CovariateShiftConfig = field(default_factory=CovariateShiftConfig)
    concept: ConceptShiftConfig = field(default_factory=ConceptShiftConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        for p in self.parts:
            if p not in PARTS:
                raise ConfigError("parts", p, f"expected some of {', '.join(PARTS)}")

    @classmethod
    def quick(cls, parts: Sequence[str] = PARTS, device: str = "cpu", source_optimizer: str = "adam") -> StudyConfig:
        """A smaller study for a first look, about 40 s on a 2-core machine (38 s measured): 3 seeds, a 3-epoch source
        classifier, covariate shift with softmax regression only (trained as long as in the full
        study: with fewer epochs the weighted model is not converged and the verdict flips)."""
        seeds = (0, 1, 2)
        return cls(
            parts=tuple(parts),
            source=SourceConfig(epochs=3, optimizer=source_optimizer, device=device),
            label=LabelShiftConfig(seeds=seeds),
            covariate=CovariateShiftConfig(seeds=seeds, models=((),), device=device),
            concept=ConceptShiftConfig(seeds=seeds, n_train=(500,), epochs=4),
        )


def part_config(config: StudyConfig, part: str) -> dict:
    """The settings a part's results depend on (stored with them; a resume must match)."""
    if part == "label":
        return {"label": dataclasses.asdict(config.label), "source": dataclasses.asdict(config.source)}
    if part == "covariate":
        return {"covariate": dataclasses.asdict(config.covariate)}
    if part == "concept":
        return {"concept": dataclasses.asdict(config.concept), "source": dataclasses.asdict(config.source)}
    raise ConfigError("part", part, f"expected one of {', '.join(PARTS)}")


# --- results ---------------------------------------------------------------------------------


@dataclass
class PartResult:
    """One part of the study: its config, one row per (seed, variant), and facts about the setup."""

    part: str  # label | covariate | concept
    config: dict  # the part's config (and the source classifier's, where used)
    rows: list[dict]  # plain values only: ready for pandas.DataFrame(rows) or JSON
    info: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PartResult:
        return cls(**data)

    def summary(self, by: Sequence[str], metrics: Sequence[str], level: float = 0.95) -> list[dict]:
        """Mean and CI over seeds of each metric, per group of ``by`` columns (in order of appearance)."""
        return summarize(self.rows, by, metrics, level)


def summarize(rows: Iterable[dict], by: Sequence[str], metrics: Sequence[str], level: float = 0.95) -> list[dict]:
    """Group ``rows`` by the ``by`` columns; per group, a :class:`MeanCI` of each metric over its rows."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[b] for b in by), []).append(r)
    out = []
    for key, members in groups.items():
        entry: dict = dict(zip(by, key))
        for m in metrics:
            values = [r[m] for r in members if r.get(m) is not None]
            entry[m] = mean_ci(values, level) if values else None
        out.append(entry)
    return out


def verdict(diff: MeanCI | None, lower_is_better: bool = True) -> str:
    """``helps`` / ``hurts`` / ``no measurable effect``: does the CI of a paired difference exclude 0?"""
    if diff is None or math.isnan(diff.half_width):
        return "undetermined (fewer than 2 seeds)"
    better, worse = (diff.high < 0, diff.low > 0) if lower_is_better else (diff.low > 0, diff.high < 0)
    return "helps" if better else "hurts" if worse else "no measurable effect"


# --- source classifier -----------------------------------------------------------------------


@dataclass
class Source:
    """The trained source classifier and the data splits around it."""

    model: nn.Module
    train: Split  # what it was trained on (50,000 images with the defaults)
    holdout: Split  # held-out source data (never trained on)
    test: Split  # the Fashion-MNIST test set
    holdout_probs: np.ndarray  # (n_holdout, k) float64 softmax outputs
    test_probs: np.ndarray  # (n_test, k)
    info: dict  # accuracies and timing
    config: SourceConfig  # how it was made (recorded with every result that uses it)


@torch.no_grad()
def predict_probs(model: nn.Module, X: torch.Tensor, batch_size: int = 8192) -> np.ndarray:
    """Softmax probabilities (n, k) as float64, computed in eval mode."""
    was_training = model.training
    model.eval()
    try:
        out = [torch.softmax(model(X[i : i + batch_size]).double(), dim=1) for i in range(0, len(X), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out).cpu().numpy()


def holdout_split(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, holdout): ``per_class`` random examples of every class held out."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        if len(pool) <= per_class:
            raise ConfigError("holdout_per_class", per_class, f"class {c} has only {len(pool)} training examples")
        held.append(rng.choice(pool, per_class, replace=False))
    mask = np.zeros(len(labels), bool)
    mask[np.concatenate(held)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _take(split: Split, idx: np.ndarray, y: np.ndarray | None = None) -> Split:
    t = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(split.X.device)
    labels = split.y.index_select(0, t) if y is None else torch.from_numpy(np.asarray(y, np.int64)).to(split.X.device)
    return Split(split.X.index_select(0, t), labels)


def train_source(
    data: Data,
    config: SourceConfig = SourceConfig(),
    *,
    checkpoint: Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> Source:
    """Train (or, with ``checkpoint``, resume / reload) the source classifier; see the module docstring."""
    t0 = time.perf_counter()
    y = data.train.y.cpu().numpy()
    train_idx, held_idx = holdout_split(y, config.holdout_per_class, config.seed)
    train, holdout = _take(data.train, train_idx), _take(data.train, held_idx)
    net = build_mlp(config.model_config(), torch.Generator().manual_seed(config.seed))
    history = fit(
        net,
        Data(train, data.test),
        config.train_config(),
        callbacks=callbacks,
        checkpoint=checkpoint,
        resume=checkpoint is not None,
    )
    net.to("cpu")
    holdout_probs = predict_probs(net, holdout.X.cpu())
    test_probs = predict_probs(net, data.test.X.cpu())
    info = {
        "n_train": len(train),
        "n_holdout": len(holdout),
        "test_acc": float((test_probs.argmax(1) == data.test.y.cpu().numpy()).mean()),
        "holdout_acc": float((holdout_probs.argmax(1) == holdout.y.cpu().numpy()).mean()),
        "status": history.status,
        "seconds": time.perf_counter() - t0,
    }
    cpu = Data(train, data.test).to("cpu")
    return Source(net, cpu.train, holdout.to("cpu"), cpu.test, holdout_probs, test_probs, info, config)


# --- label shift -----------------------------------------------------------------------------


def label_shift_study(
    source: Source, config: LabelShiftConfig = LabelShiftConfig(), *, progress: Progress = _quiet
) -> PartResult:
    """Label shift of the test set; every estimator of ``config.estimators`` on every seed.

    Rows (one per seed and ``estimator``): ``weight_mse`` (``||w_hat - w||^2 / k``), ``accuracy``
    and ``nll`` of the corrected predictions on the target sample, ``gain`` (accuracy minus the
    uncorrected accuracy of the same seed), ``cond`` (BBSE's condition number). The estimator
    ``none`` (``w_hat = 1``) is the uncorrected baseline and ``none+bcts`` the same on
    BCTS-calibrated probabilities (calibration alone); ``oracle`` adjusts the probabilities by
    the true ``w``, ``oracle+bcts`` the BCTS-calibrated probabilities (the ceiling of every
    ``+bcts`` estimator, whose adjusted predictions are also calibrated ones).
    With ``retrain_with``, ``<estimator> (retrain)`` is an MLP retrained on the source with
    the loss of class ``y`` weighted by ``w_hat[y]``. ``cond`` is None when ``C`` is singular.
    """
    t0 = time.perf_counter()
    ys = source.holdout.y.numpy()
    yt_all = source.test.y.numpy()
    k = source.holdout_probs.shape[1]
    p = np.bincount(ys, minlength=k) / len(ys)
    rows: list[dict] = []
    cond_values = []
    bcts = fit_calibration(source.holdout_probs, ys, "bcts")  # fitted on held-out source only: one for all seeds
    for seed in config.seeds:
        rng = np.random.default_rng(seed)
        q = label_shift_priors(config.kind, p, rng, alpha=config.alpha, rho=config.rho, delta=config.delta)
        idx = sample_by_priors(yt_all, q, config.n_target, rng)
        probs, yt = source.test_probs[idx], yt_all[idx]
        w_true = q / p

        def row(
            name: str, w_hat: np.ndarray, adjusted: np.ndarray, yt=yt, seed=seed, w_true=w_true, **extra: object
        ) -> dict:
            acc = float((adjusted.argmax(1) == yt).mean())
            nll = float(-np.mean(np.log(np.maximum(adjusted[np.arange(len(yt)), yt], 1e-300))))
            return {
                "seed": seed,
                "estimator": name,
                "weight_mse": weight_error(w_hat, w_true),
                "accuracy": acc,
                "nll": nll,
                "w_hat": w_hat.tolist(),
                "w_true": w_true.tolist(),
                **extra,
            }

        base = row("none", np.ones(k), probs)
        rows.append(base)
        calibrated = bcts(probs)
        rows.append(row("none+bcts", np.ones(k), calibrated))  # calibration alone: what +bcts owes to no w
        rows.append(row("oracle", w_true, adjust_predictions(probs, w_true)))
        rows.append(row("oracle+bcts", w_true, adjust_predictions(calibrated, w_true)))
        estimates = {}
        for spec in config.estimators:
            method, calibration = parse_estimator(spec)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IllConditionedWarning)  # its number is recorded instead
                est = fit_label_shift(source.holdout_probs, ys, probs, method, calibration=calibration)
            estimates[spec] = est
            target = probs if est.calibration is None else est.calibration(probs)
            extra = {"cond": _finite_or_none(est.condition_number), "em_iterations": est.iterations}
            if est.calibration is not None:
                extra["temperature"] = est.calibration.temperature
            rows.append(row(spec, est.weights, adjust_predictions(target, est.weights), **extra))
            if est.condition_number is not None:
                cond_values.append(est.condition_number)
        if config.retrain_with is not None:
            w_hat = estimates[config.retrain_with].weights
            net = build_mlp(source.config.model_config(), torch.Generator().manual_seed(source.config.seed))
            fit_weighted(net, source.train, w_hat[source.train.y.numpy()], source.config.train_config())
            net.to("cpu")
            rows.append(row(f"{config.retrain_with} (retrain)", w_hat, predict_probs(net, source.test.X[idx])))
        for r in rows:
            if r["seed"] == seed:
                r["gain"] = r["accuracy"] - base["accuracy"]
        best = min(
            (r for r in rows if r["seed"] == seed and r["estimator"] in config.estimators),
            key=lambda r: r["weight_mse"],
        )
        progress(
            f"label shift seed {seed}: uncorrected acc {base['accuracy']:.4f}; lowest weight error "
            f"{best['estimator']} {best['weight_mse']:.4f} (acc {best['accuracy']:.4f})"
        )
    info = {
        "source": source.info,
        "source_priors": p.tolist(),
        "max_condition_number": _finite_or_none(max(cond_values)) if cond_values else None,
        "target_pool": "Fashion-MNIST test set (10,000 images)",
        "held_out_source": f"{len(ys)} training images never trained on",
    }
    settings = part_config(StudyConfig(source=source.config, label=config), "label")
    return PartResult("label", settings, rows, info, time.perf_counter() - t0)


# --- covariate shift -------------------------------------------------------------------------


def _wls(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least squares with an intercept: ``argmin_b sum_i w_i (y_i - [1, x_i] b)^2``."""
    A = np.column_stack([np.ones(len(X)), X])
    sw = np.sqrt(w)
    return np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[0]


def gaussian_regression_study(
    seeds: Sequence[int] = DEFAULT_SEEDS, n: int = 200, clip: float | None = DEFAULT_CLIP
) -> list[dict]:
    """Covariate shift where correction must help (Shimodaira 2000, sec. 8).

    ``y = -x + x^3 + eps``, ``eps ~ N(0, 0.3^2)``; source ``x ~ N(0.5, 0.5^2)``, target
    ``x ~ N(0, 0.3^2)``; a *linear* model (misspecified). Least squares fits the source region;
    weighting by ``q(x)/p(x)`` (known in closed form here, or estimated by :func:`covariate_weights`
    from unlabeled target inputs) fits the target region. Rows: ``variant`` in unweighted /
    weighted / oracle, ``target_mse`` on 10,000 fresh target examples, ``ess_fraction``.
    """
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        xs = rng.normal(0.5, 0.5, n)
        ys = -xs + xs**3 + rng.normal(0, 0.3, n)
        xt_unlabeled = rng.normal(0.0, 0.3, n)
        xt = rng.normal(0.0, 0.3, 10_000)
        yt = -xt + xt**3 + rng.normal(0, 0.3, 10_000)
        log_q = -0.5 * (xs / 0.3) ** 2 - np.log(0.3)
        log_p = -0.5 * ((xs - 0.5) / 0.5) ** 2 - np.log(0.5)
        oracle = np.exp(log_q - log_p)
        # log q/p of two Gaussians is quadratic in x: with features (x, x^2) the logistic
        # regression can represent it exactly
        beta = covariate_weights(
            np.column_stack([xs, xs**2]),
            np.column_stack([xt_unlabeled, xt_unlabeled**2]),
            clip,
            n_components=None,
            seed=seed,
        )
        for variant, w in (("unweighted", np.ones(n)), ("weighted", beta), ("oracle", oracle)):
            b = _wls(xs[:, None], ys, w)
            mse = float(np.mean((yt - b[0] - b[1] * xt) ** 2))
            rows.append(
                {
                    "scenario": "gaussian-regression",
                    "seed": seed,
                    "variant": variant,
                    "target_loss": mse,
                    "ess_fraction": effective_sample_size(w) / n,
                    "n_source": n,
                    "n_target": n,
                }
            )
    return rows


def model_name(hidden: Sequence[int]) -> str:
    """``()`` -> ``softmax-regression``, ``(256,)`` -> ``mlp-256``."""
    return "mlp-" + "-".join(map(str, hidden)) if hidden else "softmax-regression"


def covariate_shift_study(
    data: Data, config: CovariateShiftConfig = CovariateShiftConfig(), *, progress: Progress = _quiet
) -> PartResult:
    """Selection-biased brightness shift on Fashion-MNIST, plus the Gaussian regression scenario.

    Fashion-MNIST rows (``scenario="fashion-mnist"``, one per seed, ``model`` of
    ``config.models`` and ``variant`` in unweighted / weighted / oracle): ``target_loss`` and
    ``target_acc`` on the labeled half of the target sample, ``loss_change`` (minus the unweighted
    loss of the same seed and model), ``ess_fraction`` = effective sample size / n of the weights,
    ``log_ratio_corr`` the correlation between ``log beta`` and the exact log density ratio,
    ``clipped`` the fraction of weights at the cap. One domain classifier per seed serves every model.
    """
    t0 = time.perf_counter()
    data = data.to("cpu")
    Xs_all, Xt_all = data.train.X.numpy(), data.test.X.numpy()
    stat_s = image_statistic(Xs_all, config.statistic)
    stat_t = image_statistic(Xt_all, config.statistic)
    rows = gaussian_regression_study(config.seeds, config.gaussian_n, config.clip)
    for r in rows:
        r["model"] = "linear"
    for seed in config.seeds:
        rng = np.random.default_rng(seed)
        src_idx, tgt_idx, ratio = covariate_shift_split(stat_s, stat_t, config.strength, rng)
        tgt_idx = rng.permutation(tgt_idx)
        half = len(tgt_idx) // 2
        unlabeled, labeled = np.sort(tgt_idx[:half]), np.sort(tgt_idx[half:])
        t1 = time.perf_counter()
        beta = covariate_weights(
            Xs_all[src_idx], Xt_all[unlabeled], config.clip, n_components=config.n_components, seed=seed
        )
        weight_seconds = time.perf_counter() - t1
        corr = float(np.corrcoef(np.log(beta), np.log(ratio))[0, 1])
        source, target = _take(data.train, src_idx), _take(data.test, labeled)
        variants = (("unweighted", np.ones(len(src_idx))), ("weighted", beta), ("oracle", ratio))
        for hidden in config.models:
            losses = {}
            for variant, w in variants:
                net = build_mlp(ModelConfig(hidden=hidden), torch.Generator().manual_seed(seed))
                history = fit_weighted(net, source, w, config.train_config(seed), eval_split=target)
                weighted = variant == "weighted"
                losses[variant] = history.final.test_loss
                rows.append(
                    {
                        "scenario": "fashion-mnist",
                        "model": model_name(hidden),
                        "seed": seed,
                        "variant": variant,
                        "target_loss": history.final.test_loss,
                        "target_acc": history.final.test_acc,
                        "ess_fraction": effective_sample_size(w) / len(w),
                        "n_source": len(src_idx),
                        "n_target": len(unlabeled),
                        "n_target_eval": len(labeled),
                        "log_ratio_corr": corr if weighted else None,
                        "clipped": float(np.mean(beta >= config.clip)) if weighted and config.clip else None,
                        "weight_seconds": weight_seconds if weighted else None,
                    }
                )
            progress(
                f"covariate shift seed {seed}, {model_name(hidden)}: target loss unweighted "
                f"{losses['unweighted']:.4f}, weighted {losses['weighted']:.4f}, oracle {losses['oracle']:.4f} "
                f"(ESS of beta {effective_sample_size(beta) / len(beta):.2f} n)"
            )
    base = {(r["scenario"], r["model"], r["seed"]): r["target_loss"] for r in rows if r["variant"] == "unweighted"}
    for r in rows:
        r["loss_change"] = r["target_loss"] - base[(r["scenario"], r["model"], r["seed"])]
    return PartResult(
        "covariate",
        part_config(StudyConfig(covariate=config), "covariate"),
        rows,
        {
            "selection": "source: training set, kept w.p. sigmoid(-s z); target: test set, "
            "kept w.p. sigmoid(+s z); z = standardized " + config.statistic
        },
        time.perf_counter() - t0,
    )


# --- concept shift ---------------------------------------------------------------------------


def concept_shift_study(
    source: Source, config: ConceptShiftConfig = ConceptShiftConfig(), *, progress: Progress = _quiet
) -> PartResult:
    """Fine-tuning versus retraining after relabeling; one row per (seed, n_train, mode, epoch)."""
    t0 = time.perf_counter()
    k = source.holdout_probs.shape[1]
    rows = []
    mappings = {}
    for seed in config.seeds:
        rng = np.random.default_rng(seed)
        mapping = concept_mapping(k, config.n_changed, rng)
        mappings[seed] = mapping.tolist()
        test = Split(source.test.X, torch.from_numpy(relabel(source.test.y.numpy(), mapping)))
        for n in config.n_train:
            if n > len(source.holdout):
                raise ConfigError("n_train", n, f"at most the {len(source.holdout)} held-out source images")
            idx = rng.choice(len(source.holdout), n, replace=False)
            train = _take(source.holdout, idx, relabel(source.holdout.y.numpy()[idx], mapping))
            tc = TrainConfig(
                epochs=config.epochs,
                batch_size=config.batch_size,
                optimizer="adam",
                lr=config.lr,
                seed=seed,
                device=source.config.device,
            )
            curves = concept_learning_curves(source.model, source.config.model_config(), train, test, tc)
            for c in curves:
                for epoch, (acc, loss) in enumerate(zip(c.test_acc, c.test_loss)):
                    rows.append(
                        {"seed": seed, "n_train": n, "mode": c.mode, "epoch": epoch, "test_acc": acc, "test_loss": loss}
                    )
            finals = {c.mode: c.test_acc[-1] for c in curves}
            progress(
                f"concept shift seed {seed}, {n} relabeled: final accuracy "
                + ", ".join(f"{m} {a:.4f}" for m, a in finals.items())
            )
    settings = part_config(StudyConfig(source=source.config, concept=config), "concept")
    return PartResult(
        "concept", settings, rows, {"mappings": mappings, "source": source.info}, time.perf_counter() - t0
    )


# --- the whole study -------------------------------------------------------------------------


def run_study(
    data: Data,
    config: StudyConfig = StudyConfig(),
    *,
    progress: Progress = _quiet,
    source_checkpoint: Path | None = None,
    done: dict[str, PartResult] | None = None,
    on_part: Callable[[PartResult], None] | None = None,
    parts: StoredParts | None = None,
) -> dict[str, PartResult]:
    """Run ``config.parts``; returns part name -> :class:`PartResult`.

    ``done`` holds parts already finished: they are returned as they are, not rerun. With
    ``parts`` (:class:`mlplab.experiments.base.StoredParts`, e.g. ``StoredParts("runs/shift")``)
    a part stored there with the same settings is loaded instead of rerun, one stored with other
    settings is refused, and each part is saved there as it finishes, so an interrupted study
    continues where it stopped. ``on_part`` is called with each part as it finishes.
    """
    results = dict(done or {})
    for part in config.parts if parts is not None else ():
        found = parts.load(part, part_config(config, part)) if part not in results else None
        if found is not None:
            results[part] = PartResult.from_dict(found)
    source = None
    if any(p in ("label", "concept") and p not in results for p in config.parts):
        progress("training the source classifier")
        source = train_source(data, config.source, checkpoint=source_checkpoint)
        progress(
            f"source classifier: test accuracy {source.info['test_acc']:.4f}, "
            f"held-out accuracy {source.info['holdout_acc']:.4f} ({source.info['seconds']:.1f} s)"
        )
    for part in config.parts:
        if part in results:
            continue
        if part == "label":
            result = label_shift_study(source, config.label, progress=progress)
        elif part == "covariate":
            result = covariate_shift_study(data, config.covariate, progress=progress)
        else:
            result = concept_shift_study(source, config.concept, progress=progress)
        results[part] = result
        if parts is not None:
            parts.save(part, result.to_dict())
        if on_part is not None:
            on_part(result)
    return results
