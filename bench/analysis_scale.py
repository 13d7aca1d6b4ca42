"""Seconds and peak memory of the analysis stages (aggregate, fit, report) at a study's scale.

Synthesizes the grades tables a study would produce (same columns as
results/grades/*/grades.parquet, answers drawn from a simple accuracy model) and the model
records of its generations, then runs the stages' own scripts (workflow/scripts/*.py), each in
a child process, as Snakemake would. No engine, no model, no hub.

    python bench/analysis_scale.py                      # the paper grid vs the default study
    python bench/analysis_scale.py --scenarios 200      # a random subset of each grid

Prints, per study, each stage's seconds and peak RSS, and the paper grid's per-scenario cost
as a ratio to the default study's.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("aggregate", "fit", "report")
WRONG_INTEGERS = 6  # distinct wrong integer answers a question attracts
NO_ANSWER_RATE = 0.05
LETTERS = np.array(list("ABCD"))


def n_questions(dataset: dict) -> int:
    return int(dataset.get("expected_questions") or dataset["synthetic"]["n_questions"])


def qwen3_record(model_path: str) -> dict:
    """The model record the generate stage writes: the architecture of a Qwen3 hub id from the
    shipped JSONs, of a local model from its directory."""
    from bitbudget import memory

    if "Qwen3-" in model_path:
        return memory.checkpoint_record(memory.architecture_path(model_path.rsplit("Qwen3-", 1)[1]))
    path = Path(model_path)
    return memory.checkpoint_record(path if path.is_absolute() else REPO / path)


def synthesize(config_path: Path, workdir: Path, n_boot: int | None, limit: int | None, seed: int) -> dict:
    """Write results/ of a study as if every job had run; return what the stages need."""
    from bitbudget import artifacts
    from bitbudget.config import validate_config
    from bitbudget.study import build_study

    config = validate_config(yaml.safe_load(config_path.read_text()))
    if n_boot:
        config["analysis"]["bootstrap_samples"] = n_boot
    study = build_study(config)
    rng = np.random.default_rng(seed)
    scenarios = pd.DataFrame(study.scenarios)
    if limit and limit < len(scenarios):
        scenarios = scenarios.iloc[np.sort(rng.choice(len(scenarios), limit, replace=False))]
    grades, generations = {}, {}
    for grade_id in scenarios["grade_id"].unique():
        grade = study.grades[grade_id]
        gen = grade.generation
        dataset = config["datasets"][gen.dataset]
        bits = config["weight_formats"][gen.checkpoint.weights]["bits"]
        record = qwen3_record(config["models"][gen.checkpoint.model]["path"])
        table = synthetic_grades(dataset["kind"], n_questions(dataset), gen.samples_per_question, gen.budgets,
                                 np.log(record["param_counts"]["total"] * bits), rng)
        path = workdir / grade.output
        path.parent.mkdir(parents=True, exist_ok=True)
        artifacts.write_parquet(path, table)
        artifacts.write_meta(path, grade.key)
        gen_path = workdir / gen.output
        gen_path.parent.mkdir(parents=True, exist_ok=True)
        artifacts.write_json(artifacts.meta_path(gen_path), {
            "key": gen.key, "questions": n_questions(dataset), "generated": n_questions(dataset), "reforked": 0,
            "counters": {"decode_tokens": 0, "fork_tokens": 0}, "seconds": 0.0, "model": record})
        gen_path.write_bytes(b"")
        grades[grade_id], generations[gen.gen_id] = grade.output, gen.output
    table_path = workdir / "results" / "scenarios.parquet"
    artifacts.write_parquet(table_path, scenarios)
    artifacts.write_meta(table_path, {"scenarios": sorted(scenarios["scenario_id"])})
    spec = {"grades": grades, "generations": generations,
            "weight_formats": config["weight_formats"], "kv_strategies": config["kv_strategies"],
            "max_answer_tokens": config["sampling"]["max_answer_tokens"], "analysis": config["analysis"]}
    return {"config": config, "spec": spec, "n_scenarios": len(scenarios)}


def synthetic_grades(kind: str, questions: int, samples: int, budgets, size: float, rng) -> pd.DataFrame:
    """A grades table: accuracy rises with log(parameters x bits) and log(budget), per-question
    difficulty; wrong answers spread over a few values so majority votes are contested."""
    budgets = np.asarray(sorted(budgets))
    difficulty = rng.normal(0, 1.5, questions)
    skill = 0.3 * (size - 22) + 0.8 * np.log(budgets / budgets.min())
    p = 1 / (1 + np.exp(difficulty[:, None] - skill[None, :]))  # [Q, budgets]
    shape = (questions, samples, len(budgets))
    correct = rng.random(shape) < p[:, None, :]
    if kind == "choice":
        gold = LETTERS[rng.integers(0, 4, questions)]
        wrong = LETTERS[(np.searchsorted(LETTERS, gold)[:, None, None] + rng.integers(1, 4, shape)) % 4]
        reference = gold
    else:
        gold = rng.integers(0, 1000, questions)
        wrong = (gold[:, None, None] + rng.integers(1, WRONG_INTEGERS + 1, shape)).astype(str)
        reference = gold.astype(str)
    answers = np.where(correct, np.broadcast_to(reference[:, None, None], shape), wrong).astype(object)
    answers[~correct & (rng.random(shape) < NO_ANSWER_RATE)] = None
    q, s, b = np.meshgrid(np.arange(questions), np.arange(samples), np.arange(len(budgets)), indexing="ij")
    thinking = np.minimum(budgets[b], rng.integers(budgets.min() // 2, budgets.max() * 2, shape))
    return pd.DataFrame({
        "question_id": np.char.add("q", q.ravel().astype(str)),
        "sample_idx": s.ravel(), "token_budget": budgets[b].ravel(),
        "reference_answer": reference[q].ravel(), "choices": "null", "difficulty": difficulty[q].ravel(),
        "prompt_tokens": 120, "thinking_tokens": thinking.ravel(), "answer_tokens": 24,
        "forced": (thinking >= budgets[b]).ravel(), "text": "synthetic trace",
        "extracted_answer": answers.ravel(), "correct": correct.ravel(), "grading_timed_out": False,
    })


class Files(list):
    """A Snakemake-style list of paths that also answers by name."""

    def __init__(self, **named):
        super().__init__(v for vs in named.values() for v in (vs if isinstance(vs, list) else [vs]))
        self.__dict__.update(named)


def stage_job(stage: str, workdir: Path, study: dict):
    """The `snakemake` object the stage's script reads, as the rule files declare it."""
    from types import SimpleNamespace

    spec, config = study["spec"], study["config"]
    agg = {"scenarios": "results/aggregate/scenarios.parquet", "questions": "results/aggregate/questions.parquet"}
    fit = {"frontier": "results/fit/frontier.parquet", "threshold": "results/fit/threshold.json",
           "findings": "results/fit/findings.json"}
    for path in [*agg.values(), *fit.values(), "report/index.html"]:
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
    grades, generations = sorted(spec["grades"].values()), sorted(spec["generations"].values())
    jobs = {
        "aggregate": (Files(scenarios="results/scenarios.parquet", grades=grades, generations=generations),
                      Files(**agg), {"spec": spec}),
        "fit": (Files(**agg), Files(**fit), {"analysis": config["analysis"]}),
        "report": (Files(**agg, **fit, grades=grades, generations=generations), Files(out="report/index.html"),
                   {"config": config, "benchmarks": []}),
    }
    inputs, outputs, params = jobs[stage]
    return SimpleNamespace(input=inputs, output=outputs, params=SimpleNamespace(**params), log=[],
                           rule=stage, wildcards=SimpleNamespace(), threads=1)


