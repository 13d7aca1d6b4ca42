"""Adaptive sampling rounds in the workflow: what each round reads, decides and writes.

Under ``sampling.adaptive`` every generation of the full design is read in rounds at its first
``n`` samples per question and at its open token budgets (:meth:`bitbudget.study.Generation.with_samples`;
``study.rounds`` holds the grade of every (samples, horizon) a round may read). Round ``r`` (a
Snakemake checkpoint, ``workflow/rules/adaptive.smk``) reads, per full-design generation and
budget, the grade of the samples drawn by then: round 0 the first round's at every budget;
later rounds, for a generation the previous decision left open, the next round's grade at its
open budgets (the smallest ones, up to its horizon: its new samples think no further), and for
a closed budget the grade it was closed at. It summarises the scenarios with the aggregate
stage's own function (:func:`bitbudget.aggregate.aggregate`: the same estimators and memory
columns) and decides with :func:`bitbudget.adaptive.closing.decide_round`. Its decision is a small
JSON file, ``results/adaptive/{plan_id}/round-{r}.json``: per full-design generation the grade
each budget is read at, the budgets still open, the reason it stops (or ``open``), and the
round history. Once no generation is open, ``results/adaptive/samples.json`` holds the final
reads, and the aggregate stage reads each scenario at them.

The decisions depend on the decision settings (:func:`decision_settings`: the adaptive settings,
the study's largest maximum, the ``analysis`` fields a decision reads, :data:`DECISION_ANALYSIS`,
the seed and the rounds' version) and on the scenarios. ``design_id`` hashes the two; ``plan_id``
adds the generations held from the ledger. When the rounds end, :func:`ledger_entries` records
each generation a plan decided in ``results/adaptive/ledger/{settings_id}/{gen_id}.json``: its
final reads and the entry of every round it drew in. A later study with the same decision
settings but other scenarios (a model added or removed) holds every generation recorded by
another design at its recorded reads (:func:`held`): never re-decided, never drawn again, read by
the decisions of the new generations as closed budgets are. So a changed study never reuses
decisions made for another one, yet keeps the past rounds of the generations they share; the
generations and grades of the rounds are ordinary content-addressed artifacts, shared between plans.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bitbudget.adaptive import closing, schedule
from bitbudget.adaptive.predictive import question_pools
from bitbudget.aggregate import aggregate
from bitbudget.artifacts import content_id, read_parquet_verified
from bitbudget.provenance import benchmark_path
from bitbudget.study import RESULTS

#: bump when the content of a round's decision changes for the same inputs
#: 2: the curtailment rule closes token budgets top-down; decisions record the read of each budget
#: 3: the curtailment rule predicts from a Rasch fit shared across generations (`predictive: rasch`)
#: 4: closings that change a decision together give up the fewest tokens (not the last gen_id)
#: 5: gamma split over the deciding rounds; closings searched on 200 draws, certified on fresh ones
#: 6: decisions keyed by the analysis fields they read and the held generations (ids move on purpose)
ROUNDS_VERSION = 6
ROOT = f"{RESULTS}/adaptive"
#: the final reads per generation and budget, once no generation is open
SAMPLES = f"{ROOT}/samples.json"
#: each generation's recorded rounds, by decision settings (:func:`ledger_path`)
LEDGER = f"{ROOT}/ledger"

#: the ``analysis`` fields a round's decision reads, nothing else of that section ("a.b": the field
#: b of a): the memory columns of the aggregate table (``kv_tokens``) and what :class:`Decisions`
#: reads (``findings.analysis_settings`` less the named checks, the verdict level and the paper's
#: dataset labels, which only the checks read). :func:`round_table` and :func:`decide` pass these
#: alone, so code that reads another one fails instead of deciding on a field no id holds.
DECISION_ANALYSIS = ("kv_tokens", "memory_tolerance", "min_comparisons", "switch_window", "paper_cuts",
                     "paper_names.models")
#: a decision reads point estimates: no bootstrap intervals (whose seed it then never reads)
POINT_ESTIMATES = {"bootstrap_samples": 0, "seed": 0}


def enabled(config: dict) -> bool:
    return config["sampling"].get("adaptive") is not None


def decision_analysis(analysis: dict) -> dict:
    """The fields of ``analysis`` named in :data:`DECISION_ANALYSIS`, nested as in the config."""
    out: dict = {}
    for name in DECISION_ANALYSIS:
        *outer, field = name.split(".")
        source, target = analysis, out
        for part in outer:
            source, target = source.get(part, {}), target.setdefault(part, {})
        if field in source:
            target[field] = source[field]
    return out


def decision_settings(study) -> dict:
    """What a decision depends on besides the scenarios and the samples: the adaptive settings,
    the largest maximum (it sets the rounds that split gamma), the analysis fields it reads, the
    seed, the rounds' version and the grids drawn in one round."""
    config = study.config
    adaptive = config["sampling"]["adaptive"]
    return {
        # close_questions only where it is on: every other study keeps its ids
        "adaptive": {k: v for k, v in adaptive.items() if k != "close_questions" or v},
        "maximum": rule_of(study).maximum,
        "analysis": decision_analysis(config["analysis"]),
        "seed": config["sampling"]["seed"],
        "version": ROUNDS_VERSION,
        # only where some grid is drawn in one round: every other study keeps its ids
        **({"one_round_grids": list(study.one_round_grids)} if study.one_round_grids else {}),
    }


