"""A plan before spending GPU-hours: what a config asks for, what it costs, what is cached.

``python -m bitbudget.plan --configfile config/paper.yaml`` prints, without loading any
model or dataset and without a GPU:

- scenarios, and the jobs Snakemake will run after budget nesting and sample pooling
  (one generate job per (model, weights, KV, dataset, engine), all budgets and all G in it);
- estimated decode tokens and GPU-hours per model;
- what is already cached (finished generation outputs, per-question shards in the traces);
- the decode tokens of the same grid generated per scenario (each budget and each G drawn
  separately, as evaluation tools that run one configuration at a time do), and the ratio;
- under ``sampling.adaptive``, tokens per round: expected (an upper bound: every generation
  still open in every round) and spent (what each round's generate jobs decoded, from their
  metadata), with the generations each written decision left open.

Token model (an assumption; say so when quoting the numbers). Every sample thinks
``think_fraction`` x its budget (default 1.0: the whole budget, an upper bound, and exact
with ``forcing.wait_extension`` on, where an early end of thinking is replaced by "Wait"),
then writes ``max_answer_tokens`` answer tokens. A nested generation thinks once to the
largest budget and decodes one answer per budget; the forced-answer suffix is prefill
(prefix-cached in vLLM) and is not counted as decode. The per-scenario baseline draws
``samples_per_question`` fresh samples for every (budget, G) cell.

GPU-hours = decode tokens / throughput x GPUs per job. Throughput (decode tokens per second
of one generate job, all its sequences together) is a per-model-size table below,
overridable with ``--throughput 8b=3000``; the HF engine is ``--hf-factor`` times slower.
``--throughput-file throughput.json`` (written by ``bench/gpu_check.py``, read by
:mod:`bitbudget.throughput`) replaces the table's figures by measured ones: its vLLM figure per
size, and for the HF engine its figure per size and KV strategy (the factor is then unused for
that size). A ``--throughput`` flag still wins for its size, for both engines.

Overheads (:class:`JobModel`, :func:`round_cost`; the figures are assumed unless a throughput file
gives them). A generate job loads its model first (``load_seconds`` per size and engine,
:data:`bitbudget.throughput.ASSUMED_LOAD_SECONDS`). Its decode runs at the table's tokens/s times a
batch factor: the job's concurrent sequences (vLLM: its questions x the samples it draws, up to the
engine's ``batch_size``; HF: one question's samples, as prompts of different lengths never share a
batch) read on a batch curve, by default linear up to a saturation
(:data:`bitbudget.throughput.ASSUMED_SATURATION_SEQUENCES`) and flat beyond. The study holds a pool
of ``--gpus`` GPUs (:data:`DEFAULT_STUDY_GPUS`); a round's jobs are packed on it longest first, the
round lasts until its slowest job ends, and the pool then waits :data:`DECIDE_SECONDS` for grading
and the decision. A round's GPU-hours are the pool's GPUs x that time: decode, the batch effect,
the loads, and the barrier (the pool's idle GPUs). The full design is costed the same way as one
round without a decision, so adaptive/full compares like with like. The per-model GPU-hours above
stay decode-only, as before; the overheads are printed and returned beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from collections import defaultdict
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path
from typing import NamedTuple

from bitbudget import memory, rounds
from bitbudget import throughput as throughput_file
from bitbudget.datasets import load_questions
from bitbudget.preflight import load_study_config
from bitbudget.specs import DatasetSpec
from bitbudget.study import build_study

SECONDS_PER_HOUR = 3600
# The GPUs a study holds through its rounds: one 8-GPU node (`snakemake --profile local-gpu
# --resources gpu=8`). Assumed; `--gpus` sets it. A job needing more takes the pool up to its need.
DEFAULT_STUDY_GPUS = 8
# Between two rounds the pool waits for the round's grade jobs and its decision (about 25 s for the
# paper grid's first round on one core, docs/adaptive.md; grading of a round's samples assumed at
# about a minute and a half).
DECIDE_SECONDS = 120.0
# The share of a round's open generations assumed to stop at its decision in the plan's estimate
# (the cheapest first: the small models sit below the frontier and stop early, docs/adaptive.md).
DEFAULT_STOP_SHARE = 0.25

# Decode tokens/s of one generate job (vLLM, A100-80GB, bf16, long reasoning contexts,
# batch limited by KV memory). Assumed, not measured: override with --throughput.
DEFAULT_THROUGHPUT = {"0.6b": 12000, "1.7b": 8000, "4b": 4000, "8b": 2500, "14b": 1500, "32b": 700}
DEFAULT_HF_FACTOR = 0.1  # HF transformers decoding relative to vLLM (no paged attention, no CUDA graphs)
UNKNOWN_SIZE_THROUGHPUT = 1000
_SIZE = re.compile(r"(\d+(?:\.\d+)?)[bB](?![a-zA-Z])")


# --------------------------------------------------------------------------- config
def model_size(model: dict) -> str | None:
    """'8b' for 'Qwen/Qwen3-8B'; None for a model whose path names no size."""
    match = _SIZE.search(Path(model["path"]).name)
    return f"{match.group(1)}b".lower() if match else None


def model_architecture(model: dict) -> dict | None:
    """A model's architecture: its local config.json, else the shipped Qwen3 file for its size."""
    local = Path(model["path"]) / "config.json"
    if local.is_file():
        return memory.load_architecture(local)
    size = model_size(model)
    if size and memory.architecture_path(size).is_file():
        return memory.load_architecture(memory.architecture_path(size))
    return None


