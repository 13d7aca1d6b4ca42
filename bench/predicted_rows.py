"""How much faster a round turns predictive pools into scenario accuracies with every G of a
budget voted at once.

Draws one block of predictive completions (`bitbudget.adaptive.predictive.predictive_pools`,
500 draws) for each budget of a GPQA-sized generation (198 questions, 32 samples per question,
4 drawn so far) and computes the accuracy of every scenario row (the paper main grid's G of 1,
3, 4, 6, 8, 12 and 16 at each budget) twice, side by side: row by row
(`predicted_accuracy`, one majority vote over the pools per row, as rounds did before) and with
`predicted_rows` (one vote per budget for all its G). Prints both times, their ratio, and
whether the accuracies are identical (they must be). The signature memo of
`bitbudget.stats.maj_of_counts` is warmed first, as it is after a round's first generation.

    python bench/predicted_rows.py
    python bench/predicted_rows.py --budgets 4 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from bitbudget.adaptive.closing import DRAW_BLOCK  # noqa: E402
from bitbudget.adaptive.predictive import predicted_accuracy, predicted_rows, predictive_pools  # noqa: E402

QUESTIONS, SO_FAR, MAXIMUM = 198, 4, 32  # GPQA Diamond, the paper main grid's first round
GS = (1, 3, 4, 6, 8, 12, 16)  # config/paper.yaml's parallel_samples


def synthetic_pools(budgets: int, seed: int = 0) -> dict:
    """{budget: [draws, Q, K + 1]}: completions of 4 samples per question at random accuracies."""
    rng = np.random.default_rng(seed)
    out = {}
    for b in range(budgets):
        right = rng.binomial(SO_FAR, rng.uniform(0, 1, QUESTIONS))
        none = rng.binomial(SO_FAR - right, 0.2)
        other = rng.multinomial(SO_FAR - right - none, [0.5, 0.3, 0.2])
        pool = np.column_stack([right, none, other[:, 0], other[:, 1], other[:, 2]])
        out[2000 * (b + 1)] = predictive_pools(pool, MAXIMUM, DRAW_BLOCK, rng)
    return out


def row_by_row(pools: dict, budgets, gs) -> np.ndarray:
    return np.stack([predicted_accuracy(pools[b], g) for b, g in zip(budgets, gs)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each (the best is kept)")
    args = parser.parse_args(argv)
    pools = synthetic_pools(args.budgets)
    budgets = [b for b in pools for _ in GS]
    gs = [g for _ in pools for g in GS]
    predicted_rows(pools, budgets, gs)  # warm the signature memo
    times = {}
    for name, fn in (("row by row", row_by_row), ("per budget", predicted_rows)):
        best = np.inf
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = fn(pools, budgets, gs)
            best = min(best, time.perf_counter() - started)
        times[name] = (best, result)
    (old_s, old), (new_s, new) = times["row by row"], times["per budget"]
    print(f"{len(budgets)} rows x {DRAW_BLOCK} draws x {QUESTIONS} questions: row by row {old_s:.2f} s, "
          f"per budget {new_s:.2f} s: {old_s / new_s:.2f}x; accuracies identical: {np.array_equal(old, new)}")
    return 0 if np.array_equal(old, new) else 1


if __name__ == "__main__":
    raise SystemExit(main())
