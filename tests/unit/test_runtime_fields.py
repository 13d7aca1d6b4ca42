"""Runtime settings stay out of every key: changing any field of bitbudget.study.RUNTIME_FIELDS
(each leaf the schema declares under it) changes no job's params, so Snakemake reruns nothing;
changing any runtime field an EngineSpec or another job spec (bitbudget.specs) declares changes
no artifact's id, and changing any key field does."""

import contextlib
import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from bitbudget.artifacts import content_id
from bitbudget.enginespec import ENGINE_RUNTIME_FIELDS, EngineRuntime, EngineSettings, EngineSpec, GenerationRuntime
from bitbudget.specs import (KEY, RUNTIME, CheckpointRuntime, DatasetSpec, GradeRuntime, GradeSpec, QuantizeSpec,
                             WeightFormat, fields_with_role, runtime_config_fields)
from bitbudget.schema import load_schema
from bitbudget.study import RUNTIME_FIELDS, without_runtime
from tests.harness import REPO, job_keys, plan_as_the_snakefile, with_calibrated_gptq

SCHEMA = load_schema()
FIXTURES = REPO / "tests" / "fixtures"
CONFIGS = {
    "config": yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
    "paper": yaml.safe_load((REPO / "config" / "paper.yaml").read_text()),
}
CONFIGS["config-adaptive"] = copy.deepcopy(CONFIGS["config"])
CONFIGS["config-adaptive"]["sampling"]["adaptive"] = {}


def resolve(node: dict) -> dict:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def schema_node(path: list[str]) -> dict:
    node = SCHEMA
    for name in path:
        node = resolve(node)
        node = node["additionalProperties"] if name == "*" else node["properties"][name]
    return resolve(node)


def leaves(path: list[str]) -> list[tuple[list[str], dict]]:
    """Every leaf field the schema declares at or under ``path``, with its schema."""
    node = schema_node(path)
    if "properties" not in node:
        return [(path, node)]
    return [leaf for name in node["properties"] for leaf in leaves([*path, name])]


def other_value(schema: dict, current):
    """A valid value other than ``current`` (or the default where unset)."""
    if schema.get("type") == "integer":
        base = current if current is not None else schema.get("default", schema.get("minimum", 1))
        return base + 1
    if schema.get("type") == "string":
        if current is not None and "python" in str(current):
            # the same interpreter by another path: the engine's version (which is key, by design:
            # another vLLM draws other tokens) stays what it is wherever the venv is found
            return str(Path(current).parent / ".." / Path(current).parent.name / Path(current).name)
        return "/elsewhere/bin/python" if current is None else f"{current}-changed"
    raise AssertionError(f"no other value known for a field of schema {schema}")


def entries(config: dict, path: list[str]) -> list[list[str]]:
    """``path`` with "*" replaced by every entry the config has there."""
    if "*" not in path:
        return [path]
    star = path.index("*")
    node = config
    for name in path[:star]:
        node = node[name]
    return [full for name in node for full in entries(config, [*path[:star], name, *path[star + 1:]])]


def effective(config: dict, path: list[str], node: dict):
    """The value a field has in effect: a grid's engine field left unset takes the engine's."""
    if node.get(path[-1]) is None and path[0] == "grids" and path[2:3] == ["engine"]:
        return config["engine"].get(path[-1])
    return node.get(path[-1])


def runtime_edits(config: dict) -> list[tuple[tuple[str, ...], object]]:
    """(field path, new value) for every runtime leaf of ``config``."""
    filled = plan_as_the_snakefile(config).config
    edits = []
    for declared in RUNTIME_FIELDS:
        for path, schema in leaves(declared.split(".")):
            for concrete in entries(filled, path):
                node = filled
                for depth, name in enumerate(concrete[:-1], 1):
                    if name not in node and schema_node(path[:depth]).get("required"):
                        break  # e.g. the threads of a model with no training recipe
                    node = node.get(name, {})
                else:
                    edits.append((tuple(concrete), other_value(schema, effective(filled, concrete, node))))
    return edits


def edited(config: dict, field: tuple[str, ...], value) -> dict:
    config = copy.deepcopy(config)
    *parents, last = field
    node = config
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return config


