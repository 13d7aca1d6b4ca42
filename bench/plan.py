"""Time `snakemake -n` (parse + DAG) on the paper grid and on synthetic 10,000-scenario grids.

    python bench/plan.py [--repeat 1]

Goals on 2 CPU cores: the paper grid planned in < 10 s, 10,000 scenarios in < 60 s.
Synthetic grids (written to a temporary directory, hub-style model paths: nothing is read):
  10k-pooled: 10 models x 5 weight formats x 2 datasets x 10 budgets x 10 G
              = 10,000 scenarios in 100 generate jobs (budgets nested, G pooled);
  10k-kv:     10 models x 5 weight formats x 10 KV strategies x 2 datasets x 10 budgets, G = 1
              = 10,000 scenarios in 1,000 generate jobs (the worst case for the DAG).
Each line: variant, scenarios, jobs Snakemake plans, wall seconds of `snakemake -n`.
"""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

GOALS = {"paper": 10.0, "10k-pooled": 60.0, "10k-kv": 60.0}


def synthetic_config(kv_heavy: bool) -> dict:
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["models"] = {
        f"m{i}": {"path": f"Org/Model-{i + 1}B", "revision": None,
                  "resources": {"gpu": 1, "gpu_model": "a100", "mem_mb": 32000, "runtime": 600}}
        for i in range(10)
    }
    formats = {"bf16": {"bits": 16}}
    for bits in (8, 4, 3, 2):
        formats[f"rtn{bits}"] = {"bits": bits, "method": "rtn", "group_size": 128}
    config["weight_formats"] = formats
    budgets = [1000 * (2 + 3 * i) for i in range(10)]
    if kv_heavy:
        grid = {"models": list(config["models"]), "weight_formats": list(formats),
                "kv_strategies": list(config["kv_strategies"]), "datasets": ["aime2025", "gpqa_diamond"],
                "token_budgets": budgets, "parallel_samples": [1], "samples_per_question": 8,
                "engine": {"name": "hf", "batch_size": 8}}
    else:
        grid = {"models": list(config["models"]), "weight_formats": list(formats), "kv_strategies": ["full"],
                "datasets": ["aime2025", "gpqa_diamond"], "token_budgets": budgets,
                "parallel_samples": [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]}
    config["grids"] = {"synthetic": grid}
    return config


def scenarios_of(config_path: Path) -> int:
    from bitbudget.preflight import load_study_config
    from bitbudget.study import build_study

    return len(build_study(load_study_config(config_path)).scenarios)


def time_dry_run(config_path: Path, workdir: Path) -> tuple[float, int]:
    command = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(config_path), "--cores", "2"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"snakemake -n failed on {config_path}:\n{result.stderr[-3000:]}")
    match = re.search(r"^total\s+(\d+)$", result.stdout + result.stderr, re.MULTILINE)
    return seconds, int(match.group(1)) if match else -1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; the best time is reported")
    parser.add_argument("--variants", nargs="*", default=list(GOALS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bitbudget-bench-plan-") as tmp:
        tmp = Path(tmp)
        configs = {"paper": REPO / "config" / "paper.yaml"}
        for name, kv_heavy in (("10k-pooled", False), ("10k-kv", True)):
            path = tmp / f"{name}.yaml"
            path.write_text(yaml.safe_dump(synthetic_config(kv_heavy), sort_keys=False))
            configs[name] = path
        print(f"{'variant':<11} {'scenarios':>9} {'jobs':>6} {'snakemake -n s':>15} {'goal s':>7}")
        failed = False
        for name in args.variants:
            times = []
            for i in range(args.repeat):
                seconds, jobs = time_dry_run(configs[name], tmp / f"work-{name}-{i}")
                times.append(seconds)
            best = min(times)
            failed |= best > GOALS[name]
            print(f"{name:<11} {scenarios_of(configs[name]):>9} {jobs:>6} {best:>15.1f} {GOALS[name]:>7.0f}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
