"""Adaptive sample allocation on the simulated paper grid: tokens saved, decisions kept.

For each case (an overlay kind on config/paper.yaml, a planted surface, a sampling seed), draws every sample of every generation from the simulated
engine's planted surface (:class:`bitbudget.backends.simulated.SimulatedEngine`, the same draws
a Snakemake run writes into its shards; checkpoints are the metadata-only ones of the quantize
stage), then runs the analysis in-process twice:

* full: every generation at its ``samples_per_question``;
* adaptive: rounds of ``sampling.adaptive`` (the schema's defaults unless given), closing each
  generation's largest budgets by :mod:`bitbudget.adaptive`'s curtailment rule (predictive
  probability of a changed decision below ``--gamma``; new samples think only to the largest
  budget still open), and with ``--close-questions`` (``sampling.adaptive.close_questions``)
  closing single questions inside the open budgets: such a question keeps the samples it holds,
  the analysis reads each question at its own count. Decode tokens count each sample to the
  largest budget that reads it.

Both runs summarise scenarios with :func:`bitbudget.stats.summarize_cell`'s estimators, place them with
:func:`bitbudget.aggregate.memory_columns` and decide with the fit stage's functions
(:func:`bitbudget.frontier.pareto_frontier`, :func:`bitbudget.threshold.fit_thresholds`,
:func:`bitbudget.findings.evaluate_findings`). Samples are nested, so a run stopped at n samples
sees exactly the first n of the full run's. A run takes 2-3 minutes on one core.


Tuning and evaluation run on sets of (overlay kind, ``simulation.seed``, ``sampling.seed``) that
cannot overlap (:data:`TUNE`, :data:`EVAL`; neither a planted surface nor a sampling seed is
shared): the rule's settings (``--gamma``, ``--initial``, ``--step``, ``--predictive``,
``--confidence``, ``--close-questions``) are chosen with ``--tune`` only; ``--eval`` judges the schema's defaults on
surfaces none of those choices saw, including the ``qwen3`` kind (config/simulated-qwen3.yaml:
realistic accuracy levels and question-by-model interactions, so the Rasch predictive is
misspecified there).

    python bench/adaptive.py --eval --jobs 2             # the held-out set: 3 kinds x 2 surfaces x 5 seeds
    python bench/adaptive.py --tune --gamma 0.05         # a setting tried on the tuning set
    python bench/adaptive.py --eval --kinds qwen3 --surfaces 1 --seeds 2   # a quick look
    python bench/adaptive.py --eval --kinds qwen3 --surfaces 1 --seeds 1 --threads 2   # one run, both cores
    python bench/adaptive.py --tune --predictive planted # the rule with a perfectly calibrated predictive
    python bench/adaptive.py --eval --jobs 16 --results eval.json   # keeps each finished case; a rerun resumes

``--predictive planted`` gives the curtailment rule the simulated engine's own model (each
question's planted solve probabilities, distractor share and slip; fresh randomness) in place of
its own predictive: what the rule would stop if nothing were lost to its predictive. It is
a yardstick for the rule, not a rule: no real model's probabilities are known.

The last line: ``tokens adaptive/full R, frontier identical F, bracket and verdicts identical V``
(decode tokens, and shares of runs whose decisions equal the full run's).

A case of the paper grid takes hours on one core (docs/adaptive.md), so ``--results PATH`` keeps
each finished case (written atomically as it ends, keyed by the case, the settings, the
predictive and the rounds' version); a run with the same file takes the cases it already holds
from it and runs only the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "tests" / "golden"))

from bitbudget import plan as cost_plan  # noqa: E402 (after the path above)
from bitbudget import rounds  # noqa: E402
from bitbudget.artifacts import write_json  # noqa: E402
from bitbudget.adaptive.predictive import answer_pool, question_pools  # noqa: E402
from bitbudget.specs import DatasetSpec  # noqa: E402

BASE = "config/paper.yaml"
#: overlay kinds: the config files layered on the paper grid
KINDS = {"paper": ("config/simulated.yaml",), "contrary": ("config/simulated-contrary.yaml",),
         "qwen3": ("config/simulated.yaml", "config/simulated-qwen3.yaml")}
BRACKET_KIND = "weights_vs_tokens"


@dataclass(frozen=True)
class Case:
    """One run: an overlay kind, the planted surface (``simulation.seed``) and the samples drawn
    from it (``sampling.seed``)."""

    kind: str
    surface: int
    seed: int


@dataclass(frozen=True)
class CaseSet:
    kinds: tuple[str, ...]
    surfaces: tuple[int, ...]
    seeds: tuple[int, ...]

    def cases(self, kinds=None, surfaces: int | None = None, seeds: int | None = None) -> list[Case]:
        """The set's cases, optionally only ``kinds`` and the first ``surfaces`` / ``seeds``."""
        return [Case(k, s, n) for k in (kinds or self.kinds) if k in self.kinds
                for s in self.surfaces[:surfaces] for n in self.seeds[:seeds]]


