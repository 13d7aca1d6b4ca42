"""Adaptive sample allocation: after each round, stop the generations whose decisions are settled.

The rule (docs/adaptive.md gives the argument in full)
------------------------------------------------------
Sampling runs in rounds: ``initial`` samples per question, then ``step`` more, up to
``maximum`` (``sampling.samples_per_question``). After each round every scenario gets a
confidence interval for its accuracy (the mean over the dataset's questions of the
per-question pass@1 or maj@G, both averages over samples of bounded kernels):

* **Hoeffding's inequality for U-statistics** (Hoeffding 1963, section 5): the maj@G estimate
  of one question from ``n`` samples is a U-statistic of order G with a kernel in [0, 1]; the
  mean over ``Q`` independent questions deviates no more than a mean of ``N = Q * floor(n / G)``
  independent [0, 1] terms. The interval is the Chernoff-Hoeffding (KL) bound for that mean
  (Theorem 1 of the same paper): every q with ``N kl(estimate, q) <= ln(2 / delta)``, never
  wider than the additive radius ``sqrt(ln(2 / delta) / 2N)`` and much narrower near 0 and 1.
  pass@1 is the case G = 1. A scenario with ``G > n`` has no estimate yet: its interval is [0, 1].
* **Union bound over rounds and scenarios** (a Bonferroni confidence sequence):
  ``delta = (1 - confidence) / (scenarios x rounds)``, so every interval of every round holds
  at once with probability at least ``confidence``; stopping at any round is then valid.

A scenario is **decided** when, on its dataset's accuracy-vs-memory frontier, with accuracies
within the indifference margin ``epsilon`` counted as tied (epsilon-good arm identification),

* it is *dominated by a margin*: some scenario at no more memory has a lower bound above its
  upper bound minus ``epsilon``; or
* it is *on the frontier with no competitor within reach*: every scenario that is not itself
  dominated by a margin has an interval disjoint from its own (at no more memory: below it);

and **its comparisons can no longer move the analysis**: for each kind of equal-memory
comparison (:func:`bitbudget.threshold.build_comparisons`), per dataset and pooled, the
switch bracket is the same for every accuracy inside the intervals (the switch scores are
linear in the per-size evidence, so this is exact interval arithmetic), and each finding's
verdict at the paper's cut is the same whichever way the comparisons not yet decided turn
out. A scenario feeding a comparison at a weight size that could move a bracket or a verdict
is not decided.

A generation stops when every scenario it feeds is decided, or at ``maximum``. Successive
elimination (racing, Even-Dar, Mannor and Mansour 2006; Maron and Moore 1994) with these
anytime intervals: an eliminated arm is one whose place in every decision is already fixed.

The curtailment rule (``rule: curtail``)
----------------------------------------
Stochastic curtailment (Lan, Simon and Halperin 1982; Jennison and Turnbull 2000, ch. 10),
per token budget: a generation's largest open budgets close when the predictive probability
that the full design (every question at ``maximum`` samples) would decide differently from
closing them now is below ``gamma``; a closed budget keeps its estimate, and the samples of
the next round think only to the largest budget still open (:class:`BudgetClosing`: closing
is top-down, since thinking to a large budget passes through every smaller one). A generation
stops when every budget is closed. The rest of each question's samples is drawn from its
posterior predictive, its prior centred on a Rasch fit of every deciding generation's answers
to the dataset's questions (:func:`rasch_predictive`, :mod:`bitbudget.item_response`), one
posterior quantile per question for all budgets (:func:`coupled_pools`); the scenarios' full-design accuracies are recomputed with the
estimators of :mod:`bitbudget.stats`, and the decisions of the fit (:class:`Decisions`)
compared with and without the budgets closed, the other generations still sampling completed
by their own predictive draws. Probabilities are taken at their Monte Carlo upper bound, and
the closings of one round share one error budget. This controls agreement with the full design under that
model, per round; it says nothing about the true accuracies (the confidence rule does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

from . import findings as _findings
from . import frontier as _frontier
from . import item_response as _item_response
from . import stats as _stats
from . import threshold as _threshold

__all__ = ["AdaptiveRule", "rounds", "per_test_delta", "radius", "intervals", "frontier_decided",
           "comparisons_settled", "decided_scenarios", "stopping_generations", "answer_pool",
           "predictive_pools", "coupled_pools", "jeffreys_predictive", "rasch_predictive", "PREDICTIVES", "predicted_accuracy", "predicted_rows",
           "Decisions", "thinking_per_question", "closing_savings", "BudgetClosing", "Outcome", "curtail_floor", "monte_carlo_upper",
           "decide_round"]

#: reasons a generation stops (or goes on), as the plan and the report name them
DOMINATED, FRONTIER, MAXIMUM, OPEN = "dominated by a margin", "on the frontier, no competitor within reach", \
    "reached the maximum", "open"
CURTAILED = "the full design would decide the same"
#: the two stopping rules (`sampling.adaptive.rule`)
CONFIDENCE_RULE, CURTAIL_RULE = "confidence", "curtail"
#: predictive completions simulated per generation and round
CURTAIL_DRAWS = 200
#: bisection steps of the KL bounds (2**-40: far below any accuracy resolution)
_KL_BISECTIONS = 40
_KL_EDGE = 1e-15


@dataclass(frozen=True)
class AdaptiveRule:
    """The `sampling.adaptive` settings with the maximum they run up to (their defaults are the
    schema's, :func:`from_config`)."""

    initial: int
    step: int
    maximum: int
    confidence: float
    epsilon: float
    rule: str
    gamma: float
    predictive: str

    @classmethod
    def from_config(cls, sampling: dict, maximum: int | None = None) -> "AdaptiveRule | None":
        """None when adaptive sampling is off (no `sampling.adaptive`)."""
        adaptive = sampling.get("adaptive")
        if adaptive is None:
            return None
        return cls(int(adaptive["initial"]), int(adaptive["step"]),
                   int(maximum if maximum is not None else sampling["samples_per_question"]),
                   float(adaptive["confidence"]), float(adaptive["epsilon"]), str(adaptive["rule"]),
                   float(adaptive["curtail_gamma"]), str(adaptive["predictive"]))

    @property
    def rounds(self) -> list[int]:
        return rounds(self.initial, self.step, self.maximum)


def rounds(initial: int, step: int, maximum: int) -> list[int]:
    """Samples per question after each round: initial, initial + step, ..., maximum."""
    if initial < 1 or step < 1 or maximum < 1:
        raise ValueError(f"initial, step and maximum must be positive (got {initial}, {step}, {maximum})")
    out = list(range(min(initial, maximum), maximum, step))
    return out + [maximum]


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


def frontier_decided(group, memory, lo, hi, epsilon: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(dominated by a margin, on the frontier with no competitor within reach) per scenario;
    scenarios compete only within their ``group`` (the dataset). Accuracies within
    ``epsilon`` of each other count as tied (the indifference zone of epsilon-good arm
    identification): a scenario is dominated when something at no more memory is surely above
    ``its upper bound - epsilon``, and a competitor is within reach when it could beat it, or
    be beaten by it, by more than ``epsilon``."""
    group, memory = np.asarray(group), np.asarray(memory, dtype=float)
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    dominated = np.zeros(len(memory), dtype=bool)
    clear = np.zeros(len(memory), dtype=bool)
    for value in np.unique(group):
        idx = np.flatnonzero(group == value)
        m, l, h = memory[idx], lo[idx], hi[idx]
        # best lower bound at no more memory, excluding the scenario itself
        best = np.full(len(idx), -np.inf)
        cheaper_or_equal = m[None, :] <= m[:, None]
        np.fill_diagonal(cheaper_or_equal, False)
        best = np.where(cheaper_or_equal, l[None, :], -np.inf).max(axis=1) if len(idx) > 1 else best
        dom = best > h - epsilon
        competitors = ~dom
        overlap = (l[None, :] <= h[:, None] - epsilon) & (h[None, :] >= l[:, None] + epsilon)
        # at no more memory, a competitor must sit below (by more than epsilon it must not exceed)
        below_needed = cheaper_or_equal & (h[None, :] >= l[:, None] + epsilon)
        blocked = ((overlap | below_needed) & competitors[None, :])
        np.fill_diagonal(blocked, False)
        dominated[idx] = dom
        clear[idx] = ~dom & ~blocked.any(axis=1)
    return dominated, clear


def _evidence_box(comp: _threshold.Comparisons, lo, hi, sizes_index, n_sizes):
    """Per comparison and per size, the interval [low, high] of the advantage of the "win"
    option (summed per size) when every accuracy lies in its interval."""
    adv_lo, adv_hi = _threshold.advantage_bounds(comp, lo, hi)
    e_lo, e_hi = np.zeros(n_sizes), np.zeros(n_sizes)
    np.add.at(e_lo, sizes_index, adv_lo)
    np.add.at(e_hi, sizes_index, adv_hi)
    return adv_lo, adv_hi, e_lo, e_hi


def _linear_forms(n_sizes: int) -> dict:
    """Every quantity the fit compares, as a coefficient vector on the per-size evidence
    (:func:`bitbudget.threshold.switch_score_weights`): the cut scores with each orientation,
    and the total (``no crossing`` test)."""
    forms = {}
    for c, w in enumerate(_threshold.switch_score_weights(n_sizes)):
        forms["+", c] = w
        forms["-", c] = -w
    forms["total", "+"] = np.ones(n_sizes)
    forms["total", "-"] = -np.ones(n_sizes)
    return forms


def _bracket_contested(e_point, e_lo, e_hi) -> np.ndarray:
    """Sizes whose evidence could, within its interval, change the best cut, its orientation
    or whether a switch is found: those weighted differently by the point winner and a rival
    that is not beaten for every evidence inside the box."""
    n = len(e_point)
    contested = np.zeros(n, dtype=bool)
    if n < 2:
        return contested
    forms = _linear_forms(n)
    cuts = {k: w for k, w in forms.items() if k[0] in "+-"}
    winner = max(cuts, key=lambda k: (float(cuts[k] @ e_point), -k[1]))
    w_best = cuts[winner]
    for key, w in forms.items():
        if key == winner:
            continue
        d = w_best - w
        low = np.minimum(d * e_lo, d * e_hi).sum()
        if not low > _threshold.SCORE_TIE:
            contested |= d != 0
    return contested


def _verdict_contested(kind: str, points_x, adv_lo, adv_hi, analysis: dict, cut: float) -> np.ndarray:
    """Comparisons whose outcome (win, loss or tie) is open and could change a finding's
    rule verdict at the paper's cut (its split, :func:`bitbudget.findings.place_cut`): the
    verdict is evaluated with every open comparison of a side turned to a win, a loss and a tie."""
    cfg = _findings.analysis_settings(analysis)
    min_n, window = int(cfg["min_comparisons"]), float(cfg["switch_window"])
    x = np.asarray(points_x, dtype=float)
    decided_win, decided_loss = adv_lo > 0, adv_hi < 0
    open_ = ~(decided_win | decided_loss)
    contested = np.zeros(len(x), dtype=bool)
    if not open_.any():
        return contested
    below = x < cut
    outcome = {"win": 1.0, "loss": -1.0, "tie": 0.0}
    # one column per assignment of the open comparisons below and above the cut
    columns = [(ob, oa) for ob in outcome for oa in outcome]
    decided = np.where(decided_win, 1.0, -1.0)
    adv = np.column_stack([np.where(open_, np.where(below, outcome[ob], outcome[oa]), decided) for ob, oa in columns])
    for fid, spec in _findings.FINDINGS.items():
        if spec["kind"] != kind:
            continue
        if len(set(_findings.rule_outcomes(fid, x, adv, cut, min_n, window))) > 1:
            contested |= open_
    return contested


def comparisons_settled(scenarios: pd.DataFrame, lo, hi, analysis: dict) -> np.ndarray:
    """Per scenario: False when it feeds a comparison that could still move a switch bracket
    (per dataset or pooled) or a finding's verdict (per dataset) within the intervals."""
    scen = scenarios.reset_index(drop=True)
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    point = scen["accuracy"].to_numpy(dtype=float)
    point = np.where(np.isfinite(point), point, (lo + hi) / 2)
    settled = np.ones(len(scen), dtype=bool)
    tol = analysis["memory_tolerance"]
    datasets = sorted(scen["dataset"].astype(str).unique())
    cuts = _findings.placed_cuts(analysis, scen)
    groups = [(None, np.arange(len(scen)))] + [
        (ds, np.flatnonzero(scen["dataset"].astype(str).to_numpy() == ds)) for ds in datasets]
    for kind in _threshold.KINDS:
        for ds, rows in groups:
            sub = scen.iloc[rows].reset_index(drop=True)
            comp = _threshold.build_comparisons(sub, kind, tol)
            if not len(comp.a):
                continue
            s_lo, s_hi, s_pt = lo[rows], hi[rows], point[rows]
            sizes, size_index = np.unique(comp.x, return_inverse=True)
            adv_lo, adv_hi, e_lo, e_hi = _evidence_box(comp, s_lo, s_hi, size_index, len(sizes))
            e_point = np.zeros(len(sizes))
            np.add.at(e_point, size_index, _threshold.advantages(comp, s_pt[:, None])[:, 0])
            open_cmp = _bracket_contested(e_point, e_lo, e_hi)[size_index]
            if ds is not None:
                open_cmp |= _verdict_contested(kind, comp.x, adv_lo, adv_hi, analysis, cuts[kind]["split"])
            for i in np.flatnonzero(open_cmp):
                settled[rows[comp.a[i]]] = False
                settled[rows[comp.b[i]]] = False
    return settled


def decided_scenarios(scenarios: pd.DataFrame, delta: float, analysis: dict, epsilon: float = 0.0) -> pd.DataFrame:
    """Per scenario: its interval and whether (and why) it is decided.

    ``scenarios`` holds dataset, total_gib, accuracy (NaN when not estimable yet), G,
    n_questions, n_samples (per question, so far) and the columns the comparisons read."""
    scen = scenarios.reset_index(drop=True)
    lo, hi = intervals(scen["accuracy"], scen["n_questions"], scen["n_samples"], scen["G"], delta)
    dominated, clear = frontier_decided(scen["dataset"].astype(str).to_numpy(), scen["total_gib"], lo, hi, epsilon)
    settled = comparisons_settled(scen, lo, hi, analysis)
    reason = np.where(dominated, DOMINATED, np.where(clear, FRONTIER, OPEN))
    decided = (dominated | clear) & settled
    return pd.DataFrame({"scenario_id": scen["scenario_id"], "lower": lo, "upper": hi, "dominated": dominated,
                         "frontier_clear": clear, "comparisons_settled": settled, "decided": decided,
                         "reason": np.where(decided, reason, OPEN)})


def stopping_generations(scenarios: pd.DataFrame, decisions: pd.DataFrame, drawn: dict[str, int],
                         maximum: dict[str, int]) -> dict[str, str]:
    """gen_id -> why it stops (a reason) or OPEN: a generation stops when every scenario it
    feeds is decided, or when it has drawn its maximum."""
    decided = dict(zip(decisions["scenario_id"], decisions["decided"]))
    reasons = dict(zip(decisions["scenario_id"], decisions["reason"]))
    out = {}
    for gen_id, rows in scenarios.groupby("gen_id", sort=True)["scenario_id"]:
        if drawn[gen_id] >= maximum[gen_id]:
            out[gen_id] = MAXIMUM
        elif all(decided[s] for s in rows):
            kinds = {reasons[s] for s in rows}
            out[gen_id] = DOMINATED if kinds == {DOMINATED} else FRONTIER if kinds == {FRONTIER} else \
                f"{DOMINATED} or {FRONTIER}"
        else:
            out[gen_id] = OPEN
    return out


# ----------------------------------------------------------------------- stochastic curtailment


def answer_pool(correct: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Answer counts ``[Q, K]`` per question (reference, no answer, each other value) of the
    samples ``correct``/``answers`` ``[Q, n]``, as :func:`bitbudget.stats.summarize_cell` votes."""
    onehot, _ = _stats.signature_counts(_stats.answer_codes(correct, answers))
    return onehot.sum(axis=1).astype(np.int64)


def predictive_pools(pool: np.ndarray, maximum: int, draws: int, rng: np.random.Generator,
                     quantiles: np.ndarray | None = None, prior: tuple | None = None) -> np.ndarray:
    """``draws`` full-design pools ``[draws, Q, K + 1]``: ``pool`` plus the ``maximum - n``
    samples per question not drawn yet, from the posterior predictive. A question is right with
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
        p = _scipy_stats.beta.ppf(quantiles, a + right, b + n - right)
    more_right = rng.binomial(rest, p)
    wrong_seen = np.concatenate([pool[:, 1:], (n == right)[:, None]], axis=1)
    weights = rng.gamma(np.broadcast_to(np.where(wrong_seen > 0, wrong_seen + 0.5, 0.0), (draws, *wrong_seen.shape)))
    more_wrong = rng.multinomial(rest - more_right, weights / weights.sum(axis=-1, keepdims=True))
    return np.concatenate([(right + more_right)[..., None], pool[None, :, 1:] + more_wrong[..., :-1],
                           more_wrong[..., -1:]], axis=-1)


def coupled_pools(samples: dict, maximum: int, draws: int, rng: np.random.Generator,
                  priors: dict | None = None) -> dict:
    """``{budget: [draws, Q, K + 1]}``: each budget's :func:`predictive_pools` (its prior
    ``priors[budget]``, Jeffreys' when absent), with the posterior of every question's p drawn
    at one quantile per (draw, question) for all budgets. One trajectory is forked at every
    budget, so a question that is harder than its first samples showed is harder at every
    budget; the samples still to come are drawn per budget (independent binomials: more spread
    between budgets than forks of shared trajectories have, which errs towards sampling on)."""
    n_questions = next(iter(samples.values()))[0].shape[0]
    quantiles = rng.random((draws, n_questions))
    return {budget: predictive_pools(answer_pool(correct, answers), maximum, draws, rng, quantiles,
                                     (priors or {}).get(budget))
            for budget, (correct, answers) in sorted(samples.items())}


def jeffreys_predictive(samples: dict, datasets: dict[str, str]):
    """A predictive (``sampling.adaptive.predictive: jeffreys``): each question's samples to
    come from its own samples alone under the Jeffreys prior (:func:`coupled_pools`).

    A predictive is built once per round from ``samples`` (gen_id -> {budget: (correct
    [Q, n], answers [Q, n])}, the open budgets of every generation deciding, questions in one
    order per dataset) and ``datasets`` (gen_id -> dataset), and returns the function
    ``draw(gen_id, maximum, draws, rng) -> {budget: [draws, Q, K + 1]}`` of full-design
    pools. bench/adaptive.py passes the simulated engine's planted model in this shape to
    measure what a perfectly calibrated predictive would stop."""
    return lambda gen_id, maximum, draws, rng: coupled_pools(samples[gen_id], maximum, draws, rng)


def rasch_predictive(samples: dict, datasets: dict[str, str]):
    """A predictive (``sampling.adaptive.predictive: rasch``, :func:`jeffreys_predictive`'s
    shape): a question's prior at each (generation, budget) is centred on the Rasch fit of
    every deciding generation's samples of its dataset (:func:`bitbudget.item_response.fit`),
    so a question all generations fail stays failed and one most solve is likely solved; each
    draw moves the generation's abilities at all its budgets by one normal shift of their
    standard errors. Generations whose question count differs from the rest of their dataset
    are fitted apart."""
    groups: dict = {}
    for gen_id in sorted(samples):
        n_questions = next(iter(samples[gen_id].values()))[0].shape[0]
        groups.setdefault((datasets[gen_id], n_questions), []).append(gen_id)
    cell_of: dict = {}
    for members in groups.values():
        cells = [(g, budget) for g in members for budget in sorted(samples[g])]
        right = np.stack([samples[g][budget][0].sum(axis=1) for g, budget in cells])
        drawn = np.array([samples[g][budget][0].shape[1] for g, budget in cells])
        fitted = _item_response.fit(right, drawn)
        for i, (g, budget) in enumerate(cells):
            cell_of.setdefault(g, {})[budget] = (fitted, i)

    def draw(gen_id: str, maximum: int, draws: int, rng: np.random.Generator) -> dict:
        shift = rng.standard_normal(draws)
        priors = {budget: fitted.priors(i, shift) for budget, (fitted, i) in cell_of[gen_id].items()}
        return coupled_pools(samples[gen_id], maximum, draws, rng, priors)
    return draw


#: sampling.adaptive.predictive -> the predictive it names
PREDICTIVES = {"rasch": rasch_predictive, "jeffreys": jeffreys_predictive}


def predicted_accuracy(pools: np.ndarray, g: int) -> np.ndarray:
    """Accuracy (mean over questions of pass@1, or of maj@g for g > 1) of each pool ``[draws, Q, K]``."""
    if g == 1:
        return pools[..., 0].mean(axis=1) / pools[0, 0].sum()
    return _stats.maj_of_counts(pools, [g])[g].mean(axis=1)


def predicted_rows(pools: dict, budgets, gs) -> np.ndarray:
    """[rows, draws]: the predicted accuracy of each scenario row (its token budget in
    ``budgets``, its G in ``gs``) from its budget's pools ``{budget: [draws, Q, K]}``."""
    budgets, gs = np.asarray(budgets), np.asarray(gs)
    out = np.empty((len(budgets), next(iter(pools.values())).shape[0]))
    for budget, pool in pools.items():
        for i in np.flatnonzero(budgets == budget):
            out[i] = predicted_accuracy(pool, int(gs[i]))
    return out


class Decisions:
    """What the fit stage decides, as a function of the scenarios' accuracies, for many
    accuracy vectors at once (columns): frontier membership (:func:`bitbudget.frontier.pareto_frontier`),
    every switch's status and bracket (:func:`bitbudget.threshold.fit_thresholds`, each kind,
    pooled and per dataset) and each finding's rule verdict per dataset
    (:func:`bitbudget.findings.evaluate_findings` without the named checks). Comparisons,
    populations and memory orders depend on memory only, so they are built once."""

    def __init__(self, scenarios: pd.DataFrame, analysis: dict):
        scen = scenarios.reset_index(drop=True)
        cfg = _findings.analysis_settings(analysis)
        self.min_n, self.window = int(cfg["min_comparisons"]), float(cfg["switch_window"])
        cuts = _findings.placed_cuts(cfg, scen)
        dataset = scen["dataset"].astype(str).to_numpy()
        datasets = sorted(set(dataset))
        self.fronts = _frontier.frontier_order(scen)
        self.switches, self.touched, pooled = [], [], {}
        for kind in _threshold.KINDS:
            for ds in [None] + (datasets if len(datasets) > 1 else []):
                rows = np.arange(len(scen)) if ds is None else np.flatnonzero(dataset == ds)
                comp = _threshold.build_comparisons(scen.iloc[rows].reset_index(drop=True), kind,
                                                    cfg["memory_tolerance"])
                pooled.setdefault(kind, len(self.switches))
                self.switches.append((rows, comp, *np.unique(comp.x, return_inverse=True)))
                self.touched.append(_touched(rows, comp, len(scen)))
        self.rules = []  # (finding, its cut, the pooled switch of its kind, that switch's comparisons of the dataset)
        for fid, ds in _findings.testable_rules(scen, cuts):
            kind = _findings.FINDINGS[fid]["kind"]
            switch = pooled[kind]
            self.rules.append((fid, cuts[kind]["split"], switch, self.switches[switch][1].in_group(dataset, ds)))

    def frontier(self, acc: np.ndarray) -> np.ndarray:
        """[n, B] bool: on its dataset's frontier, per column (ties as pareto_frontier breaks them)."""
        return _frontier.frontier_columns(self.fronts, acc)

    def advantages(self, acc: np.ndarray, reference: list | None = None, changed=None) -> list[np.ndarray]:
        """Per switch: [comparisons, B] advantages of the "win" option. Given the ``reference``
        advantages of accuracies that differ from ``acc`` only in the scenario rows ``changed``,
        only the comparisons touching those rows are computed again."""
        if reference is None:
            return [_threshold.advantages(comp, acc[rows]) for rows, comp, _, _ in self.switches]
        out = []
        for (rows, comp, _, _), touched, adv in zip(self.switches, self.touched, reference):
            hit = touched[changed].any(axis=0) if len(changed) else np.zeros(len(comp.a), dtype=bool)
            if hit.any():
                adv = adv.copy()
                adv[hit] = _threshold.advantages(comp.subset(hit), acc[rows])
            out.append(adv)
        return out

    def brackets(self, advantages: list[np.ndarray]) -> list[list]:
        """Per switch, per column: (status, bracket) as fit_threshold gives them."""
        return [_threshold.switch_decisions(*_threshold.size_evidence(adv, size_index, len(sizes))).statuses(sizes)
                for (_, _, sizes, size_index), adv in zip(self.switches, advantages)]

    def verdicts(self, advantages: list[np.ndarray]) -> list[list]:
        """Per (finding, dataset) where the paper's cut is testable, per column: the rule's
        status from the signs of the dataset's comparisons."""
        return [list(_findings.rule_outcomes(fid, self.switches[switch][1].x[mine], advantages[switch][mine], cut,
                                            self.min_n, self.window))
                for fid, cut, switch, mine in self.rules]

    def outcomes(self, acc: np.ndarray, reference: tuple | None = None, changed=None) -> tuple:
        """Every decision per column of ``acc`` [n, B]: (frontier [n, B], per switch and per
        finding rule the list of per-column outcomes, the switches' advantages). ``reference``
        and ``changed``: as :meth:`advantages` (the outcomes of accuracies differing only there)."""
        advantages = self.advantages(acc, None if reference is None else reference[2], changed)
        return self.frontier(acc), self.brackets(advantages) + self.verdicts(advantages), advantages

    def differs(self, now: np.ndarray, reference: tuple, changed=None) -> np.ndarray:
        """[B] bool: column b of ``now`` decides differently from column b of ``reference``
        (the :meth:`outcomes` of the accuracies compared against, computed once by the caller;
        ``changed``: the only scenario rows where ``now`` differs from them, if known)."""
        front, per_decision, _ = self.outcomes(now, reference if changed is not None else None, changed)
        out = (front != reference[0]).any(axis=0)
        for mine, theirs in zip(per_decision, reference[1]):
            out |= np.array([x != y for x, y in zip(mine, theirs)], dtype=bool)
        return out

    def changed(self, now: np.ndarray, full: np.ndarray) -> np.ndarray:
        """[B] bool: column b of ``now`` and column b of ``full`` (both [n, B]) decide differently."""
        return self.differs(now, self.outcomes(full))


def _touched(rows: np.ndarray, comp: _threshold.Comparisons, n_scenarios: int) -> np.ndarray:
    """[scenarios, comparisons] bool: the scenario rows (of the whole table) each comparison reads."""
    touched = np.zeros((n_scenarios, len(comp.a)), dtype=bool)
    for i, (a, cand) in enumerate(zip(comp.a, comp.b)):
        touched[rows[a], i] = True
        touched[rows[np.asarray(cand)], i] = True
    return touched


def thinking_per_question(samples: dict[int, int]) -> int:
    """Thinking tokens one question's samples decode when each budget is read at
    ``samples[budget]`` samples: each sample thinks to the largest budget that reads it."""
    budgets = sorted(samples, reverse=True)
    return sum(b * (samples[b] - (samples[budgets[i - 1]] if i else 0)) for i, b in enumerate(budgets))


def closing_savings(budgets: list[int], questions: int, remaining: int) -> list[int]:
    """Thinking tokens that closing the top k of a generation's open ``budgets`` (ascending)
    saves at most, for k = 0 .. len(budgets): its ``remaining`` samples per question think to
    the largest budget left open instead of the largest open now."""
    top = budgets[-1]
    left_open = [*reversed(budgets), 0]
    return [questions * remaining * (top - left_open[k]) for k in range(len(budgets) + 1)]


class BudgetClosing:
    """One round's closing of token budgets under the curtailment rule.

    A generation's open budgets are the smallest ones (its samples think to the largest open
    budget); closing is top-down, since closing a small budget while a larger one stays open
    saves nothing (thinking passes through it). A closed budget keeps its estimate from the
    samples drawn so far. ``predicted``: gen_id -> [(budget, its scenario rows, [rows, draws]
    full-design accuracies)] in increasing budget order, for every generation still sampling;
    in draw b every one of them takes its b-th completion.

    Each generation alone may close the most top budgets whose predictive probability of a
    changed decision is below ``gamma`` (the count found by bisection: closing more budgets
    moves more scenarios); then one error budget is shared: while closing everything chosen
    together changes a decision with probability ``gamma`` or more, the generation whose step
    back undoes the most of the changed draws per token it gives up (``savings``: gen_id ->
    thinking tokens saved by closing its top k budgets, k = 0, 1, ...; one per budget when
    not given) closes one budget fewer (:meth:`retreat`), and steps back that later ones made
    unnecessary are taken again (:meth:`readmit`). Probabilities are taken at their one-sided
    Clopper-Pearson bound at ``level`` over the draws, so nothing closes on the luck of the draws.
    """

    def __init__(self, current: np.ndarray, predicted: dict, decisions: Decisions, gamma: float, level: float = 0.95,
                 savings: dict | None = None):
        self.current = np.asarray(current, dtype=float)
        self.predicted, self.decisions, self.gamma, self.level = predicted, decisions, gamma, level
        self.savings = savings or {g: list(range(len(b) + 1)) for g, b in predicted.items()}
        self.draws = next(iter(predicted.values()))[0][2].shape[1] if predicted else 0
        self.full = np.repeat(self.current[:, None], self.draws, axis=1)
        for budgets in predicted.values():
            for _, rows, draws in budgets:
                self.full[rows] = draws
        self.reference = decisions.outcomes(self.full)

    def change(self, closing: dict[str, int]) -> float:
        """Predictive probability that closing the top ``closing[gen_id]`` open budgets of each
        generation changes some decision of the full design."""
        return float(self.changed_draws(closing).mean())

    def changed_draws(self, closing: dict[str, int], draws: np.ndarray | None = None) -> np.ndarray:
        """[draws] bool: the draws (all, or those indexed by ``draws``) in which closing the top
        ``closing[gen_id]`` open budgets of each generation changes some decision."""
        columns = slice(None) if draws is None else draws
        now = self.full[:, columns].copy()
        changed = []
        for gen_id, k in closing.items():
            for _, rows, _ in self.predicted[gen_id][len(self.predicted[gen_id]) - k:]:
                now[rows] = self.current[rows, None]
                changed.append(rows)
        changed = np.concatenate(changed) if changed else np.zeros(0, dtype=int)
        reference = self.reference
        if draws is not None:
            front, per_decision, advantages = reference
            reference = (front[:, draws], [[d[i] for i in draws] for d in per_decision],
                         [a[:, draws] for a in advantages])
        return self.decisions.differs(now, reference, changed)

    def below_gamma(self, p: float) -> bool:
        return monte_carlo_upper(p, self.draws, self.level) < self.gamma

    def alone(self, gen_id: str) -> tuple[int, float]:
        """The most top budgets this generation alone may close, and its change probability."""
        top = len(self.predicted[gen_id])
        p = self.change({gen_id: top})
        if self.below_gamma(p):
            return top, p
        best, low, high = (0, 1.0), 1, top - 1
        while low <= high:
            mid = (low + high) // 2
            p = self.change({gen_id: mid})
            if self.below_gamma(p):
                best, low = (mid, p), mid + 1
            else:
                high = mid - 1
        return best

    def closing(self) -> dict[str, int]:
        """gen_id -> how many top open budgets close this round (absent: none)."""
        own = {g: self.alone(g) for g in sorted(self.predicted)}
        closing = {g: k for g, (k, _) in own.items() if k}
        given_up = []
        while closing:
            changed = self.changed_draws(closing)
            if self.below_gamma(changed.mean()):
                break
            retreat = self.retreat(closing, np.flatnonzero(changed), own)
            given_up.append((self.step_tokens(retreat, closing[retreat]), retreat))
            closing[retreat] -= 1
            if closing[retreat]:
                own[retreat] = (closing[retreat], self.change({retreat: closing[retreat]}))
            else:
                del closing[retreat]
        return self.readmit(closing, given_up)

    def readmit(self, closing: dict[str, int], given_up: list[tuple[float, str]]) -> dict[str, int]:
        """``closing`` with the steps back that later ones made unnecessary taken again, the
        most tokens first, each only while all closings together stay below ``gamma``."""
        for _, gen_id in sorted(given_up, reverse=True):
            trial = {**closing, gen_id: closing.get(gen_id, 0) + 1}
            if self.below_gamma(self.change(trial)):
                closing = trial
        return closing

    def retreat(self, closing: dict[str, int], changed: np.ndarray, own: dict) -> str:
        """The generation that keeps one more budget open when the round's closings together
        change decisions in the draws ``changed``: the one whose step back undoes the most of
        those draws per token it gives up (``savings``); where no single step undoes any, the
        one whose whole closing undoes the most per token; failing that, the one most doubtful
        alone. Draws that no step touches are then left to the next step back."""
        def undone(trial: dict[str, int]) -> int:
            return len(changed) - int(self.changed_draws(trial, changed).sum())

        for back in (lambda g: closing[g] - 1, lambda g: 0):
            gains = {g: undone({**closing, g: back(g)}) / max(
                self.savings[g][closing[g]] - self.savings[g][back(g)], 1) for g in sorted(closing)}
            if max(gains.values()) > 0:
                return max(gains, key=lambda g: (gains[g], -self.step_tokens(g, closing[g]), g))
        return max(closing, key=lambda g: (own[g][1], g))

    def step_tokens(self, gen_id: str, k: int) -> float:
        """Tokens that closing ``k`` top budgets of ``gen_id`` saves beyond closing ``k - 1``."""
        return self.savings[gen_id][k] - self.savings[gen_id][k - 1]


# ----------------------------------------------------------------------- one round's decision


@dataclass(frozen=True)
class Outcome:
    """A generation's decision after a round: why it stops (or :data:`OPEN`), and the budgets
    that go on sampling next round (none once it stops)."""

    reason: str
    open_budgets: tuple[int, ...] = ()


def decide_round(scenarios: pd.DataFrame, samples: dict, drawn: dict[str, int], maximum: dict[str, int],
                 rule: AdaptiveRule, analysis: dict, seed: int, round_index: int,
                 open_: set[str] | None = None, decisions: "Decisions | None" = None,
                 predictive=None) -> dict[str, Outcome]:
    """gen_id -> its :class:`Outcome`: the budgets that draw ``rule.step`` more samples next round.

    ``scenarios``: one row per scenario with the columns of the aggregate table (``gen_id`` is
    the generation of the full design, ``accuracy`` the estimate from the samples drawn so far,
    ``n_samples``, ``n_questions``); ``samples``: gen_id -> {token_budget: (correct, answers)}
    for its open budgets only (the smallest ones), each ``[Q, drawn]`` with questions in a fixed
    order and samples by index; ``drawn`` / ``maximum``: samples per question so far (of the
    open budgets) and of the full design. ``decisions`` may be given to reuse the structure
    built from memory (it depends on the scenario list only). Only the generations in ``open_``
    (default: all) are decided; the others keep their estimates. ``predictive`` draws the
    samples to come (:func:`jeffreys_predictive`'s shape; default: the rule's
    ``predictive``, from :data:`PREDICTIVES`). The curtailment rule closes
    budgets top-down (:class:`BudgetClosing`); the confidence rule stops whole generations."""
    scen = scenarios.reset_index(drop=True)
    open_ = set(drawn) if open_ is None else set(open_)
    if rule.rule == CONFIDENCE_RULE:
        delta = per_test_delta(rule.confidence, len(scen), len(rule.rounds))
        status = stopping_generations(scen, decided_scenarios(scen, delta, analysis, rule.epsilon), drawn, maximum)
        return {g: Outcome(s, tuple(sorted(samples[g])) if s == OPEN else ()) for g, s in status.items() if g in open_}
    decisions = decisions or Decisions(scen, analysis)
    rng = np.random.default_rng([seed, round_index])
    out = {g: Outcome(MAXIMUM) for g in open_ if drawn[g] >= maximum[g]}
    gen_of, budget_of, g_of = scen["gen_id"].to_numpy(), scen["token_budget"].to_numpy(), scen["G"].to_numpy()
    deciding = sorted(g for g in open_ if drawn[g] < maximum[g])
    datasets = dict(zip(gen_of, scen["dataset"].astype(str)))
    draw = (predictive or PREDICTIVES[rule.predictive])({g: samples[g] for g in deciding}, datasets)
    predicted = {}
    for gen_id in deciding:
        pools = draw(gen_id, maximum[gen_id], CURTAIL_DRAWS, rng)
        predicted[gen_id] = []
        for budget in sorted(samples[gen_id]):
            rows = np.flatnonzero((gen_of == gen_id) & (budget_of == budget))
            predicted[gen_id].append((budget, rows, predicted_rows(pools, budget_of[rows], g_of[rows])))
    current = scen["accuracy"].to_numpy(dtype=float)
    savings = {g: closing_savings([b for b, _, _ in predicted[g]], next(iter(samples[g].values()))[0].shape[0],
                                  maximum[g] - drawn[g]) for g in deciding}
    closing = BudgetClosing(current, predicted, decisions, rule.gamma, rule.confidence, savings).closing()
    for gen_id, budgets in predicted.items():
        still = tuple(budget for budget, _, _ in budgets[: len(budgets) - closing.get(gen_id, 0)])
        out[gen_id] = Outcome(OPEN, still) if still else Outcome(CURTAILED)
    return out


def curtail_floor(level: float) -> float:
    """The least change probability :data:`CURTAIL_DRAWS` predictive draws bound at ``level``
    (none of them changed): a ``curtail_gamma`` at or below it stops nothing."""
    return monte_carlo_upper(0.0, CURTAIL_DRAWS, level)


def monte_carlo_upper(share: float, draws: int, level: float) -> float:
    """One-sided Clopper-Pearson upper bound at ``level`` of a probability seen in ``share`` of
    ``draws`` independent draws."""
    changed = round(share * draws)
    return 1.0 if changed >= draws else float(_scipy_stats.beta.ppf(level, changed + 1, draws - changed))
