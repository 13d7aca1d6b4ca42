"""Expand a study config into scenarios and the content-addressed artifacts that make them.

Artifacts, from first to last:
  checkpoint  (model, weight format)                          results/checkpoints/{ckpt_id}/
  generation  (checkpoint, KV strategy, dataset, sampling,
               forcing, prompt, engine, token budgets)        results/generations/{gen_id}/
  grade       (generation, grader)                            results/grades/{grade_id}/
  scenario    (grade, token budget, G): a row of the tables   results/aggregate/

A generation covers every token budget of its (checkpoint, KV, dataset): it thinks once
up to the largest budget and forks a forced answer at each smaller one. Its trajectories
live in results/traces/{trace_id}/, keyed without the budget list, so adding a budget
costs only the new forks.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from bitbudget import versions
from bitbudget.adaptive.schedule import AdaptiveRule
from bitbudget.artifacts import content_id
from bitbudget.backends.simulated import read_architecture
from bitbudget.config import grid_engine, grid_samples, model_resources
from bitbudget.enginespec import ENGINE_RUNTIME_FIELDS, EngineRuntime, EngineSpec, GenerationRuntime, generation_key
from bitbudget.errors import ConfigError
from bitbudget.forcing import sampling_key
from bitbudget.preflight import validate_study_config
from bitbudget.specs import (CheckpointRuntime, DatasetSpec, GradeRuntime, GradeSpec, QuantizeSpec, WeightFormat,
                             runtime_config_fields)

RESULTS = "results"

#: recipe fields that do not change the trained weights
RECIPE_FIELDS_NOT_IN_WEIGHTS = ("threads",)
#: every runtime setting of the config ("*": each named entry): where and how fast a job runs,
#: never what it computes, so never in a job's key (tests/unit/test_runtime_fields.py walks them).
#: The job specs' runtime fields name them; a training recipe's threads are the one more.
RUNTIME_FIELDS = (
    *runtime_config_fields(CheckpointRuntime),
    *runtime_config_fields(GenerationRuntime),
    *runtime_config_fields(GradeRuntime),
    *(f"models.*.train.{name}" for name in RECIPE_FIELDS_NOT_IN_WEIGHTS),
)


def without_runtime(config: dict) -> dict:
    """The config less every runtime setting (:data:`RUNTIME_FIELDS`): what a stage may hash or
    show without a runtime edit ever rerunning it."""
    config = copy.deepcopy(config)
    for path in RUNTIME_FIELDS:
        _drop(config, path.split("."))
    return config


def _drop(node: dict, path: list[str]) -> None:
    """Remove the field at ``path`` ("*": every entry) where it is set, and a section it leaves
    empty (a grid's `engine: {batch_size: 8}` is no override of what it computes)."""
    first, rest = path[0], path[1:]
    for name in (list(node) if first == "*" else [first]):
        if not rest:
            node.pop(name, None)
        elif isinstance(node.get(name), dict):
            _drop(node[name], rest)
            if not node[name]:
                del node[name]


class SpecifiedJob:
    """An artifact made by a job that is given ``spec``: its key, exactly what the artifact's id
    hashes, and its runtime settings are the spec's."""

    spec: QuantizeSpec | GradeSpec

    @property
    def key(self) -> dict:
        return self.spec.key()

    @property
    def runtime(self) -> CheckpointRuntime | GradeRuntime:
        return self.spec.runtime


@dataclass(frozen=True)
class Checkpoint(SpecifiedJob):
    """A checkpoint of the study: `spec` is what its quantize stage is given."""

    ckpt_id: str
    model: str
    weights: str
    spec: QuantizeSpec

    @property
    def quantized(self) -> bool:
        return self.spec.quantized

    @property
    def source_path(self) -> str:
        """The model's weights as the config names them: a directory or a hub id."""
        return self.spec.source

    @property
    def path(self) -> str:
        """Where generation loads weights from: the quantized copy, or the source itself."""
        return f"{RESULTS}/checkpoints/{self.ckpt_id}" if self.quantized else self.source_path


@dataclass(frozen=True)
class Generation:
    gen_id: str
    trace_id: str
    checkpoint: Checkpoint
    kv: str
    dataset: str
    budgets: tuple[int, ...]
    samples_per_question: int  # samples per question this generation holds (a round's, under adaptive sampling)
    key: dict
    runtime: GenerationRuntime

    @property
    def engine_name(self) -> str:
        return self.key["trace_key"]["engine"]["name"]

    @property
    def source_revision(self) -> str | None:
        """The pinned revision the engine loads, for an unquantized checkpoint (a quantized one
        was made from the pinned source and is loaded from results/)."""
        return None if self.checkpoint.quantized else self.checkpoint.key["model"]["revision"]

    @property
    def maximum(self) -> int:
        """Samples per question of the full design: the trace holds samples 0..maximum-1, keyed by index."""
        return self.key["trace_key"]["sampling"]["samples_per_question"]

    def engine_spec(self) -> EngineSpec:
        """What its engine is given (a generate job builds the same from its params)."""
        return EngineSpec.from_generation_key(self.key, self.runtime.engine, self.checkpoint.path, self.trace_dir,
                                              self.source_revision)

    def with_samples(self, samples: int, budgets=None, closed_questions=None) -> "Generation":
        """The same trace read at its first ``samples`` samples per question and at ``budgets``
        (default: all of this generation's; a round of adaptive sampling), the questions of
        ``closed_questions`` (question id -> samples) at their fewer samples. Its samples think
        only to the largest budget asked: a sample stored with less thinking is continued when
        a larger budget is asked later. At the maximum, every budget and no closed question it
        is this generation, id included, so a study that stops no generation early shares every
        artifact with one that samples the full design."""
        if not 1 <= samples <= self.maximum:
            raise ValueError(f"samples per question must lie in 1..{self.maximum}, got {samples}")
        budgets = tuple(sorted(self.budgets if budgets is None else budgets))
        if not budgets or not set(budgets) <= set(self.budgets):
            raise ValueError(f"budgets must be a non-empty subset of {list(self.budgets)}, got {list(budgets)}")
        gen_key = generation_key(self.trace_id, budgets, samples, self.maximum, closed_questions)
        return Generation(content_id(gen_key), self.trace_id, self.checkpoint, self.kv, self.dataset, budgets,
                          samples, {**gen_key, "trace_key": self.key["trace_key"]}, self.runtime)

    @property
    def output(self) -> str:
        return f"{RESULTS}/generations/{self.gen_id}/samples.parquet"

    @property
    def trace_dir(self) -> str:
        return f"{RESULTS}/traces/{self.trace_id}"


@dataclass(frozen=True)
class Grade(SpecifiedJob):
    """A grade of the study: `spec` is what its grade stage is given."""

    grade_id: str
    generation: Generation
    spec: GradeSpec

    @property
    def output(self) -> str:
        return f"{RESULTS}/grades/{self.grade_id}/grades.parquet"


@dataclass
class Study:
    config: dict
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    generations: dict[str, Generation] = field(default_factory=dict)
    grades: dict[str, Grade] = field(default_factory=dict)
    scenarios: list[dict] = field(default_factory=list)
    #: under sampling.adaptive: gen_id of the full design -> {(samples per question, horizon): the
    #: grade of a round that reads those samples at every budget up to that horizon}
    rounds: dict[str, dict[tuple[int, int], Grade]] = field(default_factory=dict)
    #: under sampling.adaptive: the gen_ids of the full design drawn in one round (those of a grid
    #: with `adaptive: false`, even if shared with another grid)
    one_round: frozenset[str] = frozenset()

    @property
    def one_round_grids(self) -> tuple[str, ...]:
        """Under sampling.adaptive, the grids drawn in one round (`adaptive: false`)."""
        if self.config["sampling"].get("adaptive") is None:
            return ()
        return tuple(sorted(name for name, grid in self.config["grids"].items() if not grid["adaptive"]))

    def grade_of(self, generation: Generation) -> Grade:
        trace_key = generation.key["trace_key"]
        spec = GradeSpec(generation.gen_id, **self.grader_key, kind=trace_key["dataset"]["kind"],
                         end_of_thinking=trace_key["forcing"]["end_of_thinking"],
                         runtime=GradeRuntime.from_config(self.config))
        return Grade(content_id(spec.key()), generation, spec)

    @property
    def all_generations(self) -> dict[str, Generation]:
        """Every generation a job may make: the full design's and each adaptive round's."""
        out = dict(self.generations)
        for grades in self.rounds.values():
            out.update({g.generation.gen_id: g.generation for g in grades.values()})
        return out

    @property
    def all_grades(self) -> dict[str, Grade]:
        out = dict(self.grades)
        for grades in self.rounds.values():
            out.update({g.grade_id: g for g in grades.values()})
        return out

    @functools.cached_property
    def grader_key(self) -> dict:  # once per study: a package version lookup reads the installed metadata
        return {
            "grader": versions.GRADER_VERSION,
            "math_verify": versions.package_version("math-verify"),
            "timeout_s": self.config["grading"]["timeout_s"],
        }


def file_fingerprint(path: Path) -> str:
    """Cheap identity of a local model directory: config text and weight file sizes."""
    digest = hashlib.sha256()
    for name in sorted(p.name for p in path.iterdir() if p.is_file()):
        file = path / name
        digest.update(name.encode())
        if name.endswith((".json", ".jinja", ".txt")):
            digest.update(file.read_bytes())
        else:
            digest.update(str(file.stat().st_size).encode())
    return digest.hexdigest()[:16]


def recipe_mismatch(model_dir: str | Path, recipe: dict) -> list[str]:
    """The recipe fields the model in ``model_dir`` was not trained with, from the
    ``training.json`` its training wrote (empty when it matches)."""
    summary_path = Path(model_dir) / "training.json"
    if not summary_path.is_file():
        return [f"{summary_path} is missing"]
    trained = json.loads(summary_path.read_text())
    wanted = {k: v for k, v in recipe.items() if k not in RECIPE_FIELDS_NOT_IN_WEIGHTS}
    wanted["task_version"] = versions.SYNTHETIC_TASK_VERSION
    return [f"{k}: trained with {trained.get(k)!r}, config has {v!r}"
            for k, v in wanted.items() if trained.get(k) != v]


def models_to_train(config: dict) -> list[str]:
    """Directories of the models with a training recipe that do not exist yet.

    A model directory that exists and was trained with its recipe is a source file like
    any checkpoint (its mtime says nothing: a fresh clone writes files in any order); one
    trained with another recipe stops the run before any job."""
    to_train = []
    for name, model in config["models"].items():
        if "train" not in model:
            continue
        if not Path(model["path"]).exists():
            to_train.append(model["path"])
            continue
        mismatch = recipe_mismatch(model["path"], model["train"])
        if mismatch:
            raise ValueError(
                f"config field 'models.{name}.train': {model['path']} was trained with another "
                f"recipe ({'; '.join(mismatch)}); fix: delete {model['path']} so that snakemake "
                f"trains it again, or restore the recipe"
            )
    return sorted(to_train)


def model_key(name: str, model: dict) -> dict:
    key = {"path": model["path"], "revision": model.get("revision")}
    if "train" in model:
        key["train"] = {k: v for k, v in model["train"].items() if k not in RECIPE_FIELDS_NOT_IN_WEIGHTS}
        key["recipe_key"] = versions.RECIPE_KEY_VERSION
    elif Path(model["path"]).is_dir():
        key["fingerprint"] = file_fingerprint(Path(model["path"]))
    return key


def dataset_key(name: str, dataset: dict) -> dict:
    """What a validated dataset's questions are made of (its defaults filled, so a default
    written out and one left out give one key), in the order of its config entry's fields."""
    return DatasetSpec.from_config(dataset, name).key(given=dataset)


def _checkpoint(config: dict, model: str, weights: str, metadata_only: bool = False) -> Checkpoint:
    """``metadata_only``: for the simulated engine, a checkpoint of the architecture, parameter
    counts, bits and group size, without weights (bitbudget.backends.simulated.write_metadata_checkpoint)."""
    fmt = WeightFormat.from_config(config["weight_formats"][weights])
    quantized = fmt.bits < 16
    quantizer = None
    if quantized:
        quantizer = versions.LLMCOMPRESSOR_QUANTIZER_VERSION if fmt.uses_llmcompressor else versions.QUANTIZER_VERSION
        if metadata_only:
            quantizer = versions.METADATA_CHECKPOINT_VERSION
    spec = QuantizeSpec(
        model_key(model, config["models"][model]),
        simulated_architecture_key(config["models"][model]["path"]) if metadata_only else None,
        fmt if quantized else None, quantizer, CheckpointRuntime.from_config(config, quantized))
    return Checkpoint(content_id(spec.key()), model, weights, spec)


def simulated_architecture_key(path: str) -> dict:
    """The architecture a simulated checkpoint is made of (its file's content, not only its path)."""
    return {"architecture": read_architecture(path), "version": versions.METADATA_CHECKPOINT_VERSION}


def simulation_key(config: dict, dataset: str, model: str) -> dict:
    """The planted truth one simulated generation draws from: globals, KV costs, its dataset's
    surface, and its model with the simulator's own parameter counts."""
    simulation = config.get("simulation")
    if simulation is None or dataset not in simulation["datasets"]:
        raise ConfigError(
            f"config field 'simulation.datasets.{dataset}': the simulated engine generates for dataset "
            f"'{dataset}' but no surface is planted for it; fix: add it (see config/simulated.yaml)"
        )
    if model not in simulation["parameters"]:
        raise ConfigError(
            f"config field 'simulation.parameters.{model}': the simulated engine places model '{model}' by "
            f"its parameter counts, and none are given; fix: add `{model}: {{total: ..., non_embedding: ...}}`"
        )
    return {**{k: v for k, v in simulation.items() if k not in ("datasets", "parameters")}, "dataset": dataset,
            "surface": simulation["datasets"][dataset], "model": model, "parameters": simulation["parameters"][model]}


def _trace_key(config: dict, ckpt: Checkpoint, kv: str, dataset: str, samples: int, horizon: int,
               engine_config: dict, dataset_keys: dict | None = None) -> dict:
    kind = config["datasets"][dataset]["kind"]
    sampling = {k: v for k, v in sampling_key(config["sampling"], config["forcing"]).items()
                if k not in ("samples_per_question", "adaptive")}  # adaptive: how many are drawn, not which
    forcing = {k: v for k, v in config["forcing"].items() if k != "forced_answer_suffix"}
    engine = {k: v for k, v in engine_config.items() if k not in ENGINE_RUNTIME_FIELDS}
    key = {
        "checkpoint": ckpt.ckpt_id,
        "kv": versions.kv_key(config["kv_strategies"][kv]),
        "dataset": (dataset_keys or {}).get(dataset) or dataset_key(dataset, config["datasets"][dataset]),
        "prompt": config["prompts"][kind],
        "chat_template_kwargs": config["prompts"]["chat_template_kwargs"],
        "sampling": {**sampling, "samples_per_question": samples},
        "forcing": {**forcing, "forced_answer_suffix": config["forcing"]["forced_answer_suffix"][kind]},
        "horizon": horizon,
        "engine": {**engine, **_engine_identity(engine_config["name"], engine_config.get("python"))},
        "generator": versions.GENERATOR_VERSION,
        **versions.draws_key(engine_config["name"], sampling["temperature"]),
    }
    if engine_config["name"] == "simulated":
        key["simulation"] = simulation_key(config, dataset, ckpt.model)
    return key


def _generation_runtime(config: dict, unit: dict) -> GenerationRuntime:
    """What only changes where and how fast a generation runs: never part of its key."""
    return GenerationRuntime(EngineRuntime.from_config(unit["engine"]), model_resources(config, unit["model"]))


_ENGINE_IDENTITY: dict[tuple, dict] = {}


def _engine_identity(name: str, python: str | None = None) -> dict:
    """Package versions are looked up once per process: planning a large grid stays fast."""
    if (name, python) not in _ENGINE_IDENTITY:
        _ENGINE_IDENTITY[name, python] = versions.engine_identity(name, python)
    return dict(_ENGINE_IDENTITY[name, python])


def build_study(config: dict) -> Study:
    """Expand every grid; scenarios shared between grids map to one set of artifacts.

    The config is validated (defaults filled) on a copy first, so ids never depend on
    whether the caller spelled out a default.
    """
    config = validate_study_config(copy.deepcopy(config))
    study = Study(config)
    units: dict[tuple, dict] = {}
    for grid_name, grid in config["grids"].items():
        samples = grid_samples(config, grid)
        engine = grid_engine(config, grid)
        # grids whose engines differ only at runtime share their generations (the first grid's
        # runtime settings run them)
        engine_tag = content_id({k: v for k, v in engine.items() if k not in ENGINE_RUNTIME_FIELDS})
        for model in grid["models"]:
            for weights in grid["weight_formats"]:
                for kv in grid["kv_strategies"]:
                    for dataset in grid["datasets"]:
                        unit = units.setdefault(
                            (model, weights, kv, dataset, engine_tag),
                            {"model": model, "weights": weights, "kv": kv, "dataset": dataset,
                             "engine": engine, "budgets": set(), "samples": 0, "cells": set(), "adaptive": True},
                        )
                        unit["adaptive"] = unit["adaptive"] and grid["adaptive"]
                        unit["budgets"].update(grid["token_budgets"])
                        unit["samples"] = max(unit["samples"], samples)
                        unit["cells"].update(
                            (grid_name, budget, g) for budget in grid["token_budgets"] for g in grid["parallel_samples"]
                        )
    dataset_keys = {name: dataset_key(name, config["datasets"][name]) for name in {u["dataset"] for u in units.values()}}
    checkpoints: dict[tuple, Checkpoint] = {}
    for unit in units.values():
        simulated = unit["engine"]["name"] == "simulated"
        ckpt = checkpoints.get((unit["model"], unit["weights"], simulated))
        if ckpt is None:
            ckpt = checkpoints[unit["model"], unit["weights"], simulated] = _checkpoint(
                config, unit["model"], unit["weights"], metadata_only=simulated)
            ckpt = study.checkpoints.setdefault(ckpt.ckpt_id, ckpt)
        budgets = tuple(sorted(unit["budgets"]))
        trace_key = _trace_key(config, ckpt, unit["kv"], unit["dataset"], unit["samples"], max(budgets), unit["engine"], dataset_keys)
        trace_id = content_id(trace_key)
        gen_key = generation_key(trace_id, budgets, unit["samples"], unit["samples"])  # the full design
        gen = Generation(
            content_id(gen_key), trace_id, ckpt, unit["kv"], unit["dataset"], budgets, unit["samples"],
            {**gen_key, "trace_key": trace_key},
            _generation_runtime(config, unit),
        )
        study.generations[gen.gen_id] = gen
        grade = study.grade_of(gen)
        study.grades[grade.grade_id] = grade
        study.scenarios.extend(_scenarios(config, unit, grade))
        if config["sampling"].get("adaptive") is not None:
            in_rounds = adaptive_rounds(config, gen.maximum) if unit["adaptive"] else [gen.maximum]
            study.rounds[gen.gen_id] = {
                (n, horizon): study.grade_of(gen.with_samples(n, [b for b in budgets if b <= horizon]))
                for n in in_rounds for horizon in budgets}
            if not unit["adaptive"]:
                study.one_round |= {gen.gen_id}
    return study


def adaptive_rounds(config: dict, maximum: int) -> list[int]:
    return AdaptiveRule.from_config(config["sampling"], maximum).rounds


def _scenarios(config: dict, unit: dict, grade: Grade) -> list[dict]:
    gen = grade.generation
    weight_format = config["weight_formats"][unit["weights"]]
    kv = config["kv_strategies"][unit["kv"]]
    rows = {}
    for grid_name, budget, g in sorted(unit["cells"]):
        scenario_key = {"grade": grade.grade_id, "token_budget": budget, "G": g}
        scenario_id = content_id(scenario_key)
        row = rows.setdefault(scenario_id, {
            "scenario_id": scenario_id,
            "grids": [],
            "dataset": unit["dataset"],
            "dataset_kind": config["datasets"][unit["dataset"]]["kind"],
            "model": unit["model"],
            "weights": unit["weights"],
            "weight_bits": weight_format["bits"],
            "weight_group_size": weight_format.get("group_size") if weight_format["bits"] < 16 else None,
            "kv": unit["kv"],
            "kv_method": kv["method"],
            "kv_bits": kv.get("bits"),
            "kv_budget": kv.get("budget"),
            "engine": unit["engine"]["name"],
            "token_budget": budget,
            "G": g,
            "n_samples": gen.samples_per_question,
            "ckpt_id": gen.checkpoint.ckpt_id,
            "gen_id": gen.gen_id,
            "grade_id": grade.grade_id,
        })
        row["grids"].append(grid_name)
    return list(rows.values())