def run_stage(stage: str, workdir: Path, study_file: Path) -> None:
    """In a child process: run workflow/scripts/<stage>.py in the study's directory."""
    import os
    import pickle

    study = pickle.loads(study_file.read_bytes())
    os.chdir(workdir)
    runpy.run_path(str(REPO / "workflow" / "scripts" / f"{stage}.py"),
                   init_globals={"snakemake": stage_job(stage, workdir, study)})
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(config_path: Path, n_boot: int | None, limit: int | None, seed: int) -> dict:
    import pickle

    with tempfile.TemporaryDirectory(prefix="analysis-scale-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        study = synthesize(config_path, workdir, n_boot, limit, seed)
        synth_s = time.perf_counter() - started
        study_file = workdir / "study.pickle"
        study_file.write_bytes(pickle.dumps(study))
        out = {"config": str(config_path.relative_to(REPO)), "scenarios": study["n_scenarios"],
               "bootstrap": study["config"]["analysis"]["bootstrap_samples"], "synthesize_s": synth_s}
        for stage in STAGES:
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--stage", stage, "--workdir", str(workdir),
                                   "--study", str(study_file)], capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"{stage} failed:\n{proc.stderr[-4000:]}")
            out[f"{stage}_s"] = time.perf_counter() - started
            out[f"{stage}_rss_mb"] = json.loads(proc.stdout.strip().splitlines()[-1])["rss_mb"]
        out["report_mb"] = (workdir / "report" / "index.html").stat().st_size / 2**20
    out["analysis_s"] = sum(out[f"{stage}_s"] for stage in STAGES)
    out["per_scenario_ms"] = 1000 * out["analysis_s"] / out["scenarios"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "config" / "paper.yaml")
    parser.add_argument("--baseline", type=Path, default=REPO / "config" / "config.yaml",
                        help="the study whose per-scenario cost the ratio divides by")
    parser.add_argument("--bootstrap", type=int, default=None, help="replicates (default: the config's)")
    parser.add_argument("--scenarios", type=int, default=None, help="a random subset of this many scenarios")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--study", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        run_stage(args.stage, args.workdir, args.study)
        return 0
    results = [measure(args.baseline.resolve(), None, None, args.seed),
               measure(args.config.resolve(), args.bootstrap, args.scenarios, args.seed)]
    for r in results:
        print(f"{r['config']}: {r['scenarios']} scenarios, {r['bootstrap']} bootstrap replicates")
        for stage in STAGES:
            print(f"  {stage:<9} {r[f'{stage}_s']:7.1f} s   peak RSS {r[f'{stage}_rss_mb']:6.0f} MB")
        print(f"  total     {r['analysis_s']:7.1f} s   {r['per_scenario_ms']:.1f} ms per scenario; "
              f"report {r['report_mb']:.1f} MB")
    base, study = results
    print(f"per-scenario cost, {study['config']} / {base['config']}: "
          f"{study['per_scenario_ms'] / base['per_scenario_ms']:.2f}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
