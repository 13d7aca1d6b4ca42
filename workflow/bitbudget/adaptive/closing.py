"""The curtailment rule (`rule: curtail`): which token budgets close after a round, and one
round's decision."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

from bitbudget.adaptive.decisions import Decisions
from bitbudget.adaptive.predictive import PREDICTIVES, completion_targets, drawing, predicted_rows
from bitbudget.adaptive.schedule import CURTAILED, MAXIMUM, OPEN, AdaptiveRule

__all__ = ["CURTAIL_DRAWS", "CERTIFICATIONS", "QUESTION_CERTIFICATIONS", "FLOOR_SHARE", "MAX_CERTIFICATION_DRAWS",
           "thinking_per_question", "closing_savings", "BudgetClosing", "QuestionClosing", "Outcome", "decide_round",
           "certify", "certify_questions", "certification_level", "certifications", "completions", "predict",
           "certification_draws", "least_gamma", "curtail_floor", "monte_carlo_upper"]

#: predictive completions a round searches its closings on (per generation)
CURTAIL_DRAWS = 200
#: fresh predictive sets a round may certify its closings on before it closes nothing
CERTIFICATIONS = 2
#: fresh predictive sets a round certifies its question closings (with its budgets') on, under
#: ``sampling.adaptive.close_questions``
QUESTION_CERTIFICATIONS = 1
#: a certification draws enough completions that its bound with none changed is at most this
#: share of the round's error budget (one or two changed draws may still pass)
FLOOR_SHARE = 0.5
#: completions drawn per block of a certification (memory: one block's answer pools at a time)
DRAW_BLOCK = 500
#: the most completions one certification may draw (run time: docs/adaptive.md, "Cost")
MAX_CERTIFICATION_DRAWS = 20_000


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
    Clopper-Pearson bound at ``level`` over the draws, so nothing closes on the luck of the draws;
    ``level`` None takes them as the share of draws that changed (a search whose closings a
    fresh set then certifies, :func:`certify`).
    """

    def __init__(self, current: np.ndarray, predicted: dict, decisions: Decisions, gamma: float,
                 level: float | None = 0.95, savings: dict | None = None):
        self.current = np.asarray(current, dtype=float)
        self.predicted, self.decisions, self.gamma, self.level = predicted, decisions, gamma, level
        self.savings = savings or {g: list(range(len(b) + 1)) for g, b in predicted.items()}
        self.draws = next(iter(predicted.values()))[0][2].shape[1] if predicted else 0
        self.full = np.repeat(self.current[:, None], self.draws, axis=1)
        for budgets in predicted.values():
            for _, rows, draws in budgets:
                self.full[rows] = draws
        self.reference = decisions.outcomes(self.full)

    def change(self, closing: dict[str, int], arms: dict | None = None) -> float:
        """Predictive probability that closing the top ``closing[gen_id]`` open budgets of each
        generation (and the questions of ``arms``) changes some decision of the full design."""
        return float(self.changed_draws(closing, arms=arms).mean())

    def changed_draws(self, closing: dict[str, int], draws: np.ndarray | None = None,
                      arms: dict | None = None) -> np.ndarray:
        """[draws] bool: the draws (all, or those indexed by ``draws``) in which closing the top
        ``closing[gen_id]`` open budgets of each generation changes some decision; ``arms``:
        gen_id -> [(rows, [rows, draws] accuracies)] of the budgets it leaves open with some of
        their questions closed (:class:`QuestionClosing`)."""
        columns = slice(None) if draws is None else draws
        now = self.full[:, columns].copy()
        changed = []
        for gen_id, k in closing.items():
            for _, rows, _ in self.predicted[gen_id][len(self.predicted[gen_id]) - k:]:
                now[rows] = self.current[rows, None]
                changed.append(rows)
        for arm in (arms or {}).values():
            for rows, values in arm:
                now[rows] = values[:, columns]
                changed.append(rows)
        changed = np.concatenate(changed) if changed else np.zeros(0, dtype=int)
        reference = self.reference
        if draws is not None:
            front, per_decision, advantages = reference
            reference = (front[:, draws], [[d[i] for i in draws] for d in per_decision],
                         [a[:, draws] for a in advantages])
        return self.decisions.differs(now, reference, changed)

    def below_gamma(self, p: float) -> bool:
        if self.level is None:
            return p < self.gamma
        return monte_carlo_upper(p, self.draws, self.level) < self.gamma

    def passes(self, closing: dict[str, int], arms: dict | None = None) -> bool:
        """Whether ``closing`` (and the question closings of ``arms``) changes some decision with
        probability below ``gamma`` on these draws."""
        return self.below_gamma(self.change(closing, arms))

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
        return self.settle({g: k for g, (k, _) in own.items() if k})

    def settle(self, closing: dict[str, int]) -> dict[str, int]:
        """``closing`` with one budget fewer closed at a time (:meth:`retreat`) until all of them
        together change a decision with probability below ``gamma``, then :meth:`readmit`."""
        closing, given_up = dict(closing), []
        while closing:
            changed = self.changed_draws(closing)
            if self.below_gamma(changed.mean()):
                break
            retreat = self.retreat(closing, np.flatnonzero(changed))
            given_up.append((self.step_tokens(retreat, closing[retreat]), retreat))
            closing[retreat] -= 1
            if not closing[retreat]:
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

    def retreat(self, closing: dict[str, int], changed: np.ndarray) -> str:
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
        return max(closing, key=lambda g: (self.change({g: closing[g]}), g))

    def step_tokens(self, gen_id: str, k: int) -> float:
        """Tokens that closing ``k`` top budgets of ``gen_id`` saves beyond closing ``k - 1``."""
        return self.savings[gen_id][k] - self.savings[gen_id][k - 1]


