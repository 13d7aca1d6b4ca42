"""The adaptive stopping rule (stochastic curtailment): its rounds, settings, predictive,
decisions and closings."""

import numpy as np
import pandas as pd
import pytest

from bitbudget.adaptive import schedule
from bitbudget.adaptive.closing import (CERTIFICATIONS, CURTAIL_DRAWS, BudgetClosing, Outcome, certification_draws,
                                        certification_level, certify, closing_savings, curtail_floor, decide_round,
                                        monte_carlo_upper, predict)
from bitbudget.adaptive.decisions import Decisions
from bitbudget.adaptive.predictive import (answer_pool, coupled_pools, predicted_accuracy, predicted_rows,
                                          predictive_pools, rasch_predictive)
from bitbudget.frontier import pareto_frontier
from bitbudget.schema import schema_defaults

ANALYSIS = schema_defaults("analysis")  # a validated analysis section

Q = 200


def test_rounds_end_at_the_maximum():
    assert schedule.rounds(8, 8, 32) == [8, 16, 24, 32]
    assert schedule.rounds(8, 10, 32) == [8, 18, 28, 32]
    assert schedule.rounds(40, 8, 32) == [32]
    with pytest.raises(ValueError):
        schedule.rounds(0, 8, 32)


@pytest.mark.parametrize("initial, step, maximum", [(4, 4, 32), (8, 10, 32), (4, 4, 8), (40, 8, 32), (1, 1, 64)])
def test_the_error_budget_is_spent_over_the_deciding_rounds(initial, step, maximum):
    """Every round but the last (it reaches the maximum) gets a share of gamma; the shares sum to
    at most gamma, so by the union bound the study's closings change a decision with predictive
    probability at most gamma; a round past the deciding ones gets none."""
    rule = schedule.AdaptiveRule(initial, step, maximum, 0.95, schedule.CURTAIL_RULE, 0.02, "rasch")
    shares = [rule.round_gamma(r) for r in range(1, len(rule.rounds) + 2)]
    assert rule.deciding_rounds == len(rule.rounds) - 1
    assert sum(shares) <= 0.02 * (1 + 1e-12)
    assert all(s > 0 for s in shares[:rule.deciding_rounds]) and not any(shares[rule.deciding_rounds:])
    assert sum(schedule.spending(0.02, rule.deciding_rounds)) == pytest.approx(0.02 if rule.deciding_rounds else 0)


@pytest.mark.parametrize("gamma, deciding", [(0.02 / 7, 7), (0.05 / 3, 3), (0.02, 1)])
def test_a_certification_draws_enough_that_no_change_is_well_below_the_rounds_gamma(gamma, deciding):
    """Its bound with no changed draw is at most half the round's gamma (one changed draw still
    passes), at a level that leaves 1 - confidence for every certification of the study."""
    from bitbudget.adaptive.closing import FLOOR_SHARE

    n = certification_draws(gamma, 0.95, deciding)
    level = certification_level(0.95, deciding)
    assert (1 - level) * CERTIFICATIONS * deciding == pytest.approx(0.05)
    assert curtail_floor(0.95, n, deciding) <= FLOOR_SHARE * gamma < curtail_floor(0.95, n - 1, deciding)
    assert monte_carlo_upper(1 / n, n, level) < gamma


def _rule(n: int, maximum: int, **settings) -> schedule.AdaptiveRule:
    """The rule at the schema's defaults, sampling in rounds of ``n`` up to ``maximum``, with any
    other `sampling.adaptive` setting (gamma: `curtail_gamma`) replaced."""
    adaptive_settings = schema_defaults("sampling", "adaptive") | {"initial": n, "step": n}
    if "gamma" in settings:
        settings["curtail_gamma"] = settings.pop("gamma")
    return schedule.AdaptiveRule.from_config({"adaptive": adaptive_settings | settings}, maximum)


def _scenarios(acc, memory, n, gen=None, dataset="d"):
    k = len(acc)
    return pd.DataFrame({
        "scenario_id": [f"s{i}" for i in range(k)], "gen_id": gen or [f"g{i}" for i in range(k)],
        "dataset": dataset, "model": [f"m{i}" for i in range(k)], "weights": "bf16", "kv": "full",
        "kv_method": "full", "G": 1, "token_budget": 1000, "n_samples": n, "n_questions": Q,
        "weight_gib": memory, "total_gib": memory, "accuracy": acc})


