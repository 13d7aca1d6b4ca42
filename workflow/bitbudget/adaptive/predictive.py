"""Posterior predictive completions of a generation's answer pools: the samples still to come,
drawn under a Jeffreys or a Rasch prior, and the full-design accuracies they give."""

from __future__ import annotations

import numpy as np
from scipy import special

from bitbudget import item_response, stats

__all__ = ["answer_pool", "question_pools", "drawing", "completion_targets", "predictive_pools", "coupled_pools", "jeffreys_predictive", "rasch_predictive",
           "PREDICTIVES", "predicted_accuracy", "predicted_rows"]


def answer_pool(correct: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Answer counts ``[Q, K]`` per question (reference, no answer, each other value) of the
    samples ``correct``/``answers`` ``[Q, n]``, as :func:`bitbudget.stats.summarize_cell` votes."""
    onehot, _ = stats.signature_counts(stats.answer_codes(correct, answers))
    return onehot.sum(axis=1).astype(np.int64)


def question_pools(correct: list, answers: list) -> np.ndarray:
    """:func:`answer_pool` of questions holding any number of samples: ``correct[q]`` and
    ``answers[q]`` the samples of question ``q`` (a question closed early holds fewer)."""
    codes = [stats.answer_codes(np.asarray(c, dtype=bool)[None], np.asarray(a, dtype=object)[None])[0]
             for c, a in zip(correct, answers)]
    pool = np.zeros((len(codes), 2 + max((int(c.max(initial=0)) for c in codes), default=0)), dtype=np.int64)
    for q, code in enumerate(codes):
        np.add.at(pool[q], stats.signature_columns(code), 1)
    return pool


def drawing(pools: dict, drawn: int) -> np.ndarray:
    """[Q] bool: the questions of a generation still drawing (``pools``: its open budgets' answer
    counts ``[Q, K]``, ``drawn`` samples per question so far); one holding fewer was closed in an
    earlier round."""
    return next(iter(pools.values())).sum(axis=1) >= drawn


def completion_targets(pools: dict, drawn: int, maximum: int) -> int | np.ndarray:
    """Samples per question a generation's completions hold: ``maximum``, but a question closed
    in an earlier round (:func:`drawing`) keeps the count it holds."""
    still = drawing(pools, drawn)
    return maximum if still.all() else np.where(still, maximum, next(iter(pools.values())).sum(axis=1))


def predictive_pools(pool: np.ndarray, maximum, draws: int, rng: np.random.Generator,
                     quantiles: np.ndarray | None = None, prior: tuple | None = None) -> np.ndarray:
    """``draws`` full-design pools ``[draws, Q, K + 1]``: ``pool`` plus the ``maximum - n``
    samples per question not drawn yet (``maximum``: one count, or one per question,
    :func:`completion_targets`), from the posterior predictive. A question is right with
    probability p ~ Beta(a + right, b + wrong), the prior ``(a, b)`` (arrays ``[Q]``) Jeffreys'
    (1/2, 1/2) unless given; a wrong sample takes one of the wrong values seen, with
    Dirichlet(1/2 + count) probabilities, or a new value (the last column) when none was seen.
    ``quantiles`` (``[draws, Q]`` in (0, 1)), when given, are the quantiles of the posterior p
    is drawn at, so pools of several budgets drawn at the same quantiles share which questions
    turn out harder than they looked."""
    pool = np.asarray(pool, dtype=np.int64)
    n, right = pool.sum(axis=1), pool[:, 0]
    a, b = prior if prior is not None else (0.5, 0.5)
    rest = np.broadcast_to(maximum - n, (draws, len(n)))
    if quantiles is None:
        p = rng.beta(a + right, b + n - right, size=rest.shape)
    else:
        # the Beta quantile function itself (stats.beta.ppf wraps it with argument checks)
        p = special.betaincinv(a + right, b + n - right, quantiles)
    more_right = rng.binomial(rest, p)
    wrong_seen = np.concatenate([pool[:, 1:], (n == right)[:, None]], axis=1)
    weights = rng.gamma(np.broadcast_to(np.where(wrong_seen > 0, wrong_seen + 0.5, 0.0), (draws, *wrong_seen.shape)))
    more_wrong = rng.multinomial(rest - more_right, weights / weights.sum(axis=-1, keepdims=True))
    return np.concatenate([(right + more_right)[..., None], pool[None, :, 1:] + more_wrong[..., :-1],
                           more_wrong[..., -1:]], axis=-1)


def coupled_pools(pools: dict, maximum: int, draws: int, rng: np.random.Generator,
                  priors: dict | None = None) -> dict:
    """``{budget: [draws, Q, K + 1]}``: each budget's :func:`predictive_pools` from its answer
    counts ``pools[budget]`` ``[Q, K]`` (:func:`answer_pool`) (its prior
    ``priors[budget]``, Jeffreys' when absent), with the posterior of every question's p drawn
    at one quantile per (draw, question) for all budgets. One trajectory is forked at every
    budget, so a question that is harder than its first samples showed is harder at every
    budget; the samples still to come are drawn per budget (independent binomials: more spread
    between budgets than forks of shared trajectories have, which errs towards sampling on)."""
    n_questions = next(iter(pools.values())).shape[0]
    quantiles = rng.random((draws, n_questions))
    return {budget: predictive_pools(pool, maximum, draws, rng, quantiles, (priors or {}).get(budget))
            for budget, pool in sorted(pools.items())}


def jeffreys_predictive(pools: dict, datasets: dict[str, str]):
    """A predictive (``sampling.adaptive.predictive: jeffreys``): each question's samples to
    come from its own samples alone under the Jeffreys prior (:func:`coupled_pools`).

    A predictive is built once per round from ``pools`` (gen_id -> {budget: answer counts
    [Q, K]} (:func:`answer_pool`, :func:`question_pools`), the open budgets of every generation
    deciding, questions in one order per dataset; a question may hold fewer samples than the
    others) and ``datasets`` (gen_id -> dataset), and returns the function
    ``draw(gen_id, maximum, draws, rng) -> {budget: [draws, Q, K + 1]}`` of full-design
    pools. bench/adaptive.py passes the simulated engine's planted model in this shape to
    measure what a perfectly calibrated predictive would stop."""
    return lambda gen_id, maximum, draws, rng: coupled_pools(pools[gen_id], maximum, draws, rng)


def rasch_predictive(pools: dict, datasets: dict[str, str]):
    """A predictive (``sampling.adaptive.predictive: rasch``, :func:`jeffreys_predictive`'s
    shape): a question's prior at each (generation, budget) is centred on the Rasch fit of
    every deciding generation's samples of its dataset (:func:`bitbudget.item_response.fit`),
    so a question all generations fail stays failed and one most solve is likely solved; each
    draw moves the generation's abilities at all its budgets by one normal shift of their
    standard errors. Generations whose question count differs from the rest of their dataset
    are fitted apart."""
    groups: dict = {}
    for gen_id in sorted(pools):
        n_questions = next(iter(pools[gen_id].values())).shape[0]
        groups.setdefault((datasets[gen_id], n_questions), []).append(gen_id)
    cell_of: dict = {}
    for members in groups.values():
        cells = [(g, budget) for g in members for budget in sorted(pools[g])]
        right = np.stack([pools[g][budget][:, 0] for g, budget in cells])
        drawn = np.stack([pools[g][budget].sum(axis=1) for g, budget in cells])
        fitted = item_response.fit(right, drawn)
        for i, (g, budget) in enumerate(cells):
            cell_of.setdefault(g, {})[budget] = (fitted, i)

    def draw(gen_id: str, maximum: int, draws: int, rng: np.random.Generator) -> dict:
        shift = rng.standard_normal(draws)
        priors = {budget: fitted.priors(i, shift) for budget, (fitted, i) in cell_of[gen_id].items()}
        return coupled_pools(pools[gen_id], maximum, draws, rng, priors)
    return draw


#: sampling.adaptive.predictive -> the predictive it names
PREDICTIVES = {"rasch": rasch_predictive, "jeffreys": jeffreys_predictive}


def predicted_accuracy(pools: np.ndarray, g: int) -> np.ndarray:
    """Accuracy (mean over questions of pass@1, or of maj@g for g > 1) of each pool ``[draws, Q, K]``;
    NaN (no estimate) where a question's pool holds fewer than g samples."""
    if g > 1:
        return stats.maj_of_counts(pools, [g])[g].mean(axis=1)
    held = pools[0].sum(axis=-1)
    if (held == held[0]).all():  # one count for every question: one division (the estimate as it always was)
        return pools[..., 0].mean(axis=1) / held[0]
    return (pools[..., 0] / held).mean(axis=1)


def predicted_rows(pools: dict, budgets, gs) -> np.ndarray:
    """[rows, draws]: the predicted accuracy of each scenario row (its token budget in
    ``budgets``, its G in ``gs``) from its budget's pools ``{budget: [draws, Q, K]}``, as
    :func:`predicted_accuracy` gives it; a budget's maj@G of every G at once (one pass over its
    pools' signatures)."""
    budgets, gs = np.asarray(budgets), np.asarray(gs)
    out = np.empty((len(budgets), next(iter(pools.values())).shape[0]))
    for budget, pool in pools.items():
        rows = np.flatnonzero(budgets == budget)
        votes = sorted({int(g) for g in gs[rows] if g > 1})
        maj = stats.maj_of_counts(pool, votes) if votes else {}
        for i in rows:
            g = int(gs[i])
            out[i] = maj[g].mean(axis=1) if g > 1 else predicted_accuracy(pool, 1)
    return out
