"""Adaptive sampling rounds in the workflow: what each round reads, decides and writes.

Under ``sampling.adaptive`` every generation of the full design is read in rounds at its first
``n`` samples per question (:meth:`bitbudget.study.Generation.with_samples`; ``study.rounds``
holds each round's grade). Round ``r`` (a Snakemake checkpoint, ``workflow/rules/adaptive.smk``)
reads, per full-design generation, the grade of the samples it has drawn by then: round 0 the
first round's, later rounds the next round's for a generation the previous decision left open
and the same as before for one it stopped. It summarises the scenarios with the aggregate
stage's own function (:func:`bitbudget.aggregate.aggregate`: the same estimators and memory
columns) and decides with :func:`bitbudget.adaptive.decide_round`. Its decision is a small
JSON file, ``results/adaptive/{plan_id}/round-{r}.json``: per full-design generation the samples
drawn, the reason it stops (or ``open``), and the round history. Once no generation is open,
``results/adaptive/samples.json`` holds the final samples, and the aggregate stage reads each
scenario at them.

``plan_id`` hashes what the decisions depend on (the scenario ids, which hash every artifact
key; the adaptive settings; the analysis settings; the seed), so a changed study never reuses
decisions made for another one; the generations and grades of the rounds are ordinary
content-addressed artifacts, shared between plans.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bitbudget import adaptive
from bitbudget.aggregate import aggregate, cell_arrays
from bitbudget.artifacts import content_id, read_parquet_verified
from bitbudget.study import RESULTS

#: bump when the content of a round's decision changes for the same inputs
ROUNDS_VERSION = 1
ROOT = f"{RESULTS}/adaptive"
#: the final samples per generation, once no generation is open
SAMPLES = f"{ROOT}/samples.json"


def enabled(config: dict) -> bool:
    return config["sampling"].get("adaptive") is not None


def plan_id(study) -> str:
    """The id of the decisions: what every round's decision depends on, nothing else."""
    config = study.config
    return content_id({
        "scenarios": sorted(s["scenario_id"] for s in study.scenarios),
        "adaptive": config["sampling"]["adaptive"],
        "analysis": config["analysis"],
        "seed": config["sampling"]["seed"],
        "version": ROUNDS_VERSION,
    })


def round_path(plan: str, r: int) -> str:
    return f"{ROOT}/{plan}/round-{r}.json"


def rule_of(study) -> adaptive.AdaptiveRule:
    """The rule, with the largest maximum of the study (its round count is the confidence rule's)."""
    maximum = max(g.maximum for g in study.generations.values())
    return adaptive.AdaptiveRule.from_config(study.config["sampling"], maximum)


def round_samples(study, previous: dict | None) -> dict[str, int]:
    """Full-design gen_id -> samples per question read in the round after ``previous`` (a
    decision; None: the first round). Open generations move to their next round, stopped ones
    keep what they drew."""
    if previous is None:
        return {gen_id: min(grades) for gen_id, grades in study.rounds.items()}
    out = {}
    for gen_id, entry in previous["generations"].items():
        n = int(entry["samples"])
        out[gen_id] = next(m for m in sorted(study.rounds[gen_id]) if m > n) if entry["open"] else n
    return out


def round_grades(study, samples: dict[str, int]) -> dict:
    """Full-design gen_id -> the Grade read at ``samples[gen_id]`` samples per question."""
    return {gen_id: study.rounds[gen_id][n] for gen_id, n in samples.items()}


def used(grades: dict) -> dict[str, dict]:
    """Full-design gen_id -> the ids and paths a stage reads for it (from Grades)."""
    return {gen_id: {"samples": g.generation.samples_per_question, "gen_id": g.generation.gen_id,
                     "grade_id": g.grade_id, "generation": g.generation.output, "grades": g.output}
            for gen_id, g in grades.items()}


def at_samples(scenarios: pd.DataFrame, used_by: dict[str, dict]) -> pd.DataFrame:
    """The full design's scenario rows read at the samples of ``used_by`` (keyed by the full
    design's gen_id): scenario_id kept, gen_id, grade_id and n_samples those actually read."""
    scen = scenarios.copy()
    full = scen["gen_id"].astype(str)
    scen["gen_id"] = [used_by[g]["gen_id"] for g in full]
    scen["grade_id"] = [used_by[g]["grade_id"] for g in full]
    scen["n_samples"] = np.array([used_by[g]["samples"] for g in full], dtype=scen["n_samples"].dtype)
    return scen


def paths(entries) -> dict:
    """The grade and generation paths by id that :func:`bitbudget.aggregate.aggregate` reads,
    of the entries of :func:`used`."""
    entries = list(entries)
    return {"grades": {e["grade_id"]: e["grades"] for e in entries},
            "generations": {e["gen_id"]: e["generation"] for e in entries}}


def aggregate_spec(config: dict, entries) -> dict:
    """The aggregate stage's spec (as ``aggregate_spec`` in workflow/rules/common.smk) for ``entries``."""
    return {
        **paths(entries),
        "weight_formats": config["weight_formats"],
        "kv_strategies": config["kv_strategies"],
        "max_answer_tokens": config["sampling"]["max_answer_tokens"],
        "analysis": config["analysis"],
    }