#: what the rule's settings were chosen on (docs/adaptive.md): the shipped overlays' surfaces, seeds 0-9
TUNE = CaseSet(("paper", "contrary"), (0,), tuple(range(10)))
#: held out: other surfaces, other sampling seeds, and the qwen3 kind
EVAL = CaseSet(("paper", "contrary", "qwen3"), (101, 102), tuple(range(1000, 1005)))


def check_disjoint(tune: CaseSet, held_out: CaseSet) -> None:
    """Refuse sets that share a planted surface or a sampling seed."""
    shared = {"simulation.seed": set(tune.surfaces) & set(held_out.surfaces),
              "sampling.seed": set(tune.seeds) & set(held_out.seeds)}
    shared = {field: sorted(values) for field, values in shared.items() if values}
    if shared:
        raise ValueError(f"tuning and evaluation sets overlap: {shared}")


check_disjoint(TUNE, EVAL)


def load_config(case: Case, adaptive: dict | None) -> dict:
    from bitbudget.config import validate_config
    from dump_ids import _merge

    config: dict = {}
    for path in (BASE, *KINDS[case.kind]):
        config = _merge(config, yaml.safe_load((REPO / path).read_text()))
    config["simulation"]["seed"] = case.surface
    config["sampling"]["seed"] = case.seed
    config["sampling"]["adaptive"] = dict(adaptive or {})
    return validate_config(config)


class Draws:
    """correct [Q, n, budgets] and answers of every generation of a study, from the engine,
    and what the engine drew them from (``planted``: :class:`PlantedTruth` per generation)."""

    def __init__(self, study, workdir: Path):
        from bitbudget.backends.simulated import SimulatedEngine, answer_text, plant_question, write_metadata_checkpoint
        from bitbudget.datasets import load_questions

        config = study.config
        self.generations, self.planted = {}, {}
        questions = {name: load_questions(DatasetSpec.from_config(dataset, name))
                     for name, dataset in config["datasets"].items()}
        for gen in study.generations.values():
            ckpt = gen.checkpoint
            path = ckpt.path
            if ckpt.quantized:
                path = str(workdir / ckpt.ckpt_id)
                if not Path(path).exists():
                    write_metadata_checkpoint(REPO / ckpt.source_path, path, ckpt.spec.format)
            else:
                path = str(REPO / path)
            spec = dataclasses.replace(gen.engine_spec(), checkpoint_path=path, trace_dir=str(workdir / gen.trace_id))
            engine = SimulatedEngine(spec)
            kind, suffix = engine.kind, engine.key["forcing"]["forced_answer_suffix"]
            budgets = list(gen.budgets)
            n, qs = gen.samples_per_question, questions[gen.dataset]
            correct = np.zeros((len(qs), n, len(budgets)), dtype=bool)
            answers = np.empty((len(qs), n, len(budgets)), dtype=object)
            truth = PlantedTruth.empty(len(qs), n, budgets, engine)
            for qi, question in enumerate(qs):
                records = [{"sample_idx": i, "think_ids": [], "closed_thinking": False, "answer_ids": [], "forks": {}}
                           for i in range(n)]  # as the engine starts a fresh shard
                engine._fill(question, records, budgets, suffix, 0)
                planted = plant_question(question, kind, engine.simulation)
                values = truth.add_question(qi, planted, engine)
                value_of = {answer_text(v, kind, suffix): v for v in values}
                for si, record in enumerate(records):
                    for bi, budget in enumerate(budgets):
                        value = value_of[record["forks"][str(budget)]]
                        answers[qi, si, bi] = value
                        correct[qi, si, bi] = value == planted.gold
                        truth.value_index[qi, si, bi] = values.index(value)
            self.generations[gen.gen_id] = (correct, answers, budgets, [q["question_id"] for q in qs])
            self.planted[gen.gen_id] = truth