def settings_id(study) -> str:
    return content_id(decision_settings(study))


def design_id(study) -> str:
    """The study as the decisions see it: its scenario ids (which hash every artifact key) and
    its decision settings."""
    return content_id({"scenarios": sorted(s["scenario_id"] for s in study.scenarios),
                       "settings": decision_settings(study)})


def plan_id(study, held_entries: dict) -> str:
    """The id of the decisions: the design and the generations it holds at their recorded
    rounds (:func:`held`), nothing else."""
    return content_id({"design": design_id(study),
                       "held": {g: content_id(e) for g, e in sorted(held_entries.items())}})


def ledger_path(settings: str, gen_id: str) -> str:
    """A generation's recorded rounds under the decision settings ``settings`` (:func:`settings_id`)."""
    return f"{LEDGER}/{settings}/{gen_id}.json"


def ledger_paths(study, held_entries: dict) -> list[str]:
    """The ledger files a plan writes: those of the generations it decides (not those it holds)."""
    settings = settings_id(study)
    return [ledger_path(settings, g) for g in sorted(study.generations) if g not in held_entries]


def read_ledger(path: str | Path, gen_id: str, settings: dict) -> dict | None:
    """The ledger entry at ``path`` (None when there is none); one recorded for another
    generation or other settings is an error."""
    path = Path(path)
    if not path.is_file():
        return None
    entry = json.loads(path.read_text())
    if entry.get("gen_id") != gen_id or entry.get("settings") != settings:
        raise ValueError(f"{path}: a ledger entry of another generation or other decision settings; "
                         f"delete it and rerun")
    return entry


def held(study, workdir: str | Path = ".") -> dict[str, dict]:
    """Full-design gen_id -> its ledger entry, for every generation of the study recorded by
    another design under the same decision settings: the plan takes its rounds as recorded.
    (Entries this design wrote are its own rounds: it decides them again, identically.)"""
    settings, design = decision_settings(study), design_id(study)
    sid = content_id(settings)
    out = {}
    for gen_id in sorted(study.generations):
        entry = read_ledger(Path(workdir) / ledger_path(sid, gen_id), gen_id, settings)
        if entry is not None and entry["design_id"] != design:
            out[gen_id] = entry
    return out


def round_path(plan: str, r: int) -> str:
    return f"{ROOT}/{plan}/round-{r}.json"


def rule_of(study) -> schedule.AdaptiveRule:
    """The rule, with the largest maximum of the generations the study draws in rounds (of all,
    where every grid is drawn in one round)."""
    in_rounds = [g for g in study.generations.values() if g.gen_id not in study.one_round] or study.generations.values()
    maximum = max(g.maximum for g in in_rounds)
    return schedule.AdaptiveRule.from_config(study.config["sampling"], maximum)