def dataset_questions(dataset: dict) -> int | None:
    """Question count of a validated dataset entry without loading a hub dataset
    (expected_questions), capped by max_questions."""
    spec = DatasetSpec.from_config(dataset)
    count = spec.expected_questions
    if count is None and spec.source == "synthetic":
        count = spec.synthetic["n_questions"]
    elif count is None and spec.source == "file" and Path(spec.file).is_file():
        count = len(load_questions(dataclasses.replace(spec, max_questions=None)))
    limit = spec.max_questions
    return min(count, limit) if count is not None and limit else count


# --------------------------------------------------------------------------- resources
@dataclass(frozen=True)
class Gpu:
    model: str = "a100"
    memory_gib: float = 80.0
    utilization: float = 0.9


def derive_resources(architecture: dict, bits: int, horizon: int, concurrency: int, gpu: Gpu = Gpu(),
                     group_size: int = 128, kv_strategy: dict | None = None,
                     runtime_min: int = 60) -> dict:
    """GPUs for weights + KV of `concurrency` sequences of `horizon` tokens; host memory for loading."""
    weights = memory.weight_bytes(architecture, bits, group_size)
    kv = concurrency * memory.kv_bytes(architecture, kv_strategy, horizon)
    usable = gpu.memory_gib * gpu.utilization * memory.GIB
    gpus = max(1, math.ceil((weights + kv) / usable))
    gpus = 1 << (gpus - 1).bit_length()  # tensor parallelism wants a power of two
    mem_mb = int(math.ceil((memory.to_gib(weights) * 1.5 + 16) * 1024 / 1000) * 1000)
    return {"gpu": gpus, "gpu_model": gpu.model, "mem_mb": mem_mb, "runtime": int(runtime_min)}


# --------------------------------------------------------------------------- overheads
@dataclass(frozen=True)
class JobModel:
    """What one generate job of a generation costs: GPUs, decode tokens/s at saturation, its batch
    curve ({concurrent sequences: tokens/s}, read relative to its largest batch), the seconds it
    loads its model, the engine's batch and how its sequences batch (``per_question``: HF, one
    question's samples per batch; else vLLM, every question's together)."""

    gpus: int
    rate: float
    curve: dict
    load_seconds: float
    batch_size: int
    questions: int
    per_question: bool

    def sequences(self, new_samples: int) -> int:
        """Concurrent sequences of a job drawing ``new_samples`` per question."""
        rows = new_samples if self.per_question else new_samples * self.questions
        return max(1, min(rows, self.batch_size))

    def hours(self, tokens: float, new_samples: int) -> tuple[float, float, float]:
        """(decode at saturation, extra decode from the batch, load): wall hours of one job."""
        decode = tokens / self.rate / SECONDS_PER_HOUR
        factor = throughput_file.batch_factor(self.curve, self.sequences(new_samples))
        return decode, decode / factor - decode, self.load_seconds / SECONDS_PER_HOUR


