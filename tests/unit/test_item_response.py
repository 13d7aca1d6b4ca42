"""The Rasch fit behind the adaptive rule's predictive: question difficulty shared across generations."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from bitbudget import item_response
from bitbudget.adaptive.predictive import PREDICTIVES

CELLS, QUESTIONS = 40, 30


def _rasch_counts(samples: int, rng: np.random.Generator, noise_sd: float = 0.0):
    """Right counts [CELLS, QUESTIONS] of ``samples`` per question under logit p = ability -
    difficulty (+ independent noise per cell and question), with the solve probabilities."""
    ability = rng.normal(0.0, 1.5, CELLS)
    difficulty = rng.normal(0.0, 1.5, QUESTIONS)
    logit = ability[:, None] - difficulty[None, :] + rng.normal(0.0, noise_sd, (CELLS, QUESTIONS))
    p = expit(logit)
    return rng.binomial(samples, p), ability, difficulty - difficulty.mean(), p


def _generations(right: np.ndarray, samples: int) -> dict:
    """One generation per row of ``right`` [CELLS, QUESTIONS], at budget 1000, in decide_round's
    samples shape: each question's first ``right`` samples of ``samples`` right."""
    out = {}
    for c, counts in enumerate(right):
        correct = np.arange(samples)[None, :] < counts[:, None]
        out[f"g{c}"] = {1000: (correct, np.where(correct, "right", "wrong").astype(object))}
    return out


def test_fit_recovers_planted_abilities_and_difficulties():
    rng = np.random.default_rng(0)
    right, ability, difficulty, _ = _rasch_counts(64, rng)
    fitted_ability, fitted_difficulty = item_response.fit_rasch(right, np.full(CELLS, 64))
    assert abs(fitted_difficulty.mean()) < 1e-9
    assert np.corrcoef(fitted_difficulty, difficulty)[0, 1] > 0.97
    assert np.corrcoef(fitted_ability, ability)[0, 1] > 0.97
    # the pseudo-counts keep a question every cell fails finite
    right[:, 0] = 0
    assert np.isfinite(item_response.fit_rasch(right, np.full(CELLS, 64))[1]).all()


def test_priors_are_narrow_where_the_model_fits_and_jeffreys_wide_where_it_does_not():
    rng = np.random.default_rng(1)
    fits, *_ = _rasch_counts(8, rng)
    fitted = item_response.fit(fits, np.full(CELLS, 8))
    assert np.median(fitted.concentration) > 20  # shared difficulty: the prior is worth many samples
    # every cell's solve probability of every question drawn on its own: no shared difficulty
    unrelated = rng.binomial(8, rng.beta(0.3, 0.3, (CELLS, QUESTIONS)))
    assert np.allclose(item_response.fit(unrelated, np.full(CELLS, 8)).concentration,
                       item_response.JEFFREYS_CONCENTRATION)


def test_one_sample_per_question_gives_no_narrower_prior_than_jeffreys():
    rng = np.random.default_rng(2)
    right, *_ = _rasch_counts(1, rng)
    assert np.allclose(item_response.fit(right, np.ones(CELLS)).concentration, item_response.JEFFREYS_CONCENTRATION)


def test_rasch_predictive_completes_the_design_closer_to_the_truth_than_jeffreys():
    """Four samples per question, 32 in the full design, counts from a Rasch model with some
    misfit: the Rasch predictive's expected final right counts lie closer to what the solve
    probabilities imply than the Jeffreys predictive's (which lifts every unsolved question
    alike)."""
    rng = np.random.default_rng(3)
    right, _, _, p = _rasch_counts(4, rng, noise_sd=0.5)
    samples = _generations(right, 4)
    datasets = {g: "d" for g in samples}
    expected_truth = right + 28 * p
    errors = {}
    for name, predictive in PREDICTIVES.items():
        draw = predictive(samples, datasets)
        mean_right = np.stack([draw(f"g{c}", 32, 200, np.random.default_rng(c))[1000][..., 0].mean(axis=0)
                               for c in range(CELLS)])
        errors[name] = np.abs(mean_right - expected_truth).mean()
    assert errors["rasch"] < 0.7 * errors["jeffreys"]


def test_a_question_every_generation_fails_stays_failed():
    """A question none of 40 generations solved in four samples: the Rasch predictive gives it
    next to no right answers to come; the Jeffreys predictive gives it a tenth of them."""
    rng = np.random.default_rng(4)
    right, *_ = _rasch_counts(4, rng)
    right[:, 0] = 0
    samples = _generations(right, 4)
    datasets = {g: "d" for g in samples}
    share = {name: predictive(samples, datasets)("g0", 32, 400, np.random.default_rng(0))[1000][:, 0, 0].mean() / 28
             for name, predictive in PREDICTIVES.items()}
    assert share["jeffreys"] > 0.05
    assert share["rasch"] < 0.01


def test_a_cell_fitted_alone_gets_the_jeffreys_prior():
    """One generation at one budget: nothing is shared, so its questions' priors are as wide as
    Jeffreys' (a narrower one would count its own samples twice)."""
    rng = np.random.default_rng(5)
    right, *_ = _rasch_counts(8, rng)
    assert np.allclose(item_response.fit(right[:1], np.full(1, 8)).concentration, item_response.JEFFREYS_CONCENTRATION)
    assert np.median(item_response.fit(right[:2], np.full(2, 8)).concentration) > item_response.JEFFREYS_CONCENTRATION