def _read(samples: int, horizon: int, closed: dict | None = None) -> tuple:
    """One budget's read: ``(samples, horizon)``, and where some question was closed
    (``sampling.adaptive.close_questions``) the closed questions' ``(question id, samples)`` pairs."""
    closed = tuple(sorted((str(q), int(n)) for q, n in (closed or {}).items()))
    return (int(samples), int(horizon), closed) if closed else (int(samples), int(horizon))


def _reads(entry: dict) -> dict[int, tuple]:
    """{budget: its read (:func:`_read`)} of a decision's (or the ledger's) entry of a generation."""
    return {int(b): _read(r["samples"], r["horizon"], r.get("closed_questions")) for b, r in entry["budgets"].items()}


def round_reads(study, previous: dict | None, held_entries: dict | None = None) -> dict[str, dict[int, tuple[int, int]]]:
    """Full-design gen_id -> {budget: (samples, horizon)} read in the round after ``previous``
    (a decision; None: the first round, where a generation in ``held_entries`` keeps its
    recorded reads): the open budgets of an open generation move to its next round's samples,
    read from a generation that thinks to the largest of them; every other budget keeps its read."""
    held_entries = held_entries or {}
    out = {}
    for gen_id, gen in study.generations.items():
        if previous is None and gen_id in held_entries:
            out[gen_id] = _reads(held_entries[gen_id]["final"])
            continue
        if previous is None:
            first = min(n for n, _ in study.rounds[gen_id])
            out[gen_id] = {b: (first, max(gen.budgets)) for b in gen.budgets}
            continue
        entry = previous["generations"][gen_id]
        reads = _reads(entry)
        if entry["open"]:
            more = next(m for m in sorted({n for n, _ in study.rounds[gen_id]}) if m > int(entry["samples"]))
            reads.update({b: _read(more, max(entry["open_budgets"]), entry.get("closed_questions"))
                          for b in entry["open_budgets"]})
        out[gen_id] = reads
    return out


def grade_at(study, gen_id: str, samples: int, horizon: int, closed=()):
    """The Grade of a round that reads the full-design generation ``gen_id`` at ``samples`` per
    question, every budget up to ``horizon``, the ``closed`` questions (a mapping question id ->
    samples, or its pairs as a read holds them) at their fewer samples."""
    if not closed:
        return study.rounds[gen_id][samples, horizon]
    gen = study.generations[gen_id]
    return study.grade_of(gen.with_samples(samples, [b for b in gen.budgets if b <= horizon], dict(closed)))


def read_grades(study, reads: dict) -> dict[str, dict[int, object]]:
    """Full-design gen_id -> {budget: the Grade it is read from}."""
    return {gen_id: {b: grade_at(study, gen_id, *at) for b, at in by_budget.items()}
            for gen_id, by_budget in reads.items()}


def written_grades(study, held_entries: dict, plan: str, workdir: str | Path = ".") -> dict:
    """grade_id -> Grade of every grade the decisions written so far read, or their next rounds
    will: those of rounds with closed questions are not in ``study.rounds`` (their ids depend on
    the decisions)."""
    found = {}
    for previous in [None, *read_decisions(plan, workdir)]:
        found.update({g.grade_id: g for g in grades_read(study, round_reads(study, previous, held_entries))})
    return found


def grades_read(study, reads: dict) -> list:
    """The distinct Grades a set of reads opens (a round's job inputs)."""
    found = {g.grade_id: g for by_budget in read_grades(study, reads).values() for g in by_budget.values()}
    return [found[k] for k in sorted(found)]


#: what a decision records of each read (:func:`used` adds the paths a stage reads)
READ_KEYS = ("samples", "horizon", "gen_id", "grade_id")
#: and the questions closed early, recorded only where some are (sampling.adaptive.close_questions)
RECORDED_KEYS = (*READ_KEYS, "closed_questions")


def _read_entry(grade, samples: int, horizon: int, closed: tuple = ()) -> dict:
    entry = dict(zip(READ_KEYS, (samples, horizon, grade.generation.gen_id, grade.grade_id)))
    return {**entry, "closed_questions": dict(closed)} if closed else entry


def _recorded(entry: dict) -> dict:
    """What a decision records of a read (:data:`RECORDED_KEYS`)."""
    return {k: entry[k] for k in RECORDED_KEYS if k in entry}