def test_schema_defaults_fill_and_absent_is_off():
    from pathlib import Path

    import yaml

    from bitbudget.errors import ConfigError
    from bitbudget.preflight import validate_study_config

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "config.yaml").read_text())
    config = validate_study_config(raw)
    assert "adaptive" not in config["sampling"]
    assert schedule.AdaptiveRule.from_config(config["sampling"]) is None
    raw["sampling"]["adaptive"] = {"initial": 2}
    rule = schedule.AdaptiveRule.from_config(validate_study_config(raw)["sampling"])
    defaults = schema_defaults("sampling", "adaptive")
    assert (rule.initial, rule.step, rule.confidence, rule.rule, rule.gamma) == (
        2, defaults["step"], defaults["confidence"], schedule.CURTAIL_RULE, defaults["curtail_gamma"])
    assert rule.maximum == config["sampling"]["samples_per_question"]
    raw["sampling"]["adaptive"] = {"confidence": 1.5}
    with pytest.raises(ConfigError, match="confidence"):
        validate_study_config(raw)


@pytest.mark.parametrize("adaptive, field", [({"rule": "confidence"}, "sampling.adaptive.rule"),
                                             ({"epsilon": 0.01}, "sampling.adaptive.epsilon")])
def test_the_removed_confidence_rule_is_named_with_the_fix(adaptive, field):
    """A config written for the confidence rule is told it was removed and what to write instead."""
    from pathlib import Path

    import yaml

    from bitbudget.config import schema_errors
    from bitbudget.errors import ConfigError
    from bitbudget.preflight import validate_study_config

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "config.yaml").read_text())
    raw["sampling"]["adaptive"] = adaptive
    with pytest.raises(ConfigError) as error:
        validate_study_config(raw)
    message = str(error.value)
    assert message.startswith(f"config field '{field}'") and "removed" in message and "fix: " in message
    assert "docs/adaptive.md" in message
    assert schema_errors(raw) == [message]


# ----------------------------------------------------------------------- stochastic curtailment


@pytest.mark.parametrize("analysis", [{}, {"paper_names": {"models": {"4B": "m4B", "8B": "m8B"}, "datasets": {}}}],
                         ids=["cuts at the paper's GiB", "cuts placed by configuration"])
def test_decisions_match_the_fit_stage(analysis):
    """The vectorised decisions equal pareto_frontier, fit_thresholds and the findings' rule
    verdicts column by column (one implementation: all of them call the public API of frontier,
    threshold and findings)."""
    from bitbudget.findings import evaluate_findings
    from bitbudget.threshold import fit_thresholds, synthetic_study

    scen, _ = synthetic_study(n_questions=40, seed=3, datasets=("a", "b"))
    rng = np.random.default_rng(0)
    acc = scen["accuracy"].to_numpy()
    columns = np.column_stack([acc, acc + rng.normal(0, 0.03, len(acc)),
                               np.where(scen["G"].to_numpy() > 4, np.nan, acc)])
    decisions = Decisions(scen, analysis)
    front, per_decision, _ = decisions.outcomes(columns)
    brackets, verdicts = per_decision[:len(decisions.switches)], per_decision[len(decisions.switches):]
    for b in range(columns.shape[1]):
        s = scen.assign(accuracy=columns[:, b])
        assert set(scen["scenario_id"][front[:, b]]) == set(pareto_frontier(s)["scenario_id"])
        fits = fit_thresholds(s, None, n_boot=0)
        expected = []
        for fit in fits.values():
            expected += [(f["status"], tuple(f["bracket"]) if f["bracket"] else None)
                         for f in [fit] + fit.get("by_dataset", [])]
        assert [x[b] for x in brackets] == expected
        rules = [r["rule_status"] for f in evaluate_findings(s, fits, analysis) for r in f["per_dataset"]
                 if r["rule_status"] not in ("not testable at this scale", "not enough data")]
        assert [x[b] for x in verdicts if x[b] != "not enough data"] == rules
    assert not decisions.changed(acc[:, None], acc[:, None]).any()


