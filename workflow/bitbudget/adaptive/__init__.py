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

The package, by concern: :mod:`.schedule` (the settings, their rounds, the reasons a round
gives), :mod:`.bounds` (the intervals), :mod:`.confidence` (the confidence rule),
:mod:`.predictive` (the samples to come), :mod:`.decisions` (the fit's decisions over many
accuracy vectors, through the public API of :mod:`bitbudget.frontier`,
:mod:`bitbudget.threshold` and :mod:`bitbudget.findings`) and :mod:`.closing` (the
curtailment rule and one round's decision). Its modules are imported by name; this module
keeps the names the single module had.
"""

from __future__ import annotations

from bitbudget.adaptive.bounds import effective_terms, intervals, kl_bounds, per_test_delta, radius
from bitbudget.adaptive.closing import (CURTAIL_DRAWS, BudgetClosing, Outcome, closing_savings, curtail_floor,
                                        decide_round, monte_carlo_upper, thinking_per_question)
from bitbudget.adaptive.confidence import (comparisons_settled, decided_scenarios, frontier_decided,
                                           stopping_generations)
from bitbudget.adaptive.decisions import Decisions
from bitbudget.adaptive.predictive import (PREDICTIVES, answer_pool, coupled_pools, jeffreys_predictive,
                                           predicted_accuracy, predicted_rows, predictive_pools, rasch_predictive)
from bitbudget.adaptive.schedule import (CONFIDENCE_RULE, CURTAIL_RULE, CURTAILED, DOMINATED, FRONTIER, MAXIMUM, OPEN,
                                         AdaptiveRule, rounds)

__all__ = ["AdaptiveRule", "rounds", "per_test_delta", "radius", "intervals", "frontier_decided",
           "comparisons_settled", "decided_scenarios", "stopping_generations", "answer_pool",
           "predictive_pools", "coupled_pools", "jeffreys_predictive", "rasch_predictive", "PREDICTIVES",
           "predicted_accuracy", "predicted_rows", "Decisions", "thinking_per_question", "closing_savings",
           "BudgetClosing", "Outcome", "curtail_floor", "monte_carlo_upper", "decide_round"]