def used(study, reads: dict) -> dict[str, dict[int, dict]]:
    """Full-design gen_id -> {budget: the samples, horizon, ids and paths a stage reads for it}."""
    grades = read_grades(study, reads)
    return {gen_id: {b: {**_read_entry(grades[gen_id][b], *at), "generation": grades[gen_id][b].generation.output,
                         "grades": grades[gen_id][b].output}
                     for b, at in by_budget.items()} for gen_id, by_budget in reads.items()}


def at_samples(scenarios: pd.DataFrame, used_by: dict[str, dict[int, dict]]) -> pd.DataFrame:
    """The full design's scenario rows read as ``used_by`` says (keyed by the full design's
    gen_id and the budget): scenario_id kept, gen_id, grade_id and n_samples those actually read."""
    scen = scenarios.copy()
    read = [used_by[g][int(b)] for g, b in zip(scen["gen_id"].astype(str), scen["token_budget"])]
    scen["gen_id"] = [e["gen_id"] for e in read]
    scen["grade_id"] = [e["grade_id"] for e in read]
    scen["n_samples"] = np.array([e["samples"] for e in read], dtype=scen["n_samples"].dtype)
    return scen


def flat(used_by: dict) -> list[dict]:
    """The read entries of :func:`used` (or :func:`used_from_samples`), every budget's."""
    return [e for by_budget in used_by.values() for e in by_budget.values()]


def paths(entries) -> dict:
    """The grade and generation paths by id that :func:`bitbudget.aggregate.aggregate` reads,
    of read entries (:func:`flat`)."""
    entries = list(entries)
    return {"grades": {e["grade_id"]: e["grades"] for e in entries},
            "generations": {e["gen_id"]: e["generation"] for e in entries}}


def aggregate_spec(config: dict, entries) -> dict:
    """The aggregate stage's spec for ``entries`` (a round's, or :func:`study_aggregate_spec`'s)."""
    return {
        **paths(entries),
        "weight_formats": config["weight_formats"],
        "kv_strategies": config["kv_strategies"],
        "max_answer_tokens": config["sampling"]["max_answer_tokens"],
        "analysis": config["analysis"],
    }


def study_aggregate_spec(study) -> dict:
    """The aggregate job's spec: every grade of the full design; under adaptive sampling none
    (the aggregate job reads the final round's from the samples file)."""
    if enabled(study.config):
        return {**aggregate_spec(study.config, []), "grades": {}, "generations": {}}
    return aggregate_spec(study.config, [
        {"gen_id": g.generation.gen_id, "grade_id": g.grade_id, "generation": g.generation.output, "grades": g.output}
        for g in study.grades.values()])


def answer_counts(at_budget: pd.DataFrame) -> np.ndarray:
    """Answer counts ``[Q, K]`` (:func:`bitbudget.adaptive.predictive.answer_pool`) of one
    budget's graded samples, questions by id, each holding any number of samples."""
    at = at_budget.assign(question_id=at_budget["question_id"].astype(str)).sort_values(["question_id", "sample_idx"])
    answers = np.array([None if pd.isna(a) else str(a) for a in at["extracted_answer"]], dtype=object)
    starts = np.flatnonzero(np.r_[True, at["question_id"].to_numpy()[1:] != at["question_id"].to_numpy()[:-1]])
    correct = at["correct"].to_numpy(dtype=bool)
    return question_pools(np.split(correct, starts[1:]), np.split(answers, starts[1:]))