@dataclass(frozen=True)
class RoundCost:
    """GPU-hours of one round on the study's pool: decode at saturation, the batch effect, the
    model loads and the barrier (pool GPUs idle until the slowest job ends and during the
    decision); ``wall_hours`` is how long the round holds the pool."""

    jobs: int = 0
    decode_gpu_hours: float = 0.0
    batch_gpu_hours: float = 0.0
    load_gpu_hours: float = 0.0
    barrier_gpu_hours: float = 0.0
    wall_hours: float = 0.0

    @property
    def gpu_hours(self) -> float:
        return self.decode_gpu_hours + self.batch_gpu_hours + self.load_gpu_hours + self.barrier_gpu_hours

    def __add__(self, other: "RoundCost") -> "RoundCost":
        return RoundCost(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def to_dict(self) -> dict:
        return asdict(self) | {"gpu_hours": self.gpu_hours}


def job_tokens(questions: int, new_samples: int, horizon: int, n_budgets: int, think_fraction: float,
               answer: int) -> float:
    """Decode tokens of a job: each new sample thinks to the horizon, then answers at each budget."""
    return questions * new_samples * (think_fraction * horizon + answer * n_budgets)


def pack(jobs: list[tuple[int, float]], pool: int) -> float:
    """Hours until the last of ``jobs`` ((GPUs, hours) each) ends, packed on ``pool`` GPUs longest
    first, each job on the GPUs free soonest (list scheduling)."""
    free = [0.0] * max([pool, *(gpus for gpus, _ in jobs)])
    for gpus, hours in sorted(jobs, key=lambda job: -job[1]):
        free.sort()
        free[:gpus] = [free[gpus - 1] + hours] * gpus
    return max(free)


def round_cost(jobs: list[tuple[JobModel, float, int]], pool: int = DEFAULT_STUDY_GPUS,
               decide_seconds: float = DECIDE_SECONDS) -> RoundCost:
    """GPU-hours of one round of ``jobs`` ((model, decode tokens, new samples per question) each):
    the pool of ``pool`` GPUs is held from the round's start until its slowest job ends, then for
    ``decide_seconds``; what its GPUs do not spend on jobs is the barrier."""
    if not jobs:
        return RoundCost()
    parts = [(model.gpus, model.hours(tokens, new)) for model, tokens, new in jobs]
    decode, batch, load = (sum(gpus * hours[i] for gpus, hours in parts) for i in range(3))
    wall = pack([(gpus, sum(hours)) for gpus, hours in parts], pool) + decide_seconds / SECONDS_PER_HOUR
    held = max([pool, *(gpus for gpus, _ in parts)])
    return RoundCost(len(jobs), decode, batch, load, held * wall - decode - batch - load, wall)


def job_model(config: dict, gen, measured: dict | None, rate: float, gpus: int) -> JobModel:
    """The :class:`JobModel` of a study's generation at decode tokens/s ``rate``."""
    model = config["models"][gen.checkpoint.model]
    size = model_size(model)
    engine = "hf" if gen.engine_name == "hf" else "vllm"  # as throughput_for: other engines cost as vLLM
    batch = gen.runtime.engine.batch_size or throughput_file.ASSUMED_SATURATION_SEQUENCES[engine]
    return JobModel(gpus, rate, throughput_file.batch_curve(measured, size, engine, config["kv_strategies"][gen.kv]),
                    throughput_file.load_seconds(measured, size, engine), int(batch),
                    dataset_questions(config["datasets"][gen.dataset]) or 0, engine == "hf")


# --------------------------------------------------------------------------- plan
@dataclass
class GenerationPlan:
    gen_id: str
    model: str
    weights: str
    kv: str
    dataset: str
    engine: str
    budgets: tuple
    samples: int
    questions: int | None
    nested_tokens: float
    per_scenario_tokens: float
    gpu_hours: float
    gpus: int
    output_exists: bool
    shards_present: int


class RoundDraw(NamedTuple):
    """What one generation draws in a round: samples per question before and after it, the
    horizon they think to, the budgets read, and the questions drawing (None: all of the
    dataset's; fewer where questions closed in an earlier round,
    ``sampling.adaptive.close_questions``)."""

    before: int
    after: int
    horizon: int
    budgets: int
    questions: int | None = None

    def tokens(self, dataset_questions: int, think_fraction: float, answer: int) -> float:
        """Decode tokens of these draws (:func:`job_tokens`) for a dataset of ``dataset_questions``."""
        questions = dataset_questions if self.questions is None else self.questions
        return job_tokens(questions, self.after - self.before, self.horizon, self.budgets, think_fraction, answer)


@dataclass
class RoundPlan:
    """One round of adaptive sampling (``sampling.adaptive``)."""

    round: int
    samples: tuple  # samples per question after this round (one value per distinct maximum)
    generations: int  # generations that have this round
    expected_tokens: float  # as decided where known, else an upper bound: every generation still open
    spent_tokens: float  # decoded by this round's generate jobs that have run
    ran: int  # this round's generations with metadata
    open_after: int | None  # generations the round's written decision left open (None: not decided yet)
    cost: RoundCost = field(default_factory=RoundCost)  # of the expected draws, overheads included
    estimated_generations: int = 0  # generations left in the estimate (a share stopping per round)
    estimated_cost: RoundCost = field(default_factory=RoundCost)
    draws: dict = field(default_factory=dict, repr=False)  # gen_id -> its :class:`RoundDraw` of the expected draws
    decided: bool = False  # the draws are as a written decision set them (not the upper bound)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("round", "samples", "generations", "expected_tokens", "spent_tokens",
                                              "ran", "open_after", "estimated_generations")} | {
            "cost": self.cost.to_dict(), "estimated_cost": self.estimated_cost.to_dict()}


