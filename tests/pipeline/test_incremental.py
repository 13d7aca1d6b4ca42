"""Incremental reruns: only what a config change touches is recomputed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.pipeline

ANALYSIS_RULES = {"expand_scenarios", "aggregate", "fit", "report"}


def test_full_run_writes_report_and_scenarios(finished_study):
    workdir = finished_study.workdir
    assert (workdir / "report" / "index.html").stat().st_size > 1000
    scenarios = pd.read_parquet(workdir / "results" / "scenarios.parquet")
    # 1 model x 2 weight formats x 1 KV x 1 dataset x 2 budgets x 2 G
    assert len(scenarios) == 8
    table = pd.read_parquet(workdir / "results" / "aggregate" / "scenarios.parquet")
    assert set(table["scenario_id"]) == set(scenarios["scenario_id"])
    assert table["accuracy"].between(0, 1).all()
    assert (table["total_gib"] > table["weight_gib"]).all()


def test_noop_rerun_runs_nothing(study_copy):
    assert study_copy.planned_jobs() == {}


def test_adding_a_model_schedules_only_that_model(study_copy):
    study_copy.config["grids"]["small"]["models"].append("tiny-m")
    jobs = study_copy.planned_jobs()
    # tiny-m: one int4 checkpoint; 2 generations (bf16, int4) and their grades
    assert jobs == {"quantize": 1, "generate": 2, "grade": 2, **{rule: 1 for rule in ANALYSIS_RULES}}


def test_changing_the_grader_reruns_only_grading_and_after(study_copy):
    study_copy.config["grading"]["timeout_s"] = study_copy.config["grading"]["timeout_s"] + 1
    jobs = study_copy.planned_jobs()
    assert "generate" not in jobs and "quantize" not in jobs
    assert jobs["grade"] == 2
    assert {"aggregate", "fit", "report"} <= set(jobs)


def test_reverting_a_change_reuses_old_artifacts(study_copy):
    original = json.dumps(study_copy.config)
    study_copy.config["grading"]["timeout_s"] += 1
    study_copy.snakemake("--allowed-rules", "grade", "expand_scenarios", "aggregate", "fit", "report")
    study_copy.config = json.loads(original)
    jobs = study_copy.planned_jobs()
    assert "grade" not in jobs and "generate" not in jobs


def test_bad_config_stops_before_any_job(study_copy):
    study_copy.config["kv_strategies"]["full"]["bitz"] = 4
    result = study_copy.snakemake("-n", check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "kv_strategies.full" in message and "bitz" in message
    assert "Job stats" not in message


def test_snakemake_report_renders_marked_outputs(study_copy):
    study_copy.snakemake("--report", "report/snakemake.html")
    html = (study_copy.workdir / "report" / "snakemake.html").read_text(errors="replace")
    assert "scenarios.parquet" in html and "index.html" in html


def _with_trained_model(study, model_dir: Path):
    """The study's tiny-s with its training recipe, at model_dir."""
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    study.config["models"]["tiny-s"] = {"path": str(model_dir), "train": default["models"]["tiny-s"]["train"]}
    return study


def test_trained_model_older_than_the_code_is_not_retrained(study_copy, tmp_path):
    # a fresh clone writes resources/ before workflow/: the shipped models are older than
    # the training script, which must not make snakemake train them again
    model_dir = tmp_path / "tiny-s"
    shutil.copytree(REPO / "resources" / "tiny_models" / "tiny-s", model_dir)
    for path in [*model_dir.iterdir(), model_dir]:
        os.utime(path, (0, 0))
    jobs = _with_trained_model(study_copy, model_dir).planned_jobs()
    assert "train_tiny_model" not in jobs and jobs.get("generate")


def test_missing_trained_model_is_trained(study_copy, tmp_path):
    jobs = _with_trained_model(study_copy, tmp_path / "not-yet").planned_jobs()
    assert jobs["train_tiny_model"] == 1


def test_model_trained_with_another_recipe_stops_before_any_job(study_copy, tmp_path):
    model_dir = tmp_path / "tiny-s"
    shutil.copytree(REPO / "resources" / "tiny_models" / "tiny-s", model_dir)
    study = _with_trained_model(study_copy, model_dir)
    study.config["models"]["tiny-s"]["train"]["steps"] += 1
    result = study.snakemake("-n", check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in message
    assert "models.tiny-s.train" in message and "steps" in message and f"delete {model_dir}" in message


RUNTIME_CHANGES = {
    "scheduler time limit": ("resources", "generate", "runtime"),
    "engine batch size": ("engine", "batch_size"),
    "grading workers": ("grading", "workers"),
    "GPU memory per job": ("resources", "generate", "mem_mb"),
}


@pytest.mark.parametrize("field", RUNTIME_CHANGES.values(), ids=RUNTIME_CHANGES.keys())
def test_runtime_settings_rerun_nothing(study_copy, field):
    study_copy.snakemake()  # up to date first (earlier tests may have changed and reverted a key)
    section = study_copy.config
    for name in field[:-1]:
        section = section.setdefault(name, {})
    section[field[-1]] = section.get(field[-1], 1) + 7
    assert study_copy.planned_jobs() == {}


def test_a_key_setting_reruns_exactly_its_dependents(study_copy):
    study_copy.snakemake()
    study_copy.config["sampling"]["temperature"] += 0.1
    # every generation of the small grid (bf16, int4) and what follows; the checkpoint stays
    assert study_copy.planned_jobs() == {"generate": 2, "grade": 2, **{rule: 1 for rule in ANALYSIS_RULES}}
