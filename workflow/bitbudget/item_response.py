"""Question difficulty shared across the generations answering a dataset (a Rasch model).

The adaptive rule predicts the samples a generation has not drawn yet from the ones it has.
A question's own few samples say little (four samples of a question all wrong fit a solve
probability of 0 as well as one of 0.3); the other generations' samples of the same question
say much more: a question every generation fails is hard, one that most solve is easy. The
Rasch model of item response theory writes this as

    logit p[c, q] = ability[c] - difficulty[q]

for each cell ``c`` (a generation at a token budget) and question ``q`` of one dataset, fitted
by maximum likelihood on the right counts of every cell. Around the fitted ``m = expit(ability -
difficulty)`` a question's solve probability is Beta(m kappa, (1 - m) kappa): the spread the
model leaves (``rho = 1 / (kappa + 1)``, the intra-question correlation of a beta-binomial) is
the overdispersion of the counts about the fit (method of moments) plus the uncertainty of the
question's difficulty (the inverse Fisher information of the other cells' counts, carried to
the probability scale: a cell fitted alone learns nothing from the model and gets Jeffreys'). The
prior is never wider than the Jeffreys prior (concentration 1) a question's own samples would
get alone, so counts that the Rasch model does not fit fall back to what the question's samples
say. The uncertainty of a cell's ability is not a spread per question: it moves every question
of the cell together (:meth:`RaschFit.priors`), as a cell's first samples that were lucky or
unlucky on the whole are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize as _optimize
from scipy.special import expit

JEFFREYS_CONCENTRATION = 1.0  # Beta(1/2, 1/2): the widest prior a question gets
FIT_PSEUDO_COUNT = 0.5  # half a right and half a wrong answer per cell and per question while
# fitting, spread over its entries, so a cell or question with every answer right (or wrong)
# has a finite ability (difficulty) without moving the others


def samples_per_entry(samples, shape: tuple[int, int]) -> np.ndarray:
    """``samples`` as ``[C, Q]``: one count per cell (``[C]``: every question of the cell holds
    it) or one per cell and question (questions closed at fewer samples)."""
    samples = np.asarray(samples, dtype=float)
    return np.broadcast_to(samples[:, None] if samples.ndim == 1 else samples, shape)


def fit_rasch(right: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Abilities ``[C]`` and difficulties ``[Q]`` (mean 0) maximising the binomial likelihood of
    ``right`` ``[C, Q]`` right answers out of ``samples`` (``[C]`` or ``[C, Q]``) per question."""
    n_cells, n_questions = right.shape
    pseudo = FIT_PSEUDO_COUNT / max(n_cells, n_questions)
    r = right + pseudo
    n = samples_per_entry(samples, right.shape) + 2 * pseudo

    def negative_log_likelihood(params):
        logit = params[:n_cells, None] - params[None, n_cells:]
        residual = r - n * expit(logit)
        value = -(r * logit - n * np.logaddexp(0.0, logit)).sum()
        return value, -np.concatenate([residual.sum(axis=1), -residual.sum(axis=0)])

    found = _optimize.minimize(negative_log_likelihood, np.zeros(n_cells + n_questions), jac=True, method="L-BFGS-B")
    ability, difficulty = found.x[:n_cells], found.x[n_cells:]
    shift = difficulty.mean()
    return ability - shift, difficulty - shift


@dataclass(frozen=True)
class RaschFit:
    """A fitted Rasch model of one dataset's cells: ``ability`` ``[C]`` and its standard error,
    ``difficulty`` ``[Q]``, and ``concentration`` ``[C, Q]`` of each question's Beta prior."""

    ability: np.ndarray
    ability_se: np.ndarray
    difficulty: np.ndarray
    concentration: np.ndarray

    def priors(self, cell: int, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Beta prior parameters ``(a, b)``, each ``[draws, Q]``, of cell ``cell``'s solve
        probabilities with its ability moved by ``shift`` ``[draws]`` standard errors: one
        shift for every question, since a cell that is better than its samples showed is
        better on all of them (independent spreads per question would average away)."""
        ability = self.ability[cell] + np.asarray(shift, dtype=float)[:, None] * self.ability_se[cell]
        m = expit(ability - self.difficulty[None, :])
        return m * self.concentration[cell], (1 - m) * self.concentration[cell]


def fit(right: np.ndarray, samples: np.ndarray) -> RaschFit:
    """The Rasch fit of ``right`` ``[C, Q]`` right answers out of ``samples`` per question
    (``[C]``, or ``[C, Q]`` where questions hold different counts): abilities and difficulties by
    maximum likelihood, an ability's standard error from its Fisher information (each question's
    inflated by the counts' overdispersion), and each question's prior concentration from the
    overdispersion plus the uncertainty of its difficulty."""
    right = np.asarray(right, dtype=float)
    n = samples_per_entry(samples, right.shape)
    ability, difficulty = fit_rasch(right, n)
    m = expit(ability[:, None] - difficulty[None, :])
    binomial_variance = n * m * (1 - m)
    rho = overdispersion(right, n, m)
    ability_se = 1 / np.sqrt((binomial_variance / (1 + (n - 1) * rho)).sum(axis=1))
    # what the other cells say of a question: its own counts enter again through the posterior
    others = binomial_variance.sum(axis=0, keepdims=True) - binomial_variance
    difficulty_spread = np.divide(m * (1 - m), others, out=np.full_like(m, np.inf), where=others > 0)
    concentration = np.maximum(1 / np.clip(rho + difficulty_spread, 0.0, 1.0) - 1, JEFFREYS_CONCENTRATION)
    return RaschFit(ability, ability_se, difficulty, concentration)


def overdispersion(right: np.ndarray, n: np.ndarray, m: np.ndarray) -> float:
    """Intra-question correlation ``rho`` of beta-binomial counts about the fitted means ``m``
    (method of moments: E(r - n m)^2 = n m (1 - m) (1 + (n - 1) rho)); 1 (no shared
    information: the Jeffreys prior) when no cell has two samples."""
    spread = n * (n - 1) * m * (1 - m)
    if spread.sum() <= 0:
        return 1.0
    excess = ((right - n * m) ** 2 - n * m * (1 - m)).sum()
    return float(max(excess / spread.sum(), 0.0))