@dataclass
class Plan:
    scenarios: int
    jobs: dict
    generations: list[GenerationPlan] = field(default_factory=list)
    assumptions: dict = field(default_factory=dict)
    rounds: list[RoundPlan] = field(default_factory=list)
    adaptive: dict | None = None
    job_models: dict[str, JobModel] = field(default_factory=dict)  # gen_id -> what its jobs cost
    full_design: RoundCost = field(default_factory=RoundCost)  # every generation in one round, overheads included
    grid_rounds: dict[str, dict] = field(default_factory=dict)  # grid -> what rounds cost it (:func:`grid_rounds`)

    @property
    def nested_tokens(self) -> float:
        return sum(g.nested_tokens for g in self.generations)

    @property
    def per_scenario_tokens(self) -> float:
        return sum(g.per_scenario_tokens for g in self.generations)

    @property
    def ratio(self) -> float:
        return self.nested_tokens / self.per_scenario_tokens if self.per_scenario_tokens else float("nan")

    def per_model(self) -> dict[str, dict]:
        rows: dict[str, dict] = defaultdict(lambda: {"generations": 0, "tokens": 0.0, "gpu_hours": 0.0,
                                                     "per_scenario_tokens": 0.0, "cached": 0})
        for g in self.generations:
            row = rows[g.model]
            row["generations"] += 1
            row["tokens"] += g.nested_tokens
            row["per_scenario_tokens"] += g.per_scenario_tokens
            row["gpu_hours"] += g.gpu_hours
            row["cached"] += g.output_exists
        return dict(rows)

    def to_dict(self) -> dict:
        return {
            "scenarios": self.scenarios, "jobs": self.jobs, "assumptions": self.assumptions,
            "decode_tokens": self.nested_tokens, "per_scenario_decode_tokens": self.per_scenario_tokens,
            "ratio": self.ratio, "gpu_hours": sum(g.gpu_hours for g in self.generations),
            "per_model": self.per_model(),
            "cached_generations": sum(g.output_exists for g in self.generations),
            "shards_present": sum(g.shards_present for g in self.generations),
            "full_design_cost": self.full_design.to_dict(),
        } | ({"adaptive": self.adaptive, "rounds": [r.to_dict() for r in self.rounds],
              "adaptive_cost": self.adaptive_cost(), "grid_rounds": self.grid_rounds} if self.adaptive else {})

    def adaptive_cost(self) -> dict:
        """Full-design GPU-hours and adaptive sampling's, overheads included: the upper bound (the
        rounds as planned: every generation open to its maximum unless a decision says otherwise)
        and the estimate (a share of the open generations stopping at each decision), with ratios."""
        upper = sum((r.cost for r in self.rounds), RoundCost())
        estimate = sum((r.estimated_cost for r in self.rounds), RoundCost())
        full = self.full_design.gpu_hours
        return {"full_design": self.full_design.to_dict(), "upper_bound": upper.to_dict(),
                "estimate": estimate.to_dict(), "upper_bound_over_full": upper.gpu_hours / full if full else None,
                "estimate_over_full": estimate.gpu_hours / full if full else None}


def throughput_for(model: dict, engine: str, table: dict, hf_factor: float, hf_table: dict | None = None,
                   kv_strategy: dict | None = None) -> float:
    """Decode tokens/s of one generate job: a measured HF figure for the model's size and KV
    strategy where `hf_table` (size -> KV label -> tokens/s) has one, else the vLLM `table`'s
    figure, times `hf_factor` for the HF engine."""
    size = model_size(model)
    if engine == "hf" and size in (hf_table or {}):
        return throughput_file.hf_rate(hf_table[size], kv_strategy or {"method": throughput_file.FULL_KV})
    base = table.get(size, UNKNOWN_SIZE_THROUGHPUT) if size else UNKNOWN_SIZE_THROUGHPUT
    return base * (hf_factor if engine == "hf" else 1.0)


def throughput_tables(flags: dict, measured: dict | None) -> tuple[dict, dict]:
    """(vLLM table, HF table) from the assumed figures, a throughput file's measured ones and the
    ``--throughput`` flags, in that order of precedence (a flag's size takes no measured HF figure)."""
    measured = measured or {}
    vllm = {size: entry["vllm"] for size, entry in measured.items() if "vllm" in entry}
    hf = {size: entry["hf"] for size, entry in measured.items() if "hf" in entry and size not in flags}
    return {**DEFAULT_THROUGHPUT, **vllm, **flags}, hf