def test_decisions_per_bootstrap_replicate_reach_the_verdict_probabilities():
    """Decisions over the fit stage's question-bootstrap replicates reach each finding's rule
    status in the same share of replicates as the verdict probabilities of the findings (the
    rules on one-candidate comparisons: cross-fitted halves change only the majority-vote ones)."""
    from bitbudget.findings import FINDINGS, evaluate_findings, placed_cuts, testable_rules
    from bitbudget.threshold import accuracy_replicates, synthetic_study

    scen, questions = synthetic_study(n_questions=40, seed=3, datasets=("a", "b"))
    n_boot, seed = 40, 7
    decisions = Decisions(scen, {})
    _, per_decision, _ = decisions.outcomes(accuracy_replicates(scen, questions, n_boot, seed))
    verdicts = per_decision[len(decisions.switches):]
    found = {(f["id"], r["dataset"]): r for f in evaluate_findings(scen, None, {}, questions, n_boot=n_boot, seed=seed)
             for r in f["per_dataset"]}
    rules = testable_rules(scen, placed_cuts({}, scen))
    assert len(rules) == len(verdicts) and rules
    checked = 0
    for (fid, ds), replicates in zip(rules, verdicts):
        if FINDINGS[fid]["kind"] == "samples_vs_tokens":
            continue
        row = found[fid, ds]
        assert np.mean(np.array(replicates) == row["rule_status"]) == row["rule_probability"]
        checked += 1
    assert checked


def test_decisions_computed_again_for_changed_rows_only_equal_a_full_computation():
    """Outcomes against a reference, recomputing only the comparisons that read the changed
    scenario rows, decide exactly as computing everything again."""
    from bitbudget.threshold import synthetic_study

    scen, _ = synthetic_study(n_questions=40, seed=3, datasets=("a", "b"))
    rng = np.random.default_rng(1)
    decisions = Decisions(scen, {})
    full = scen["accuracy"].to_numpy()[:, None] + rng.normal(0, 0.03, (len(scen), 50))
    reference = decisions.outcomes(full)
    compared, moved = 0, 0
    for gen_id in scen["gen_id"].unique():
        changed = np.flatnonzero(scen["gen_id"].to_numpy() == gen_id)
        now = full.copy()
        now[changed] = scen["accuracy"].to_numpy()[changed, None] - 0.05
        expected = decisions.changed(now, full)
        assert (decisions.differs(now, reference, changed) == expected).all()
        compared += any(touched[changed].any() for touched in decisions.touched)
        moved += expected.any()
    assert compared and moved  # generations read by comparisons, and changes that move a decision


def test_predictive_pools_complete_the_design():
    """Every draw holds maximum samples per question and keeps those already drawn; a question
    always right so far stays mostly right."""
    pool = np.array([[8, 0, 0, 0], [0, 2, 6, 0], [4, 0, 2, 2]])
    pools = predictive_pools(pool, 32, 500, np.random.default_rng(0))
    assert pools.shape == (500, 3, 5)
    assert (pools.sum(axis=-1) == 32).all() and (pools[..., :4] >= pool).all()
    assert pools[:, 0, 0].mean() > 30 and pools[:, 1, 0].mean() < 2
    assert (pools[:, 2, 4] == 0).all()  # wrong values were seen: no new value


def test_predicted_rows_are_each_rows_accuracy_of_its_budgets_pools():
    """Every G of a budget voted at once: the accuracy each row gets by itself, row for row."""
    rng = np.random.default_rng(7)
    pools = {b: predictive_pools(np.column_stack([rng.integers(0, 5, 30), rng.integers(0, 2, 30),
                                                  rng.integers(0, 3, 30), rng.integers(0, 2, 30)]),
                                 32, 64, rng) for b in (2000, 6000)}
    budgets = [2000, 6000, 2000, 6000, 2000, 2000, 6000, 6000]
    gs = [1, 16, 4, 1, 16, 3, 8, 3]
    rows = predicted_rows(pools, budgets, gs)
    assert rows.shape == (8, 64)
    for i, (b, g) in enumerate(zip(budgets, gs)):
        np.testing.assert_array_equal(rows[i], predicted_accuracy(pools[b], g))
    assert not np.array_equal(rows[2], rows[4])  # maj@4 and maj@16 of one budget's pools differ