class PlantedTruth:
    """What the simulated engine draws one generation's answers from: per question and budget
    the probability of solving it, the share of wrong answers that take the distractor, the
    slip probability; each question's values (gold, distractor, alternatives) and the index of
    every drawn sample's value."""

    def __init__(self, solve, distractor_share, slip, budgets, value_index):
        self.solve, self.distractor_share, self.slip = solve, distractor_share, slip
        self.budgets, self.value_index = budgets, value_index
        self.alternatives = np.zeros(solve.shape[0], dtype=np.int64)

    @classmethod
    def empty(cls, n_questions: int, n_samples: int, budgets, engine) -> "PlantedTruth":
        return cls(np.zeros((n_questions, len(budgets))), engine.surface.distractor_share,
                   engine.simulation["slip_probability"], list(budgets),
                   np.zeros((n_questions, n_samples, len(budgets)), dtype=np.int64))

    def add_question(self, qi: int, planted, engine) -> list[str]:
        """Record question ``qi``; returns its values in index order (0 gold, 1 distractor)."""
        self.solve[qi] = [engine.surface.probability(b, planted.difficulty) for b in self.budgets]
        others = [v for v in planted.alternatives if v != planted.distractor]
        self.alternatives[qi] = len(others)  # 0: every wrong answer is the distractor
        return [planted.gold, planted.distractor, *others]

    def pools(self, n: int, maximum: int, draws: int, rng: np.random.Generator) -> dict:
        """{budget: [draws, Q, K + 1]} full-design pools (columns as
        :func:`bitbudget.adaptive.predictive.answer_pool`): the first ``n`` samples as drawn, the rest
        drawn as the engine draws (one solve draw and one wrong answer per sample for all
        budgets, a slip per budget)."""
        shape = (draws, self.solve.shape[0], maximum - n)
        solve_draw = rng.random(shape)
        alternatives = self.alternatives[None, :, None]
        distractor = (rng.random(shape) < self.distractor_share) | (alternatives == 0)
        wrong = np.where(distractor, 1, 2 + np.floor(rng.random(shape) * alternatives).astype(np.int64))
        n_values = 2 + int(self.alternatives.max())
        out = {}
        for bi, budget in enumerate(self.budgets):
            right = (solve_draw < self.solve[None, :, bi, None]) & ~(rng.random(shape) < self.slip)
            value = np.where(right, 0, wrong)
            seen = self.value_index[:, :n, bi]
            counts = np.stack([(value == k).sum(axis=-1) + (seen == k).sum(axis=-1)[None]
                               for k in range(n_values)], axis=-1)
            wrong_counts = -np.sort(-counts[..., 1:], axis=-1)  # maj@G reads them in any order
            wrong_counts = wrong_counts[..., : max(1, int((wrong_counts > 0).sum(axis=-1).max()))]
            no_answer = np.zeros((*counts.shape[:-1], 1), dtype=counts.dtype)
            out[budget] = np.concatenate([counts[..., :1], no_answer, wrong_counts], axis=-1)
        return out


class PlantedPredictive:
    """A perfectly calibrated predictive (the engine's own model, fresh randomness), in the
    shape of :func:`bitbudget.adaptive.predictive.jeffreys_predictive`: what the curtailment rule stops
    when nothing is lost to its predictive."""

    def __init__(self, draws: Draws):
        self.planted = draws.planted

    def __call__(self, pools: dict, datasets: dict):
        def draw(gen_id: str, maximum: int, draws: int, rng: np.random.Generator) -> dict:
            n = int(next(iter(pools[gen_id].values()))[0].sum())  # every question holds n
            return self.planted[gen_id].pools(n, maximum, draws, rng)
        return draw


