"""Anytime confidence intervals of the scenarios' accuracies: Hoeffding's bound for
U-statistics in its Chernoff (KL) form, with a union bound over scenarios and rounds."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["per_test_delta", "radius", "effective_terms", "kl_bounds", "intervals"]

#: bisection steps of the KL bounds (2**-40: far below any accuracy resolution)
_KL_BISECTIONS = 40
_KL_EDGE = 1e-15


def per_test_delta(confidence: float, n_scenarios: int, n_rounds: int) -> float:
    """Error probability of one interval so that all ``n_scenarios x n_rounds`` hold together
    with probability ``confidence`` (union bound)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return (1.0 - confidence) / max(1, n_scenarios * n_rounds)


def radius(n_questions, n_samples, g, delta: float) -> np.ndarray:
    """Hoeffding radius for the mean over questions of an order-``g`` U-statistic from
    ``n_samples`` per question; infinite where ``g > n_samples`` (no estimate)."""
    terms = effective_terms(n_questions, n_samples, g)
    with np.errstate(divide="ignore"):
        return np.where(terms > 0, np.sqrt(math.log(2.0 / delta) / (2.0 * np.maximum(terms, 1))), np.inf)


def effective_terms(n_questions, n_samples, g) -> np.ndarray:
    """``Q * floor(n / g)``: the number of independent [0, 1] terms the mean over questions of
    an order-``g`` U-statistic is bounded as (Hoeffding 1963, section 5)."""
    blocks = np.floor_divide(np.asarray(n_samples, dtype=np.int64), np.asarray(g, dtype=np.int64))
    return np.asarray(n_questions, dtype=float) * blocks


def _kl_bernoulli(p, q):
    """kl(p || q) of Bernoulli distributions (elementwise, 0 log 0 = 0)."""
    p = np.clip(p, 0.0, 1.0)
    q = np.clip(q, _KL_EDGE, 1.0 - _KL_EDGE)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0.0)
        b = np.where(p < 1, (1 - p) * np.log(np.where(p < 1, 1 - p, 1) / (1 - q)), 0.0)
    return a + b


def kl_bounds(mean, terms, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Chernoff-Hoeffding (KL) confidence bounds for the mean of ``terms`` independent [0, 1]
    variables, each side at error ``delta / 2``: every q with ``terms * kl(mean, q) <= ln(2 /
    delta)`` (Hoeffding 1963, Theorem 1, which holds for variables of different means; the
    bounds of KL-UCB, Garivier and Cappe 2011). Much tighter than the additive radius near 0
    and 1; [0, 1] where ``terms`` is 0."""
    mean = np.clip(np.asarray(mean, dtype=float), 0.0, 1.0)
    terms = np.asarray(terms, dtype=float)
    mean, terms = np.broadcast_arrays(mean, terms)
    level = np.where(terms > 0, math.log(2.0 / delta) / np.maximum(terms, 1), np.inf)
    lo_a, lo_b = np.zeros_like(mean), mean.copy()  # kl(mean, q) decreases on [0, mean]
    hi_a, hi_b = mean.copy(), np.ones_like(mean)  # and increases on [mean, 1]
    for _ in range(_KL_BISECTIONS):
        mid = (lo_a + lo_b) / 2
        inside = _kl_bernoulli(mean, mid) <= level
        lo_b, lo_a = np.where(inside, mid, lo_b), np.where(inside, lo_a, mid)
        mid = (hi_a + hi_b) / 2
        inside = _kl_bernoulli(mean, mid) <= level
        hi_a, hi_b = np.where(inside, mid, hi_a), np.where(inside, hi_b, mid)
    return np.where(np.isfinite(level), lo_a, 0.0), np.where(np.isfinite(level), hi_b, 1.0)


def intervals(accuracy, n_questions, n_samples, g, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) bounds of every scenario's accuracy at error ``delta``: KL bounds over
    ``Q * floor(n / G)`` terms; [0, 1] where not estimable (``G > n`` or no estimate)."""
    acc = np.asarray(accuracy, dtype=float)
    terms = effective_terms(n_questions, n_samples, g)
    known = np.isfinite(acc) & (terms > 0)
    lo, hi = kl_bounds(np.where(known, acc, 0.5), np.where(known, terms, 0), delta)
    return np.where(known, lo, 0.0), np.where(known, hi, 1.0)