def _curtail_probabilities(draws: dict, memory: dict, n: int):
    """One pass@1 scenario per generation: the full run's table from every sample, and each
    generation's change probability after its first n samples."""
    gens, full_n = list(draws), next(iter(draws.values())).shape[1]
    full = _scenarios([draws[g].mean() for g in gens], [memory[g] for g in gens], full_n, gen=gens)
    now = _scenarios([draws[g][:, :n].mean() for g in gens], [memory[g] for g in gens], n, gen=gens)
    predicted = {}
    for i, g in enumerate(gens):
        right = draws[g][:, :n].sum(axis=1)
        pools = predictive_pools(np.column_stack([right, np.zeros(Q, int), n - right]), full_n,
                                          CURTAIL_DRAWS, np.random.default_rng(i))
        predicted[g] = [(1000, np.array([i]), predicted_accuracy(pools, 1)[None, :])]
    closing = BudgetClosing(now["accuracy"].to_numpy(), predicted, Decisions(now, {}), gamma=0.0)
    return full, {g: closing.change({g: 1}) for g in gens}


def test_curtailment_keeps_a_close_frontier_generation_and_stops_one_far_below():
    """Two generations one sample apart after 8 of 32 (the larger by 1/1600), at nearly equal
    memory: whether the larger one is on the frontier is a coin toss of the 24 samples to come,
    so neither stops; a generation far below (20% against 60%, at more memory) stops."""
    rng = np.random.default_rng(1)
    first = rng.random((Q, 8)) < 0.6
    more = first.copy()
    more[np.flatnonzero(~more[:, 0])[0], 0] = True  # one more right answer
    draws = {"close_a": np.hstack([first, rng.random((Q, 24)) < 0.6]),
             "close_b": np.hstack([more, rng.random((Q, 24)) < 0.6]),
             "far": rng.random((Q, 32)) < 0.2}
    full, probs = _curtail_probabilities(draws, {"close_a": 1.0, "close_b": 1.05, "far": 1.5}, 8)
    on_full_frontier = set(full.loc[full["scenario_id"].isin(pareto_frontier(full)["scenario_id"]), "gen_id"])
    assert on_full_frontier & {"close_a", "close_b"}
    gamma = schema_defaults("sampling", "adaptive")["curtail_gamma"]
    for gen in on_full_frontier:
        assert probs[gen] >= gamma
    assert probs["close_a"] >= gamma and probs["close_b"] >= gamma
    assert probs["far"] < gamma


def _round(draws: dict, memory: dict, n: int, gamma: float, predictive=None):
    """decide_round after the first n of each generation's samples (pass@1, one budget; the
    rule's own predictive unless one is given)."""
    gens = list(draws)
    now = _scenarios([draws[g][:, :n].mean() for g in gens], [memory[g] for g in gens], n, gen=gens)
    samples = {g: {1000: answer_pool(draws[g][:, :n], np.where(draws[g][:, :n], "right", "wrong").astype(object))}
               for g in gens}
    maximum = {g: draws[g].shape[1] for g in gens}
    rule = _rule(n, maximum[gens[0]], gamma=gamma)
    outcomes = decide_round(now, samples, {g: n for g in gens}, maximum, rule, ANALYSIS, seed=0, round_index=1,
                                     predictive=predictive)
    return {g: o.reason for g, o in outcomes.items()}


def test_decide_round_keeps_the_close_pair_and_stops_the_far_one():
    """The rule as a round runs it (pools from correct/answers, budgets coupled, one error
    budget): the close pair keeps sampling, the far one stops as curtailed."""
    rng = np.random.default_rng(3)
    first = rng.random((Q, 8)) < 0.6
    more = first.copy()
    more[np.flatnonzero(~more[:, 0])[0], 0] = True
    draws = {"close_a": np.hstack([first, rng.random((Q, 24)) < 0.6]),
             "close_b": np.hstack([more, rng.random((Q, 24)) < 0.6]),
             "far": rng.random((Q, 32)) < 0.2}
    status = _round(draws, {"close_a": 1.0, "close_b": 1.05, "far": 1.5}, 8, gamma=0.05)
    assert status == {"close_a": schedule.OPEN, "close_b": schedule.OPEN, "far": schedule.CURTAILED}


