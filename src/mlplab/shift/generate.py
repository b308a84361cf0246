"""Making distribution shift on purpose, each kind from an explicit seed (d2l 4.9.1).

Three kinds, each built so that the quantity a correction needs is known exactly:

- **Label shift**: ``q(y) != p(y)`` while ``q(x|y) = p(x|y)``. Target class priors ``q`` come from
  :func:`dirichlet_priors` (Dirichlet(alpha); alpha -> 0 gives a few dominant classes, alpha -> inf
  the uniform prior), :func:`tweak_one_priors` (one class gets ``rho``, the others share ``1 - rho``)
  or :func:`knock_out_priors` (a fraction ``delta`` of one class removed); the two last follow
  Lipton, Wang & Smola (2018), sec. 7. :func:`sample_by_priors` then draws a target sample with
  those priors, and the true weights are ``w_y = q(y) / p(y)``.
- **Covariate shift**: ``q(x) != p(x)`` while ``q(y|x) = p(y|x)``. :func:`covariate_shift_split`
  keeps each example of a pool independently with a probability that depends on an image
  statistic only (sample-selection bias, Zadrozny 2004): ``sigmoid(-s z(x))`` for the source and
  ``sigmoid(+s z(x))`` for the target, with ``z`` the standardized statistic. Then
  ``q(x) / p(x) = (Z_s / Z_t) exp(s z(x))``, known exactly up to the constant that normalizing
  the weights to mean 1 removes. Because the selection depends on ``x`` only, ``p(y|x)`` is
  unchanged: this is covariate shift and nothing else.
- **Concept shift**: ``q(y|x) != p(y|x)``. :func:`concept_mapping` permutes the labels of
  ``n_changed`` classes (a derangement among them) and :func:`relabel` applies it.

Randomness always comes from a ``numpy.random.Generator`` the caller passes (``np.random.default_rng(seed)``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlplab.errors import ConfigError, check_int, check_real
from mlplab.shift.inputs import ShiftInputError, as_numpy, check_weights

LABEL_SHIFTS = ("dirichlet", "tweak-one", "knock-out")


def _check_classes(n_classes: int) -> None:
    check_int("n_classes", n_classes, 2)


def dirichlet_priors(n_classes: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Target class priors ``q ~ Dirichlet(alpha, ..., alpha)``, shape (n_classes,).

    ``alpha = 1`` is uniform over the simplex (the protocol of Lipton et al. 2018 and of the issue);
    smaller alpha gives more extreme shift.
    """
    _check_classes(n_classes)
    check_real("alpha", alpha, 0.0, low_open=True, what="the Dirichlet concentration")
    return rng.dirichlet(np.full(n_classes, float(alpha)))


def tweak_one_priors(n_classes: int, cls: int, rho: float) -> np.ndarray:
    """Class ``cls`` gets prior ``rho``, every other class ``(1 - rho) / (n_classes - 1)``."""
    _check_classes(n_classes)
    if not (0 <= cls < n_classes):
        raise ConfigError("cls", cls, f"the tweaked class must be in [0, {n_classes})")
    if not (isinstance(rho, (int, float)) and 0.0 <= rho <= 1.0):
        raise ConfigError("rho", rho, "the tweaked class's prior must be in [0, 1]")
    q = np.full(n_classes, (1.0 - rho) / (n_classes - 1))
    q[cls] = rho
    return q


def knock_out_priors(source_priors: np.ndarray, cls: int, delta: float) -> np.ndarray:
    """Remove a fraction ``delta`` of class ``cls``: ``q ∝ p`` with ``q_cls ∝ (1 - delta) p_cls``."""
    p = check_weights("source_priors", source_priors)
    if not (0 <= cls < len(p)):
        raise ConfigError("cls", cls, f"the knocked-out class must be in [0, {len(p)})")
    if not (isinstance(delta, (int, float)) and 0.0 <= delta <= 1.0):
        raise ConfigError("delta", delta, "the removed fraction must be in [0, 1]")
    q = p / p.sum()
    q[cls] *= 1.0 - delta
    return q / q.sum()


def label_shift_priors(
    kind: str,
    source_priors: np.ndarray,
    rng: np.random.Generator,
    *,
    alpha: float = 1.0,
    rho: float = 0.5,
    delta: float = 0.8,
) -> np.ndarray:
    """Target priors of one of :data:`LABEL_SHIFTS`; the tweaked/knocked-out class is drawn from ``rng``."""
    p = check_weights("source_priors", source_priors)
    k = len(p)
    if kind == "dirichlet":
        return dirichlet_priors(k, alpha, rng)
    if kind == "tweak-one":
        return tweak_one_priors(k, int(rng.integers(k)), rho)
    if kind == "knock-out":
        return knock_out_priors(p, int(rng.integers(k)), delta)
    raise ConfigError("label shift", kind, f"expected one of {', '.join(LABEL_SHIFTS)}")


