"""Adaptive sampling rounds as Snakemake checkpoints, end to end on a small simulated study."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from bitbudget import rounds
from bitbudget.plan import format_plan, make_plan
from bitbudget.study import build_study
from tests.harness import Study, plan_as_the_snakefile, with_resources
from tests.pipeline.test_simulated_overlays import simulated_config

pytestmark = pytest.mark.pipeline

MAXIMUM = 8
ROUNDS = [2, 5, 8]  # initial 2, step 3, up to 8
ANALYSIS = {"expand_scenarios", "aggregate", "fit", "report"}
BUDGETS = [2000, 6000, 10000]


def adaptive_config(adaptive: bool = True) -> dict:
    """Two models x two weight formats on AIME (4 generations), three budgets, G up to 4, 8 samples
    per question."""
    config = simulated_config("simulated.yaml")
    config["grids"] = {"main": {"models": ["qwen3-0.6b", "qwen3-8b"], "weight_formats": ["bf16", "gptq4"],
                                "kv_strategies": ["full"], "datasets": ["aime2025"],
                                "token_budgets": BUDGETS, "parallel_samples": [1, 4]}}
    config["sampling"]["samples_per_question"] = MAXIMUM
    if adaptive:
        # a lenient gamma so that budgets close early on so small a study: split over its two
        # deciding rounds and certified on fresh draws, 0.5 closed none (rounds version 5)
        config["sampling"]["adaptive"] = {"initial": 2, "step": 3, "rule": "curtail", "curtail_gamma": 0.9}
    config["analysis"]["bootstrap_samples"] = 20
    return config


def finished_rules(output: str) -> dict[str, int]:
    """Jobs a real run executed, per rule."""
    counts: dict[str, int] = {}
    for rule in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", output):
        counts[rule] = counts.get(rule, 0) + 1
    counts.pop("all", None)
    return counts


@pytest.fixture(scope="module")
def adaptive_study(tmp_path_factory):
    study = Study(with_resources(tmp_path_factory.mktemp("adaptive")), adaptive_config())
    run = study.snakemake()
    return study, finished_rules(run.output)


def samples_json(workdir: Path) -> dict:
    return json.loads((workdir / "results" / "adaptive" / "samples.json").read_text())


def round_files(workdir: Path) -> list[Path]:
    return sorted((workdir / "results" / "adaptive").glob("*/round-*[0-9].json"),
                  key=lambda p: int(p.stem.split("-")[1]))


def test_rounds_run_as_jobs_and_the_analysis_reads_the_samples_used(adaptive_study):
    study, jobs = adaptive_study
    workdir = study.workdir
    final = samples_json(workdir)
    assert len(final["generations"]) == 4
    assert jobs["adaptive_round"] == final["rounds"] == len(round_files(workdir)) >= 2
    assert jobs["adaptive_samples"] == 1
    # one generate (and grade) job per generation and round it took part in
    assert jobs["generate"] == jobs["grade"] == sum(len(e["history"]) for e in final["generations"].values())
    for entry in final["generations"].values():
        samples, horizons = [n for n, _ in entry["history"]], [h for _, h in entry["history"]]
        assert samples == ROUNDS[:len(samples)] and entry["samples"] == samples[-1]
        assert horizons == sorted(horizons, reverse=True) and horizons[0] == max(BUDGETS)  # closing is top-down
        read = [entry["budgets"][str(b)]["samples"] for b in BUDGETS]
        assert read[0] == entry["samples"] and read == sorted(read, reverse=True)  # closed budgets keep theirs
        assert (entry["samples"] == MAXIMUM) == (entry["reason"] == "reached the maximum")
    # some generation closed its top budget and sampled on below it, from a smaller horizon
    assert any(h < max(BUDGETS) for e in final["generations"].values() for _, h in e["history"]), final
    assert any(r["samples"] < MAXIMUM for e in final["generations"].values() for r in e["budgets"].values())

    table = pd.read_parquet(workdir / "results" / "aggregate" / "scenarios.parquet")
    design = pd.read_parquet(workdir / "results" / "scenarios.parquet")
    assert list(table["scenario_id"]) == list(design["scenario_id"])  # the full design's scenarios
    for row, full_gen in zip(table.itertuples(), design["gen_id"]):
        read = final["generations"][full_gen]["budgets"][str(row.token_budget)]
        assert (row.gen_id, row.grade_id, row.n_samples) == (read["gen_id"], read["grade_id"], read["samples"])
        assert pd.isna(row.accuracy) == (row.G > row.n_samples)  # maj@G above the samples: no estimate
    html = (workdir / "report" / "index.html").read_text()
    assert 'id="adaptive"' in html and "samples/question" in html


def test_the_plan_shows_tokens_per_round(adaptive_study):
    study, _ = adaptive_study
    plan = make_plan(copy.deepcopy(study.config), workdir=study.workdir)
    final = samples_json(study.workdir)
    ran = [sum(len(e["history"]) > r for e in final["generations"].values()) for r in range(len(ROUNDS))]
    assert [r.ran for r in plan.rounds] == ran
    assert [r.open_after for r in plan.rounds][:final["rounds"]] == final["open_per_round"]
    assert all(r.spent_tokens > 0 for r in plan.rounds[:final["rounds"]])
    assert sum(r.spent_tokens for r in plan.rounds) <= sum(r.expected_tokens for r in plan.rounds)
    assert "expected counts the generations and budgets each decided round samples" in format_plan(plan)


def test_a_round_decides_on_the_estimates_the_report_shows(adaptive_study, monkeypatch):
    study, _ = adaptive_study
    monkeypatch.chdir(study.workdir)
    final = samples_json(study.workdir)
    design = build_study(study.config)
    reads = {g: {int(b): (r["samples"], r["horizon"]) for b, r in e["budgets"].items()}
             for g, e in final["generations"].items()}
    table, _, _ = rounds.round_table(design, rounds.used(design, reads), {})
    report = pd.read_parquet(study.workdir / "results" / "aggregate" / "scenarios.parquet")
    merged = table.merge(report, on="scenario_id", suffixes=("_round", "_report"))
    assert len(merged) == len(report)
    pd.testing.assert_series_equal(merged["accuracy_round"], merged["accuracy_report"], check_names=False)
    # the decision reads point estimates only: no bootstrap in a round, the report has its intervals
    assert merged["ci_low_round"].isna().all()
    assert merged.loc[merged["accuracy_report"].notna(), "ci_low_report"].notna().all()


def test_a_finished_adaptive_study_plans_nothing(adaptive_study):
    study, _ = adaptive_study
    assert study.planned_jobs() == {}


def test_a_preempted_round_resumes_there(adaptive_study, tmp_path):
    study = adaptive_study[0].copy_to(with_resources(tmp_path / "study"))
    workdir = study.workdir
    last = round_files(workdir)[-1]
    before = {p: p.stat().st_mtime_ns for p in (workdir / "results" / "generations").glob("*/samples.parquet")}
    # killed during the last round: its decision and what follows it were never written
    for path in (last, last.with_name(last.stem + ".meta.json"),
                 workdir / "results" / "adaptive" / "samples.json", workdir / "results" / "adaptive" / "samples.meta.json"):
        path.unlink()
    run = study.snakemake()
    jobs = finished_rules(run.output)
    # that round alone is decided again, no sample is drawn again; what reads its decision follows
    assert jobs == {"adaptive_round": 1, "adaptive_samples": 1, **{r: 1 for r in ANALYSIS - {"expand_scenarios"}}}
    assert last.exists() and {p: p.stat().st_mtime_ns for p in before} == before

    # a round generation lost: only it (and its grade) is made again, the decisions stand
    final = samples_json(workdir)
    read = next(r for e in final["generations"].values() for r in e["budgets"].values() if r["samples"] < MAXIMUM)
    for path in (workdir / "results" / "generations" / read["gen_id"]).glob("samples*"):
        path.unlink()
    run = study.snakemake()
    jobs = finished_rules(run.output)
    assert jobs.get("generate") == 1 and jobs.get("grade", 0) <= 1, jobs
    assert samples_json(workdir) == final
    assert study.planned_jobs() == {}


def generated_models(output: str, config: dict) -> dict[str, int]:
    """Generate jobs a real run executed, per model (from each job's gen_id wildcard)."""
    generations = plan_as_the_snakefile(config).all_generations
    counts: dict[str, int] = {}
    for gen_id in re.findall(r"rule generate:\n(?:[ \t]+.*\n)*?[ \t]+wildcards: gen_id=(\w+)", output):
        model = generations[gen_id].checkpoint.model
        counts[model] = counts.get(model, 0) + 1
    return counts


def test_a_model_added_leaves_the_rounds_of_the_others_as_they_were(adaptive_study, tmp_path):
    study = adaptive_study[0].copy_to(with_resources(tmp_path / "study"))
    before = samples_json(study.workdir)
    study.config["grids"]["main"]["models"].append("qwen3-1.7b")
    run = study.snakemake()
    jobs, generated = finished_rules(run.output), generated_models(run.output, study.config)
    after = samples_json(study.workdir)
    # the recorded generations are held: same reads, reasons and round history, no sample drawn again
    assert after["held"] == sorted(before["generations"])
    assert {g: after["generations"][g] for g in before["generations"]} == before["generations"]
    new = {g: e for g, e in after["generations"].items() if g not in before["generations"]}
    assert len(new) == 2 and all(e["history"][0][0] == ROUNDS[0] for e in new.values())
    # the added model's generations alone drew, one job per round each took part in
    assert generated == {"qwen3-1.7b": jobs["generate"]} and jobs["generate"] == sum(len(e["history"]) for e in new.values())
    assert jobs["adaptive_round"] == after["rounds"] == max(len(e["history"]) for e in new.values())
    assert study.planned_jobs() == {}  # the plan is a fixed point: its own ledger entries hold nothing

    # a field no decision reads: no round decided again, no sample drawn, the analysis redone
    study.config["analysis"]["bootstrap_samples"] = 30
    jobs = finished_rules(study.snakemake().output)
    assert "adaptive_round" not in jobs and "generate" not in jobs and "adaptive_samples" not in jobs, jobs
    assert jobs.get("aggregate") == 1 and samples_json(study.workdir) == after


def test_adaptive_off_plans_exactly_the_full_design(tmp_path):
    study = Study(with_resources(tmp_path), adaptive_config(adaptive=False))
    # 2 quantized checkpoints (gptq4 of each model), 4 generations and their grades, the analysis
    assert study.planned_jobs() == {"quantize": 2, "generate": 4, "grade": 4, **{r: 1 for r in ANALYSIS}}


def test_questions_closed_in_a_round_keep_their_samples_and_every_estimate(tmp_path):
    """`close_questions` with one deciding round (5 of 8 samples, G up to 4): questions close;
    the last round's generation names them in its key, draws nothing more for them (its samples
    table and the trace hold 5 of theirs), the analysis reads each question at its own count,
    every scenario keeps an estimate, and the finished study plans nothing."""
    config = adaptive_config()
    config["sampling"]["adaptive"].update(close_questions=True, initial=5)
    study = Study(with_resources(tmp_path), config)
    study.snakemake()
    samples = json.loads((tmp_path / rounds.SAMPLES).read_text())["generations"]
    closed = {g: e["closed_questions"] for g, e in samples.items() if e.get("closed_questions")}
    assert closed and all(set(by_question.values()) == {5} for by_question in closed.values())
    questions = pd.read_parquet(tmp_path / "results" / "aggregate" / "questions.parquet")
    scenarios = pd.read_parquet(tmp_path / "results" / "aggregate" / "scenarios.parquet")
    for gen_id, by_question in closed.items():
        for read in samples[gen_id]["budgets"].values():
            assert read["samples"] == 8 and read["closed_questions"] == by_question
            meta = json.loads((tmp_path / "results" / "generations" / read["gen_id"] / "samples.meta.json").read_text())
            assert meta["key"]["closed_questions"] == by_question
            table = pd.read_parquet(tmp_path / "results" / "generations" / read["gen_id"] / "samples.parquet")
            held = table.groupby("question_id")["sample_idx"].nunique()
            assert (held[list(by_question)] == 5).all() and (held.drop(list(by_question)) == 8).all()
            trace = tmp_path / "results" / "traces" / meta["key"]["trace"] / "shards"
            assert all(len(json.loads((trace / f"{q}.json").read_text())["samples"]) == 5 for q in by_question)
        read_at = questions[questions["scenario_id"].isin(scenarios.loc[scenarios["gen_id"] == read["gen_id"], "scenario_id"])]
        assert set(read_at.loc[read_at["question_id"].isin(list(by_question)), "n_samples"]) == {5}
        assert set(read_at.loc[~read_at["question_id"].isin(list(by_question)), "n_samples"]) == {8}
    assert scenarios["accuracy"].notna().all()
    assert study.planned_jobs() == {}
    # the report's timings list the jobs of the round with closed questions (their ids from the decisions)
    html = (tmp_path / "report" / "index.html").read_text()
    assert all(f"<tr><td>generate</td><td>{read['gen_id']}</td>" in html and
               f"<tr><td>grade</td><td>{read['grade_id']}</td>" in html
               for g in closed for read in samples[g]["budgets"].values())
    # the plan costs the last round's jobs without their closed questions
    last = make_plan(copy.deepcopy(study.config), workdir=study.workdir).rounds[-1]
    assert {g: last.draws[g].questions for g in closed} == {g: samples[g]["questions"] - len(q) for g, q in closed.items()}

    # a lost generation of a round with closed questions is made again alone (its id from the decisions)
    lost = next(iter(samples[next(iter(closed))]["budgets"].values()))["gen_id"]
    for path in (tmp_path / "results" / "generations" / lost).glob("samples*"):
        path.unlink()
    jobs = finished_rules(study.snakemake().output)
    assert jobs.get("generate") == 1 and jobs.get("grade", 0) <= 1, jobs
    assert json.loads((tmp_path / rounds.SAMPLES).read_text())["generations"] == samples  # the decisions stand

    # a model added: the recorded generations are held with their closed questions, nothing of theirs drawn again
    shards = {p: p.stat().st_mtime_ns for p in (tmp_path / "results" / "traces").glob("*/shards/*.json")}
    study.config["grids"]["main"]["models"].append("qwen3-1.7b")
    study.snakemake()
    after = json.loads((tmp_path / rounds.SAMPLES).read_text())
    assert after["held"] == sorted(samples) and {g: after["generations"][g] for g in samples} == samples
    assert {p: p.stat().st_mtime_ns for p in shards} == shards
    assert len(list((tmp_path / "results" / "traces").glob("*/shards/*.json"))) > len(shards)
    assert study.planned_jobs() == {}
