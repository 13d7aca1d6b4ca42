"""Planted truths the analysis did not write: does the pipeline find them?

    python bench/referee.py                      # every surface (about 60)
    python bench/referee.py --positions 4 --seeds 1 --kinds paper   # a quick look

Each surface plants one switch at a position (GiB of effective size, the simulator's own
placement from ``simulation.parameters``): weights win below it and tokens above, majority votes
pay only above it (wrong answers concentrate on one distractor below), and KV eviction beats KV
quantization below it (quantization at least as good above). Positions cover every gap between
adjacent weight sizes of the grid and some grid sizes themselves; seeds draw other samples and
questions (every surface has its own seeds); overlay kinds are coefficient families:

* ``paper``: config/simulated.yaml's coefficients;
* ``contrary``: config/simulated-contrary.yaml's (eviction never pays: finding 4 fails anywhere);
* ``qwen3``: levels near the Qwen3 Technical Report's thinking-mode figures (arXiv 2505.09388,
  approximate: AIME 2025 0.6B 15%, 1.7B 37%, 4B ~66%, 8B ~67%, 14B ~70%, 32B ~73%; GPQA-Diamond
  28%, 40%, ~56%, ~62%, ~64%, ~68%) with question-by-model interactions.

Per surface, in-process on a reduced grid (every model and weight format, 4 budgets, G 1/4/8,
8 samples; a 16-bit KV grid): the simulated engine draws every sample, the graders grade them,
``bitbudget.stats.summarize_cell`` and ``bitbudget.aggregate.memory_columns`` aggregate, and
``bitbudget.fit.fit_study`` fits the threshold and the findings.

The truth of each finding is its rule applied to the surface's noise-free accuracies (the
planted probabilities averaged over questions; maj@G exactly from the planted answer
distribution) by the referee of the tests (tests/referee/referee.py), never by the library.
Coverage: the pooled weights-vs-tokens interval holds the planted switch, in the analysis's
memory (between the analysis's sizes of the configurations on either side of it, or at the
configuration it sits on). A verdict is right when it equals the truth, wrong when it is
"holds" or "fails" and the truth is the other, undecided otherwise; findings whose truth is
itself "not enough data" or "not testable" are not counted.

Last line: ``coverage C, verdicts right R, wrong W, undecided U over N surfaces``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "workflow"), str(REPO)]

from bitbudget import memory  # noqa: E402
from bitbudget.aggregate import memory_columns  # noqa: E402
from bitbudget.backends.simulated import (SimulatedCheckpoint, SimulatedEngine, plant_question,  # noqa: E402
                                          write_metadata_checkpoint)
from bitbudget.config import validate_config  # noqa: E402
from bitbudget.datasets import load_questions  # noqa: E402
from bitbudget.specs import DatasetSpec  # noqa: E402
from bitbudget.fit import fit_study  # noqa: E402
from bitbudget.grading import grade_samples  # noqa: E402
from bitbudget.stats import summarize_cell  # noqa: E402
from bitbudget.study import build_study  # noqa: E402
from tests.referee import referee as rules  # noqa: E402  (the tests' second implementation of the rules)

BASE = "config/paper.yaml"
#: overlay kinds: the config files layered on the paper grid (qwen3: realistic levels with
#: question-by-model interactions, config/simulated-qwen3.yaml)
KINDS = {"paper": ("config/simulated.yaml",), "contrary": ("config/simulated-contrary.yaml",),
         "qwen3": ("config/simulated.yaml", "config/simulated-qwen3.yaml")}
GRID = {
    "main": {"token_budgets": [2000, 6000, 14000, 30000], "parallel_samples": [1, 4, 8]},
    "kv_cache": {"kv_strategies": ["full", "hqq4", "hqq2", "stream2k", "rkv4k"],
                 "token_budgets": [2000, 6000, 14000, 30000]},
}
SAMPLES = 8
BOOTSTRAP = 200
# a step at the planted position: configurations a few percent apart (8B-16bit and 14B-8bit)
# fall on either side of it, so the truth of each comparison is not a blend of both regimes
SHARPNESS = 300
GRADING_WORKERS = 2
ON_GRID = ("qwen3-1.7b", "bf16"), ("qwen3-4b", "gptq8"), ("qwen3-8b", "gptq8")
FINDING_IDS = (1, 2, 3, 4)


def merge(base: dict, overlay: dict) -> dict:
    """Later config files update earlier ones, recursively (Snakemake's --configfile rule)."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def surface_config(kind: str, position: float, seed: int) -> dict:
    config = {}
    for path in (BASE, *KINDS[kind]):
        config = merge(config, yaml.safe_load((REPO / path).read_text()))
    config = merge(config, {"grids": GRID, "sampling": {"samples_per_question": SAMPLES, "seed": seed},
                            "analysis": {"bootstrap_samples": BOOTSTRAP, "seed": seed}})
    config["grids"]["kv_cache"]["samples_per_question"] = SAMPLES
    simulation = config["simulation"]
    simulation.update(switch_gib=position, seed=seed, sharpness=SHARPNESS)
    simulation["kv"]["switch_gib"] = position
    for model in config["models"].values():
        model["path"] = str(REPO / model["path"])
    return validate_config(config)


# ----------------------------------------------------------------------------- the surfaces


def grid_sizes() -> list[tuple[float, str, str]]:
    """(effective GiB in the simulator's placement, model, weights) of the grid, smallest first."""
    config = surface_config("paper", 4.0, 0)
    parameters = config["simulation"]["parameters"]
    sizes = []
    for model in config["grids"]["main"]["models"]:
        for weights in config["grids"]["main"]["weight_formats"]:
            fmt = config["weight_formats"][weights]
            gib = SimulatedCheckpoint.from_format(parameters[model], fmt["bits"], fmt.get("group_size")).weight_gib
            sizes.append((gib, model, weights))
    return sorted(sizes)


def positions(limit: int | None) -> list[float]:
    """The geometric middle of every gap between adjacent sizes, then the on-grid sizes."""
    sizes = [s for s, _, _ in grid_sizes()]
    gaps = [math.sqrt(a * b) for a, b in zip(sizes, sizes[1:]) if b > a * 1.001]
    on_grid = [s for s, model, weights in grid_sizes() if (model, weights) in ON_GRID]
    chosen = gaps + on_grid
    if limit:
        chosen = [chosen[round(i * (len(chosen) - 1) / max(limit - 1, 1))] for i in range(limit)]
    return chosen


# ----------------------------------------------------------------------------- one surface


class Surfaced:
    """One planted surface run through engine, graders, aggregation and fit in-process."""

    def __init__(self, kind: str, position: float, seed: int, workdir: Path, graded: dict):
        self.kind, self.position, self.seed = kind, position, seed
        self.config = surface_config(kind, position, seed)
        self.study = build_study(self.config)
        self.workdir, self.graded = workdir, graded
        self.questions = {name: load_questions(DatasetSpec.from_config(dataset, name))
                          for name, dataset in self.config["datasets"].items()}

    def checkpoint_path(self, gen) -> str:
        ckpt = gen.checkpoint
        if not ckpt.quantized:
            return ckpt.path
        path = self.workdir / ckpt.ckpt_id
        if not path.exists():
            write_metadata_checkpoint(ckpt.source_path, path, ckpt.spec.format)
        return str(path)

    def draw(self, gen) -> tuple[SimulatedEngine, list[dict]]:
        """Every sample of one generation: [question][sample] records with their forks."""
        engine = SimulatedEngine(dataclasses.replace(gen.engine_spec(), checkpoint_path=self.checkpoint_path(gen),
                                                     trace_dir=str(self.workdir / gen.trace_id)))
        suffix = engine.key["forcing"]["forced_answer_suffix"]
        drawn = []
        for question in self.questions[gen.dataset]:
            records = [{"sample_idx": i, "think_ids": [], "closed_thinking": False, "answer_ids": [], "forks": {}}
                       for i in range(gen.samples_per_question)]
            engine._fill(question, records, list(gen.budgets), suffix, 0)
            drawn.append(records)
        return engine, drawn

    def answers(self, gen, engine, drawn) -> dict[int, list[list[str]]]:
        """{budget: [question][sample] text}: the forced-answer suffix and the answer (what the
        graders read after the end of thinking)."""
        suffix = engine.key["forcing"]["forced_answer_suffix"]
        return {b: [[suffix + r["forks"][str(b)] for r in records] for records in drawn] for b in gen.budgets}

    def grade(self, texts: dict[str, dict[int, list[list[str]]]]) -> None:
        """Grade every distinct (answer, reference) of the generations' ``texts`` not graded yet,
        with each dataset kind's grader, one call per kind."""
        todo: dict[str, set] = {}
        for gen_id, by_budget in texts.items():
            gen = self.study.generations[gen_id]
            kind = self.config["datasets"][gen.dataset]["kind"]
            golds = [str(q["answer"]) for q in self.questions[gen.dataset]]
            for rows in by_budget.values():
                todo.setdefault(kind, set()).update((t, g) for row, g in zip(rows, golds) for t in row)
        for kind, pairs in todo.items():
            pairs = sorted(pairs - set(self.graded))
            if not pairs:
                continue
            frame = pd.DataFrame({"text": [t for t, _ in pairs], "reference_answer": [g for _, g in pairs]})
            out = grade_samples(frame, kind, self.config["forcing"]["end_of_thinking"],
                                self.config["grading"]["timeout_s"], workers=GRADING_WORKERS)
            self.graded.update({p: (c, e) for p, c, e in zip(pairs, out["correct"], out["extracted_answer"])})

    def graded_arrays(self, gen, by_budget) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """{budget: (correct [Q, n], extracted answers [Q, n])}."""
        golds = [str(q["answer"]) for q in self.questions[gen.dataset]]
        result = {}
        for b, rows in by_budget.items():
            graded = [[self.graded[t, g] for t in row] for row, g in zip(rows, golds)]
            result[b] = (np.array([[c for c, _ in row] for row in graded], dtype=bool),
                         np.array([[e for _, e in row] for row in graded], dtype=object))
        return result

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(scenarios with drawn accuracies, per-question accuracies, scenarios with noise-free accuracies)."""
        base = pd.DataFrame(self.study.scenarios)
        records = {g.gen_id: memory.checkpoint_record(g.checkpoint.source_path) for g in self.study.generations.values()}
        spec = {"analysis": self.config["analysis"], "max_answer_tokens": self.config["sampling"]["max_answer_tokens"],
                "weight_formats": self.config["weight_formats"], "kv_strategies": self.config["kv_strategies"]}
        base = pd.concat([base, memory_columns(base, records, spec)], axis=1)
        drawn_acc, expected_acc, questions = {}, {}, []
        engines, texts = {}, {}
        for gen in self.study.generations.values():
            engine, drawn = self.draw(gen)
            engines[gen.gen_id], texts[gen.gen_id] = engine, self.answers(gen, engine, drawn)
        self.grade(texts)
        for gen in self.study.generations.values():
            engine, graded = engines[gen.gen_id], self.graded_arrays(gen, texts[gen.gen_id])
            rows = base[base["gen_id"] == gen.gen_id]
            qids = [q["question_id"] for q in self.questions[gen.dataset]]
            for b in gen.budgets:
                at = rows[rows["token_budget"] == b]
                gs = sorted(set(at["G"].astype(int)))
                summary = summarize_cell(*graded[b], gs, None)
                truth = expected_accuracy(engine, self.questions[gen.dataset], b, gs)
                for sid, g in zip(at["scenario_id"], at["G"].astype(int)):
                    drawn_acc[sid], expected_acc[sid] = summary[g]["accuracy"], truth[g]
                    questions.append(pd.DataFrame({"scenario_id": sid, "question_id": qids,
                                                   "accuracy": summary[g]["per_question"]}))
        scen = base.assign(accuracy=base["scenario_id"].map(drawn_acc))
        truth = base.assign(accuracy=base["scenario_id"].map(expected_acc))
        return scen, pd.concat(questions, ignore_index=True), truth


# ----------------------------------------------------------------------------- the truth


def expected_accuracy(engine: SimulatedEngine, questions: list[dict], budget: int, gs: list[int]) -> dict[int, float]:
    """Noise-free accuracy at ``budget``: pass@1 and maj@G of the planted answer distribution
    (right with p (1 - slip); wrong on the distractor with the distractor share, else on one of
    the other wrong values), averaged over questions."""
    kind, slip = engine.kind, engine.simulation["slip_probability"]
    share = engine.surface.distractor_share
    right, wrong = [], []
    for question in questions:
        planted = plant_question(question, kind, engine.simulation)
        r = engine.surface.probability(budget, planted.difficulty) * (1 - slip)
        others = [v for v in planted.alternatives if v != planted.distractor]
        right.append(r)
        wrong.append([(1 - r) * (share if others else 1.0)] + [(1 - r) * (1 - share) / len(others)] * len(others))
    width = max(len(w) for w in wrong)
    right = np.array(right)
    wrong = np.array([w + [0.0] * (width - len(w)) for w in wrong])
    return {g: float(np.mean(right if g == 1 else majority_credit(right, wrong, g))) for g in gs}


def majority_credit(right, wrong, g: int):
    """Expected credit of the right answer in a vote of ``g`` independent answers (a tie among
    t + 1 leading answers gives 1 / (t + 1)): the sum over its vote count k of
    P(k right) x P(every wrong value at most k votes, t of them exactly k) / (t + 1).
    ``right`` [Q] and ``wrong`` [Q, K] probabilities (scalars and lists work too)."""
    right, wrong = np.asarray(right, dtype=float), np.asarray(wrong, dtype=float)
    total = np.zeros(right.shape)
    for k in range(1, g + 1):
        rest = g - k
        # ways[..., s, t]: mass (multinomial weights p^x / x!) of s votes over the wrong values
        # seen so far, each at most k, t of them exactly k
        ways = np.zeros(right.shape + (rest + 1, g + 1))
        ways[..., 0, 0] = 1.0
        for i in range(wrong.shape[-1]):
            p = wrong[..., i][..., None, None]
            new = np.zeros_like(ways)
            for x in range(min(k, rest) + 1):
                term = p**x / math.factorial(x)
                if x == k:
                    new[..., x:, 1:] += term * ways[..., : rest + 1 - x, :-1]
                else:
                    new[..., x:, :] += term * ways[..., : rest + 1 - x, :]
            ways = new
        share = ways[..., rest, :] / np.arange(1, g + 2)
        total += math.factorial(g) * right**k / math.factorial(k) * share.sum(axis=-1)
    return total


def planted_interval(position: float, scen: pd.DataFrame, parameters: dict, formats: dict) -> tuple[float, float]:
    """The planted switch in the analysis's memory: (lo, hi) between the analysis's sizes of the
    configurations on either side of it (lo == hi: the configuration it sits on)."""
    cells = scen[(scen["kv_method"] == "full") & (scen["G"] == 1)][["model", "weights", "weight_gib"]].drop_duplicates()
    below, above, on = [], [], []
    for cell in cells.itertuples():
        fmt = formats[cell.weights]
        sim = SimulatedCheckpoint.from_format(parameters[cell.model], fmt["bits"], fmt.get("group_size")).weight_gib
        (on if abs(sim - position) <= 1e-9 * position else below if sim < position else above).append(cell.weight_gib)
    if on:
        return min(on), max(on)
    lo, hi = max(below, default=0.0), min(above, default=math.inf)
    return (min(lo, hi), max(lo, hi))


def score(kind: str, position: float, seed: int, workdir: Path, graded: dict) -> dict:
    run = Surfaced(kind, position, seed, workdir, graded)
    scen, questions, truth_table = run.tables()
    analysis = run.config["analysis"]
    _, thresholds, found = fit_study(scen, questions, analysis)
    truths = rules.findings(truth_table.to_dict("records"), analysis)
    fit = thresholds["weights_vs_tokens"]
    lo, hi = planted_interval(position, scen, run.config["simulation"]["parameters"], run.config["weight_formats"])
    covered = fit["ci_low"] is not None and fit["ci_low"] <= lo and hi <= fit["ci_high"]
    outcome = {"covered": bool(covered), "interval": (fit["ci_low"], fit["ci_high"]), "truth_gib": (lo, hi),
               "right": 0, "wrong": 0, "undecided": 0, "verdicts": []}
    for f in found:
        truth = truths[f["id"]]["status"]
        if truth not in (rules.HOLDS, rules.FAILS):
            continue
        verdict = f["status"]
        label = "right" if verdict == truth else "wrong" if verdict in (rules.HOLDS, rules.FAILS) else "undecided"
        outcome[label] += 1
        outcome["verdicts"].append((f["id"], verdict, truth, f.get("probability")))
    return outcome


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=None, help="how many planted positions (default: all)")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    args = ap.parse_args()
    started = time.perf_counter()
    graded: dict = {}
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, kind in enumerate(args.kinds):
            for p, position in enumerate(positions(args.positions)):
                for seed in range(p * args.seeds + 1000 * k, (p + 1) * args.seeds + 1000 * k):
                    t0 = time.perf_counter()
                    out = score(kind, position, seed, Path(tmp), graded)
                    outcomes.append(out)
                    verdicts = " ".join(f"F{i}:{v}/{t}" + (f"({p:.2f})" if p is not None else "")
                                        for i, v, t, p in out["verdicts"])
                    lo, hi = out["interval"]
                    print(f"{kind:8s} switch {position:7.3f} GiB seed {seed}: planted {out['truth_gib'][0]:.2f}-"
                          f"{out['truth_gib'][1]:.2f}, interval {lo}-{hi} {'covered' if out['covered'] else 'MISSED'}; "
                          f"{verdicts} [{time.perf_counter() - t0:.1f}s]", flush=True)
    judged = sum(o["right"] + o["wrong"] + o["undecided"] for o in outcomes)
    share = {k: sum(o[k] for o in outcomes) / max(judged, 1) for k in ("right", "wrong", "undecided")}
    print(f"{judged} verdicts judged over {len(outcomes)} surfaces in {time.perf_counter() - started:.0f}s")
    print(f"coverage {np.mean([o['covered'] for o in outcomes]):.3f}, verdicts right {share['right']:.3f}, "
          f"wrong {share['wrong']:.3f}, undecided {share['undecided']:.3f} over {len(outcomes)} surfaces")


if __name__ == "__main__":
    main()