class Analysis:
    """Scenario tables at given samples per generation, and the decisions the fit makes on them."""

    def __init__(self, study, draws: Draws):
        from bitbudget import memory
        from bitbudget.aggregate import memory_columns

        config = study.config
        self.config, self.draws = config, draws
        base = pd.DataFrame(study.scenarios)
        base["grids"] = base["grids"].map(",".join)
        records = {g.gen_id: memory.checkpoint_record(REPO / config["models"][g.checkpoint.model]["path"])
                   for g in study.generations.values()}
        spec = {"analysis": config["analysis"], "max_answer_tokens": config["sampling"]["max_answer_tokens"],
                "weight_formats": config["weight_formats"], "kv_strategies": config["kv_strategies"]}
        self.base = pd.concat([base, memory_columns(base, records, spec)], axis=1)
        self.gs = self.base.groupby(["gen_id", "token_budget"])["G"].apply(lambda s: sorted(set(s))).to_dict()
        self.cache: dict = {}
        self.max_budget = {g.gen_id: max(g.budgets) for g in study.generations.values()}
        self.maximum = {g.gen_id: g.samples_per_question for g in study.generations.values()}
        # samples per question after each round: the rule's rounds, or the maximum alone for a
        # generation of a grid drawn in one round (the study's rounds, as the workflow runs them)
        self.round_samples = {g: sorted({n for n, _ in reads}) for g, reads in study.rounds.items()}
        self.rule = rounds.rule_of(study)
        self.questions = {g: draws.generations[g][0].shape[0] for g in self.maximum}
        self.cells = {g.gen_id: (g.checkpoint.model, g.checkpoint.weights, g.kv, g.dataset, g.samples_per_question)
                      for g in study.generations.values()}

    def held(self, gen_id: str, n: int, closed: dict[int, int] | None = None) -> np.ndarray:
        """[Q] samples per question read at ``n``: a question closed earlier (``closed``: question
        index -> its count) holds its count."""
        held = np.full(self.questions[gen_id], n)
        for question, count in (closed or {}).items():
            held[question] = min(count, n)
        return held

    def pools(self, gen_id: str, budget: int, held: np.ndarray) -> np.ndarray:
        """Answer counts ``[Q, K]`` of one (generation, budget), question q from its first ``held[q]`` samples."""
        correct, answers, budgets, _ = self.draws.generations[gen_id]
        i = budgets.index(budget)
        if (held == held[0]).all():
            return answer_pool(correct[:, : held[0], i], answers[:, : held[0], i])
        return question_pools([correct[q, :k, i] for q, k in enumerate(held)],
                              [answers[q, :k, i] for q, k in enumerate(held)])

    def budget_accuracy(self, gen_id: str, budget: int, n: int, closed: dict[int, int] | None = None) -> dict:
        """G -> accuracy of one (generation, budget) from its first ``n`` samples, a question
        closed earlier from its own count (NaN for a G above some question's count): the
        estimators of :func:`bitbudget.stats.summarize_cell` (pass@1 each question's share right,
        maj@G of each answer pool), read from each question's own pool."""
        from bitbudget.stats import maj_of_counts

        held = self.held(gen_id, n, closed)
        key = (gen_id, budget, held.tobytes())
        if key not in self.cache:
            gs = self.gs[gen_id, budget]
            pool = self.pools(gen_id, budget, held)
            per_question = {1: pool[:, 0] / held} | maj_of_counts(pool, [g for g in gs if g > 1])
            self.cache[key] = {g: float(per_question[g].mean()) for g in gs}
        return self.cache[key]

    def full_design(self) -> dict[str, dict[int, int]]:
        """gen_id -> {budget: samples per question}: every budget at the maximum."""
        return {g: {b: m for b in self.draws.generations[g][2]} for g, m in self.maximum.items()}

    def table(self, drawn: dict[str, dict[int, int]], closed: dict[str, dict[int, int]] | None = None) -> pd.DataFrame:
        """The scenario table with each (generation, budget) read at ``drawn[gen_id][budget]``
        samples, the questions in ``closed[gen_id]`` at their own counts (``n_samples``: the smallest)."""
        closed = closed or {}
        scen = self.base.copy()
        keys = list(zip(scen["gen_id"], scen["token_budget"], scen["G"]))
        scen["accuracy"] = [self.budget_accuracy(g, t, drawn[g][t], closed.get(g))[k] for g, t, k in keys]
        scen["n_samples"] = [int(self.held(g, drawn[g][t], closed.get(g)).min()) for g, t, _ in keys]
        scen["n_questions"] = scen["gen_id"].map(self.questions)
        return scen

    def decisions(self, scen: pd.DataFrame) -> dict:
        from bitbudget.findings import evaluate_findings
        from bitbudget.frontier import pareto_frontier
        from bitbudget.threshold import fit_thresholds

        analysis = self.config["analysis"]
        thresholds = fit_thresholds(scen, None, n_boot=0, memory_tolerance=analysis["memory_tolerance"],
                                    paper_cuts=analysis["paper_cuts"])
        thr = thresholds[BRACKET_KIND]
        brackets = [(thr.get("status"), thr.get("bracket"))] + [
            (d.get("dataset"), d.get("status"), d.get("bracket")) for d in thr.get("by_dataset") or []]
        findings = evaluate_findings(scen, thresholds, analysis)
        return {"frontier": frozenset(pareto_frontier(scen)["scenario_id"]), "bracket": brackets,
                "verdicts": [(f["id"], f["status"], tuple((r["dataset"], r["status"]) for r in f["per_dataset"]))
                             for f in findings]}

    def generation_tokens(self, gen_id: str, drawn: dict[int, int], closed: dict[int, int] | None = None) -> int:
        """Decode tokens of one generation: a sample thinks to the largest budget that reads it; a
        question closed early (``closed``: index -> count) holds its count at every budget."""
        from bitbudget.adaptive.closing import thinking_per_question

        closed = closed or {}
        return ((self.questions[gen_id] - len(closed)) * thinking_per_question(drawn)
                + sum(thinking_per_question({b: min(n, count) for b, n in drawn.items()}) for count in closed.values()))

    def tokens(self, drawn: dict[str, dict[int, int]], closed: dict[str, dict[int, int]] | None = None) -> int:
        closed = closed or {}
        return sum(self.generation_tokens(g, d, closed.get(g)) for g, d in drawn.items())

    def paper_jobs(self) -> dict:
        """gen_id -> the :class:`bitbudget.plan.JobModel` of its generation in the paper grid as it
        runs on GPUs (``python -m bitbudget.plan --configfile config/paper.yaml``: its vLLM and HF
        engines, GPUs, assumed throughputs, load times and batch curves), matched by model,
        weights, KV, dataset and samples per question (the main grid's and the KV grid's
        generations of one cell are two)."""
        if not hasattr(self, "_paper_jobs"):
            paper = cost_plan.make_plan(yaml.safe_load((REPO / BASE).read_text()), workdir=REPO)
            models = {(g.model, g.weights, g.kv, g.dataset, g.samples): paper.job_models[g.gen_id]
                      for g in paper.generations}
            self._paper_jobs = {gen_id: models[cell] for gen_id, cell in self.cells.items()}
        return self._paper_jobs

    def gpu_hours(self, rounds: list[dict], decide_seconds: float = cost_plan.DECIDE_SECONDS) -> cost_plan.RoundCost:
        """The plan's GPU-hours, overheads included (:func:`bitbudget.plan.round_cost`: a model load
        per job, the batch effect, the barrier of each round on the study's pool, the decision),
        of ``rounds``: per round gen_id -> its :class:`bitbudget.plan.RoundDraw`.
        The full design is one round without a decision (``decide_seconds`` 0), as the plan costs it."""
        answer = self.config["sampling"]["max_answer_tokens"]
        return sum((cost_plan.round_cost(list(cost_plan.draw_jobs(self.paper_jobs(), draws, 1.0, answer).values()),
                                         decide_seconds=decide_seconds) for draws in rounds), cost_plan.RoundCost())

    def full_rounds(self) -> list[dict]:
        """The full design as one round: every generation at its maximum and every budget."""
        return [{g: cost_plan.RoundDraw(0, m, self.max_budget[g], len(self.draws.generations[g][2]))
                 for g, m in self.maximum.items()}]


