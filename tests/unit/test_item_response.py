"""The Rasch fit behind the adaptive rule's predictive: question difficulty shared across generations."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from bitbudget import item_response
from bitbudget.adaptive.predictive import PREDICTIVES, answer_pool, question_pools

CELLS, QUESTIONS = 40, 30


def _rasch_counts(samples: int, rng: np.random.Generator, noise_sd: float = 0.0):
    """Right counts [CELLS, QUESTIONS] of ``samples`` per question under logit p = ability -
    difficulty (+ independent noise per cell and question), with the solve probabilities."""
    ability = rng.normal(0.0, 1.5, CELLS)
    difficulty = rng.normal(0.0, 1.5, QUESTIONS)
    logit = ability[:, None] - difficulty[None, :] + rng.normal(0.0, noise_sd, (CELLS, QUESTIONS))
    p = expit(logit)
    return rng.binomial(samples, p), ability, difficulty - difficulty.mean(), p


def _generations(right: np.ndarray, samples) -> dict:
    """One generation per row of ``right`` [CELLS, QUESTIONS], at budget 1000, in decide_round's
    samples shape (answer counts): each question's first ``right`` samples of ``samples`` (one
    count, or one per cell and question) right."""
    held = np.broadcast_to(samples, right.shape)
    out = {}
    for c, counts in enumerate(right):
        rows = [np.arange(n) < r for n, r in zip(held[c], counts)]
        out[f"g{c}"] = {1000: question_pools(rows, [np.where(row, "right", "wrong").astype(object) for row in rows])}
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


# --------------------------------------------------------------------------- ragged counts


def _plain_log_likelihood(params, right, samples):
    """The binomial log-likelihood of the Rasch model with the fit's pseudo counts, from its definition."""
    cells, questions = right.shape
    pseudo = item_response.FIT_PSEUDO_COUNT / max(cells, questions)
    total = 0.0
    for c in range(cells):
        for q in range(questions):
            p = expit(params[c] - params[cells + q])
            total += (right[c, q] + pseudo) * np.log(p) + (samples[c, q] + pseudo - right[c, q]) * np.log(1 - p)
    return total


def test_questions_holding_different_counts_are_fitted_by_their_own_counts():
    """Some questions closed at 4 of 16 samples: the fit maximises the likelihood of each
    question's own count (no gradient along any parameter, the likelihood written out by hand),
    recovers the planted model, and an ability's standard error weighs each question by its
    samples; with one count per cell it is the fit it was."""
    rng = np.random.default_rng(11)
    right_16, ability, difficulty, p = _rasch_counts(16, rng)
    samples = np.where(rng.random((CELLS, QUESTIONS)) < 0.4, 4, 16)
    right = rng.binomial(samples, p)
    fitted_ability, fitted_difficulty = item_response.fit_rasch(right, samples)
    params = np.concatenate([fitted_ability, fitted_difficulty])
    step = 1e-5
    for i in rng.choice(len(params), 8, replace=False):
        up, down = params.copy(), params.copy()
        up[i] += step
        down[i] -= step
        assert abs(_plain_log_likelihood(up, right, samples) - _plain_log_likelihood(down, right, samples)) / (2 * step) < 0.02
    # read as if every question held 16, the same counts fit worse
    as_if_16 = np.concatenate(item_response.fit_rasch(right, np.full(CELLS, 16)))
    assert _plain_log_likelihood(as_if_16, right, samples) < _plain_log_likelihood(params, right, samples) - 10
    assert np.corrcoef(fitted_difficulty, difficulty)[0, 1] > 0.95 and np.corrcoef(fitted_ability, ability)[0, 1] > 0.95

    fitted = item_response.fit(right, samples)
    m = expit(fitted.ability[:, None] - fitted.difficulty[None, :])
    rho = item_response.overdispersion(right, samples.astype(float), m)
    information = [sum(samples[c, q] * m[c, q] * (1 - m[c, q]) / (1 + (samples[c, q] - 1) * rho)
                       for q in range(QUESTIONS)) for c in range(CELLS)]
    assert np.allclose(fitted.ability_se, 1 / np.sqrt(information))

    as_cells = item_response.fit(right_16, np.full(CELLS, 16))
    as_entries = item_response.fit(right_16, np.full((CELLS, QUESTIONS), 16))
    for name in ("ability", "ability_se", "difficulty", "concentration"):
        assert np.array_equal(getattr(as_cells, name), getattr(as_entries, name)), name
    m16 = expit(as_cells.ability[:, None] - as_cells.difficulty[None, :])
    rho16 = item_response.overdispersion(right_16, np.full((CELLS, 1), 16.0), m16)
    old_se = np.sqrt((1 + 15 * rho16) / (16 * m16 * (1 - m16)).sum(axis=1))  # the formula of one count per cell
    assert np.allclose(as_cells.ability_se, old_se, rtol=1e-12)


def test_question_pools_count_each_questions_own_samples():
    rng = np.random.default_rng(2)
    correct = rng.random((6, 5)) < 0.5
    answers = np.where(correct, "7", rng.choice(["1", "2", None], (6, 5))).astype(object)
    assert np.array_equal(question_pools(list(correct), list(answers)), answer_pool(correct, answers))
    held = [5, 2, 5, 1, 3, 5]
    ragged = question_pools([c[:n] for c, n in zip(correct, held)], [a[:n] for a, n in zip(answers, held)])
    assert list(ragged.sum(axis=1)) == held
    for q, n in enumerate(held):
        alone = answer_pool(correct[q:q + 1, :n], answers[q:q + 1, :n])[0]
        assert list(ragged[q, :2]) == list(alone[:2])  # right, no answer
        assert sorted(ragged[q, 2:][ragged[q, 2:] > 0]) == sorted(alone[2:][alone[2:] > 0])  # each wrong value


def test_a_predictive_completes_each_question_from_its_own_count():
    """Questions closed at fewer samples: every completion holds the full design's samples of
    each question and keeps those already drawn, whatever the question's count."""
    rng = np.random.default_rng(6)
    _, _, _, p = _rasch_counts(8, rng)
    samples = np.where(rng.random((CELLS, QUESTIONS)) < 0.3, 2, 8)
    right = rng.binomial(samples, p)
    pools = _generations(right, samples)
    for name, predictive in PREDICTIVES.items():
        completed = predictive(pools, dict.fromkeys(pools, "d"))("g3", 32, 50, np.random.default_rng(0))[1000]
        assert (completed.sum(axis=-1) == 32).all(), name
        assert (completed[..., 0] >= right[3]).all() and (completed[..., 0] - right[3] <= 32 - samples[3]).all(), name
