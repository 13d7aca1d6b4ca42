import json
import re

from bitbudget import rounds
from bitbudget.artifacts import content_id, meta_path
from bitbudget.config import check_config_files
from bitbudget.preflight import validate_study_config
from bitbudget.provenance import benchmark_path, config_summary
from bitbudget.study import build_study, models_to_train, without_runtime
from bitbudget.versions import ANALYSIS_VERSION

# Before any job: every config file read is checked for duplicate keys (YAML keeps the last
# silently), then a schema error names the field; Snakemake's validation fills the defaults.
check_config_files(workflow.configfiles)
validate_study_config(config)

STUDY = build_study(config)
TRAINED_MODEL_DIRS = models_to_train(config)
# every generation and grade a job may make: the full design's and, under sampling.adaptive,
# each round's (the same as the full design's when it is off); a round with closed questions
# makes others, found from the decisions (grade_of, generation_of)
ALL_GENERATIONS = STUDY.all_generations
ALL_GRADES = STUDY.all_grades
ADAPTIVE = rounds.enabled(STUDY.config)
# the adaptive rules are always defined (the DAG's rules and --lint do not depend on the
# config); without sampling.adaptive no input names their outputs, so they never run
# generations recorded in the ledger by another design under the same decision settings: held
# at their recorded rounds (docs/adaptive.md, "Stable plans")
HELD = rounds.held(STUDY) if ADAPTIVE else {}
PLAN_ID = rounds.plan_id(STUDY, HELD) if ADAPTIVE else "off"
LEDGER_FILES = rounds.ledger_paths(STUDY, HELD) if ADAPTIVE else []
# threads of a round's decision job (runtime: the same decision at any count)
ROUND_THREADS = STUDY.config["resources"]["adaptive_round"]["threads"]
MAX_ROUNDS = (
    max(len({n for n, _ in r}) for r in STUDY.rounds.values()) if ADAPTIVE else 0
)


wildcard_constraints:
    ckpt_id="[0-9a-f]{12}",
    gen_id="[0-9a-f]{12}",
    grade_id="[0-9a-f]{12}",
    model_dir="|".join(re.escape(p) for p in TRAINED_MODEL_DIRS) or "(?!)",


_WRITTEN_GRADES = {}


def written_grades():
    """Grades of rounds with closed questions (sampling.adaptive.close_questions), from the
    decisions written so far: grade_id -> Grade (cached while no decision is added)."""
    key = tuple(sorted(str(p) for p in Path(rounds.ROOT, PLAN_ID).glob("round-*.json")))
    if key not in _WRITTEN_GRADES:
        _WRITTEN_GRADES.clear()
        _WRITTEN_GRADES[key] = (
            rounds.written_grades(STUDY, HELD, PLAN_ID) if ADAPTIVE else {}
        )
    return _WRITTEN_GRADES[key]


def grade_of(grade_id):
    return (
        ALL_GRADES[grade_id] if grade_id in ALL_GRADES else written_grades()[grade_id]
    )


def generation_of(gen_id):
    if gen_id in ALL_GENERATIONS:
        return ALL_GENERATIONS[gen_id]
    return next(
        g.generation for g in written_grades().values() if g.generation.gen_id == gen_id
    )


def log_path(stage, *keys):
    """One spelling for every rule's log: logs/<rule>/<keys>.log."""
    return str(Path("logs", stage, *keys)) + ".log"


def final_outputs(wildcards=None):
    """Every artifact is a target: one deleted, or whose data is missing beside its metadata,
    is rebuilt by the next plain run, with what depends on it and nothing else.

    Under adaptive sampling (a function of the rounds' decisions): the generations and grades
    of the rounds that ran, not those of rounds no generation reached.
    """
    if ADAPTIVE:
        decisions = adaptive_decisions()
        grades = set().union(*(rounds.decision_grade_ids(d) for d in decisions))
        grades = [grade_of(g) for g in sorted(grades)]
        data = (
            sorted({g.generation.output for g in grades})
            + [g.output for g in grades]
            + [rounds.round_path(PLAN_ID, d["round"]) for d in decisions]
            + [rounds.SAMPLES]
        )
    else:
        data = [g.output for g in STUDY.generations.values()] + [
            g.output for g in STUDY.grades.values()
        ]
    data += (
        ["results/scenarios.parquet", "results/aggregate/scenarios.parquet"]
        + ["results/aggregate/questions.parquet", "results/fit/frontier.parquet"]
        + ["results/fit/threshold.json", "results/fit/findings.json"]
    )
    # Snakemake reruns a job for its missing outputs only when they are requested: the
    # metadata files are targets too, so data whose metadata is missing is redone; so are the
    # ledger files (none without adaptive sampling), so a deleted entry is written again
    return (
        [c.path for c in STUDY.checkpoints.values() if c.quantized]
        + data
        + [str(meta_path(path)) for path in data]
        + LEDGER_FILES
        + ["report/index.html"]
    )


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
    ckpt = generation_of(wildcards.gen_id).checkpoint
    if ckpt.quantized:
        return [ckpt.path]
    return model_input(ckpt.model)


