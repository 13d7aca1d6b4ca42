import json
import re

from bitbudget.config import validate_config
from bitbudget.study import build_study, models_to_train
from bitbudget.versions import ANALYSIS_VERSION

# Before any job: a schema error names the field; Snakemake's validation fills the defaults.
validate_config(config)

STUDY = build_study(config)
TRAINED_MODEL_DIRS = models_to_train(config)


wildcard_constraints:
    ckpt_id="[0-9a-f]{12}",
    gen_id="[0-9a-f]{12}",
    grade_id="[0-9a-f]{12}",
    model_dir="|".join(re.escape(p) for p in TRAINED_MODEL_DIRS) or "(?!)",


def log_path(stage, *keys):
    """One spelling for every rule's log: logs/<rule>/<keys>.log."""
    return str(Path("logs", stage, *keys)) + ".log"


def benchmark_path(stage, *keys):
    return str(Path("benchmarks", stage, *keys)) + ".tsv"


def final_outputs():
    """Every artifact is a target: one deleted or left incomplete is rebuilt by the next plain
    run, with what depends on it and nothing else. Metadata is written last, so data without
    its metadata is incomplete: it is recomputed as if missing (forced, not deleted here).
    """
    from bitbudget.artifacts import incomplete_artifacts

    artifacts = (
        [c.path for c in STUDY.checkpoints.values() if c.quantized]
        + [g.output for g in STUDY.generations.values()]
        + [g.output for g in STUDY.grades.values()]
        + ["results/scenarios.parquet", "results/aggregate/scenarios.parquet"]
        + ["results/aggregate/questions.parquet", "results/fit/frontier.parquet"]
        + ["results/fit/threshold.json", "results/fit/findings.json"]
    )
    incomplete = incomplete_artifacts(artifacts)
    if incomplete and getattr(workflow, "dag_settings", None) is not None:
        forced = set(workflow.dag_settings.forcerun) | set(incomplete)
        workflow.dag_settings.forcerun = frozenset(forced)
    return artifacts + ["report/index.html"]


def model_input(model_name):
    """A local model directory is an input (made by train_tiny_model when it is missing)."""
    model = config["models"][model_name]
    if "train" in model or Path(model["path"]).is_dir():
        return [model["path"]]
    return []


def training_recipe(wildcards):
    return next(
        m["train"]
        for m in config["models"].values()
        if m["path"] == wildcards.model_dir
    )


def checkpoint_source(wildcards):
    return model_input(STUDY.checkpoints[wildcards.ckpt_id].model)


def generation_checkpoint(wildcards):
    ckpt = STUDY.generations[wildcards.gen_id].checkpoint
    if ckpt.quantized:
        return [ckpt.path]
    return model_input(ckpt.model)


def generation_resource(name, default):
    def resource(wildcards):
        return STUDY.generations[wildcards.gen_id].spec["resources"].get(name, default)

    return resource


def grade_samples(wildcards):
    return STUDY.grades[wildcards.grade_id].generation.output


def all_grades(wildcards=None):
    return [grade.output for grade in STUDY.grades.values()]


def all_generations(wildcards=None):
    return sorted(g.output for g in STUDY.generations.values())


def study_benchmarks(wildcards=None):
    """Benchmark files of this study's jobs (not those other studies left in benchmarks/)."""
    return (
        [benchmark_path("generate", g) for g in sorted(STUDY.generations)]
        + [benchmark_path("grade", g) for g in sorted(STUDY.grades)]
        + [benchmark_path(stage) for stage in ("aggregate", "fit")]
    )


def quantize_spec(wildcards):
    ckpt = STUDY.checkpoints[wildcards.ckpt_id]
    fmt = config["weight_formats"][ckpt.weights]
    return {
        "source": ckpt.source_path,
        "revision": config["models"][ckpt.model].get("revision"),
        "bits": fmt["bits"],
        "group_size": fmt["group_size"],
        "method": fmt["method"],
        "format": fmt,
        "python": config.get("envs", {}).get("llmcompressor", {}).get("python"),
        "key": ckpt.key,
    }


def generation_spec(wildcards):
    generation = STUDY.generations[wildcards.gen_id]
    return {
        **generation.spec,
        "engine": generation.spec["engine"],
        "checkpoint_path": generation.checkpoint.path,
        "trace_dir": generation.trace_dir,
    }


def aggregate_spec(wildcards=None):
    """Plain data the aggregate step needs to place each scenario at its memory cost."""
    return {
        "grades": {g.grade_id: g.output for g in STUDY.grades.values()},
        "generations": {g.gen_id: g.output for g in STUDY.generations.values()},
        "weight_formats": config["weight_formats"],
        "kv_strategies": config["kv_strategies"],
        "max_answer_tokens": config["sampling"]["max_answer_tokens"],
        "analysis": config["analysis"],
    }
