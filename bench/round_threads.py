"""How much faster an adaptive round draws its certification's completions on several threads.

Builds one round of a synthetic study (generations x budgets x questions, samples so far drawn
at random accuracies), then draws a certification's fresh completions under the Rasch predictive
(`bitbudget.adaptive.closing.predict`, the round's costliest step) on one thread and on
``--threads`` threads, side by side. Prints both times, their ratio, and whether the completions
are identical (they must be: each block draws from its own stream). The thread count is the
runtime setting `resources.adaptive_round.threads`.

    python bench/round_threads.py                       # 2 threads, 24 generations
    python bench/round_threads.py --threads 8 --generations 86
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from bitbudget.adaptive.closing import certification_draws, predict  # noqa: E402
from bitbudget.adaptive.predictive import rasch_predictive  # noqa: E402
from bitbudget.adaptive.schedule import AdaptiveRule  # noqa: E402
from bitbudget.schema import schema_defaults  # noqa: E402

BUDGETS = (2000, 6000, 10000, 20000)
QUESTIONS = 198  # GPQA Diamond
SO_FAR, MAXIMUM = 4, 32  # the paper main grid's first round (config/paper.yaml: 32 samples per question)


def synthetic_round(generations: int, seed: int = 0):
    """The scenario rows (one per generation and budget, pass@1) and the samples so far."""
    rng = np.random.default_rng(seed)
    gens = [f"g{i}" for i in range(generations)]
    scen = pd.DataFrame([{"gen_id": g, "token_budget": b, "G": 1} for g in gens for b in BUDGETS])
    difficulty = rng.normal(0, 1.5, QUESTIONS)
    samples = {}
    for g in gens:
        ability = rng.normal(0.5, 1.0)
        solve = 1 / (1 + np.exp(-(ability - difficulty)))
        correct = rng.random((QUESTIONS, SO_FAR)) < solve[:, None]
        samples[g] = {b: (correct, np.where(correct, "right", "wrong").astype(object)) for b in BUDGETS}
    return gens, scen, samples


def timed(threads: int, gens, scen, samples, draws: int) -> tuple[float, dict]:
    draw = rasch_predictive(samples, dict.fromkeys(gens, "gpqa"))
    started = time.perf_counter()
    out = predict(scen, samples, dict.fromkeys(gens, MAXIMUM), gens, draw, draws, (0, 1, 1), threads)
    return time.perf_counter() - started, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generations", type=int, default=24)
    args = parser.parse_args(argv)
    defaults = schema_defaults("sampling", "adaptive")
    rule = AdaptiveRule.from_config({"adaptive": defaults}, MAXIMUM)
    draws = certification_draws(rule.round_gamma(1), rule.confidence, rule.deciding_rounds)
    gens, scen, samples = synthetic_round(args.generations)
    one_s, one = timed(1, gens, scen, samples, draws)
    many_s, many = timed(args.threads, gens, scen, samples, draws)
    same = all(np.array_equal(a[2], b[2]) for g in gens for a, b in zip(one[g], many[g]))
    print(f"{args.generations} generations x {len(BUDGETS)} budgets x {QUESTIONS} questions, {draws:,} completions "
          f"(a certification at the schema's defaults)")
    print(f"1 thread {one_s:.1f} s, {args.threads} threads {many_s:.1f} s: {one_s / many_s:.2f}x; "
          f"completions identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
