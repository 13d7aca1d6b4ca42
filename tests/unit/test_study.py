import copy

import yaml

from bitbudget.study import build_study
from tests.harness import REPO

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def study_of(mutate=lambda c: None):
    config = copy.deepcopy(DEFAULT)
    mutate(config)
    return build_study(config)


def test_scenarios_cover_every_grid_cell_once():
    study = study_of()
    ids = [s["scenario_id"] for s in study.scenarios]
    assert len(ids) == len(set(ids))
    grid = DEFAULT["grids"]["weights_vs_tokens"]
    main = [s for s in study.scenarios if "weights_vs_tokens" in s["grids"]]
    expected = 1
    for axis in ("models", "weight_formats", "kv_strategies", "datasets", "token_budgets", "parallel_samples"):
        expected *= len(grid[axis])
    assert len(main) == expected


def test_shared_cells_between_grids_share_artifacts():
    study = study_of()
    shared = [s for s in study.scenarios if len(s["grids"]) > 1]
    assert shared, "the kv_cache grid's full-cache cells repeat weights_vs_tokens cells"
    # one generation per (model, weights, kv, dataset): all budgets in one job
    units = {(g.checkpoint.model, g.checkpoint.weights, g.kv, g.dataset) for g in study.generations.values()}
    assert len(units) == len(study.generations)


def test_adding_a_budget_keeps_the_trace_and_changes_only_the_generation():
    before = study_of()
    after = study_of(lambda c: c["grids"]["weights_vs_tokens"]["token_budgets"].insert(0, 24))
    traces_before = {g.trace_id for g in before.generations.values()}
    traces_after = {g.trace_id for g in after.generations.values()}
    assert traces_before == traces_after
    assert set(before.checkpoints) == set(after.checkpoints)


def test_changing_the_grader_changes_only_grade_ids():
    before = study_of()
    after = study_of(lambda c: c["grading"].update(timeout_s=c["grading"]["timeout_s"] + 1))
    assert set(before.generations) == set(after.generations)
    assert not set(before.grades) & set(after.grades)


def test_changing_sampling_changes_traces():
    before = study_of()
    after = study_of(lambda c: c["sampling"].update(temperature=0.7))
    assert not {g.trace_id for g in before.generations.values()} & {g.trace_id for g in after.generations.values()}
    assert set(before.checkpoints) == set(after.checkpoints)


def test_ids_are_stable_across_builds():
    assert set(study_of().generations) == set(study_of().generations)