def generation_resource(name):
    """A scheduler resource of a generate job (schema defaults, overridden per model)."""

    def resource(wildcards):
        return generation_of(wildcards.gen_id).runtime.resources[name]

    return resource


def engine_runtime(name):
    """An engine setting that changes speed, not tokens: a resource, so editing it reruns nothing.
    Resources hold numbers and strings only: an unset interpreter is the empty string.
    """

    def resource(wildcards):
        value = getattr(generation_of(wildcards.gen_id).runtime.engine, name)
        return "" if value is None else value

    return resource


def grade_samples(wildcards):
    return grade_of(wildcards.grade_id).generation.output


def all_grades(wildcards=None):
    """The grades the analysis reads: under adaptive sampling, each generation's final round's."""
    if ADAPTIVE:
        return [grade.output for grade in adaptive_final_grades()]
    return [grade.output for grade in STUDY.grades.values()]


def all_generations(wildcards=None):
    if ADAPTIVE:
        return sorted(grade.generation.output for grade in adaptive_final_grades())
    return sorted(g.output for g in STUDY.generations.values())


# ---- adaptive sampling (workflow/rules/adaptive.smk): functions of the rounds' decisions


def adaptive_decision(r):
    """Round r's decision (raises Snakemake's incomplete-checkpoint signal until it is written)."""
    path = checkpoints.adaptive_round.get(r=r).output.decision
    return json.loads(Path(path).read_text())


def adaptive_decisions():
    """Every round's decision up to the one that leaves no generation open."""
    decisions = [adaptive_decision(0)]
    while not rounds.is_final(decisions[-1]):
        if len(decisions) > MAX_ROUNDS:
            raise RuntimeError(
                f"{rounds.round_path(PLAN_ID, len(decisions))}: more rounds than any generation has"
            )
        decisions.append(adaptive_decision(len(decisions)))
    return decisions


def adaptive_round_input(wildcards):
    r = int(wildcards.r)
    inputs = {}
    previous = None
    if r > 0:
        inputs["previous"] = rounds.round_path(PLAN_ID, r - 1)
        previous = adaptive_decision(r - 1)
    grades = rounds.grades_read(STUDY, rounds.round_reads(STUDY, previous, HELD))
    inputs["grades"] = sorted(g.output for g in grades)
    # the generations' metadata hold the model records the memory columns read
    inputs["generations"] = sorted({g.generation.output for g in grades})
    return inputs


def adaptive_round_files(wildcards=None):
    return [rounds.round_path(PLAN_ID, d["round"]) for d in adaptive_decisions()]


def adaptive_used(decision):
    """Grades one decision reads (every budget's), by their ids."""
    return [grade_of(g) for g in sorted(rounds.decision_grade_ids(decision))]


def adaptive_final_grades():
    return adaptive_used(adaptive_decisions()[-1])


def adaptive_inputs():
    """Named inputs of the analysis stages under adaptive sampling (none when it is off)."""
    return {"adaptive": rounds.SAMPLES} if ADAPTIVE else {}


def study_benchmarks(wildcards=None):
    """Benchmark files of this study's jobs (not those other studies left in benchmarks/);
    under adaptive sampling, those of every round planned before any decision (a round no
    generation reached has none). The report adds the rounds' own from their decisions
    (rounds.round_benchmarks: those with closed questions have ids only the decisions hold, and
    params listing them would rerun the report after every finished study).
    """
    return (
        [benchmark_path("generate", g) for g in sorted(ALL_GENERATIONS)]
        + [benchmark_path("grade", g) for g in sorted(ALL_GRADES)]
        + [benchmark_path(stage) for stage in ("aggregate", "fit")]
    )


def checkpoint_key(wildcards):
    return STUDY.checkpoints[wildcards.ckpt_id].key


def quantize_python(wildcards):
    return STUDY.checkpoints[wildcards.ckpt_id].runtime.python or ""


def generation_key(wildcards):
    return generation_of(wildcards.gen_id).key


def generation_checkpoint_path(wildcards):
    return generation_of(wildcards.gen_id).checkpoint.path


def generation_revision(wildcards):
    return generation_of(wildcards.gen_id).source_revision


def generation_trace_dir(wildcards):
    return generation_of(wildcards.gen_id).trace_dir


def grade_key(wildcards):
    return grade_of(wildcards.grade_id).key


def grade_dataset_kind(wildcards):
    return grade_of(wildcards.grade_id).spec.kind


def grade_end_of_thinking(wildcards):
    return grade_of(wildcards.grade_id).spec.end_of_thinking