def make_plan(config: dict, think_fraction: float = 1.0, throughput: dict | None = None,
              hf_factor: float = DEFAULT_HF_FACTOR, workdir: str | Path = ".", measured: dict | None = None,
              pool: int = DEFAULT_STUDY_GPUS, stop_share: float = DEFAULT_STOP_SHARE) -> Plan:
    """``measured``: the table of a throughput file (:func:`bitbudget.throughput.read`); ``pool``:
    the GPUs the study holds; ``stop_share``: of the open generations, assumed to stop per round in
    the adaptive estimate."""
    table, hf_table = throughput_tables(dict(throughput or {}), measured)
    study = build_study(config)
    answer = config["sampling"]["max_answer_tokens"]
    workdir = Path(workdir)
    cells_per_generation: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row in study.scenarios:
        cells_per_generation[row["gen_id"]].extend((row["token_budget"], row["G"]) for _ in row["grids"])
    plan = Plan(
        scenarios=len(study.scenarios),
        jobs={
            "quantize": sum(c.quantized for c in study.checkpoints.values()),
            "generate": len(study.generations),
            "grade": len(study.grades),
            "aggregate/fit/report": 3,
        },
        assumptions={"think_fraction": think_fraction, "answer_tokens": answer,
                     "throughput_tokens_per_s": table, "hf_factor": hf_factor,
                     "hf_measured_tokens_per_s": hf_table, **overhead_assumptions(measured, pool, stop_share)},
    )
    for gen in study.generations.values():
        questions = dataset_questions(config["datasets"][gen.dataset])
        q = questions or 0
        rows = q * gen.samples_per_question
        nested = job_tokens(q, gen.samples_per_question, max(gen.budgets), len(gen.budgets), think_fraction, answer)
        per_scenario = sum(rows * (think_fraction * budget + answer) for budget, _ in cells_per_generation[gen.gen_id])
        resources = gen.runtime.resources
        gpus = max(1, int(resources.get("gpu", 0) or 0))
        rate = throughput_for(config["models"][gen.checkpoint.model], gen.engine_name, table, hf_factor,
                              hf_table, config["kv_strategies"][gen.kv])
        shards = workdir / gen.trace_dir / "shards"
        plan.generations.append(GenerationPlan(
            gen.gen_id, gen.checkpoint.model, gen.checkpoint.weights, gen.kv, gen.dataset,
            gen.engine_name, gen.budgets, gen.samples_per_question, questions,
            nested, per_scenario, nested / rate / 3600 * gpus, gpus,
            (workdir / gen.output).exists(),
            sum(1 for _ in shards.glob("*.json")) if shards.is_dir() else 0,
        ))
        plan.job_models[gen.gen_id] = job_model(config, gen, measured, rate, gpus)
    plan.full_design = round_cost([(plan.job_models[g.gen_id], g.nested_tokens, g.samples) for g in plan.generations],
                                  pool, decide_seconds=0.0)
    if study.rounds:
        plan.adaptive = dict(config["sampling"]["adaptive"])
        plan.rounds = round_plans(study, config, think_fraction, workdir)
        cost_rounds(plan, config, think_fraction, pool, stop_share)
        plan.grid_rounds = grid_rounds(plan, study, answer, think_fraction)
    return plan


def grid_rounds(plan: Plan, study, answer: int, think_fraction: float) -> dict[str, dict]:
    """Grid -> what drawing it in rounds costs beyond its tokens, over the rounds as planned (every
    generation open to its maximum): the batch effect and the extra model loads, against the most
    rounds could save (the decode of every round after the first, were all its generations to
    stop after it). ``in_rounds`` False: the grid is drawn in one round (`adaptive: false`)."""
    grids_of: dict[str, set] = defaultdict(set)
    for row in study.scenarios:
        grids_of[row["gen_id"]].update(row["grids"])
    out = {name: {"in_rounds": name not in study.one_round_grids, "generations": 0, "batch_gpu_hours": 0.0,
                  "extra_load_gpu_hours": 0.0, "saveable_gpu_hours": 0.0} for name in study.config["grids"]}
    for r in plan.rounds:
        for gen_id, (model, tokens, new) in draw_jobs(plan.job_models, r.draws, think_fraction, answer).items():
            decode, batch, load = (model.gpus * hours for hours in model.hours(tokens, new))
            for name in grids_of[gen_id]:
                row = out[name]
                row["generations"] += r.round == 0
                row["batch_gpu_hours"] += batch
                row["extra_load_gpu_hours"] += load if r.round else 0.0
                row["saveable_gpu_hours"] += decode if r.round else 0.0
    for row in out.values():
        row["rounds_cost_more"] = row["in_rounds"] and (
            row["batch_gpu_hours"] + row["extra_load_gpu_hours"] > row["saveable_gpu_hours"])
    return out


def overhead_assumptions(measured: dict | None, pool: int, stop_share: float) -> dict:
    """The overhead model's figures as the plan uses them (measured ones where the file gives them)."""
    measured = measured or {}
    return {"load_seconds_assumed": throughput_file.ASSUMED_LOAD_SECONDS,
            "load_seconds_measured": {size: e["load_seconds"] for size, e in measured.items() if "load_seconds" in e},
            "saturation_sequences_assumed": throughput_file.ASSUMED_SATURATION_SEQUENCES,
            "batch_curves_measured": {size: sorted(e["batches"]) for size, e in measured.items() if "batches" in e},
            "pool_gpus": pool, "decide_seconds": DECIDE_SECONDS, "stop_share": stop_share}


