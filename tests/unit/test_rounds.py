"""What an adaptive round reads and what its decision carries on (no data, no Snakemake)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from bitbudget import adaptive, rounds
from bitbudget.study import build_study
from tests.smallstudy import small_config


@pytest.fixture(scope="module")
def config():
    config = small_config()
    config["sampling"]["samples_per_question"] = 8
    config["sampling"]["adaptive"] = {"initial": 2, "step": 3}
    return config


def decision(samples: dict, open_: set) -> dict:
    return {"generations": {g: {"samples": n, "open": g in open_} for g, n in samples.items()}}


def test_open_generations_move_to_their_next_round_and_stopped_ones_stay(config):
    study = build_study(config)
    first = rounds.round_samples(study, None)
    assert set(first) == set(study.generations) and set(first.values()) == {2}
    a, b = sorted(first)
    second = rounds.round_samples(study, decision(first, {a}))
    assert second == {a: 5, b: 2}
    assert rounds.round_samples(study, decision(second, {a})) == {a: 8, b: 2}
    grades = rounds.round_grades(study, {a: 8, b: 2})
    assert grades[a] == study.grades[grades[a].grade_id]  # at the maximum: the full design's grade
    assert grades[b].generation.samples_per_question == 2 and grades[b].grade_id not in study.grades


def test_scenarios_read_at_a_round_keep_their_ids(config):
    study = build_study(config)
    a, b = sorted(study.generations)
    used = rounds.used(rounds.round_grades(study, {a: 5, b: 8}))
    design = pd.DataFrame.from_records(study.scenarios)
    scen = rounds.at_samples(design, used)
    assert list(scen["scenario_id"]) == list(design["scenario_id"])
    assert dict(zip(scen["gen_id"], scen["n_samples"])) == {used[a]["gen_id"]: 5, used[b]["gen_id"]: 8}
    assert used[b]["gen_id"] == b


def test_the_plan_id_moves_with_what_decisions_depend_on(config):
    base = rounds.plan_id(build_study(config))
    for edit in (lambda c: c["analysis"].update(seed=1), lambda c: c["sampling"]["adaptive"].update(step=2),
                 lambda c: c["sampling"].update(seed=7), lambda c: c["grids"]["small"]["token_budgets"].append(64)):
        changed = copy.deepcopy(config)
        edit(changed)
        assert rounds.plan_id(build_study(changed)) != base
    runtime = copy.deepcopy(config)
    runtime["grading"]["workers"] = 3
    assert rounds.plan_id(build_study(runtime)) == base


def test_samples_json_needs_a_round_without_open_generations():
    entry = {"samples": 2, "maximum": 8, "reason": adaptive.OPEN, "open": True, "history": [2]}
    first = {"plan_id": "p", "rule": "curtail", "round": 0, "open": 1, "generations": {"g": entry}}
    with pytest.raises(ValueError):
        rounds.final_samples([first])
    last = {**first, "round": 1, "open": 0, "generations": {"g": {
        **entry, "samples": 5, "reason": adaptive.CURTAILED, "open": False, "history": [2, 5]}}}
    final = rounds.final_samples([first, last])
    assert final["rounds"] == 2 and final["open_per_round"] == [1, 0]
    assert final["generations"]["g"]["samples"] == 5 and "open" not in final["generations"]["g"]
