"""Accuracy table of the shipped tiny models: size x weight bits x thinking budget x kind.

    python resources/tiny_models/evaluate.py [--questions 40] [--samples 2] [--out table.json]

Held-out questions use seed 20251010 (training draws from its own random stream, seed 0),
sampling temperature 0.6, top-p 0.95, top-k 20, s1-style forced answer at each budget.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from bitbudget import quantize, tasks, tinymodels

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["tiny-s", "tiny-m", "tiny-l"])
    ap.add_argument("--bits", nargs="+", type=int, default=[16, 8, 4, 3])
    ap.add_argument("--budgets", nargs="+", type=int, default=[32, 64, 128, 256])
    ap.add_argument("--group-size", type=int, default=32)
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20251010)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    train = json.loads((HERE / args.models[0] / "training.json").read_text())
    qs = {k: tasks.make_synthetic_questions(k, args.questions, args.seed, *train["task"]["difficulty"][k])
          for k in train["task"]["kinds"]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for bits in args.bits:
                d = Path(tmp) / f"{name}-{bits}"
                quantize.quantize_checkpoint(HERE / name, d, bits=bits, group_size=args.group_size)
                for kind, questions in qs.items():
                    t0 = time.time()
                    r = tinymodels.evaluate_budget_forcing(d, questions, args.budgets, n_samples=args.samples,
                                                           seed=args.seed)
                    rows.append({"model": name, "bits": bits, "kind": kind, **r, "wall_s": round(time.time() - t0, 1)})
                    acc = " ".join(f"{b}:{a:.2f}" for b, a in r["accuracy"].items())
                    print(f"{name:7s} {bits:2d}-bit {kind:8s} {acc}  (well-formed "
                          f"{min(r['well_formed'].values()):.2f}, {rows[-1]['wall_s']}s)", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