def round_plans(study, config: dict, think_fraction: float, workdir: Path) -> list[RoundPlan]:
    """Tokens per round of adaptive sampling. Expected: the samples each round adds, thinking to
    the horizon they are drawn for. Where the previous round's decision is written, the round's
    generations, samples and open budgets are known and counted as they are; beyond it every
    generation that has the round counts at every budget (as if none stopped: an upper bound;
    such rounds together are the rest of the full design). Spent: decode and answer-fork tokens
    of this round's generate jobs that have run (``counters`` in ``samples.meta.json``). Open
    after: from the round's decision. Generations held at rounds an earlier study recorded
    (:func:`bitbudget.rounds.held`) draw in none."""
    answer = config["sampling"]["max_answer_tokens"]
    held = rounds.held(study, workdir)  # recorded by an earlier study: they draw nothing
    decisions = rounds.read_decisions(rounds.plan_id(study, held), workdir)
    samples_of = {g: sorted({n for n, _ in grades}) for g, grades in study.rounds.items() if g not in held}
    out = []
    for r in range(max((len(ns) for ns in samples_of.values()), default=1)):
        known = r <= len(decisions)
        previous = decisions[r - 1]["generations"] if r and known else None
        draws = {}  # gen_id -> its RoundDraw
        for gen_id, ns in samples_of.items():
            gen = study.generations[gen_id]
            if not known:
                if r < len(ns):
                    draws[gen_id] = RoundDraw(ns[r - 1] if r else 0, ns[r], max(gen.budgets), len(gen.budgets))
            elif previous is None:
                draws[gen_id] = RoundDraw(0, ns[0], max(gen.budgets), len(gen.budgets))
            elif previous[gen_id]["open"]:
                draws[gen_id] = decided_draw(previous[gen_id], ns)
        expected, spent, ran = 0.0, 0.0, 0
        for gen_id, draw in draws.items():
            expected += draw.tokens(dataset_questions(config["datasets"][study.generations[gen_id].dataset]) or 0,
                                    think_fraction, answer)
            closed = previous[gen_id].get("closed_questions", {}) if previous else {}
            generation = rounds.grade_at(study, gen_id, draw.after, draw.horizon, closed).generation
            meta = workdir / Path(generation.output).parent / "samples.meta.json"
            if meta.is_file():
                counters = json.loads(meta.read_text()).get("counters", {})
                spent += counters.get("decode_tokens", 0) + counters.get("fork_tokens", 0)
                ran += 1
        open_after = decisions[r]["open"] if r < len(decisions) else None
        out.append(RoundPlan(r, tuple(sorted({d.after for d in draws.values()})), len(draws), expected, spent,
                             ran, open_after, draws=draws, decided=known))
    return out


def decided_draw(entry: dict, samples: list[int]) -> RoundDraw:
    """The draws of the round after a written decision left a generation open (``entry``: its
    decision; ``samples``: its rounds' samples per question): its open budgets, to the next
    round's samples, less the questions closed so far."""
    closed = entry.get("closed_questions", {})
    return RoundDraw(entry["samples"], next(n for n in samples if n > entry["samples"]), max(entry["open_budgets"]),
                     len(entry["open_budgets"]), entry["questions"] - len(closed) if closed else None)


def draw_jobs(job_models: dict, draws: dict, think_fraction: float, answer: int) -> dict:
    """gen_id -> (job model, decode tokens, new samples per question) of a round's draws
    (gen_id -> :class:`RoundDraw`; ``job_models``: gen_id -> :class:`JobModel`). A job drawing
    fewer questions than its dataset holds batches fewer sequences."""
    jobs = {}
    for gen_id, draw in draws.items():
        model = job_models[gen_id]
        if draw.questions is not None:
            model = dataclasses.replace(model, questions=draw.questions)
        jobs[gen_id] = (model, draw.tokens(model.questions, think_fraction, answer), draw.after - draw.before)
    return jobs


def cost_rounds(plan: Plan, config: dict, think_fraction: float, pool: int, stop_share: float) -> None:
    """Each round's cost as planned (:attr:`RoundPlan.cost`) and in the estimate: at each decision
    not written yet, ``stop_share`` of the generations still open stop, the cheapest this round
    first; a written decision's rounds are taken as they are."""
    answer = config["sampling"]["max_answer_tokens"]
    still_open: set | None = None
    for r in plan.rounds:
        jobs = draw_jobs(plan.job_models, r.draws, think_fraction, answer)
        r.cost = round_cost(list(jobs.values()), pool)
        kept = list(jobs) if r.decided or still_open is None else [g for g in jobs if g in still_open]
        if not r.decided and still_open is not None:
            kept = sorted(kept, key=lambda g: sum(jobs[g][0].hours(jobs[g][1], jobs[g][2])) * jobs[g][0].gpus)
            kept = kept[int(stop_share * len(kept)):]
        still_open = set(kept)
        r.estimated_generations = len(kept)
        r.estimated_cost = round_cost([jobs[g] for g in kept], pool)


