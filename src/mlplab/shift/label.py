"""Label shift: estimate ``w_y = q(y) / p(y)`` from unlabeled target data, then correct (d2l 4.9.3.2).

Under label shift ``q(x|y) = p(x|y)``, so a classifier ``f`` trained on the source sees the same
inputs per class on the target, and only the class priors move from ``p`` to ``q``.

**BBSE** (black-box shift estimation; Lipton, Wang & Smola 2018). On held-out *source* data the
joint confusion matrix ``C[i, j] = P_source(f(x) = i, y = j)``; on the target the mean prediction
``mu[i] = P_target(f(x) = i)``. Because the target's inputs per class are the source's,

    mu = C w,    w_y = q(y) / p(y),

so ``w`` solves a k x k linear system. We solve it by non-negative least squares and warn
(:class:`IllConditionedWarning`) when ``C`` is ill-conditioned: the error bound of Lipton et al.
grows like ``1 / sigma_min(C)``. ``bbse`` uses hard predictions ``f(x) = argmax``; ``bbse_soft``
the predicted probabilities (the soft confusion matrix ``C[i, j] = E_source[f_i(x) 1{y = j}]``).

**EM** (Saerens, Latinne & Decaestecker 2002). Maximum-likelihood target priors by EM: adjust
every target posterior to the current priors, ``p_t(y|x_i) ∝ f_y(x_i) q(y) / p(y)`` (E step),
and set ``q(y) = mean_i p_t(y|x_i)`` (M step), from ``q = p`` until ``q`` stops moving. EM trusts
the probabilities themselves, so they should be calibrated first: ``calibration="bcts"`` fits
bias-corrected temperature scaling, ``softmax(log f(x) / T + b)``, on the held-out source data
(Alexandari, Kundaje & Shrikumar 2020, "Maximum likelihood with bias-corrected calibration is
hard-to-beat at label shift adaptation"); ``"ts"`` fits ``T`` only (Guo et al. 2017).

**Correction.** Either adjust predictions, ``p_target(y|x) ∝ p(y|x) w_y`` (Bayes' rule with the
new prior; :func:`adjust_predictions`), or retrain with the loss of an example of class ``y``
weighted by ``w_y`` (:func:`mlplab.shift.fit_weighted`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, nnls

from mlplab.errors import ConfigError
from mlplab.shift.inputs import ShiftInputError, check_labels, check_probs, check_weights

LABEL_SHIFT_METHODS = ("bbse", "bbse_soft", "em")
CALIBRATIONS = ("none", "ts", "bcts")
COND_WARN = 100.0  # warn above this condition number of C (the 784-256-10 Fashion-MNIST MLP gives ~2)
LOG_FLOOR = float(np.log(np.finfo(np.float32).tiny))  # log of a probability that underflowed


class IllConditionedWarning(UserWarning):
    """The confusion matrix of BBSE is nearly singular: its weight estimate is unreliable."""


# --- calibration -----------------------------------------------------------------------------


def _log_probs(probs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(probs), LOG_FLOOR)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def calibration_nll(theta: np.ndarray, log_probs: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of calibrated probabilities, and its gradient in ``theta``.

    ``theta = (log T, b_1, ..., b_k)`` (or ``(log T,)`` for temperature scaling);
    ``z = log_probs / T + b`` (n, k); ``nll = mean_i [logsumexp(z_i) - z_{i, y_i}]``.
    With ``G = (softmax(z) - onehot(y)) / n``: ``d nll / d b = sum_i G_i`` and
    ``d nll / d log T = -sum_{i,c} G_ic log_probs_ic / T``.
    """
    n, k = log_probs.shape
    inv_t = np.exp(-theta[0])
    bias = theta[1:] if len(theta) > 1 else np.zeros(k)
    z = log_probs * inv_t + bias  # (n, k)
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))  # (n,)
    nll = float(np.mean(lse - z[np.arange(n), labels]))
    G = _softmax(z)
    G[np.arange(n), labels] -= 1.0
    G /= n  # (n, k)
    grad_log_t = -float(np.sum(G * log_probs)) * inv_t
    grad = np.concatenate([[grad_log_t], G.sum(axis=0)]) if len(theta) > 1 else np.array([grad_log_t])
    return nll, grad


@dataclass(frozen=True)
class Calibration:
    """Fitted (bias-corrected) temperature scaling: ``probs -> softmax(log probs / T + b)``."""

    kind: str  # "ts" (temperature only) or "bcts" (temperature and per-class bias)
    temperature: float  # T > 0; T > 1 softens overconfident probabilities
    bias: np.ndarray = field(repr=False)  # (k,), zeros for "ts", mean zero for "bcts"
    nll_before: float = float("nan")  # mean NLL on the fitting data before calibration
    nll_after: float = float("nan")  # ... and after

    def __call__(self, probs: object) -> np.ndarray:
        """Calibrated probabilities (n, k) of ``probs`` (n, k)."""
        p = check_probs("probs", probs, len(self.bias))
        return _softmax(_log_probs(p) / self.temperature + self.bias)


