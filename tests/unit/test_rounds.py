"""What an adaptive round reads and what its decision carries on (no data, no Snakemake)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from bitbudget import rounds
from bitbudget.adaptive import schedule
from bitbudget.study import build_study
from tests.harness import small_adaptive_config


@pytest.fixture(scope="module")
def config():
    return small_adaptive_config()


def decision(reads: dict, open_budgets: dict) -> dict:
    """A decision that read ``reads`` and leaves ``open_budgets`` (gen_id -> budgets) sampling."""
    generations = {}
    for gen_id, by_budget in reads.items():
        smallest = min(by_budget)
        generations[gen_id] = {
            "samples": by_budget[smallest][0], "open": gen_id in open_budgets,
            "open_budgets": open_budgets.get(gen_id, []),
            "budgets": {str(b): {"samples": n, "horizon": h} for b, (n, h) in by_budget.items()}}
    return {"generations": generations}


def test_open_budgets_move_to_their_next_round_and_closed_ones_keep_their_read(config):
    study = build_study(config)
    a, b = sorted(study.generations)
    budgets = study.generations[a].budgets
    assert len(budgets) >= 2
    top, low = max(budgets), [x for x in budgets if x < max(budgets)]
    first = rounds.round_reads(study, None)
    assert set(first) == {a, b} and all(first[g] == {x: (2, top) for x in budgets} for g in first)

    second = rounds.round_reads(study, decision(first, {a: low}))  # a closes its top budget, b stops
    assert second[a] == {**{x: (5, max(low)) for x in low}, top: (2, top)} and second[b] == first[b]
    third = rounds.round_reads(study, decision(second, {a: low}))
    assert third[a] == {**{x: (8, max(low)) for x in low}, top: (2, top)}

    grades = rounds.read_grades(study, third)
    at_low = grades[a][low[0]]
    assert at_low.generation.budgets == tuple(low) and at_low.generation.samples_per_question == 8
    assert at_low.generation.trace_id == study.generations[a].trace_id
    assert grades[a][top].generation.budgets == budgets and grades[a][top].grade_id not in study.grades
    full = rounds.read_grades(study, {a: {x: (8, top) for x in budgets}})
    assert full[a][top] == study.grades[full[a][top].grade_id]  # at the maximum: the full design's grade
    assert len(rounds.grades_read(study, third)) == 3  # a's two reads and b's one


def test_scenarios_read_at_a_round_keep_their_ids(config):
    study = build_study(config)
    a, b = sorted(study.generations)
    budgets = study.generations[a].budgets
    top, low = max(budgets), [x for x in budgets if x < max(budgets)]
    used = rounds.used(study, {a: {**{x: (5, max(low)) for x in low}, top: (2, top)},
                               b: {x: (8, top) for x in budgets}})
    design = pd.DataFrame.from_records(study.scenarios)
    scen = rounds.at_samples(design, used)
    assert list(scen["scenario_id"]) == list(design["scenario_id"])
    read = {(g, t): n for g, t, n in zip(scen["gen_id"], scen["token_budget"], scen["n_samples"])}
    assert read == {**{(used[a][x]["gen_id"], x): 5 for x in low}, (used[a][top]["gen_id"], top): 2,
                    **{(b, x): 8 for x in budgets}}
    assert used[b][top]["gen_id"] == b


def test_the_plan_id_moves_with_what_decisions_depend_on(config):
    base = rounds.plan_id(build_study(config), {})
    for edit in (lambda c: c["analysis"].update(memory_tolerance=0.1), lambda c: c["sampling"]["adaptive"].update(step=2),
                 lambda c: c["sampling"].update(seed=7), lambda c: c["grids"]["small"]["token_budgets"].append(64)):
        changed = copy.deepcopy(config)
        edit(changed)
        assert rounds.plan_id(build_study(changed), {}) != base
    for edit in (lambda c: c["grading"].update(workers=3), lambda c: c["analysis"].update(seed=1),
                 lambda c: c["analysis"].update(bootstrap_samples=500)):
        same = copy.deepcopy(config)
        edit(same)
        assert rounds.plan_id(build_study(same), {}) == base


def test_samples_json_needs_a_round_without_open_generations():
    entry = {"samples": 2, "maximum": 8, "reason": schedule.OPEN, "open": True, "history": [[2, 30]],
             "budgets": {"10": {"grade_id": "x"}, "30": {"grade_id": "x"}}}
    first = {"plan_id": "p", "rule": "curtail", "round": 0, "open": 1, "generations": {"g": entry}}
    with pytest.raises(ValueError):
        rounds.final_samples([first])
    last = {**first, "round": 1, "open": 0, "generations": {"g": {
        **entry, "samples": 5, "reason": schedule.CURTAILED, "open": False, "history": [[2, 30], [5, 10]],
        "budgets": {"10": {"grade_id": "y"}, "30": {"grade_id": "x"}}}}}
    final = rounds.final_samples([first, last])
    assert final["rounds"] == 2 and final["open_per_round"] == [1, 0]
    assert final["generations"]["g"]["samples"] == 5 and "open" not in final["generations"]["g"]
    assert rounds.decision_grade_ids(final) == {"x", "y"}