def test_decide_round_draws_the_samples_to_come_from_the_predictive_it_is_given():
    """Given the samples to come themselves (a predictive that knows the full run), a round
    stops exactly the generations whose stop leaves the full run's frontier as it is: of the
    close pair, the one the Jeffreys predictive must keep sampling stops when its 24 samples
    to come cannot move it."""
    rng = np.random.default_rng(3)
    first = rng.random((Q, 8)) < 0.6
    draws = {"close_a": np.hstack([first, rng.random((Q, 24)) < 0.6]),
             "close_b": np.hstack([first, rng.random((Q, 24)) < 0.6]),
             "far": rng.random((Q, 32)) < 0.2}
    memory = {"close_a": 1.0, "close_b": 1.05, "far": 1.5}

    def known_future(samples, datasets):
        def draw(gen_id, maximum, n_draws, rng):
            full = draws[gen_id]
            pool = answer_pool(full, np.where(full, "right", "wrong").astype(object))
            return {budget: np.repeat(pool[None], n_draws, axis=0) for budget in samples[gen_id]}
        return draw

    def frontier(n_of):
        gens = list(draws)
        table = _scenarios([draws[g][:, :n_of[g]].mean() for g in gens], [memory[g] for g in gens], 32, gen=gens)
        return set(pareto_frontier(table)["scenario_id"])

    status = _round(draws, memory, 8, gamma=0.05, predictive=known_future)
    stopped = {g for g, s in status.items() if s == schedule.CURTAILED}
    assert frontier({g: 8 if g in stopped else 32 for g in draws}) == frontier({g: 32 for g in draws})
    for g in set(draws) - stopped:  # each one kept would have moved the frontier alone
        assert frontier({**{h: 32 for h in draws}, g: 8}) != frontier({g: 32 for g in draws})
    assert "far" in stopped and stopped & {"close_a", "close_b"}
    assert _round(draws, memory, 8, gamma=0.05)["close_a"] == schedule.OPEN  # the rule's own predictive


def test_closings_share_one_error_budget():
    """Two generations that each change a decision in 1 of 200 draws alone, and in 2 of 200
    together (either one flipping flips the frontier): at a gamma between the Monte Carlo upper
    bounds of 1 and 2 changes in 200 only one of them closes; at a larger gamma both."""
    current = np.array([0.5, 0.6, 0.7])
    scen = _scenarios(current.tolist(), [1.0, 2.0, 3.0], 8)
    decisions = Decisions(scen, {})
    draws = np.repeat(current[:, None], 200, axis=1)
    flips_a, flips_b = draws[[0]].copy(), draws[[1]].copy()
    flips_a[0, 0] = 0.65  # above s1 in one draw: s1 leaves the frontier
    flips_b[0, 100] = 0.75  # above s2 in another: s2 leaves it
    predicted = {"a": [(1000, np.array([0]), flips_a)], "b": [(1000, np.array([1]), flips_b)]}

    def closing(gamma):
        return BudgetClosing(current, predicted, decisions, gamma)

    assert closing(0.05).change({"a": 1}) == closing(0.05).change({"b": 1}) == 0.005
    assert closing(0.05).change({"a": 1, "b": 1}) == pytest.approx(0.01)
    one, two = monte_carlo_upper(0.005, 200, 0.95), monte_carlo_upper(0.01, 200, 0.95)
    assert 0.005 < one < two < 0.05
    assert len(closing((one + two) / 2).closing()) == 1
    assert closing(0.05).closing() == {"a": 1, "b": 1}
    assert closing(one * 0.99).closing() == {}


def test_closings_that_change_a_decision_together_give_up_the_fewest_tokens():
    """Two generations whose closings change the frontier only together (both estimates frozen
    tie two scenarios that one draw of the full design separates), and a third whose closing
    changes nothing: the one of the pair whose budget saves fewer tokens stays open, whichever
    it is, and the third closes."""
    current = np.array([0.505, 0.505, 0.9])
    scen = _scenarios(current.tolist(), [1.0, 2.0, 3.0], 8)
    decisions = Decisions(scen, {})
    draws = np.repeat(current[:, None], 200, axis=1)
    draws[0, 7], draws[1, 7] = 0.50, 0.51
    predicted = {g: [(1000, np.array([i]), draws[[i]])] for i, g in enumerate("abc")}

    def closing(savings):
        return BudgetClosing(current, predicted, decisions, gamma=0.02, savings=savings).closing()

    assert BudgetClosing(current, predicted, decisions, gamma=0.02).change({"a": 1, "b": 1}) == 0.005
    assert closing({"a": [0, 10], "b": [0, 1000], "c": [0, 10]}) == {"b": 1, "c": 1}
    assert closing({"a": [0, 1000], "b": [0, 10], "c": [0, 10]}) == {"a": 1, "c": 1}


