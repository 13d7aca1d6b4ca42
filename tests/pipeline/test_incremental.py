"""Incremental reruns: only what a config change touches is recomputed.

Snakemake decides each kind of change once, on a private copy of the finished small study; the
other cases are decided in-process by the functions the Snakefile calls (`job_keys`: a job reruns
when its params, its key, change).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bitbudget.config import ConfigError
from tests.harness import REPO, job_keys, plan_as_the_snakefile, small_config

pytestmark = pytest.mark.pipeline

ANALYSIS_RULES = {"expand_scenarios", "aggregate", "fit", "report"}


def test_full_run_writes_report_and_scenarios(small_study):
    workdir = small_study.workdir
    assert (workdir / "report" / "index.html").stat().st_size > 1000
    scenarios = pd.read_parquet(workdir / "results" / "scenarios.parquet")
    # 1 model x 2 weight formats x 1 KV x 1 dataset x 2 budgets x 2 G
    assert len(scenarios) == 8
    table = pd.read_parquet(workdir / "results" / "aggregate" / "scenarios.parquet")
    assert set(table["scenario_id"]) == set(scenarios["scenario_id"])
    assert table["accuracy"].between(0, 1).all()
    assert (table["total_gib"] > table["weight_gib"]).all()


def test_noop_rerun_runs_nothing(small_study_copy):
    assert small_study_copy.planned_jobs() == {}


def test_adding_a_model_schedules_only_that_model(small_study_copy):
    small_study_copy.config["grids"]["small"]["models"].append("tiny-m")
    jobs = small_study_copy.planned_jobs()
    # tiny-m: one int4 checkpoint; 2 generations (bf16, int4) and their grades
    assert jobs == {"quantize": 1, "generate": 2, "grade": 2, **{rule: 1 for rule in ANALYSIS_RULES}}


def changed_keys(before: dict, after: dict) -> dict[str, int]:
    """Per rule, how many jobs' keys differ (a new id counts as a changed job)."""
    counts = {}
    for rule, keys in after.items():
        if isinstance(keys, dict) and rule in ("quantize", "generate", "grade"):
            changed = sum(1 for job, key in keys.items() if before[rule].get(job) != key)
        else:
            changed = int(before[rule] != keys)
        if changed:
            counts[rule] = changed
    return counts


def test_changing_the_grader_reruns_only_grading_and_after():
    config = small_config()
    before = job_keys(config)
    config["grading"]["timeout_s"] += 1
    changed = changed_keys(before, job_keys(config))
    assert "generate" not in changed and "quantize" not in changed
    assert changed["grade"] == 2 and {"aggregate"} <= set(changed)


def test_reverting_a_change_reuses_old_artifacts(small_study_copy):
    original = json.dumps(small_study_copy.config)
    small_study_copy.config["grading"]["timeout_s"] += 1
    run = small_study_copy.snakemake("--allowed-rules", "grade", "expand_scenarios", "aggregate", "fit", "report")
    assert run.jobs["grade"] == 2  # the changed grader graded again
    small_study_copy.config = json.loads(original)
    jobs = small_study_copy.planned_jobs()
    assert "grade" not in jobs and "generate" not in jobs


def test_bad_config_stops_before_any_job():
    config = small_config()
    config["kv_strategies"]["full"]["bitz"] = 4
    with pytest.raises(ConfigError) as refusal:
        plan_as_the_snakefile(config)
    assert "kv_strategies.full" in str(refusal.value) and "bitz" in str(refusal.value)


def test_snakemake_report_renders_marked_outputs(small_study_copy):
    small_study_copy.snakemake("--report", "report/snakemake.html")
    html = (small_study_copy.workdir / "report" / "snakemake.html").read_text(errors="replace")
    assert "scenarios.parquet" in html and "index.html" in html


def with_trained_model(config: dict, model_dir: Path) -> dict:
    """The config's tiny-s with its training recipe, at model_dir."""
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["models"]["tiny-s"] = {"path": str(model_dir), "train": default["models"]["tiny-s"]["train"]}
    return config


def test_trained_model_older_than_the_code_is_not_retrained(small_study_copy, tmp_path):
    # a fresh clone writes resources/ before workflow/: the shipped models are older than
    # the training script, which must not make snakemake train them again
    model_dir = tmp_path / "tiny-s"
    shutil.copytree(REPO / "resources" / "tiny_models" / "tiny-s", model_dir)
    for path in [*model_dir.iterdir(), model_dir]:
        os.utime(path, (0, 0))
    with_trained_model(small_study_copy.config, model_dir)
    jobs = small_study_copy.planned_jobs()
    assert "train_tiny_model" not in jobs and jobs.get("generate")


def test_missing_trained_model_is_trained(small_study_copy, tmp_path):
    with_trained_model(small_study_copy.config, tmp_path / "not-yet")
    assert small_study_copy.planned_jobs()["train_tiny_model"] == 1


def test_model_trained_with_another_recipe_stops_before_any_job(tmp_path):
    model_dir = tmp_path / "tiny-s"
    shutil.copytree(REPO / "resources" / "tiny_models" / "tiny-s", model_dir)
    config = with_trained_model(small_config(), model_dir)
    config["models"]["tiny-s"]["train"]["steps"] += 1
    with pytest.raises(ValueError) as refusal:
        plan_as_the_snakefile(config)
    message = str(refusal.value)
    assert "models.tiny-s.train" in message and "steps" in message and f"delete {model_dir}" in message


RUNTIME_CHANGES = {
    "scheduler time limit": ("resources", "generate", "runtime"),
    "engine batch size": ("engine", "batch_size"),
    "grading workers": ("grading", "workers"),
    "GPU memory per job": ("resources", "generate", "mem_mb"),
}


def change_setting(config: dict, field: tuple[str, ...]) -> dict:
    section = config
    for name in field[:-1]:
        section = section.setdefault(name, {})
    section[field[-1]] = section.get(field[-1], 1) + 7
    return config


@pytest.mark.parametrize("field", RUNTIME_CHANGES.values(), ids=RUNTIME_CHANGES.keys())
def test_runtime_settings_change_no_key(field):
    before = job_keys(small_config())
    assert changed_keys(before, job_keys(change_setting(small_config(), field))) == {}


def test_a_runtime_setting_reruns_nothing_in_snakemake(small_study_copy):
    change_setting(small_study_copy.config, RUNTIME_CHANGES["scheduler time limit"])
    assert small_study_copy.planned_jobs() == {}


def test_a_key_setting_changes_exactly_its_dependents_keys():
    before = job_keys(small_config())
    config = small_config()
    config["sampling"]["temperature"] += 0.1
    changed = changed_keys(before, job_keys(config))
    assert changed == {"generate": 2, "grade": 2, "expand_scenarios": 1, "aggregate": 1, "report": 1}


def test_a_key_setting_reruns_exactly_its_dependents(small_study_copy):
    small_study_copy.config["sampling"]["temperature"] += 0.1
    # every generation of the small grid (bf16, int4) and what follows; the checkpoint stays
    assert small_study_copy.planned_jobs() == {"generate": 2, "grade": 2, **{rule: 1 for rule in ANALYSIS_RULES}}
