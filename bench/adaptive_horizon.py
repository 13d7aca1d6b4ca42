"""Design measurement: adaptive sampling that stops per (generation, token budget).

The pipeline's rounds stop whole generations (bench/adaptive.py measures them). Every sample of
a generation thinks to its largest budget, so a generation kept open by one contested budget
pays the whole horizon for every sample it adds. This script measures the alternative on the
same simulated paper grid: after each round the curtailment rule may close a generation's
largest open budgets (each closed budget keeps its estimate from the samples drawn so far); the
samples of the next round think only to the largest budget still open. Closing is top-down
(closing a low budget while a higher one stays open saves nothing: thinking passes through it).

Per generation and round the rule takes the most top budgets it can close with a predictive
probability of a changed decision below gamma (the budget count by bisection), then, as
:func:`bitbudget.adaptive.jointly_stopping`, shares one error budget among all generations:
while closing everything chosen together would change a decision with probability gamma or
more, the most doubtful generation closes one budget fewer. The predictive, draws, bounds and
decisions are :mod:`bitbudget.adaptive`'s.

    python bench/adaptive_horizon.py --seeds 3                        # both overlays
    python bench/adaptive_horizon.py --seeds 3 --predictive planted   # a calibrated predictive
    python bench/adaptive_horizon.py --seeds 3 --gamma 0.02           # a smaller error budget

The last line, as bench/adaptive.py's: ``tokens adaptive/full R, frontier identical F,
bracket and verdicts identical V``.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_adaptive", REPO / "bench" / "adaptive.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

from bitbudget import adaptive  # noqa: E402  (bench_adaptive puts workflow/ on the path)


class HorizonAnalysis(bench.Analysis):
    """Scenario tables whose budgets of one generation may rest on different sample counts."""

    def budget_table(self, drawn: dict[str, dict[int, int]]):
        """``drawn``: gen_id -> {budget: samples per question}."""
        scen = self.base.copy()
        keys = list(zip(scen["gen_id"], scen["token_budget"], scen["G"]))
        scen["accuracy"] = [self.budget_accuracy(g, t, drawn[g][t])[k] for g, t, k in keys]
        scen["n_samples"] = [drawn[g][t] for g, t, _ in keys]
        scen["n_questions"] = scen["gen_id"].map(self.questions)
        return scen


class HorizonRound:
    """One round's closing decision for the open budgets of every open generation."""

    def __init__(self, analysis, scen, drawn, open_budgets, decisions, rule, seed, round_index, predictive):
        self.decisions, self.gamma, self.level = decisions, rule.gamma, rule.confidence
        rng = np.random.default_rng([seed, round_index])
        gen_of, budget_of, g_of = (scen[c].to_numpy() for c in ("gen_id", "token_budget", "G"))
        self.current = scen["accuracy"].to_numpy(dtype=float)
        self.full = np.repeat(self.current[:, None], adaptive.CURTAIL_DRAWS, axis=1)
        self.open_budgets, self.rows = open_budgets, {}
        for gen_id in sorted(open_budgets):
            budgets = open_budgets[gen_id]
            correct, answers, all_budgets, _ = analysis.draws.generations[gen_id]
            n = drawn[gen_id][budgets[0]]  # every open budget has drawn the same samples
            samples = {b: (correct[:, :n, all_budgets.index(b)], answers[:, :n, all_budgets.index(b)]) for b in budgets}
            pools = predictive(gen_id, samples, analysis.maximum[gen_id], adaptive.CURTAIL_DRAWS, rng)
            self.rows[gen_id] = {b: np.flatnonzero((gen_of == gen_id) & (budget_of == b)) for b in budgets}
            rows = np.concatenate(list(self.rows[gen_id].values()))
            self.full[rows] = adaptive.predicted_rows(pools, budget_of[rows], g_of[rows])
        self.reference = decisions.outcomes(self.full)

    def change(self, closing: dict[str, int]) -> float:
        """Predictive probability that closing the top ``closing[gen_id]`` open budgets of each
        generation changes some decision of the full design."""
        now = self.full.copy()
        for gen_id, k in closing.items():
            for b in self.open_budgets[gen_id][len(self.open_budgets[gen_id]) - k:]:
                now[self.rows[gen_id][b]] = self.current[self.rows[gen_id][b], None]
        return float(self.decisions.differs(now, self.reference).mean())

    def _below_gamma(self, p: float) -> bool:
        return adaptive.monte_carlo_upper(p, adaptive.CURTAIL_DRAWS, self.level) < self.gamma

    def _own(self, gen_id: str) -> tuple[int, float]:
        """The most top budgets this generation alone may close, and its change probability."""
        top = len(self.open_budgets[gen_id])
        p = self.change({gen_id: top})
        if self._below_gamma(p):
            return top, p
        best, low, high = (0, 1.0), 1, top - 1
        while low <= high:
            mid = (low + high) // 2
            p = self.change({gen_id: mid})
            if self._below_gamma(p):
                best, low = (mid, p), mid + 1
            else:
                high = mid - 1
        return best

    def closing(self) -> dict[str, int]:
        """gen_id -> top open budgets to close, sharing one error budget."""
        own = {g: self._own(g) for g in self.open_budgets}
        closing = {g: k for g, (k, _) in own.items() if k}
        while closing and not self._below_gamma(self.change(closing)):
            worst = max(closing, key=lambda g: (own[g][1], g))
            closing[worst] -= 1
            if closing[worst]:
                own[worst] = (closing[worst], self.change({worst: closing[worst]}))
            else:
                del closing[worst]
        return closing