def fit_calibration(probs: object, labels: object, kind: str = "bcts") -> Calibration:
    """Fit temperature (``"ts"``) or bias-corrected temperature scaling (``"bcts"``) by NLL.

    Parameters
    ----------
    probs : array (n, k)
        Held-out predicted probabilities (rows sum to 1).
    labels : array (n,)
        Their true classes.
    """
    if kind not in ("ts", "bcts"):
        raise ConfigError("calibration", kind, "expected ts or bcts")
    p = check_probs("probs", probs)
    y = check_labels("labels", labels, len(p), p.shape[1])
    logp = _log_probs(p)
    theta0 = np.zeros(1 + (p.shape[1] if kind == "bcts" else 0))
    bounds = [(-5.0, 5.0)] + [(None, None)] * (len(theta0) - 1)  # T in [e^-5, e^5]
    res = minimize(calibration_nll, theta0, args=(logp, y), jac=True, method="L-BFGS-B", bounds=bounds)
    bias = res.x[1:] - res.x[1:].mean() if kind == "bcts" else np.zeros(p.shape[1])
    return Calibration(kind, float(np.exp(res.x[0])), bias, calibration_nll(theta0, logp, y)[0], float(res.fun))


# --- estimators ------------------------------------------------------------------------------


def confusion_matrix(probs: np.ndarray, labels: np.ndarray, soft: bool = False) -> np.ndarray:
    """Joint confusion matrix (k, k): ``C[i, j] = (1/n) sum_n [f(x_n) = i] [y_n = j]``.

    ``soft=True`` replaces the indicator ``[f(x_n) = i]`` by the probability ``f_i(x_n)``.
    """
    n, k = probs.shape
    onehot_y = np.eye(k)[labels]  # (n, k)
    pred = probs if soft else np.eye(k)[probs.argmax(axis=1)]  # (n, k)
    return pred.T @ onehot_y / n


def mean_prediction(probs: np.ndarray, soft: bool = False) -> np.ndarray:
    """``mu[i] = (1/m) sum_m [f(x_m) = i]`` (k,), or the mean probability when ``soft``."""
    k = probs.shape[1]
    return probs.mean(axis=0) if soft else np.bincount(probs.argmax(axis=1), minlength=k) / len(probs)


def em_priors(
    target_probs: np.ndarray, source_priors: np.ndarray, tol: float = 1e-10, max_iter: int = 10_000
) -> tuple[np.ndarray, int]:
    """Saerens et al. (2002) EM for the target priors; returns ``(q, iterations)``.

    E step: ``a_iy ∝ f_y(x_i) q(y) / p(y)``; M step: ``q(y) = mean_i a_iy``; stop when
    ``max_y |q_new(y) - q(y)| < tol``.
    """
    p = source_priors
    q = p.copy()
    for it in range(1, max_iter + 1):
        a = target_probs * (q / p)  # (m, k)
        s = a.sum(axis=1, keepdims=True)
        a = np.divide(a, s, out=np.full_like(a, 1.0 / a.shape[1]), where=s > 0)
        q_new = a.mean(axis=0)
        if np.max(np.abs(q_new - q)) < tol:
            return q_new, it
        q = q_new
    return q, max_iter


@dataclass(frozen=True)
class LabelShiftEstimate:
    """What :func:`fit_label_shift` found. ``weights`` is ``w_y = q(y) / p(y)`` (k,)."""

    weights: np.ndarray  # (k,) estimated q(y) / p(y)
    source_priors: np.ndarray  # (k,) p(y): label frequencies of the held-out source data
    method: str
    calibration: Calibration | None  # applied to source and target probabilities before estimating
    condition_number: float | None = None  # of C (BBSE only)
    residual: float | None = None  # ||C w - mu|| (BBSE); large means the label-shift model misfits
    iterations: int | None = None  # EM iterations

    @property
    def target_priors(self) -> np.ndarray:
        """Estimated ``q(y) = w_y p(y)``, renormalized (k,)."""
        q = self.weights * self.source_priors
        return q / q.sum()