def adaptive_run(analysis: Analysis, predictive=None, threads: int = 1,
                 progress: str = "") -> tuple[dict, dict, list[dict], list[dict]]:
    """Rounds of the curtailment rule; returns samples drawn per (generation, budget), the
    questions closed early (gen_id -> {question index: samples it holds}), a log per round and
    each round's jobs (gen_id -> :class:`bitbudget.plan.RoundDraw`)."""
    per_gen = analysis.round_samples
    drawn = {g: {b: per_gen[g][0] for b in budgets} for g, budgets in analysis.full_design().items()}
    closed: dict[str, dict[int, int]] = {g: {} for g in drawn}
    context = {"rule": analysis.rule, "predictive": predictive, "threads": threads}
    started = time.perf_counter()
    open_budgets, log = {g: sorted(d) for g, d in drawn.items()}, []
    jobs = [{g: cost_plan.RoundDraw(0, d[budgets[0]], max(budgets), len(budgets)) for g, d in drawn.items()
             for budgets in [sorted(d)]}]
    while open_budgets:
        scen = analysis.table(drawn, closed)
        open_budgets = curtail_round(analysis, scen, drawn, closed, open_budgets, context)
        log.append({"open": len(open_budgets), "tokens": analysis.tokens(drawn, closed)})
        if progress:
            print(f"{progress}: round {context['round']} decided, {len(open_budgets)} generations open, "
                  f"{sum(map(len, closed.values()))} questions closed, {log[-1]['tokens']:,} decode tokens drawn "
                  f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        next_jobs = {}
        for g, budgets in open_budgets.items():
            more = next(n for n in per_gen[g] if n > drawn[g][budgets[0]])
            drawing = analysis.questions[g] - len(closed[g]) if closed[g] else None
            next_jobs[g] = cost_plan.RoundDraw(drawn[g][budgets[0]], more, max(budgets), len(budgets), drawing)
            drawn[g].update({b: more for b in budgets})
        jobs += [next_jobs] if next_jobs else []
    return drawn, closed, log, jobs


def open_samples(drawn: dict, open_budgets: dict) -> dict[str, int]:
    """gen_id -> samples per question drawn by its open budgets."""
    return {g: drawn[g][budgets[0]] for g, budgets in open_budgets.items()}


def curtail_round(analysis: Analysis, scen, drawn, closed, open_budgets, context) -> dict:
    """One round of :func:`bitbudget.adaptive.closing.decide_round` on the open budgets (the
    decisions' structure depends on memory only, so it is built once); the questions it closes
    are added to ``closed`` at the samples they hold; returns the budgets left open."""
    from bitbudget.adaptive.closing import decide_round
    from bitbudget.adaptive.decisions import Decisions
    from bitbudget.adaptive.schedule import OPEN

    if "decisions" not in context:
        context["decisions"] = Decisions(scen, analysis.config["analysis"])
        context["round"] = 0
    context["round"] += 1
    n_of = open_samples(drawn, open_budgets)
    samples = {g: {b: analysis.pools(g, b, analysis.held(g, n_of[g], closed[g])) for b in budgets}
               for g, budgets in open_budgets.items()}
    status = decide_round(scen, samples, n_of, analysis.maximum, context["rule"], analysis.config["analysis"],
                          analysis.config["sampling"]["seed"], context["round"], open_=set(open_budgets),
                          decisions=context["decisions"], predictive=context["predictive"],
                          threads=context["threads"])
    for g, outcome in status.items():
        closed[g].update({int(q): n_of[g] for q in outcome.closed_questions})
    return {g: list(o.open_budgets) for g, o in status.items() if o.reason == OPEN}


def run(case: Case, adaptive_settings: dict | None, workdir: Path, predictive: str | None = None,
        threads: int = 1) -> dict:
    from bitbudget.study import build_study

    workdir.mkdir(parents=True, exist_ok=True)
    config = load_config(case, adaptive_settings)
    study = build_study(config)
    started = time.perf_counter()
    draws = Draws(study, workdir)
    drawn_s = time.perf_counter() - started
    analysis = Analysis(study, draws)
    full_drawn = analysis.full_design()
    full = analysis.decisions(analysis.table(full_drawn))
    drawn, closed, log, jobs = adaptive_run(analysis, PlantedPredictive(draws) if predictive == "planted" else None,
                                            threads, progress=f"{case.kind} surface {case.surface} seed {case.seed}")
    adapt = analysis.decisions(analysis.table(drawn, closed))
    return {"case": case, "tokens_full": analysis.tokens(full_drawn),
            "tokens_adaptive": analysis.tokens(drawn, closed), "rounds": log,
            "gpu_hours_full": analysis.gpu_hours(analysis.full_rounds(), decide_seconds=0.0),
            "gpu_hours_adaptive": analysis.gpu_hours(jobs),
            "frontier_identical": full["frontier"] == adapt["frontier"],
            "bracket_verdicts_identical": full["bracket"] == adapt["bracket"] and full["verdicts"] == adapt["verdicts"],
            "draw_s": drawn_s, "seconds": time.perf_counter() - started,
            "stopped_early": sum(min(drawn[g].values()) < analysis.maximum[g] for g in drawn), "generations": len(drawn),
            "closed_questions": sum(map(len, closed.values())),
            "differs": differences(full, adapt)}


def differences(full: dict, adapt: dict) -> list[str]:
    """What the adaptive run decides differently: scenarios in or out of the frontier, then
    each bracket or finding verdict that differs (full -> adaptive)."""
    out = [f"frontier differs at {sorted(full['frontier'] ^ adapt['frontier'])}"] * (full["frontier"] != adapt["frontier"])
    pairs = zip(full["bracket"] + full["verdicts"], adapt["bracket"] + adapt["verdicts"])
    return out + [f"{a} -> {b}" for a, b in pairs if a != b]


COSTS = ("gpu_hours_full", "gpu_hours_adaptive")  # a result's RoundCost fields


def result_key(case: Case, settings: dict, predictive: str | None) -> str:
    """What a finished case was measured with: the case, the rule's settings, the predictive and
    the rounds' version (a result of other code or settings is not taken)."""
    return json.dumps({"case": dataclasses.asdict(case), "settings": settings, "predictive": predictive,
                       "rounds_version": rounds.ROUNDS_VERSION}, sort_keys=True)


def load_results(path: Path) -> dict[str, dict]:
    """Key -> result of every case a ``--results`` file holds (none when it does not exist)."""
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(f"--results {path}: not a results file ({error}); fix: give another path or delete it")
    return {key: {**r, "case": Case(**r["case"]),
                  **{k: cost_plan.RoundCost(**{f.name: r[k][f.name] for f in dataclasses.fields(cost_plan.RoundCost)})
                     for k in COSTS}}
            for key, r in stored.items()}


def save_results(path: Path, results: dict[str, dict]) -> None:
    """Write ``results`` (key -> result) atomically: a run stopped at any point keeps every case it finished."""
    write_json(path, {key: {**r, "case": dataclasses.asdict(r["case"]), **{k: r[k].to_dict() for k in COSTS}}
                      for key, r in results.items()})


SETTINGS = {"initial": "initial", "step": "step", "confidence": "confidence", "gamma": "curtail_gamma",
            "predictive": "predictive", "close_questions": "close_questions"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tune", action="store_true", help="the tuning set (TUNE): where settings are chosen")
    which.add_argument("--eval", action="store_true", help="the held-out set (EVAL): the schema's defaults only")
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), help="only these overlay kinds")
    parser.add_argument("--surfaces", type=int, help="only the set's first N planted surfaces")
    parser.add_argument("--seeds", type=int, help="only the set's first N sampling seeds")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (processes; default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads a round draws its predictive completions on, per run "
                             "(resources.adaptive_round.threads: the same decisions at any count; default 1)")
    parser.add_argument("--initial", type=int, help="sampling.adaptive.initial (default: the schema's)")
    parser.add_argument("--step", type=int, help="sampling.adaptive.step (default: the schema's)")
    parser.add_argument("--confidence", type=float, help="sampling.adaptive.confidence (default: the schema's)")
    parser.add_argument("--gamma", type=float, help="sampling.adaptive.curtail_gamma (default: the schema's)")
    parser.add_argument("--predictive", choices=["rasch", "jeffreys", "planted"],
                        help="the curtailment rule's predictive: sampling.adaptive.predictive (rasch, jeffreys; "
                             "default: the schema's), or the simulated engine's planted model (planted: perfectly "
                             "calibrated, for comparison only)")
    parser.add_argument("--results", type=Path,
                        help="keep each finished case in this JSON file and take the cases it holds from it")
    parser.add_argument("--close-questions", action="store_const", const=True,
                        help="sampling.adaptive.close_questions: close single questions inside open budgets "
                             "(default: the schema's)")
    args = parser.parse_args(argv)
    if args.predictive == "planted" and args.close_questions:
        parser.error("--predictive planted draws every question to the maximum; it does not take --close-questions")
    chosen = [f"--{name}" for name in SETTINGS if getattr(args, name) not in (None, "planted")]
    if args.eval and chosen:
        parser.error(f"{', '.join(chosen)}: settings are chosen on the tuning set (--tune); "
                     "--eval judges the schema's defaults")
    return args