def format_rounds(plan: Plan) -> list[str]:
    a = plan.adaptive
    lines = [
        "",
        f"adaptive sampling (rule {a.get('rule')}, initial {a.get('initial')}, step {a.get('step')}): "
        "tokens per round; expected counts the generations and budgets each decided round samples, "
        "and for rounds not decided yet an upper bound (every generation still open at every budget); "
        "spent is what the round's generate jobs decoded (decode + answer forks, from their metadata); "
        "GPU-hours of the expected draws with overheads, and of the estimate "
        f"({plan.assumptions['stop_share']:.0%} of the open generations stopping at each decision not written yet)",
        f"{'round':>5} {'samples/q':>10} {'gens':>5} {'expected tokens':>16} {'spent tokens':>13} "
        f"{'ran':>7} {'open after':>11} {'GPU-h':>9} {'est. gens':>10} {'est. GPU-h':>11}",
    ]
    for r in plan.rounds:
        open_after = "-" if r.open_after is None else str(r.open_after)
        lines.append(f"{r.round:>5} {','.join(map(str, r.samples)):>10} {r.generations:>5} "
                     f"{_tokens(r.expected_tokens):>16} {_tokens(r.spent_tokens):>13} "
                     f"{f'{r.ran}/{r.generations}':>7} {open_after:>11} {r.cost.gpu_hours:>9.1f} "
                     f"{r.estimated_generations:>10} {r.estimated_cost.gpu_hours:>11.1f}")
    cost = plan.adaptive_cost()
    lines.append(f"{'total':>5} {'':>10} {'':>5} {_tokens(sum(r.expected_tokens for r in plan.rounds)):>16} "
                 f"{_tokens(sum(r.spent_tokens for r in plan.rounds)):>13} {'':>7} {'':>11} "
                 f"{cost['upper_bound']['gpu_hours']:>9.1f} {'':>10} {cost['estimate']['gpu_hours']:>11.1f}")
    lines += [
        f"GPU-hours with overheads: full design {cost['full_design']['gpu_hours']:.1f}; adaptive, upper bound "
        f"{cost['upper_bound']['gpu_hours']:.1f} ({cost['upper_bound_over_full']:.2f} of the full design); "
        f"adaptive, estimate {cost['estimate']['gpu_hours']:.1f} ({cost['estimate_over_full']:.2f}; assumed stop "
        f"share, budget closings not modelled)",
        "  full design:  " + _cost_parts(cost["full_design"]),
        "  upper bound:  " + _cost_parts(cost["upper_bound"]),
        "  estimate:     " + _cost_parts(cost["estimate"]),
    ]
    return lines + format_grid_rounds(plan.grid_rounds)


def format_grid_rounds(grids: dict[str, dict]) -> list[str]:
    """One line per grid: drawn in one round, or what its rounds add against the most they could
    save, with the fix where they add more."""
    lines = ["per grid (upper bound):"]
    for name, row in sorted(grids.items()):
        if not row["in_rounds"]:
            lines.append(f"  {name}: drawn in one round (grids.{name}.adaptive: false)")
            continue
        line = (f"  {name}: rounds add {row['batch_gpu_hours']:.1f} GPU-hours of batch effect and "
                f"{row['extra_load_gpu_hours']:.1f} of model loads; stopping all {row['generations']} generations "
                f"after the first round would save at most {row['saveable_gpu_hours']:.1f}")
        if row["rounds_cost_more"]:
            line += f": rounds cost more than they can save; fix: set grids.{name}.adaptive: false"
        lines.append(line)
    return lines


def _cost_parts(cost: dict) -> str:
    return (f"decode {cost['decode_gpu_hours']:.1f}, batch effect {cost['batch_gpu_hours']:.1f}, model loads "
            f"{cost['load_gpu_hours']:.1f} ({cost['jobs']} jobs), barrier {cost['barrier_gpu_hours']:.1f}; "
            f"wall {cost['wall_hours']:.1f} h")


def suggest_resources(config: dict, plan: Plan, gpu: Gpu = Gpu(), concurrency: int = 8,
                      margin: float = 1.5) -> dict[str, dict]:
    """Per-model `resources` for the config: the largest need over the model's generate jobs.

    GPUs and host memory from the memory model (16-bit weights, the largest horizon,
    `concurrency` full-KV sequences); runtime from the plan's tokens x `margin`, in minutes.
    """
    out: dict[str, dict] = {}
    for g in plan.generations:
        model = config["models"][g.model]
        architecture = model_architecture(model)
        if architecture is None:
            continue
        fmt = config["weight_formats"][g.weights]
        need = derive_resources(architecture, 16 if fmt["bits"] >= 16 else fmt["bits"], max(g.budgets),
                               concurrency, gpu, fmt["group_size"])
        hours_per_job = g.gpu_hours / max(g.gpus, 1)
        need["runtime"] = int(math.ceil(hours_per_job * margin * 60 / 60) * 60)
        best = out.setdefault(g.model, need)
        for key in ("gpu", "mem_mb", "runtime"):
            best[key] = max(best[key], need[key])
    return out


