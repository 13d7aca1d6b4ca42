"""Grids drawn in one round under adaptive sampling (`grids.<name>.adaptive: false`): their
generations read their full design from round 0, nothing else about the study moves, and the
plan says which grids' rounds cost more than they can save."""

from __future__ import annotations

import contextlib
import json
import copy

import pytest
import yaml

from bitbudget import rounds
from bitbudget.adaptive import closing, schedule
from bitbudget.errors import ConfigError
from bitbudget.plan import main, make_plan
from bitbudget.preflight import validate_study_config
from bitbudget.study import build_study
from tests.harness import REPO, run_grades, small_adaptive_config, with_resources
from tests.pipeline.test_adaptive_rounds import adaptive_config


def split(config: dict, model: str, adaptive: bool) -> dict:
    """``config`` with ``model`` moved out of its one grid into a grid `whole` of its own."""
    out = copy.deepcopy(config)
    (name, grid), = out["grids"].items()
    grid["models"] = [m for m in grid["models"] if m != model]
    out["grids"]["whole"] = {**copy.deepcopy(grid), "models": [model], "adaptive": adaptive}
    return out


def paper_adaptive() -> dict:
    """config/paper.yaml with adaptive sampling at the schema's defaults."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["sampling"]["adaptive"] = {}
    return validate_study_config(config)


def gens_of(study, model: str) -> set[str]:
    return {g for g, gen in study.generations.items() if gen.checkpoint.model == model}


@pytest.fixture(scope="module")
def tiny():
    """tiny-s in rounds of 2, 3 and 3 (grid `small`), tiny-m in one round of 8 (grid `whole`)."""
    config = small_adaptive_config()
    config["grids"]["small"]["models"] = ["tiny-s", "tiny-m"]
    return validate_study_config(split(config, "tiny-m", adaptive=False))


def test_its_generations_read_their_maximum_from_round_0(tiny):
    study = build_study(tiny)
    whole, in_rounds = gens_of(study, "tiny-m"), gens_of(study, "tiny-s")
    assert study.one_round == whole and study.one_round_grids == ("whole",)
    assert {g: sorted({n for n, _ in study.rounds[g]}) for g in study.generations} == {
        **{g: [8] for g in whole}, **{g: [2, 5, 8] for g in in_rounds}}
    first = rounds.round_reads(study, None)
    for g in whole:
        # the full design's own grade: the same generation, id included
        assert set(first[g].values()) == {(8, 48)}
        assert study.rounds[g][8, 48].generation.gen_id == g
    assert all(set(first[g].values()) == {(2, 48)} for g in in_rounds)


def test_it_moves_no_artifact_id_and_moves_the_decisions_ids(tiny):
    flagged = build_study(tiny)
    in_rounds = copy.deepcopy(tiny)
    in_rounds["grids"]["whole"]["adaptive"] = True
    plain = build_study(in_rounds)
    assert set(flagged.generations) == set(plain.generations) and set(flagged.grades) == set(plain.grades)
    assert sorted(s["scenario_id"] for s in flagged.scenarios) == sorted(s["scenario_id"] for s in plain.scenarios)
    assert rounds.settings_id(flagged) != rounds.settings_id(plain)
    assert rounds.plan_id(flagged, {}) != rounds.plan_id(plain, {})
    # no grid drawn in one round: the decision settings hold no trace of the field
    assert "one_round_grids" not in rounds.decision_settings(plain)
    unset = copy.deepcopy(in_rounds)
    del unset["grids"]["whole"]["adaptive"]
    assert rounds.plan_id(build_study(unset), {}) == rounds.plan_id(plain, {})


def test_a_generation_shared_with_a_grid_drawn_in_one_round_is_drawn_in_one(tiny):
    config = copy.deepcopy(tiny)
    config["grids"]["whole"]["models"] = ["tiny-s", "tiny-m"]  # tiny-s now in both grids
    study = build_study(config)
    assert study.one_round == set(study.generations)


def test_the_rounds_gamma_is_split_over_are_those_of_the_grids_drawn_in_rounds(tiny):
    config = copy.deepcopy(tiny)
    config["grids"]["whole"]["samples_per_question"] = 64
    study = build_study(config)
    assert rounds.rule_of(study).maximum == 8
    assert rounds.rule_of(study).rounds == [2, 5, 8]
    # a gamma too small for rounds up to 64 is refused only where those rounds are drawn
    many = schedule.AdaptiveRule.from_config(config["sampling"], 64)
    gamma = closing.least_gamma(many.deciding_rounds, many.confidence) * 0.9
    config["sampling"]["adaptive"]["curtail_gamma"] = gamma
    validate_study_config(config)
    config["grids"]["whole"]["adaptive"] = True
    with pytest.raises(ConfigError, match="sampling.adaptive.curtail_gamma"):
        validate_study_config(config)


def test_the_plan_costs_its_one_round_and_what_rounds_would_have_cost(tiny):
    flagged = make_plan(tiny, workdir="/nonexistent")
    assert [r.samples for r in flagged.rounds] == [(2, 8), (5,), (8,)]
    assert [r.generations for r in flagged.rounds] == [4, 2, 2]
    # by hand, from the job model: the HF engine batches one question's samples
    model = flagged.job_models[next(iter(gens_of(build_study(tiny), "tiny-m")))]
    answer = tiny["sampling"]["max_answer_tokens"]
    hours = [model.hours(4 * new * (48 + 2 * answer), new) for new in (2, 3, 3)]
    whole = flagged.grid_rounds["whole"]
    assert not whole["in_rounds"] and not whole["rounds_cost_more"]
    # the full design's one job per generation (its batch of 4 is below the HF saturation of 8)
    assert whole["batch_gpu_hours"] == pytest.approx(2 * model.hours(4 * 8 * (48 + 2 * answer), 8)[1])
    assert whole["saveable_gpu_hours"] == whole["extra_load_gpu_hours"] == 0.0

    in_rounds = copy.deepcopy(tiny)
    in_rounds["grids"]["whole"]["adaptive"] = True
    plan = make_plan(in_rounds, workdir="/nonexistent")
    row = plan.grid_rounds["whole"]
    assert row["generations"] == 2
    assert row["batch_gpu_hours"] == pytest.approx(2 * sum(h[1] for h in hours))
    assert row["extra_load_gpu_hours"] == pytest.approx(2 * sum(h[2] for h in hours[1:]))
    assert row["saveable_gpu_hours"] == pytest.approx(2 * sum(h[0] for h in hours[1:]))
    assert row["rounds_cost_more"] == (row["batch_gpu_hours"] + row["extra_load_gpu_hours"]
                                       > row["saveable_gpu_hours"])
    # the flag puts the full design's batch effect of tiny-m in place of its rounds'
    upper = plan.adaptive_cost()["upper_bound"]["batch_gpu_hours"]
    assert flagged.adaptive_cost()["upper_bound"]["batch_gpu_hours"] == pytest.approx(
        upper - row["batch_gpu_hours"] + whole["batch_gpu_hours"])


def test_the_paper_grids_kv_rounds_cost_more_than_they_can_save():
    """config/paper.yaml draws its HF KV grid in one round; drawn in rounds, the plan says why not."""
    config = paper_adaptive()
    assert build_study(config).one_round_grids == ("kv_cache",)
    config["grids"]["kv_cache"]["adaptive"] = True
    plan = make_plan(config, workdir="/nonexistent")
    assert plan.grid_rounds["kv_cache"]["rounds_cost_more"] and not plan.grid_rounds["main"]["rounds_cost_more"]
    flagged = make_plan(paper_adaptive(), workdir="/nonexistent")
    assert flagged.adaptive_cost()["upper_bound"]["batch_gpu_hours"] == 0.0
    assert flagged.adaptive_cost()["upper_bound_over_full"] < plan.adaptive_cost()["upper_bound_over_full"]


def test_round_0_decides_them_at_their_maximum(tmp_path):
    """Round 0 on real (simulated) samples: the grid drawn in one round stops at its maximum
    without drawing again; the other generations are decided as before."""
    config = validate_study_config(split(adaptive_config(), "qwen3-8b", adaptive=False))
    study = build_study(config)
    whole = gens_of(study, "qwen3-8b")
    with contextlib.chdir(with_resources(tmp_path)):
        run_grades(study, rounds.grades_read(study, rounds.round_reads(study, None)))
        decision = rounds.decide(study, 0, None)
    maximum = config["sampling"]["samples_per_question"]
    for gen_id, entry in decision["generations"].items():
        if gen_id in whole:
            assert (entry["reason"], entry["samples"], entry["open"]) == (schedule.ONE_ROUND, maximum, False)
            assert entry["gen_id"] == gen_id
        else:
            assert entry["samples"] == config["sampling"]["adaptive"]["initial"]
            assert entry["reason"] in (schedule.OPEN, schedule.CURTAILED)
    assert decision["open"] == sum(e["open"] for g, e in decision["generations"].items() if g not in whole)


def test_the_plan_command_prints_each_grids_verdict(tmp_path, capsys):
    config = paper_adaptive()
    config["grids"]["kv_cache"]["adaptive"] = True
    path = tmp_path / "paper-adaptive.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["--configfile", str(path), "--directory", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    assert "fix: set grids.kv_cache.adaptive: false" in out
    assert next(line for line in out.splitlines() if line.startswith("  main:")).count("fix:") == 0
    assert main(["--configfile", str(path), "--directory", "/nonexistent", "--json"]) == 0
    grids = json.loads(capsys.readouterr().out)["grid_rounds"]
    assert grids["kv_cache"]["rounds_cost_more"] and grids["main"]["in_rounds"]