def round_table(study, used_by: dict, open_budgets: dict[str, list[int]]) -> tuple[pd.DataFrame, dict, dict]:
    """The scenario table of a round read as ``used_by`` says (:func:`used`; aggregate's
    columns, ``gen_id`` the full design's), the samples the decision rests on: full gen_id
    -> {token_budget: answer counts [Q, K]} (:func:`answer_counts`) for the budgets in
    ``open_budgets[gen_id]``, and the question ids of those counts' rows per generation."""
    scen = at_samples(pd.DataFrame.from_records(study.scenarios), used_by)
    spec = aggregate_spec(study.config, flat(used_by))
    # a decision reads point estimates only, and no analysis field but its own
    table, _ = aggregate(scen, spec | {"analysis": decision_analysis(spec["analysis"]) | POINT_ESTIMATES})
    design_of = {e["gen_id"]: gen_id for gen_id, by_budget in used_by.items() for e in by_budget.values()}
    table["gen_id"] = table["gen_id"].map(design_of)
    pools: dict[str, dict] = {}
    question_ids: dict[str, list[str]] = {}
    for gen_id, budgets in open_budgets.items():
        graded = read_parquet_verified(used_by[gen_id][budgets[0]]["grades"])  # the open budgets share one round's grade
        pools[gen_id] = {int(budget): answer_counts(at_budget) for budget, at_budget
                         in graded[graded["token_budget"].isin(budgets)].groupby("token_budget", sort=True)}
        question_ids[gen_id] = sorted(graded["question_id"].astype(str).unique())
    return table, pools, question_ids


def decide(study, r: int, previous: dict | None, held_entries: dict | None = None, threads: int = 1) -> dict:
    """Round ``r``'s decision (``previous``: round r-1's, None for the first round;
    ``held_entries``: the generations held at their recorded rounds, :func:`held`; ``threads``:
    the threads that draw its predictive completions, the same decision at any count)."""
    held_entries = held_entries or {}
    reads = round_reads(study, previous, held_entries)
    if previous is None:
        sampling = {g: list(gen.budgets) for g, gen in study.generations.items() if g not in held_entries}
        earlier = {g: e["final"] for g, e in held_entries.items()}
    else:
        sampling = {g: e["open_budgets"] for g, e in previous["generations"].items() if e["open"]}
        earlier = previous["generations"]
    used_by = used(study, reads)
    drawn = {g: reads[g][budgets[0]][0] for g, budgets in sampling.items()}
    maximum = {g: gen.maximum for g, gen in study.generations.items()}
    # the samples only a generation still below its maximum decides on (one drawn in one round
    # or reaching its maximum stops without them)
    table, pools, question_ids = round_table(study, used_by, {g: b for g, b in sampling.items() if drawn[g] < maximum[g]})
    rule = rule_of(study)
    outcomes = closing.decide_round(table, pools, drawn, maximum, rule, decision_analysis(study.config["analysis"]),
                                     int(study.config["sampling"]["seed"]), r + 1,
                                     open_=set(sampling), threads=threads) if sampling else {}
    recorded = {gen_id: {b: _recorded(e) for b, e in by_budget.items()} for gen_id, by_budget in used_by.items()}
    out = {}
    for gen_id, gen in study.generations.items():
        before = earlier.get(gen_id)
        if gen_id in sampling:
            # at its maximum from round 0: say why, where the rule would only say it got there
            outcome = closing.Outcome(schedule.ONE_ROUND) if gen_id in study.one_round else outcomes[gen_id]
            latest = recorded[gen_id][sampling[gen_id][0]]
            n, horizon = latest["samples"], latest["horizon"]
            entry = {**latest, "reason": outcome.reason,
                     "open_budgets": list(outcome.open_budgets), "round": r,
                     "history": [*(before["history"] if before else []), [n, horizon]]}
            closed = {**latest.get("closed_questions", {}),
                      **{question_ids[gen_id][q]: n for q in outcome.closed_questions}}
            if closed:  # only where some question closed: every other decision file stays as it was
                entry |= {"closed_questions": dict(sorted(closed.items())),
                          "questions": before["questions"] if before and "questions" in before
                          else len(question_ids[gen_id])}
        else:
            entry = {k: before[k] for k in (*RECORDED_KEYS, "questions", "reason", "open_budgets",
                                            "round", "history") if k in before}
        out[gen_id] = {
            "model": gen.checkpoint.model, "weights": gen.checkpoint.weights, "kv": gen.kv,
            "dataset": gen.dataset, "maximum": gen.maximum, **entry, "open": entry["reason"] == schedule.OPEN,
            "budgets": {str(b): recorded[gen_id][b] for b in gen.budgets},
        }
    return {"plan_id": plan_id(study, held_entries), "round": r, "rule": rule.rule,
            "open": sum(e["open"] for e in out.values()), "held": sorted(held_entries), "generations": out}