def horizon_run(analysis: HorizonAnalysis, predictive) -> tuple[dict, int, list[int]]:
    """Rounds until no budget is open: samples per (generation, budget), decode tokens, open per round."""
    config = analysis.config
    rule = adaptive.AdaptiveRule.from_config(config["sampling"], max(analysis.maximum.values()))
    budgets = {g: list(analysis.draws.generations[g][2]) for g in analysis.maximum}
    first = rule.rounds[0]
    drawn = {g: {b: min(first, analysis.maximum[g]) for b in budgets[g]} for g in budgets}
    open_budgets = {g: list(b) for g, b in budgets.items()}
    tokens = sum(analysis.questions[g] * drawn[g][b[0]] * max(b) for g, b in budgets.items())
    decisions, log = None, []
    while open_budgets:
        scen = analysis.budget_table(drawn)
        decisions = decisions or adaptive.Decisions(scen, config["analysis"])
        closing = HorizonRound(analysis, scen, drawn, open_budgets, decisions, rule, config["sampling"]["seed"],
                               len(log) + 1, predictive).closing()
        for gen_id in list(open_budgets):
            still = open_budgets[gen_id][: len(open_budgets[gen_id]) - closing.get(gen_id, 0)]
            n = drawn[gen_id][budgets[gen_id][0]]
            if not still or n >= analysis.maximum[gen_id]:
                del open_budgets[gen_id]
                continue
            more = next(m for m in adaptive.rounds(rule.initial, rule.step, analysis.maximum[gen_id]) if m > n)
            drawn[gen_id].update({b: more for b in still})
            tokens += analysis.questions[gen_id] * (more - n) * max(still)
            open_budgets[gen_id] = still
        log.append(len(open_budgets))
    return drawn, tokens, log


def run(overlay: str, seed: int, workdir: Path, predictive: str, settings: dict) -> dict:
    from bitbudget.study import build_study

    started = time.perf_counter()
    study = build_study(bench.load_config(overlay, seed, settings))
    draws = bench.Draws(study, workdir)
    analysis = HorizonAnalysis(study, draws)
    full = analysis.decisions(analysis.table(dict(analysis.maximum)))
    drawn, tokens, log = horizon_run(analysis, bench.PlantedPredictive(draws) if predictive == "planted"
                                     else adaptive.jeffreys_predictive)
    adapt = analysis.decisions(analysis.budget_table(drawn))
    return {"tokens": tokens / analysis.tokens(dict(analysis.maximum)), "open": log,
            "frontier_identical": full["frontier"] == adapt["frontier"],
            "bracket_verdicts_identical": full["bracket"] == adapt["bracket"] and full["verdicts"] == adapt["verdicts"],
            "differs": differences(full, adapt), "seconds": time.perf_counter() - started}


def differences(full: dict, adapt: dict) -> list[str]:
    """What the adaptive run decides differently: scenarios in or out of the frontier, then
    each bracket or finding verdict that differs (full -> adaptive)."""
    out = [f"frontier differs at {sorted(full['frontier'] ^ adapt['frontier'])}"] * (full["frontier"] != adapt["frontier"])
    pairs = zip(full["bracket"] + full["verdicts"], adapt["bracket"] + adapt["verdicts"])
    return out + [f"{a} -> {b}" for a, b in pairs if a != b]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=bench.DEFAULT_SEEDS)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--overlays", nargs="+", default=list(bench.OVERLAYS))
    parser.add_argument("--predictive", choices=["jeffreys", "planted"], default="jeffreys")
    parser.add_argument("--gamma", type=float, help="sampling.adaptive.curtail_gamma (default: the schema's)")
    args = parser.parse_args(argv)
    settings = {} if args.gamma is None else {"curtail_gamma": args.gamma}
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-horizon-") as tmp:
        for overlay in args.overlays:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                r = run(overlay, seed, Path(tmp), args.predictive, settings)
                results.append(r)
                print(f"{overlay} seed {seed}: tokens {r['tokens']:.2f}, open per round {r['open']}, frontier identical "
                      f"{r['frontier_identical']}, bracket and verdicts identical {r['bracket_verdicts_identical']} "
                      f"({r['seconds']:.0f} s)" + "".join(f"; {d}" for d in r["differs"]), flush=True)
    print(f"tokens adaptive/full {np.mean([r['tokens'] for r in results]):.2f}, "
          f"frontier identical {np.mean([r['frontier_identical'] for r in results]):.2f}, "
          f"bracket and verdicts identical {np.mean([r['bracket_verdicts_identical'] for r in results]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