def test_every_declared_runtime_field_is_in_the_schema():
    for declared in RUNTIME_FIELDS:
        assert leaves(declared.split(".")), declared
    fields = {".".join(field) for field, _ in runtime_edits(CONFIGS["config"])}
    assert {"models.tiny-s.train.threads", "grading.workers", "engine.batch_size", "resources.generate.runtime",
            "envs.llmcompressor.python", "models.tiny-s.resources.mem_mb"} <= fields


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_no_runtime_field_moves_a_key(name, monkeypatch):
    monkeypatch.chdir(REPO)
    config = CONFIGS[name]
    before = job_keys(config)
    edits = runtime_edits(config)
    changed = config
    for field, value in edits:
        changed = edited(changed, field, value)
    if job_keys(changed) != before:  # name the fields that move a key
        moved = [".".join(field) for field, value in edits if job_keys(edited(config, field, value)) != before]
        pytest.fail(f"runtime fields that move a job's key: {moved}")


def test_without_runtime_removes_every_runtime_field():
    config = plan_as_the_snakefile(CONFIGS["config"]).config
    stripped = without_runtime(config)
    for field, _ in runtime_edits(CONFIGS["config"]):
        node = stripped
        for name in field[:-1]:
            node = node.get(name, {})
        assert field[-1] not in node, field


def test_one_grids_runtime_engine_setting_moves_no_key(monkeypatch):
    """Grids whose engines differ only at runtime share their generations: setting one grid's
    batch size alone splits nothing."""
    monkeypatch.chdir(REPO)
    config = CONFIGS["config"]
    grid = next(iter(config["grids"]))
    assert job_keys(edited(config, ("grids", grid, "engine", "batch_size"), 8)) == job_keys(config)


def test_grids_whose_engines_differ_at_runtime_list_each_scenario_once(monkeypatch):
    """Two grids over the same cells, one with another batch size: one generation per cell, and
    every scenario once (the scenario table and the fit read one row per scenario id)."""
    monkeypatch.chdir(REPO)
    config = copy.deepcopy(CONFIGS["config"])
    name, grid = next(iter(config["grids"].items()))
    config["grids"]["again"] = {**copy.deepcopy(grid), "engine": {"batch_size": 3}}
    study = plan_as_the_snakefile(config)
    ids = [row["scenario_id"] for row in study.scenarios]
    assert len(ids) == len(set(ids)) == len(plan_as_the_snakefile(CONFIGS["config"]).scenarios)
    assert all((name in row["grids"]) == ("again" in row["grids"]) for row in study.scenarios)


def other(value):
    """Another value of a field's type (of a dataclass: its first field changed)."""
    if dataclasses.is_dataclass(value):
        first = dataclasses.fields(value)[0].name
        return dataclasses.replace(value, **{first: other(getattr(value, first))})
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, dict):
        return {**value, "changed": True}
    return "/elsewhere" if value is None else f"{value}-changed"


