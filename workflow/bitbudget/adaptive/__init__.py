"""Adaptive sample allocation: after each round, close the token budgets whose decisions are settled.

The curtailment rule (``rule: curtail``; docs/adaptive.md gives the argument in full)
------------------------------------------------------------------------------------
Sampling runs in rounds: ``initial`` samples per question, then ``step`` more, up to
``maximum`` (``sampling.samples_per_question``). Stochastic curtailment (Lan, Simon and
Halperin 1982; Jennison and Turnbull 2000, ch. 10), per token budget: a generation's largest
open budgets close when the predictive probability that the full design (every question at
``maximum`` samples) would decide differently from closing them now is below ``gamma``; a
closed budget keeps its estimate, and the samples of the next round think only to the largest
budget still open (:class:`BudgetClosing`: closing is top-down, since thinking to a large
budget passes through every smaller one). A generation stops when every budget is closed. The
rest of each question's samples is drawn from its posterior predictive, its prior centred on a
Rasch fit of every deciding generation's answers to the dataset's questions
(:func:`rasch_predictive`, :mod:`bitbudget.item_response`), one posterior quantile per question
for all budgets (:func:`coupled_pools`); the scenarios' full-design accuracies are recomputed
with the estimators of :mod:`bitbudget.stats`, and the decisions of the fit (:class:`Decisions`)
compared with and without the budgets closed, the other generations still sampling completed
by their own predictive draws. Probabilities are taken at their Monte Carlo upper bound (at
``confidence``), and the closings of one round share one error budget: ``gamma`` split evenly over
the rounds that decide (:func:`spending`). A round searches its closings on one set of
predictive draws and takes them only once a fresh set certifies them (:func:`certify`). This
controls agreement with the full design under that model, over the whole study; it says nothing
about the true accuracies.
(A confidence rule, stopping whole generations on simultaneous intervals, was removed: it
stopped nothing on the simulated paper grid, docs/adaptive.md.)

The package, by concern: :mod:`.schedule` (the settings, their rounds, the reasons a round
gives), :mod:`.predictive` (the samples to come), :mod:`.decisions` (the fit's decisions over
many accuracy vectors, through the public API of :mod:`bitbudget.frontier`,
:mod:`bitbudget.threshold` and :mod:`bitbudget.findings`) and :mod:`.closing` (the curtailment
rule and one round's decision). Its modules are imported by name; this module keeps the names
the single module had.
"""

from __future__ import annotations

from bitbudget.adaptive.closing import (CURTAIL_DRAWS, BudgetClosing, Outcome, certification_draws, certify,
                                        closing_savings, curtail_floor, decide_round, least_gamma, monte_carlo_upper,
                                        thinking_per_question)
from bitbudget.adaptive.decisions import Decisions
from bitbudget.adaptive.predictive import (PREDICTIVES, answer_pool, coupled_pools, jeffreys_predictive,
                                           predicted_accuracy, predicted_rows, predictive_pools, rasch_predictive)
from bitbudget.adaptive.schedule import (CURTAIL_RULE, CURTAILED, MAXIMUM, ONE_ROUND, OPEN, AdaptiveRule, rounds,
                                         spending)

__all__ = ["AdaptiveRule", "rounds", "spending", "answer_pool", "predictive_pools", "coupled_pools", "jeffreys_predictive",
           "rasch_predictive", "PREDICTIVES", "predicted_accuracy", "predicted_rows", "Decisions",
           "thinking_per_question", "closing_savings", "BudgetClosing", "Outcome", "curtail_floor",
           "monte_carlo_upper", "decide_round", "certify", "certification_draws", "least_gamma"]