# --------------------------------------------------------------------------- output
def _tokens(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def format_plan(plan: Plan) -> str:
    a = plan.assumptions
    lines = [
        f"scenarios: {plan.scenarios}",
        "jobs after nesting and pooling: " + ", ".join(f"{k} {v}" for k, v in plan.jobs.items()),
        f"assumptions: every sample thinks {a['think_fraction']:.2f} x its budget, then "
        f"{a['answer_tokens']} answer tokens per budget; throughput (decode tokens/s per generate job, "
        f"vLLM) {a['throughput_tokens_per_s']}; HF engine x{a['hf_factor']}"
        + (f" except sizes measured under HF (per KV strategy, from the throughput file): "
           f"{sorted(a['hf_measured_tokens_per_s'])}" if a["hf_measured_tokens_per_s"] else ""),
        "",
        f"{'model':<12} {'gens':>5} {'cached':>7} {'decode tokens':>14} {'GPU-hours':>10} "
        f"{'per-scenario tokens':>20}",
    ]
    for model, row in plan.per_model().items():
        lines.append(f"{model:<12} {row['generations']:>5} {row['cached']:>7} {_tokens(row['tokens']):>14} "
                     f"{row['gpu_hours']:>10.1f} {_tokens(row['per_scenario_tokens']):>20}")
    total_hours = sum(g.gpu_hours for g in plan.generations)
    lines.append(f"{'total':<12} {len(plan.generations):>5} {sum(g.output_exists for g in plan.generations):>7} "
                 f"{_tokens(plan.nested_tokens):>14} {total_hours:>10.1f} {_tokens(plan.per_scenario_tokens):>20}")
    unknown = sorted({g.dataset for g in plan.generations if g.questions is None})
    if unknown:
        lines.append(f"warning: question count unknown for {unknown} (set expected_questions); counted as 0")
    by_engine: dict[str, list] = defaultdict(lambda: [0, 0.0, 0.0])
    for g in plan.generations:
        by_engine[g.engine][0] += 1
        by_engine[g.engine][1] += g.nested_tokens
        by_engine[g.engine][2] += g.gpu_hours
    lines.append("per engine: " + "; ".join(
        f"{e} {n} gens, {_tokens(t)} tokens, {h:.1f} GPU-hours" for e, (n, t, h) in sorted(by_engine.items())))
    lines.append(f"with overheads on a pool of {a['pool_gpus']} GPUs: {plan.full_design.gpu_hours:.1f} GPU-hours ("
                 + _cost_parts(plan.full_design.to_dict()) + "; load times and batch curve "
                 + ("from the throughput file where it gives them, else " if a["load_seconds_measured"]
                    or a["batch_curves_measured"] else "") + "assumed)")
    shards = sum(g.shards_present for g in plan.generations)
    wanted = sum(g.questions or 0 for g in plan.generations)
    lines += [
        f"cached: {sum(g.output_exists for g in plan.generations)}/{len(plan.generations)} generation outputs, "
        f"{shards}/{wanted} question shards in the trace store",
        f"decode tokens, nested + pooled: {_tokens(plan.nested_tokens)}; generated per scenario: "
        f"{_tokens(plan.per_scenario_tokens)}",
        f"ratio (nested / per scenario): {plan.ratio:.4f}",
    ]
    if plan.adaptive:
        lines += format_rounds(plan)
    return "\n".join(lines)


def _throughput_option(text: str) -> tuple[str, float]:
    size, _, value = text.partition("=")
    if not value:
        raise argparse.ArgumentTypeError(f"--throughput takes SIZE=TOKENS_PER_S (e.g. 8b=2500), got '{text}'")
    return size.lower(), float(value)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"takes a positive number of GPUs, got '{text}'")
    return int(text)


def float_option(accepts, takes: str):
    """An argparse type: a number that ``accepts`` holds for; otherwise an error saying what
    the option ``takes``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"takes {takes}, got '{text}'")
        return value
    return parse


_share = float_option(lambda share: 0 <= share < 1, "a share from 0 up to (not including) 1")


def _throughput_file_option(path: str) -> dict:
    try:
        return throughput_file.read(path)
    except throughput_file.ThroughputFileError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The plan's options, shared by ``python -m bitbudget.plan`` and ``bitbudget plan``."""
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--directory", default=".", help="working directory whose results/ is checked for cache")
    parser.add_argument("--think-fraction", type=float, default=1.0,
                        help="mean thinking length as a fraction of the budget (1.0: upper bound)")
    parser.add_argument("--throughput", type=_throughput_option, action="append", default=[],
                        help="decode tokens/s of one generate job for a model size, e.g. 8b=2500 (repeatable)")
    parser.add_argument("--throughput-file", type=_throughput_file_option, default=None, metavar="PATH",
                        help="measured decode tokens/s (throughput.json of bench/gpu_check.py) in place of "
                             "the assumed figures; --throughput flags still win")
    parser.add_argument("--hf-factor", type=float, default=DEFAULT_HF_FACTOR,
                        help="HF engine throughput relative to vLLM")
    parser.add_argument("--gpus", type=_positive_int, default=DEFAULT_STUDY_GPUS,
                        help="GPUs the study holds through its rounds (the pool jobs are packed on)")
    parser.add_argument("--stop-share", type=_share, default=DEFAULT_STOP_SHARE,
                        help="adaptive estimate: share of the open generations assumed to stop at each decision")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--resources", action="store_true",
                        help="also print per-model resources derived from the memory model (YAML)")
    return parser


def run(args: argparse.Namespace) -> int:
    config = load_study_config(args.configfile)
    plan = make_plan(config, args.think_fraction, dict(args.throughput), args.hf_factor, args.directory,
                     args.throughput_file, args.gpus, args.stop_share)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else format_plan(plan))
    if args.resources:
        derived = suggest_resources(config, plan)
        print("\n# per-model resources derived from the memory model (A100-80GB, 8 sequences at the horizon)")
        for name, res in derived.items():
            print(f"{name}: {{resources: {json.dumps(res)}}}")
    return 0


DESCRIPTION = __doc__.split("\n\n")[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitbudget.plan", description=DESCRIPTION)
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