def round_table(study, samples: dict[str, int]) -> tuple[pd.DataFrame, dict]:
    """The scenario table of a round (aggregate's columns, ``gen_id`` the full design's) and
    the samples it rests on: full gen_id -> {token_budget: (correct [Q, n], answers [Q, n])}."""
    entries = used(round_grades(study, samples))
    scen = at_samples(pd.DataFrame.from_records(study.scenarios), entries)
    spec = aggregate_spec(study.config, entries.values())
    # a decision reads point estimates only: no bootstrap intervals
    table, _ = aggregate(scen, spec | {"analysis": spec["analysis"] | {"bootstrap_samples": 0}})
    design_of = {e["gen_id"]: gen_id for gen_id, e in entries.items()}
    table["gen_id"] = table["gen_id"].map(design_of)
    arrays: dict[str, dict] = {}
    for gen_id, entry in entries.items():
        graded = read_parquet_verified(entry["grades"])
        arrays[gen_id] = {}
        for budget, at_budget in graded.groupby("token_budget", sort=True):
            cell = cell_arrays(at_budget)
            if cell is None:
                raise ValueError(f"{entry['grades']}: questions hold different numbers of samples at budget "
                                 f"{budget}; a round needs the same count for every question")
            arrays[gen_id][int(budget)] = cell[1:]
    return table, arrays


def decide(study, r: int, previous: dict | None) -> dict:
    """Round ``r``'s decision (``previous``: round r-1's, None for the first round)."""
    samples = round_samples(study, previous)
    if previous is None:
        open_ = set(samples)
    else:
        open_ = {g for g, e in previous["generations"].items() if e["open"]}
    table, arrays = round_table(study, samples)
    maximum = {g: gen.maximum for g, gen in study.generations.items()}
    rule = rule_of(study)
    reasons = adaptive.decide_round(table, arrays, samples, maximum, rule, study.config["analysis"],
                                    int(study.config["sampling"]["seed"]), r + 1, open_=open_)
    grades = round_grades(study, samples)
    out = {}
    for gen_id, gen in study.generations.items():
        grade = grades[gen_id]
        before = (previous or {"generations": {}})["generations"].get(gen_id)
        if gen_id in open_:
            reason = reasons[gen_id]
            if reason == adaptive.OPEN and samples[gen_id] >= gen.maximum:
                reason = adaptive.MAXIMUM
            history = [*(before["history"] if before else []), samples[gen_id]]
            decided_at = r
        else:
            reason, history, decided_at = before["reason"], before["history"], before["round"]
        out[gen_id] = {
            "model": gen.checkpoint.model, "weights": gen.checkpoint.weights, "kv": gen.kv,
            "dataset": gen.dataset, "maximum": gen.maximum, "samples": samples[gen_id],
            "gen_id": grade.generation.gen_id, "grade_id": grade.grade_id,
            "reason": reason, "open": reason == adaptive.OPEN, "round": decided_at, "history": history,
        }
    return {"plan_id": plan_id(study), "round": r, "rule": rule.rule,
            "open": sum(e["open"] for e in out.values()), "generations": out}


def is_final(decision: dict) -> bool:
    return not any(e["open"] for e in decision["generations"].values())


def final_samples(decisions: list[dict]) -> dict:
    """``samples.json``: the last round's decision per generation, and the rounds that ran."""
    last = decisions[-1]
    if not is_final(last):
        raise ValueError(f"round {last['round']} still has open generations")
    return {"plan_id": last["plan_id"], "rule": last["rule"], "rounds": len(decisions),
            "open_per_round": [d["open"] for d in decisions],
            "generations": {g: {k: v for k, v in e.items() if k != "open"} for g, e in last["generations"].items()}}


def used_from_samples(samples_json: dict) -> dict[str, dict]:
    """Full gen_id -> ids and paths of the final round, from ``samples.json``."""
    return {gen_id: {"samples": e["samples"], "gen_id": e["gen_id"], "grade_id": e["grade_id"],
                     "generation": f"{RESULTS}/generations/{e['gen_id']}/samples.parquet",
                     "grades": f"{RESULTS}/grades/{e['grade_id']}/grades.parquet"}
            for gen_id, e in samples_json["generations"].items()}


def final_aggregate(scenarios: pd.DataFrame, spec: dict, samples_json: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The aggregate stage under adaptive sampling: every scenario of the full design read at
    its generation's final samples. Returns the two tables and the spec actually read."""
    entries = used_from_samples(samples_json)
    spec = {**spec, **paths(entries.values())}
    table, questions = aggregate(at_samples(scenarios, entries), spec)
    return table, questions, spec


def read_decisions(plan: str, workdir: str | Path = ".") -> list[dict]:
    """The decisions of the rounds already written under ``workdir``, in order (stops at the
    first missing round)."""
    out = []
    while (path := Path(workdir) / round_path(plan, len(out))).is_file():
        out.append(json.loads(path.read_text()))
    return out