def sample_by_priors(labels: np.ndarray, priors: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (n,) into ``labels`` whose class frequencies follow ``priors``, ``p(x|y)`` unchanged.

    Class counts are ``Multinomial(n, priors)``; within class ``y`` the indices are drawn uniformly
    from the pool's examples of ``y``, without replacement while the pool has enough of them and
    with replacement beyond that (Dirichlet(1) priors can ask for 2,500 of a class the 10,000-image
    Fashion-MNIST test set holds 1,000 of). Either way each drawn image is uniform within its class.
    """
    y = as_numpy(labels).astype(np.int64)
    q = check_weights("priors", priors)
    q = q / q.sum()
    check_int("n", n, 1)
    if y.ndim != 1 or len(y) == 0:
        raise ShiftInputError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    counts = rng.multinomial(n, q)
    out = []
    for c in np.flatnonzero(counts):
        pool = np.flatnonzero(y == c)
        if len(pool) == 0:
            raise ShiftInputError(f"class {c} has prior {q[c]:.3g} but no example in the pool")
        out.append(rng.choice(pool, size=counts[c], replace=bool(counts[c] > len(pool))))
    idx = np.concatenate(out)
    return idx[rng.permutation(len(idx))]


# Image statistics for covariate shift; X is (n, d) with pixel values in [0, 1]
STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "brightness": lambda X: X.mean(axis=1),  # mean intensity: linear in x
    "ink": lambda X: (X > 0.5).mean(axis=1),  # fraction of clearly inked pixels
}


def image_statistic(X: object, name: str = "brightness") -> np.ndarray:
    """A per-image statistic (n,) of ``X`` (n, d): ``brightness`` (mean pixel) or ``ink``."""
    if name not in STATISTICS:
        raise ConfigError("statistic", name, f"expected one of {', '.join(STATISTICS)}")
    a = as_numpy(X)
    return STATISTICS[name](a.reshape(len(a), -1)).astype(np.float64)


def sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))  # overflow-free form of 1 / (1 + exp(-t))


def covariate_shift_split(
    source_stat: np.ndarray,
    target_stat: np.ndarray,
    strength: float,
    rng: np.random.Generator,
    center: float | None = None,
    scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selection-biased source and target samples, and the exact density ratio on the source.

    Each source-pool example ``i`` is kept with probability ``sigmoid(-s z_i)`` and each
    target-pool example with ``sigmoid(+s z_i)``, where ``z = (stat - center) / scale`` and
    ``s = strength`` (``center``/``scale`` default to the source pool's median and standard
    deviation). When both pools come from the same distribution, the density ratio is

        q(x) / p(x) = (Z_s / Z_t) * sigmoid(s z) / sigmoid(-s z) = (Z_s / Z_t) * exp(s z),

    returned normalized to mean 1 over the kept source examples (the constant cancels).

    Returns
    -------
    source_idx : ndarray (n_s,)
        Kept indices into the source pool.
    target_idx : ndarray (n_t,)
        Kept indices into the target pool.
    ratio : ndarray (n_s,)
        ``q(x)/p(x)`` at each kept source example, mean 1.
    """
    a = np.asarray(source_stat, dtype=np.float64)
    b = np.asarray(target_stat, dtype=np.float64)
    if not (isinstance(strength, (int, float)) and np.isfinite(strength) and strength >= 0):
        raise ConfigError("strength", strength, "the selection strength must be a finite number >= 0")
    center = float(np.median(a)) if center is None else center
    scale = float(a.std()) if scale is None else scale
    if not scale > 0:
        raise ShiftInputError("the statistic is constant on the source pool; it cannot bias a sample")
    za, zb = (a - center) / scale, (b - center) / scale
    source_idx = np.flatnonzero(rng.random(len(a)) < sigmoid(-strength * za))
    target_idx = np.flatnonzero(rng.random(len(b)) < sigmoid(strength * zb))
    log_ratio = strength * za[source_idx]
    ratio = np.exp(log_ratio - log_ratio.max())
    return source_idx, target_idx, ratio / ratio.mean()


def concept_mapping(n_classes: int, n_changed: int, rng: np.random.Generator) -> np.ndarray:
    """A relabeling (k,): ``n_changed`` random classes are permuted so none keeps its label.

    ``mapping[y]`` is the new label of class ``y``; the other classes keep theirs. The changed
    classes form one cycle, so no two of them merely trade places unless ``n_changed == 2``.
    """
    _check_classes(n_classes)
    if (
        isinstance(n_changed, bool)
        or not isinstance(n_changed, (int, np.integer))
        or not (n_changed == 0 or 2 <= n_changed <= n_classes)
    ):
        raise ConfigError("n_changed", n_changed, f"must be 0 or an integer in [2, {n_classes}]")
    mapping = np.arange(n_classes)
    changed = rng.permutation(n_classes)[:n_changed]
    mapping[changed] = np.roll(changed, 1)  # a single cycle: a derangement of the changed classes
    return mapping


def relabel(labels: object, mapping: np.ndarray) -> np.ndarray:
    """New labels ``mapping[labels]`` (the concept shift ``q(y|x) != p(y|x)``)."""
    y = as_numpy(labels).astype(np.int64)
    m = np.asarray(mapping, dtype=np.int64)
    if len(y) and (y.min() < 0 or y.max() >= len(m)):
        raise ShiftInputError(f"labels lie in [{y.min()}, {y.max()}] but the mapping covers [0, {len(m)})")
    return m[y]