def closed_pools(completed: np.ndarray, now: np.ndarray, questions: np.ndarray) -> np.ndarray:
    """Completed pools ``[draws, Q, K']`` with ``questions`` at their current answer counts
    ``now`` ``[Q, K]`` (K <= K'): closed, they draw none of the samples to come."""
    out = completed.copy()
    out[:, questions, :] = 0
    out[:, questions, : now.shape[1]] = now[questions]
    return out


class QuestionClosing:
    """One round's closing of single questions (``sampling.adaptive.close_questions``), after
    its budget closings ``closing`` (taken as they are).

    In a generation still open, a question closes for every budget it leaves open and keeps
    the samples it holds. Its candidates are its questions still drawing, once they hold the
    largest G of those budgets' scenarios, those whose completions move their share right least
    first; each generation alone closes the longest run of them (bisection, as
    :meth:`BudgetClosing.alone`) whose predictive probability of a changed decision, with every
    budget closing of the round, is below ``target``; then, while all of them together are not,
    every generation closes half as many. ``check`` holds the search draws; ``pools``: gen_id ->
    {budget: the completed pools of those draws}; ``now``: gen_id -> {budget: its answer
    counts}; ``drawn``: samples per question so far. Questions get one certification, not a
    retreat: the search aims at :data:`FLOOR_SHARE` of the round's gamma (``target``), so that
    the fresh draws' bound leaves room for the search's luck."""

    def __init__(self, check: BudgetClosing, closing: dict[str, int], pools: dict, now: dict,
                 drawn: dict[str, int], budgets: np.ndarray, gs: np.ndarray, target: float):
        self.check, self.closing, self.pools, self.now, self.drawn = check, closing, pools, now, drawn
        self.target = target
        self.budgets, self.gs = budgets, gs
        self.still_open = {g: [(b, rows) for b, rows, _ in entries[: len(entries) - closing.get(g, 0)]]
                           for g, entries in check.predicted.items()}
        self.order = {g: self.candidates(g) for g, left in self.still_open.items() if left}

    def candidates(self, gen_id: str) -> np.ndarray:
        """The questions still drawing, those whose completions move their share right least first;
        none before they hold the largest G of the scenarios left open (a question closed below
        it would leave that maj@G without an estimate for good)."""
        if self.drawn[gen_id] < max(int(self.gs[rows].max()) for _, rows in self.still_open[gen_id]):
            return np.zeros(0, dtype=int)
        movement = 0.0
        for budget, _ in self.still_open[gen_id]:
            completed, now = self.pools[gen_id][budget], self.now[gen_id][budget]
            movement = movement + np.abs(completed[..., 0] / completed.sum(axis=-1)
                                         - now[:, 0] / now.sum(axis=-1)).mean(axis=0)
        still = np.flatnonzero(drawing(self.now[gen_id], self.drawn[gen_id]))
        return still[np.argsort(movement[still], kind="stable")]

    def arm(self, gen_id: str, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(rows, [rows, draws])]: the accuracies of the budgets ``gen_id`` leaves open with its
        first ``k`` candidates closed."""
        questions = self.order[gen_id][:k]
        return [(rows, predicted_rows({b: closed_pools(self.pools[gen_id][b], self.now[gen_id][b], questions)},
                                      self.budgets[rows], self.gs[rows])) for b, rows in self.still_open[gen_id]]

    def passes(self, counts: dict[str, int]) -> bool:
        """Whether closing the first ``counts[gen_id]`` candidates of each generation, with the
        round's budget closings, changes some decision in fewer than ``target`` of the search draws."""
        return self.check.change(self.closing, {g: self.arm(g, k) for g, k in counts.items() if k}) < self.target

    def alone(self, gen_id: str) -> int:
        """The most candidates of ``gen_id`` that close with the round's budget closings."""
        best, low, high = 0, 1, len(self.order[gen_id])
        while low <= high:
            mid = (low + high) // 2
            if self.passes({gen_id: mid}):
                best, low = mid, mid + 1
            else:
                high = mid - 1
        return best

    def questions(self) -> dict[str, np.ndarray]:
        """gen_id -> the indices of the questions that close this round (absent: none)."""
        counts = {g: self.alone(g) for g in sorted(self.order)}
        counts = {g: k for g, k in counts.items() if k}
        while counts and not self.passes(counts):
            counts = {g: k // 2 for g, k in counts.items() if k // 2}
        return {g: np.sort(self.order[g][:k]) for g, k in counts.items()}


# ----------------------------------------------------------------------- one round's decision


@dataclass(frozen=True)
class Outcome:
    """A generation's decision after a round: why it stops (or :data:`OPEN`), the budgets that
    go on sampling next round (none once it stops), and the questions (indices in the order of
    its answer counts) that close this round and keep the samples they hold."""

    reason: str
    open_budgets: tuple[int, ...] = ()
    closed_questions: tuple[int, ...] = ()


def decide_round(scenarios: pd.DataFrame, samples: dict, drawn: dict[str, int], maximum: dict[str, int],
                 rule: AdaptiveRule, analysis: dict, seed: int, round_index: int,
                 open_: set[str] | None = None, decisions: "Decisions | None" = None,
                 predictive=None, threads: int = 1) -> dict[str, Outcome]:
    """gen_id -> its :class:`Outcome`: the budgets that draw ``rule.step`` more samples next round.

    ``scenarios``: one row per scenario with the columns of the aggregate table (``gen_id`` is
    the generation of the full design, ``accuracy`` the estimate from the samples drawn so far,
    ``n_samples``, ``n_questions``); ``samples``: gen_id -> {token_budget: answer counts [Q, K]}
    (:func:`bitbudget.adaptive.predictive.answer_pool`) for its open budgets only (the smallest
    ones), questions in a fixed order; ``drawn`` / ``maximum``: samples per question so far (of
    the open budgets) and of the full design. A question holding fewer than ``drawn`` was closed
    in an earlier round: it keeps its count in every completion
    (:func:`bitbudget.adaptive.predictive.completion_targets`) and saves no tokens.
    ``decisions`` may be given to reuse the structure built from memory (it depends on the
    scenario list only). Only the generations in ``open_``
    (default: all) are decided; the others keep their estimates. ``predictive`` draws the
    samples to come (:func:`jeffreys_predictive`'s shape; default: the rule's
    ``predictive``, from :data:`PREDICTIVES`). Budgets close top-down (:class:`BudgetClosing`):
    searched on :data:`CURTAIL_DRAWS` completions against the round's share of ``rule.gamma``
    (:meth:`AdaptiveRule.round_gamma`), then certified on fresh ones (:func:`certify`), drawn on
    up to ``threads`` threads (:func:`predict`: the same outcome at any count)."""
    scen = scenarios.reset_index(drop=True)
    open_ = set(drawn) if open_ is None else set(open_)
    decisions = decisions or Decisions(scen, analysis)
    out = {g: Outcome(MAXIMUM) for g in open_ if drawn[g] >= maximum[g]}
    deciding = sorted(g for g in open_ if drawn[g] < maximum[g])
    datasets = dict(zip(scen["gen_id"], scen["dataset"].astype(str)))
    draw = (predictive or PREDICTIVES[rule.predictive])({g: samples[g] for g in deciding}, datasets)

    targets = {g: completion_targets(samples[g], drawn[g], maximum[g]) for g in deciding}

    def complete(draws: int, stream: tuple[int, ...], **options) -> dict:
        return completions(scen, samples, targets, deciding, draw, draws, stream, threads, **options)

    search = complete(CURTAIL_DRAWS, (seed, round_index), keep_pools=rule.close_questions)
    predicted = as_predicted(search)
    current = scen["accuracy"].to_numpy(dtype=float)
    savings = {g: closing_savings([b for b, _, _ in predicted[g]], open_questions(samples[g], drawn[g]),
                                  maximum[g] - drawn[g]) for g in deciding}
    gamma = rule.round_gamma(round_index)
    attempts = certifications(rule)
    level = certification_level(rule.confidence, rule.deciding_rounds, attempts)
    fresh_draws = certification_draws(gamma, rule.confidence, rule.deciding_rounds, attempts)
    search_check = BudgetClosing(current, predicted, decisions, gamma, None, savings)
    closing = search_check.closing() if gamma else {}
    closing = certify(closing, lambda attempt, n: BudgetClosing(
        current, as_predicted(complete(n, (seed, round_index, attempt))), decisions, gamma, level, savings), fresh_draws)
    questions = {}
    if rule.close_questions and gamma:
        pools = {g: {b: c.pools for b, c in by_budget.items()} for g, by_budget in search.items()}
        found = QuestionClosing(search_check, closing, pools, samples, drawn, scen["token_budget"].to_numpy(),
                                scen["G"].to_numpy(), FLOOR_SHARE * gamma).questions()

        def fresh_with_arms(n: int, found: dict) -> tuple[BudgetClosing, dict]:
            # each arm is scored at the budgets the closing leaves open: the only ones it is read at
            arms = {g: {b: questions for b, _, _ in predicted[g][: len(predicted[g]) - closing.get(g, 0)]}
                    for g, questions in found.items()}
            done = complete(n, (seed, round_index, CERTIFICATIONS + 1), arms=arms)
            return BudgetClosing(current, as_predicted(done), decisions, gamma, level, savings), done
        questions = certify_questions(closing, found, fresh_with_arms, fresh_draws)
    for gen_id, budgets in predicted.items():
        still = tuple(budget for budget, _, _ in budgets[: len(budgets) - closing.get(gen_id, 0)])
        closed = tuple(int(q) for q in questions.get(gen_id, ())) if still else ()
        out[gen_id] = Outcome(OPEN, still, closed) if still else Outcome(CURTAILED)
    return out


def certify_questions(closing: dict[str, int], found: dict[str, np.ndarray], fresh, draws: int) -> dict:
    """The question closings a round takes: ``found`` (on the search draws) if, with the round's
    certified budget closings ``closing``, their change probability on ``draws`` fresh
    completions (``fresh(draws, arms)``: a :class:`BudgetClosing` and the :func:`completions`,
    with the closed arms of ``arms`` (gen_id -> its questions closing) scored beside) is bounded below the
    round's gamma; else none (the budget closings stand: they were certified alone)."""
    if not found:
        return {}
    check, completed = fresh(draws, found)
    arms = {}
    for gen_id in found:
        entries = [completed[gen_id][b] for b in sorted(completed[gen_id])]
        arms[gen_id] = [(c.rows, c.arm) for c in entries[: len(entries) - closing.get(gen_id, 0)]]
    return found if check.passes(closing, arms) else {}


def open_questions(pools: dict, drawn: int) -> int:
    """Questions of a generation still drawing (``pools``: its open budgets' answer counts):
    those holding the round's ``drawn`` samples, not fewer (closed in an earlier round)."""
    return int(drawing(pools, drawn).sum())


@dataclass(frozen=True)
class Completion:
    """One budget of a generation over a round's predictive completions: its scenario rows, their
    full-design accuracies ``[rows, draws]``, the accuracies with the questions of an arm closed
    (:func:`completions`' ``arms``; else None) and the completed pools (``keep_pools``; else None)."""

    rows: np.ndarray
    values: np.ndarray
    arm: np.ndarray | None = None
    pools: np.ndarray | None = None


def completions(scen: pd.DataFrame, samples: dict, maximum: dict, deciding: list[str], draw, draws: int,
                stream: tuple[int, ...], threads: int = 1, arms: dict | None = None,
                keep_pools: bool = False) -> dict[str, dict[int, Completion]]:
    """gen_id -> {budget: :class:`Completion`} for the ``deciding`` generations
    (``maximum[gen_id]``: the samples per question its completions hold, one count or one per
    question): ``draws`` completions from ``draw`` in blocks of at most :data:`DRAW_BLOCK`, block
    i from the random stream ``(*stream, i)`` (one block: ``stream`` itself, as rounds before the
    certification drew them). ``arms``: gen_id -> {budget: question indices} scored closed beside the full
    design (:func:`closed_pools`). Blocks run on up to ``threads`` threads (numpy and scipy
    release the GIL in their loops); each block draws its generations in order from its own
    stream, so the completions are the same at any thread count."""
    gen_of, budget_of, g_of = scen["gen_id"].to_numpy(), scen["token_budget"].to_numpy(), scen["G"].to_numpy()
    sizes = [min(DRAW_BLOCK, draws - start) for start in range(0, draws, DRAW_BLOCK)] if draws > DRAW_BLOCK else [draws]
    rows = {g: {b: np.flatnonzero((gen_of == g) & (budget_of == b)) for b in sorted(samples[g])} for g in deciding}
    arms = arms or {}

    def scored(gen_id: str, budget: int, completed: np.ndarray) -> tuple:
        r = rows[gen_id][budget]
        closed = arms.get(gen_id, {}).get(budget)
        arm = (predicted_rows({budget: closed_pools(completed, samples[gen_id][budget], closed)},
                              budget_of[r], g_of[r]) if closed is not None else None)
        return (predicted_rows({budget: completed}, budget_of[r], g_of[r]), arm,
                completed.astype(np.int32) if keep_pools else None)

    def block(i: int) -> dict:
        rng = np.random.default_rng(list(stream) if len(sizes) == 1 else [*stream, i])
        out = {}
        for gen_id in deciding:
            pools = draw(gen_id, maximum[gen_id], sizes[i], rng)
            out[gen_id] = {b: scored(gen_id, b, pools[b]) for b in rows[gen_id]}
        return out

    with ThreadPoolExecutor(max(1, min(threads, len(sizes)))) as pool:
        blocks = list(pool.map(block, range(len(sizes))))

    def joined(gen_id: str, budget: int, part: int) -> np.ndarray | None:
        parts = [done[gen_id][budget][part] for done in blocks]
        return None if parts[0] is None else np.concatenate(parts, axis=0 if part == 2 else 1)
    return {g: {b: Completion(r, joined(g, b, 0), joined(g, b, 1), joined(g, b, 2)) for b, r in rows[g].items()}
            for g in deciding}


def as_predicted(done: dict[str, dict[int, Completion]]) -> dict:
    """:func:`completions` as :class:`BudgetClosing` reads them: gen_id -> [(budget, its scenario
    rows, [rows, draws] full-design accuracies)] in increasing budget order."""
    return {g: [(b, c.rows, c.values) for b, c in sorted(by_budget.items())] for g, by_budget in done.items()}


def predict(scen: pd.DataFrame, samples: dict, maximum: dict, deciding: list[str], draw, draws: int,
            stream: tuple[int, ...], threads: int = 1) -> dict:
    """gen_id -> [(budget, its scenario rows, [rows, draws] full-design accuracies)]: the
    :func:`completions` of the ``deciding`` generations as :func:`as_predicted` gives them."""
    return as_predicted(completions(scen, samples, maximum, deciding, draw, draws, stream, threads))


def certify(closing: dict[str, int], fresh, draws: int) -> dict[str, int]:
    """The closings a round takes: ``closing`` (found on the search draws) if its change
    probability, on ``draws`` fresh completions (``fresh(attempt, draws)``: a
    :class:`BudgetClosing` on completions drawn for that attempt alone), is bounded below the
    round's gamma. Where it is not, those completions settle a smaller closing
    (:meth:`BudgetClosing.settle`) and the next attempt certifies it on completions of its own;
    after :data:`CERTIFICATIONS` failed attempts nothing closes. No completion that chose a
    closing ever certifies it."""
    for attempt in range(1, CERTIFICATIONS + 1):
        if not closing:
            return closing
        check = fresh(attempt, draws)
        if check.passes(closing):
            return closing
        closing = check.settle(closing) if attempt < CERTIFICATIONS else {}
    return closing


def certifications(rule: AdaptiveRule) -> int:
    """Certifications each deciding round may make: :data:`CERTIFICATIONS` for its budgets, and
    :data:`QUESTION_CERTIFICATIONS` more where questions close."""
    return CERTIFICATIONS + QUESTION_CERTIFICATIONS * rule.close_questions


def certification_level(confidence: float, deciding: int, attempts: int = CERTIFICATIONS) -> float:
    """The level of each certification's bound: ``confidence`` split over the ``attempts``
    certifications each of ``deciding`` rounds may make (:data:`CERTIFICATIONS`, and
    :data:`QUESTION_CERTIFICATIONS` more where questions close), so that the chance that any
    certification of the study passes a closing at or above its round's gamma is at most
    ``1 - confidence``."""
    return 1 - (1 - confidence) / (attempts * max(deciding, 1))


def certification_draws(gamma: float, confidence: float, deciding: int, attempts: int = CERTIFICATIONS) -> int:
    """Fresh completions a certification draws: the fewest whose bound with none changed
    (at :func:`certification_level`) is at most :data:`FLOOR_SHARE` of the round's ``gamma``."""
    if gamma <= 0:
        return 0
    level = certification_level(confidence, deciding, attempts)
    return math.ceil(math.log(1 - level) / math.log1p(-FLOOR_SHARE * gamma))


def least_gamma(deciding: int, confidence: float, attempts: int = CERTIFICATIONS) -> float:
    """The least ``curtail_gamma`` whose rounds' certifications fit in
    :data:`MAX_CERTIFICATION_DRAWS` over ``deciding`` rounds: below it nothing could close in time."""
    return deciding * curtail_floor(confidence, MAX_CERTIFICATION_DRAWS, deciding, attempts) / FLOOR_SHARE


def curtail_floor(confidence: float, draws: int, deciding: int, attempts: int = CERTIFICATIONS) -> float:
    """The least change probability a certification on ``draws`` fresh completions bounds
    (none of them changed, at :func:`certification_level`)."""
    return monte_carlo_upper(0.0, draws, certification_level(confidence, deciding, attempts))


def monte_carlo_upper(share: float, draws: int, level: float) -> float:
    """One-sided Clopper-Pearson upper bound at ``level`` of a probability seen in ``share`` of
    ``draws`` independent draws."""
    changed = round(share * draws)
    return 1.0 if changed >= draws else float(_scipy_stats.beta.ppf(level, changed + 1, draws - changed))