def summary_line(r: dict) -> str:
    case = r["case"]
    return (f"{case.kind} surface {case.surface} seed {case.seed}: tokens {r['tokens_adaptive'] / r['tokens_full']:.2f}, "
            f"{r['stopped_early']}/{r['generations']} generations stopped early, "
            f"{r['closed_questions']} questions closed early, rounds "
            f"{[x['open'] for x in r['rounds']]} open, frontier identical {r['frontier_identical']}, "
            f"bracket and verdicts identical {r['bracket_verdicts_identical']} "
            f"({r['seconds']:.0f} s, draws {r['draw_s']:.0f} s)" + "".join(f"; {d}" for d in r["differs"]))


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = {field: getattr(args, name) for name, field in SETTINGS.items()
                if getattr(args, name) not in (None, "planted")}
    cases = (EVAL if args.eval else TUNE).cases(args.kinds, args.surfaces, args.seeds)
    stored = load_results(args.results) if args.results else {}
    keys = {case: result_key(case, settings, args.predictive) for case in cases}
    results = [stored[keys[case]] for case in cases if keys[case] in stored]
    for result in results:
        print(summary_line(result) + f" (from {args.results})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-adaptive-") as tmp, \
            ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        runs = [pool.submit(run, case, settings, Path(tmp) / f"{case.kind}-{case.surface}-{case.seed}",
                            args.predictive, args.threads) for case in cases if keys[case] not in stored]
        for done in as_completed(runs):
            results.append(done.result())
            print(summary_line(results[-1]), flush=True)
            if args.results:
                stored[keys[results[-1]["case"]]] = results[-1]
                save_results(args.results, stored)
    ratio = sum(r["tokens_adaptive"] for r in results) / sum(r["tokens_full"] for r in results)
    adaptive = sum((r["gpu_hours_adaptive"] for r in results), cost_plan.RoundCost())
    full = sum((r["gpu_hours_full"] for r in results), cost_plan.RoundCost())
    print(f"plan's GPU-hours adaptive/full {adaptive.gpu_hours / full.gpu_hours:.2f} with overheads, "
          f"{adaptive.decode_gpu_hours / full.decode_gpu_hours:.2f} decode alone (config/paper.yaml's engines, "
          f"the plan's throughputs, load times and batch curves, a pool of {cost_plan.DEFAULT_STUDY_GPUS} GPUs; "
          f"full design {results[0]['gpu_hours_full'].gpu_hours:.1f} GPU-hours)")
    print(f"  adaptive per run: decode {adaptive.decode_gpu_hours / len(results):.1f}, batch effect "
          f"{adaptive.batch_gpu_hours / len(results):.1f}, model loads {adaptive.load_gpu_hours / len(results):.1f} "
          f"({adaptive.jobs / len(results):.0f} jobs), barrier {adaptive.barrier_gpu_hours / len(results):.1f}, "
          f"wall {adaptive.wall_hours / len(results):.1f} h")
    frontier = np.mean([r["frontier_identical"] for r in results])
    verdicts = np.mean([r["bracket_verdicts_identical"] for r in results])
    print(f"decode tokens {sum(r['tokens_adaptive'] for r in results):,} adaptive, "
          f"{sum(r['tokens_full'] for r in results):,} full: {ratio:.3f}")
    print(f"tokens adaptive/full {ratio:.2f}, frontier identical {frontier:.2f}, "
          f"bracket and verdicts identical {verdicts:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
