"""EngineSpec: what an engine is given, built from a study's generations; the values of the dict
specs it replaced, its JSON form and its generation key."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from bitbudget.artifacts import content_id
from bitbudget.enginespec import EngineRuntime, EngineSettings, EngineSpec
from bitbudget.specs import DatasetSpec
from tests.harness import REPO, plan_as_the_snakefile

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def dict_engine_spec(key: dict, engine_runtime: dict, checkpoint_path: str, trace_dir: str,
                     revision: str | None = None) -> dict:
    """The dict spec bitbudget.study.engine_spec built before EngineSpec (kept here to compare)."""
    trace_key = key["trace_key"]
    return {
        "samples": key.get("samples", trace_key["sampling"]["samples_per_question"]),
        "revision": revision,
        "dataset": trace_key["dataset"],
        "kv_strategy": trace_key["kv"],
        "budgets": list(key["budgets"]),
        "engine": {**trace_key["engine"], **engine_runtime},
        "trace_key": trace_key,
        "checkpoint_path": checkpoint_path,
        "trace_dir": trace_dir,
    }


def dict_runtime(runtime: EngineRuntime) -> dict:
    """The engine runtime settings as the study held them before EngineRuntime: an unset
    interpreter left out."""
    return {name: value for name, value in runtime.to_dict().items() if value is not None}


@pytest.fixture(scope="module")
def generations() -> list:
    """Every generation of the default config with adaptive sampling: the full design's and
    each round's (fewer samples, fewer budgets)."""
    config = copy.deepcopy(CONFIG)
    config["sampling"]["adaptive"] = {}
    study = plan_as_the_snakefile(config)
    found = list(study.all_generations.values())
    assert any(g.samples_per_question < g.maximum for g in found)  # a round's key holds its samples
    assert any(g.samples_per_question == g.maximum and g.gen_id not in study.generations for g in found)  # budgets
    return found


def test_an_engine_spec_has_the_values_of_the_dict_spec(generations):
    for gen in generations:
        spec = gen.engine_spec()
        old = dict_engine_spec(gen.key, dict_runtime(gen.runtime.engine), gen.checkpoint.path, gen.trace_dir,
                               gen.source_revision)
        assert spec.trace_key == old["trace_key"] and spec.dataset == DatasetSpec.from_config(old["dataset"])
        assert spec.kv_strategy == old["kv_strategy"] and list(spec.budgets) == old["budgets"]
        assert spec.samples == old["samples"] and spec.revision == old["revision"]
        assert spec.checkpoint_path == old["checkpoint_path"] and spec.trace_dir == old["trace_dir"]
        assert {**spec.trace_key["engine"], **dict_runtime(spec.runtime)} == old["engine"]
        settings = spec.engine
        assert settings == EngineSettings.from_key(old["engine"]) and settings.name == gen.engine_name
        assert EngineSpec.from_dict(json.loads(json.dumps(old))) == spec  # a spec file written before reads


def test_an_engine_spec_round_trips_through_json(generations):
    for gen in generations:
        spec = gen.engine_spec()
        text = json.dumps(spec.to_dict())
        assert EngineSpec.from_dict(json.loads(text)) == spec
        assert json.dumps(EngineSpec.from_dict(json.loads(text)).to_dict()) == text


def test_the_generation_key_of_an_engine_spec_is_its_generations(generations):
    for gen in generations:
        spec = gen.engine_spec()
        assert content_id(spec.generation_key()) == gen.gen_id
        assert {**spec.generation_key(), "trace_key": spec.trace_key} == gen.key
        assert spec.trace_id == gen.trace_id and spec.maximum == gen.maximum


def test_budgets_are_distinct_and_ascending(generations):
    spec = generations[0].engine_spec()
    for budgets in ((), (200, 100), (100, 100)):
        with pytest.raises(ValueError, match="distinct and ascending"):
            EngineSpec(spec.trace_key, budgets, spec.samples, spec.runtime, spec.checkpoint_path, spec.trace_dir,
                       spec.revision)
