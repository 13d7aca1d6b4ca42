"""The typed job specs of bitbudget.specs, built from every checkpoint, grade and dataset of the
shipped configs: the values of the dicts they replaced (keys, to the order of their fields, so a
job's params keep their repr), their JSON and params round trips, and their fields' roles."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from bitbudget import versions
from bitbudget.artifacts import content_id, sha256_file
from bitbudget.datasets import load_questions
from bitbudget.enginespec import EngineRuntime, GenerationRuntime
from bitbudget.schema import schema_defaults
from bitbudget.specs import (KEY, CheckpointRuntime, DatasetSpec, GradeRuntime, GradeSpec, QuantizeSpec,
                             WeightFormat, fields_with_role, with_defaults)
from bitbudget.study import model_key, simulated_architecture_key
from tests.harness import REPO, plan_as_the_snakefile, with_calibrated_gptq

FIXTURES = REPO / "tests" / "fixtures"


def shipped(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def configs() -> dict[str, dict]:
    """The shipped configs: the default one (also with adaptive sampling: each round's grades),
    the paper grid (GPTQ formats, hub datasets) and the paper grid simulated (metadata-only
    checkpoints), with an extra GPTQ format whose calibration is not the default."""
    adaptive = shipped("config.yaml")
    adaptive["sampling"]["adaptive"] = {}
    simulated = shipped("paper.yaml")
    update_config(simulated, shipped("simulated.yaml"))
    return {"config": shipped("config.yaml"), "config-adaptive": adaptive, "paper": shipped("paper.yaml"),
            "paper-simulated": simulated, "config-gptq": with_calibrated_gptq(shipped("config.yaml"))}


@pytest.fixture(scope="module")
def studies() -> dict:
    with contextlib.chdir(REPO):  # the configs' relative paths
        return {name: plan_as_the_snakefile(config) for name, config in configs().items()}


# --------------------------------------------------------------------------- the dict paths replaced
def dict_checkpoint_key(config: dict, model: str, weights: str, metadata_only: bool) -> dict:
    """The key bitbudget.study built before QuantizeSpec (kept here to compare)."""
    fmt = dict(config["weight_formats"][weights])
    key = {"model": model_key(model, config["models"][model])}
    if metadata_only:
        key["metadata_only"] = simulated_architecture_key(config["models"][model]["path"])
    if fmt["bits"] < 16:
        key["format"] = {"bits": fmt["bits"], "method": fmt["method"], "group_size": fmt["group_size"]}
        key["format"].update({k: fmt[k] for k in ("scheme", "dampening_frac") if k in fmt})
        if ("calibration" in fmt and fmt["method"] == "gptq"
                and fmt["calibration"] != schema_defaults("weight_formats", "*", "calibration")):
            key["format"]["calibration"] = fmt["calibration"]
        llmc = fmt["method"] == "gptq" or "scheme" in fmt
        key["quantizer"] = versions.LLMCOMPRESSOR_QUANTIZER_VERSION if llmc else versions.QUANTIZER_VERSION
        if metadata_only:
            key["quantizer"] = versions.METADATA_CHECKPOINT_VERSION
    return key


def dict_dataset_key(dataset: dict) -> dict:
    """The trace key's dataset section bitbudget.study.dataset_key built before DatasetSpec."""
    unread = set(("fields", "shuffle_seed", "problem_template") if dataset["source"] == "synthetic" else ())
    unread |= set(("shuffle_seed", "problem_template") if dataset["kind"] != "choice" else ())
    key = {k: v for k, v in dataset.items() if k not in unread}
    key["loader"] = versions.DATASET_LOADER_VERSION
    if dataset["source"] == "file" and Path(dataset["file"]).is_file():
        key["file_sha256"] = sha256_file(dataset["file"])
    if dataset["source"] == "synthetic":
        key["task_version"] = versions.SYNTHETIC_TASK_VERSION
    return key


def test_the_configs_cover_every_kind_of_checkpoint(studies):
    checkpoints = [c for study in studies.values() for c in study.checkpoints.values()]
    assert any(not c.quantized for c in checkpoints)
    assert any(c.spec.metadata_only is not None for c in checkpoints)
    assert any(c.quantized and c.spec.format.uses_llmcompressor for c in checkpoints)
    assert any(c.quantized and c.spec.format.calibration is not None for c in checkpoints)
    assert any(c.quantized and not c.spec.format.uses_llmcompressor and c.spec.metadata_only is None
               for c in checkpoints)


def test_a_quantize_spec_has_the_values_of_the_dict_path(studies):
    for study in studies.values():
        config = study.config
        for ckpt in study.checkpoints.values():
            spec = ckpt.spec
            old = dict_checkpoint_key(config, ckpt.model, ckpt.weights, spec.metadata_only is not None)
            assert repr(ckpt.key) == repr(old)  # the quantize job's params, to the order of the fields
            assert ckpt.ckpt_id == content_id(old)
            assert ckpt.quantized == (config["weight_formats"][ckpt.weights]["bits"] < 16)
            old_python = config["envs"]["llmcompressor"].get("python") if ckpt.quantized else None
            assert ckpt.runtime == CheckpointRuntime(old_python)
            # what the quantize script read from the key
            assert (spec.source, spec.revision) == (old["model"]["path"], old["model"]["revision"])
            if ckpt.quantized:
                fmt = old["format"]
                assert (spec.format.bits, spec.format.method, spec.format.group_size) == (
                    fmt["bits"], fmt["method"], fmt["group_size"])
                assert spec.format.scheme == fmt.get("scheme")
                assert spec.format.dampening_frac == fmt.get("dampening_frac")
                assert spec.format.calibration_set == {**schema_defaults("weight_formats", "*", "calibration"),
                                                       **fmt.get("calibration", {})}
                assert spec.format.uses_llmcompressor == (fmt["method"] == "gptq" or "scheme" in fmt)


def test_a_grade_spec_has_the_values_of_the_dict_path(studies):
    for study in studies.values():
        for grade in study.all_grades.values():
            trace_key = grade.generation.key["trace_key"]
            old = {"generation": grade.generation.gen_id, **study.grader_key}
            assert repr(grade.key) == repr(old) and grade.grade_id == content_id(old)
            assert grade.runtime == GradeRuntime(study.config["grading"]["workers"])
            # the grade job's params kind and end_of_thinking, and its timeout
            assert grade.spec.kind == trace_key["dataset"]["kind"]
            assert grade.spec.end_of_thinking == trace_key["forcing"]["end_of_thinking"]
            assert grade.spec.timeout_s == old["timeout_s"]


def test_a_generation_runtime_has_the_values_of_the_dict_path(studies):
    from bitbudget.config import model_resources

    for study in studies.values():
        for gen in study.all_generations.values():
            assert isinstance(gen.runtime, GenerationRuntime) and isinstance(gen.runtime.engine, EngineRuntime)
            assert gen.runtime.resources == model_resources(study.config, gen.checkpoint.model)


def test_a_dataset_spec_has_the_values_of_the_dict_path(studies):
    for study in studies.values():
        for name, dataset in study.config["datasets"].items():
            spec = DatasetSpec.from_config(dataset, name)
            assert repr(spec.key(given=dataset)) == repr(dict_dataset_key(dataset))  # a generate job's params
            filled = with_defaults(dataset)  # what the loader read before
            for field in fields_with_role(DatasetSpec, KEY):
                assert getattr(spec, field) == filled.get(field), field
        for gen in study.generations.values():
            section = gen.key["trace_key"]["dataset"]
            assert repr(section) == repr(dict_dataset_key(study.config["datasets"][gen.dataset]))
            # read back from the trace key, the loader reads what it reads from the config's entry
            from_key, from_config = gen.engine_spec().dataset, DatasetSpec.from_config(study.config["datasets"][gen.dataset])
            assert from_key.read_fields == from_config.read_fields
            assert all(getattr(from_key, name) == getattr(from_config, name) for name in from_key.read_fields)


def test_a_dataset_read_from_a_trace_key_loads_the_questions_of_its_config_entry():
    gpqa = {"kind": "choice", "source": "file", "file": str(FIXTURES / "gpqa_diamond.jsonl"), "shuffle_seed": 3,
            "fields": shipped("paper.yaml")["datasets"]["gpqa_diamond"]["fields"]}
    spec = DatasetSpec.from_config(gpqa, "gpqa")
    from_key = DatasetSpec.from_config(json.loads(json.dumps(spec.key())))
    assert load_questions(from_key) == load_questions(spec)
    synthetic = DatasetSpec.from_config({"kind": "integer", "source": "synthetic", "synthetic": {
        "n_questions": 5, "seed": 1, "min_difficulty": 2, "max_difficulty": 9}})
    assert "fields" not in synthetic.key() and "shuffle_seed" not in synthetic.key()
    assert load_questions(DatasetSpec.from_config(synthetic.key())) == load_questions(synthetic)


# --------------------------------------------------------------------------- round trips
def test_specs_round_trip_through_json_and_params(studies):
    for study in studies.values():
        for ckpt in study.checkpoints.values():
            text = json.dumps(ckpt.spec.to_dict())
            assert QuantizeSpec.from_dict(json.loads(text)) == ckpt.spec
            assert json.dumps(QuantizeSpec.from_dict(json.loads(text)).to_dict()) == text
            # what the quantize script builds from its params and resources
            from_params = QuantizeSpec.from_key(copy.deepcopy(ckpt.key), ckpt.runtime)
            assert from_params == ckpt.spec and repr(from_params.key()) == repr(ckpt.key)
            if ckpt.quantized:
                assert WeightFormat.from_key(json.loads(json.dumps(ckpt.spec.format.key()))) == ckpt.spec.format
        for grade in study.all_grades.values():
            text = json.dumps(grade.spec.to_dict())
            assert GradeSpec.from_dict(json.loads(text)) == grade.spec
            assert json.dumps(GradeSpec.from_dict(json.loads(text)).to_dict()) == text
            from_params = GradeSpec.from_key(copy.deepcopy(grade.key), grade.spec.kind, grade.spec.end_of_thinking,
                                             GradeRuntime(grade.runtime.workers))
            assert from_params == grade.spec and repr(from_params.key()) == repr(grade.key)


def test_a_format_reads_the_schemas_defaults():
    fmt = WeightFormat.from_config({"bits": 4})
    defaults = schema_defaults("weight_formats", "*")
    assert (fmt.method, fmt.group_size) == (defaults["method"], defaults["group_size"])
    assert fmt.calibration is None and not fmt.uses_llmcompressor
    default = schema_defaults("weight_formats", "*", "calibration")
    assert WeightFormat.from_config({"bits": 4, "method": "gptq", "calibration": default}).calibration is None
    assert WeightFormat.from_config({"bits": 4, "method": "rtn", "calibration": {"n_samples": 7}}).calibration is None
    assert WeightFormat.from_config({"bits": 4, "method": "gptq", "calibration": {"n_samples": 7}}).calibration_set == {
        **default, "n_samples": 7}