def test_a_closing_given_up_that_a_later_step_back_made_unnecessary_comes_back():
    """g1 and g2 together change a decision in one draw, g2 and g3 in another. Per token the
    round first keeps g1 open (the cheapest fix of the first draw), then g2 (the cheaper fix of
    the second, which fixes the first too): g1's closing is then safe again and is taken."""
    scen = pd.concat([_scenarios([0.505, 0.505], [1.0, 2.0], 8, gen=["g1", "g2"], dataset="d"),
                      _scenarios([0.505, 0.505], [1.0, 2.0], 8, gen=["g2", "g3"], dataset="e")], ignore_index=True)
    scen["scenario_id"] = [f"s{i}" for i in range(len(scen))]
    current = scen["accuracy"].to_numpy()
    draws = np.repeat(current[:, None], 200, axis=1)
    draws[[0, 1], 7] = 0.50, 0.51
    draws[[2, 3], 9] = 0.50, 0.51
    rows = {"g1": [0], "g2": [1, 2], "g3": [3]}
    predicted = {g: [(1000, np.array(r), draws[r])] for g, r in rows.items()}
    closing = BudgetClosing(current, predicted, Decisions(scen, {}), gamma=0.02,
                                     savings={"g1": [0, 10], "g2": [0, 30], "g3": [0, 40]})
    assert closing.change({"g1": 1, "g2": 1}) == closing.change({"g2": 1, "g3": 1}) == 0.005
    assert closing.change({"g1": 1, "g3": 1}) == 0
    assert closing.closing() == {"g1": 1, "g3": 1}


def test_closing_savings_count_the_thinking_the_remaining_samples_skip():
    assert closing_savings([1000, 2000, 4000], 30, 24) == [0, 30 * 24 * 2000, 30 * 24 * 3000, 30 * 24 * 4000]


def test_a_generation_closes_its_settled_top_budgets_and_samples_on_below_them():
    """One generation's small budget is a coin toss against another generation's frontier
    point; its large budget sits far below the frontier at more memory. The round closes the
    large budget only: its next samples think to the small one."""
    rng = np.random.default_rng(3)
    first = rng.random((Q, 8)) < 0.6
    more = first.copy()
    more[np.flatnonzero(~more[:, 0])[0], 0] = True  # one more right answer
    far = rng.random((Q, 8)) < 0.2
    now = _scenarios([first.mean(), more.mean(), far.mean()], [1.0, 1.05, 3.0], 8, gen=["a", "g", "g"])
    now["token_budget"] = [1000, 1000, 2000]
    labels = lambda right: np.where(right, "right", "wrong").astype(object)  # noqa: E731
    samples = {"a": {1000: answer_pool(first, labels(first))},
               "g": {1000: answer_pool(more, labels(more)), 2000: answer_pool(far, labels(far))}}
    rule = _rule(8, 32, gamma=0.05)
    outcomes = decide_round(now, samples, {"a": 8, "g": 8}, {"a": 32, "g": 32}, rule, ANALYSIS, seed=0,
                                     round_index=1)
    assert outcomes["g"] == Outcome(schedule.OPEN, (1000,))
    assert outcomes["a"] == Outcome(schedule.OPEN, (1000,))


def test_budgets_of_a_generation_complete_together():
    """A question's posterior is drawn at one quantile for every budget: completions of two
    budgets with the same samples so far agree question by question far more often than
    independent draws would."""
    rng = np.random.default_rng(0)
    correct = rng.random((Q, 8)) < 0.5
    answers = np.where(correct, "r", "w").astype(object)
    pool = answer_pool(correct, answers)
    pools = coupled_pools({1: pool, 2: pool}, 32, 200, rng)
    right_1, right_2 = pools[1][..., 0].astype(float), pools[2][..., 0].astype(float)
    coupled = np.corrcoef(right_1.ravel(), right_2.ravel())[0, 1]
    independent = predictive_pools(answer_pool(correct, answers), 32, 200, rng)[..., 0]
    baseline = np.corrcoef(right_1.ravel(), independent.astype(float).ravel())[0, 1]
    assert (pools[1].sum(axis=-1) == 32).all()
    assert coupled > baseline + 0.05