def is_final(decision: dict) -> bool:
    return not any(e["open"] for e in decision["generations"].values())


def final_samples(decisions: list[dict]) -> dict:
    """``samples.json``: the last round's decision per generation, and the rounds that ran."""
    last = decisions[-1]
    if not is_final(last):
        raise ValueError(f"round {last['round']} still has open generations")
    return {"plan_id": last["plan_id"], "rule": last["rule"], "rounds": len(decisions),
            "open_per_round": [d["open"] for d in decisions], "held": last.get("held", []),
            "generations": {g: {k: v for k, v in e.items() if k != "open"} for g, e in last["generations"].items()}}


#: what the ledger records of a generation's entry in each round it drew in
LEDGER_ROUND_KEYS = (*RECORDED_KEYS, "reason", "open_budgets", "round", "budgets")


def drew_in(decisions: list[dict], gen_id: str) -> list[int]:
    """The rounds in which a generation (not a held one) drew samples: the first, and each
    after one that left it open."""
    if gen_id in decisions[0].get("held", []):
        return []
    return [r for r in range(len(decisions)) if r == 0 or decisions[r - 1]["generations"][gen_id]["open"]]


def ledger_entries(study, decisions: list[dict]) -> dict[str, dict]:
    """Path -> ledger entry of every generation the finished plan of ``decisions`` decided (not
    those it held): its final reads (as ``samples.json`` has them) and its entry in each round it
    drew in (samples, horizon, reads per budget, open budgets, reason)."""
    final = final_samples(decisions)
    settings = decision_settings(study)
    design, sid = design_id(study), content_id(settings)
    out = {}
    for gen_id in sorted(study.generations):
        if gen_id in final["held"]:
            continue
        out[ledger_path(sid, gen_id)] = {
            "gen_id": gen_id, "settings": settings, "design_id": design, "plan_id": final["plan_id"],
            "final": final["generations"][gen_id],
            "rounds": [{k: e[k] for k in LEDGER_ROUND_KEYS if k in e}
                       for e in (decisions[r]["generations"][gen_id] for r in drew_in(decisions, gen_id))]}
    return out


def decision_grade_ids(decision: dict) -> set[str]:
    """Every grade a decision (or ``samples.json``) reads, at any budget."""
    return {r["grade_id"] for e in decision["generations"].values() for r in e["budgets"].values()}


def used_from_samples(samples_json: dict) -> dict[str, dict[int, dict]]:
    """Full gen_id -> {budget: ids and paths of its final read}, from ``samples.json``."""
    return {gen_id: {int(b): {**r, "generation": f"{RESULTS}/generations/{r['gen_id']}/samples.parquet",
                              "grades": f"{RESULTS}/grades/{r['grade_id']}/grades.parquet"}
                     for b, r in e["budgets"].items()}
            for gen_id, e in samples_json["generations"].items()}


def final_aggregate(scenarios: pd.DataFrame, spec: dict, samples_json: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The aggregate stage under adaptive sampling: every scenario of the full design read at
    its budget's final read. Returns the two tables and the spec actually read."""
    used_by = used_from_samples(samples_json)
    spec = {**spec, **paths(flat(used_by))}
    table, questions = aggregate(at_samples(scenarios, used_by), spec)
    return table, questions, spec


def round_benchmarks(decisions: list[dict]) -> list[str]:
    """Benchmark files of the rounds' jobs: each decision's, and the generate and grade jobs of
    every read it records (those of rounds with closed questions included: only the decisions
    hold their ids)."""
    reads = [r for d in decisions for e in d["generations"].values() for r in e["budgets"].values()]
    return sorted({benchmark_path("adaptive_round", d["plan_id"], str(d["round"])) for d in decisions}
                  | {benchmark_path("generate", r["gen_id"]) for r in reads}
                  | {benchmark_path("grade", r["grade_id"]) for r in reads})


def read_decisions(plan: str, workdir: str | Path = ".") -> list[dict]:
    """The decisions of the rounds already written under ``workdir``, in order (stops at the
    first missing round)."""
    out = []
    while (path := Path(workdir) / round_path(plan, len(out))).is_file():
        out.append(json.loads(path.read_text()))
    return out
