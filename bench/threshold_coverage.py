"""How often the threshold interval contains a known threshold, on synthetic studies.

    python bench/threshold_coverage.py [--seeds 10] [--boot 200] [--questions 60]

For each true threshold (GB) and two weight grids (3 and 7 weight formats over six model
sizes), ``bitbudget.threshold.synthetic_study`` makes a study whose better use of memory
switches from weights to tokens exactly at that size (a step), with binomial noise over
questions and samples; ``fit_threshold`` estimates it.  Printed per grid: coverage of the
interval (share of studies with ci_low <= truth <= ci_high), share of point estimates whose
bracketing sizes are the true grid cell, and the median interval width (ci_high / ci_low).
The last line is the overall coverage (goal >= the nominal 0.95).
"""

from __future__ import annotations

import argparse

import numpy as np

from bitbudget import threshold

TRUE_THRESHOLDS_GB = (1.4, 2.55, 3.0, 5.39, 7.0, 12.0)
GRIDS = {"3 formats": (4, 8, 16), "7 formats": (2, 3, 4, 5, 6, 8, 16)}


def run_one(true_gb: float, bits: tuple[int, ...], seed: int, n_boot: int, n_questions: int) -> dict:
    scen, ques = threshold.synthetic_study(threshold_gb=true_gb, seed=seed, sharpness=np.inf,
                                           n_questions=n_questions, bits=bits)
    sizes = np.sort(scen["weight_gib"].unique())
    cell = (sizes[sizes < true_gb].max(), sizes[sizes > true_gb].min())
    res = threshold.fit_threshold(scen, ques, n_boot=n_boot, seed=seed)
    if res["ci_low"] is None:
        return {"covered": False, "right_cell": False, "width": np.nan}
    return {
        "covered": res["ci_low"] <= true_gb <= res["ci_high"],
        "right_cell": tuple(res["bracket"]) == cell,
        "width": res["ci_high"] / res["ci_low"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--questions", type=int, default=60)
    args = ap.parse_args()
    covered_all = []
    for name, bits in GRIDS.items():
        runs = [run_one(t, bits, seed, args.boot, args.questions)
                for t in TRUE_THRESHOLDS_GB for seed in range(args.seeds)]
        covered = [r["covered"] for r in runs]
        covered_all += covered
        print(f"{name}: {len(runs)} studies, coverage {np.mean(covered):.3f}, "
              f"right cell {np.mean([r['right_cell'] for r in runs]):.3f}, "
              f"median width x{np.nanmedian([r['width'] for r in runs]):.2f}")
    print(f"coverage of the {threshold.KINDS['weights_vs_tokens']['title'].lower()} interval: "
          f"{np.mean(covered_all):.3f} (nominal 0.95)")


if __name__ == "__main__":
    main()