def fit_label_shift(
    source_probs: object,
    source_labels: object,
    target_probs: object,
    method: str = "bbse",
    *,
    calibration: str | None = None,
    cond_warn: float = COND_WARN,
) -> LabelShiftEstimate:
    """Estimate label-shift weights and return them with diagnostics; see :func:`estimate_label_shift`."""
    if method not in LABEL_SHIFT_METHODS:
        raise ConfigError("method", method, f"expected one of {', '.join(LABEL_SHIFT_METHODS)}")
    calibration = "none" if calibration is None else calibration
    if calibration not in CALIBRATIONS:
        raise ConfigError("calibration", calibration, f"expected one of {', '.join(CALIBRATIONS)}")
    ps = check_probs("source_probs", source_probs)
    k = ps.shape[1]
    ys = check_labels("source_labels", source_labels, len(ps), k)
    pt = check_probs("target_probs", target_probs, k)
    counts = np.bincount(ys, minlength=k)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise ShiftInputError(
            f"source_labels has no example of class(es) {missing}: p(y) = 0 there, so q(y)/p(y) is "
            "undefined. Fix: use held-out source data that contains every class"
        )
    p = counts / len(ys)
    cal = None
    if calibration != "none":
        cal = fit_calibration(ps, ys, calibration)
        ps, pt = cal(ps), cal(pt)
    if method == "em":
        q, iters = em_priors(pt, p)
        return LabelShiftEstimate(q / p, p, method, cal, iterations=iters)
    soft = method == "bbse_soft"
    C = confusion_matrix(ps, ys, soft)
    mu = mean_prediction(pt, soft)
    cond = float(np.linalg.cond(C))
    if not cond < cond_warn:
        warnings.warn(
            f"BBSE: the confusion matrix is ill-conditioned (condition number {cond:.3g} > {cond_warn:g}); "
            "the weight estimate is unreliable. Fix: a more accurate classifier, more held-out "
            "source data, or merging classes the classifier confuses",
            IllConditionedWarning,
            stacklevel=2,
        )
    w, residual = nnls(C, mu)
    return LabelShiftEstimate(w, p, method, cal, condition_number=cond, residual=float(residual))


def estimate_label_shift(
    source_probs: object,
    source_labels: object,
    target_probs: object,
    method: str = "bbse",
    *,
    calibration: str | None = None,
    cond_warn: float = COND_WARN,
) -> np.ndarray:
    """Estimate label-shift importance weights ``w_y = q(y) / p(y)``.

    Parameters
    ----------
    source_probs : array (n, k)
        A trained classifier's predicted probabilities on held-out *source* data (not the data it
        was trained on; rows sum to 1).
    source_labels : array (n,)
        The true classes of those examples, integers in ``[0, k)``; every class must occur.
    target_probs : array (m, k)
        The same classifier's probabilities on unlabeled target data.
    method : {"bbse", "bbse_soft", "em"}
        ``bbse``: black-box shift estimation with hard predictions (Lipton et al. 2018);
        ``bbse_soft``: with predicted probabilities; ``em``: Saerens et al. (2002) EM.
    calibration : {None, "none", "ts", "bcts"}
        Calibrate the probabilities on the held-out source data first: temperature scaling or
        bias-corrected temperature scaling (recommended with ``em``; Alexandari et al. 2020).
    cond_warn : float
        BBSE warns (:class:`IllConditionedWarning`) when ``cond(C)`` exceeds this.

    Returns
    -------
    ndarray of shape (k,)
        ``w_y = q(y) / p(y)``, where ``p`` is the label distribution of ``source_labels``.

    Raises
    ------
    ShiftInputError
        Shapes that disagree, rows that are not probabilities, labels out of range, empty arrays,
        a class absent from ``source_labels``.

    Example
    -------
    >>> w = estimate_label_shift(held_out_probs, held_out_y, target_probs, method="em", calibration="bcts")
    >>> corrected = adjust_predictions(target_probs, w)  # or reweight the training loss by w[y]
    """
    return fit_label_shift(
        source_probs, source_labels, target_probs, method, calibration=calibration, cond_warn=cond_warn
    ).weights


def adjust_predictions(probs: object, weights: object) -> np.ndarray:
    """Target posteriors ``p_t(y|x) = p(y|x) w_y / sum_c p(c|x) w_c`` (n, k).

    Bayes' rule with the source prior swapped for the target prior. A row whose every class has
    weight 0 (impossible under the estimated target prior) is returned unchanged.
    """
    p = check_probs("probs", probs)
    w = check_weights("weights", weights, p.shape[1])
    a = p * w
    s = a.sum(axis=1, keepdims=True)
    return np.divide(a, s, out=p.copy(), where=s > 0)


def weight_error(estimated: object, true: object) -> float:
    """Mean squared weight-estimation error ``||w_hat - w||^2 / k``."""
    a = np.asarray(estimated, dtype=np.float64)
    b = np.asarray(true, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ShiftInputError(f"weight vectors of shapes {a.shape} and {b.shape} cannot be compared")
    return float(np.mean((a - b) ** 2))