def test_engine_spec_fields_are_key_or_runtime_and_only_key_fields_move_the_id(monkeypatch):
    """Each runtime field of EngineSpec (and of its EngineRuntime) changed alone keeps the
    generation's key and id; each key field changed alone moves them."""
    monkeypatch.chdir(REPO)
    assert ENGINE_RUNTIME_FIELDS == fields_with_role(EngineRuntime, RUNTIME)
    assert {f"engine.{name}" for name in ENGINE_RUNTIME_FIELDS} <= set(RUNTIME_FIELDS)
    assert set(fields_with_role(EngineSpec, KEY)) | set(fields_with_role(EngineSpec, RUNTIME)) == {
        f.name for f in dataclasses.fields(EngineSpec)}
    gen = max(plan_as_the_snakefile(CONFIGS["config"]).generations.values(), key=lambda g: len(g.budgets))
    spec = gen.engine_spec()
    key = spec.generation_key()
    assert content_id(key) == gen.gen_id
    for name in fields_with_role(EngineSpec, RUNTIME):
        assert dataclasses.replace(spec, **{name: other(getattr(spec, name))}).generation_key() == key, name
    for name in fields_with_role(EngineRuntime, RUNTIME):
        runtime = dataclasses.replace(spec.runtime, **{name: other(getattr(spec.runtime, name))})
        assert dataclasses.replace(spec, runtime=runtime).generation_key() == key, name
    moved = {
        "trace_key": {**spec.trace_key, "horizon": spec.trace_key["horizon"] + 1},
        "budgets": spec.budgets[1:],
        "samples": spec.samples - 1,
        "closed_questions": {"a-question": spec.samples - 1},
    }
    assert set(moved) == set(fields_with_role(EngineSpec, KEY))
    for name, value in moved.items():
        assert content_id(dataclasses.replace(spec, **{name: value}).generation_key()) != gen.gen_id, name
    # the engine settings are read from the trace key: each is key
    assert fields_with_role(EngineSettings, KEY) == tuple(f.name for f in dataclasses.fields(EngineSettings))
    for name in fields_with_role(EngineSettings, KEY):
        trace_key = {**spec.trace_key, "engine": {**spec.trace_key["engine"], name: other(getattr(spec.engine, name))}}
        assert dataclasses.replace(spec, trace_key=trace_key).generation_key() != key, name


def choice_dataset() -> DatasetSpec:
    """A dataset whose loader reads every field (a choice set from a file)."""
    return DatasetSpec.from_config({"kind": "choice", "source": "file", "file": str(FIXTURES / "gpqa_diamond.jsonl"),
                                    "expected_questions": 3, "max_questions": 2}, "gpqa")


@pytest.fixture(scope="module")
def gptq_study():
    """The default study with a GPTQ format whose calibration is not the default one."""
    with contextlib.chdir(REPO):
        return plan_as_the_snakefile(with_calibrated_gptq(CONFIGS["config"]))


@pytest.mark.parametrize("cls", [QuantizeSpec, GradeSpec, DatasetSpec, WeightFormat])
def test_job_spec_fields_are_key_or_runtime_and_only_key_fields_move_the_id(cls, gptq_study):
    """Each runtime field of a job spec changed alone keeps its key; each key field changed alone
    moves the id (a dataset's, read from a file as a choice set: its loader reads every field)."""
    assert set(fields_with_role(cls, KEY)) | set(fields_with_role(cls, RUNTIME)) == {
        f.name for f in dataclasses.fields(cls)}
    study = gptq_study
    gptq = next(c.spec for c in study.checkpoints.values() if c.quantized and c.spec.format.calibration)
    spec = {QuantizeSpec: gptq, GradeSpec: next(iter(study.grades.values())).spec, DatasetSpec: choice_dataset(),
            WeightFormat: gptq.format}[cls]
    key = spec.key()
    for name in fields_with_role(cls, RUNTIME):
        assert dataclasses.replace(spec, **{name: other(getattr(spec, name))}).key() == key, name
    for name in fields_with_role(cls, KEY):
        changed = dataclasses.replace(spec, **{name: other(getattr(spec, name))})
        assert content_id(changed.key()) != content_id(key), name


def test_a_dataset_key_holds_only_the_fields_its_loader_reads():
    spec = choice_dataset()
    integer = dataclasses.replace(spec, kind="integer")
    for name in ("shuffle_seed", "problem_template"):
        assert dataclasses.replace(integer, **{name: other(getattr(integer, name))}).key() == integer.key(), name
    synthetic = dataclasses.replace(spec, source="synthetic", file=None, synthetic={"n_questions": 3})
    assert dataclasses.replace(synthetic, fields={"problem": "q"}).key() == synthetic.key()


def test_runtime_fields_of_the_config_are_the_specs():
    declared = [*runtime_config_fields(CheckpointRuntime), *runtime_config_fields(GenerationRuntime),
                *runtime_config_fields(GradeRuntime)]
    assert set(declared) <= set(RUNTIME_FIELDS)
    assert set(RUNTIME_FIELDS) - set(declared) == {"models.*.train.threads"}
    assert {"grading.workers", "envs.llmcompressor.python", "resources", "engine.batch_size"} <= set(declared)