def test_completions_drawn_on_several_threads_are_the_ones_drawn_on_one():
    """A certification's blocks of completions may run on several threads: each block draws
    from its own stream, generations in order, so the completions are the same, value for
    value, at any thread count; and the blocks are not copies of each other."""
    rng = np.random.default_rng(5)
    gens = ["a", "b", "c"]
    budgets = [1000, 2000]
    scen = pd.concat([_scenarios([0.5] * len(gens), [1.0, 2.0, 3.0], 8, gen=gens).assign(token_budget=b)
                      for b in budgets], ignore_index=True)
    samples = {}
    for g in gens:
        correct = rng.random((Q, 8)) < rng.uniform(0.2, 0.8)
        samples[g] = {b: answer_pool(correct, np.where(correct, "right", "wrong").astype(object)) for b in budgets}
    draw = rasch_predictive(samples, dict.fromkeys(gens, "d"))
    draws = 1_234  # three blocks, the last one short
    one = predict(scen, samples, dict.fromkeys(gens, 32), gens, draw, draws, (0, 1, 1), threads=1)
    three = predict(scen, samples, dict.fromkeys(gens, 32), gens, draw, draws, (0, 1, 1), threads=3)
    for g in gens:
        for (budget, rows, values), (budget_3, rows_3, values_3) in zip(one[g], three[g]):
            assert (budget, list(rows)) == (budget_3, list(rows_3))
            assert values.shape == (len(rows), draws)
            np.testing.assert_array_equal(values, values_3)
            assert not np.array_equal(values[:, :500], values[:, 500:1000])


class _Check:
    """A certification on fresh draws that passes the closings listed in ``passing`` and settles
    anything else to ``settled``."""

    def __init__(self, passing, settled):
        self.passing, self.settled = passing, settled

    def passes(self, closing):
        return closing in self.passing

    def settle(self, closing):
        return self.settled


def test_a_round_takes_only_closings_a_fresh_set_of_draws_certifies():
    """The search's closing, certified on fresh draws, is taken; where those draws refuse it they
    settle a smaller one, which the next attempt's own draws must certify; after the last
    attempt fails nothing closes. Each attempt draws its own set."""
    search, smaller = {"a": 2, "b": 1}, {"a": 1}
    attempts = []

    def fresh(checks):
        def check(attempt, draws):
            attempts.append((attempt, draws))
            return checks[attempt - 1]
        return check

    assert certify(search, fresh([_Check([search], {})]), 1000) == search
    assert attempts == [(1, 1000)]
    assert certify(search, fresh([_Check([], smaller), _Check([smaller], {})]), 1000) == smaller
    assert [a for a, _ in attempts[1:]] == [1, 2]
    assert certify(search, fresh([_Check([], smaller)] * CERTIFICATIONS), 1000) == {}
    assert certify({}, fresh([]), 1000) == {}


def test_a_closing_the_search_draws_allow_but_fresh_draws_refuse_is_not_taken():
    """A hand-made predictive whose first completions of each generation (the search's) leave
    the far generation's estimate as it is, and whose later ones (the certification's, drawn
    from other random streams) lift it above every other: the far generation closes on the
    search draws but not on the fresh ones, and so samples on. With fresh completions like the
    search's it stops."""
    rng = np.random.default_rng(3)
    draws = {"near": rng.random((Q, 32)) < 0.6, "far": rng.random((Q, 32)) < 0.2}
    memory = {"near": 1.0, "far": 1.5}
    streams = []

    def tricky(lift_later):
        def predictive(samples, datasets):
            calls = {}

            def draw(gen_id, maximum, n_draws, rng):
                calls[gen_id] = calls.get(gen_id, 0) + 1
                streams.append((gen_id, rng.bit_generator.state["state"]["state"]))
                so_far = samples[gen_id][1000]
                right = np.full(Q, maximum) if lift_later and gen_id == "far" and calls[gen_id] > 1 else \
                    np.round(so_far[:, 0] / so_far.sum(axis=1) * maximum).astype(int)
                pool = np.column_stack([right, np.zeros(Q, int), maximum - right])
                return {1000: np.repeat(pool[None], n_draws, axis=0)}
            return draw
        return predictive

    assert _round(draws, memory, 8, gamma=0.05, predictive=tricky(False))["far"] == schedule.CURTAILED
    search_streams = {state for _, state in streams[:2]}
    assert len(streams) > 2  # the search closed something, and fresh draws were asked for
    assert not search_streams & {state for _, state in streams[2:]}  # fresh draws: other random streams
    assert _round(draws, memory, 8, gamma=0.05, predictive=tricky(True))["far"] == schedule.OPEN
