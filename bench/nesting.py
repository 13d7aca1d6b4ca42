"""Budget nesting, measured: one HF run with all budgets vs one run per budget.

    python bench/nesting.py [--model resources/tiny_models/tiny-s] [--questions 8] [--samples 4]

Runs the HF engine (bitbudget.generate.write_generation + HFEngine) on a tiny model, on the
default study's arithmetic task, for two budget lists:
  default: the default study's budgets (32, 64, 128, 256);
  paper:   the paper's 2k..30k step 4k scaled onto 256 tokens (17, 51, ..., 256).
Each list is generated nested (one run, thinking once to the largest budget and forking a
forced answer at each smaller one) and per budget (one run per budget with only that budget,
as evaluation tools that run one configuration at a time do). Forcing as in the paper grid:
wait_extension on, so every sample thinks to its budget.

Counters come from the generation metadata: decode_tokens (one-token forward rows: thinking,
the fed suffix at the horizon, answers), fork_tokens (fork suffix forwards + fork answers),
prefill_tokens (prompts). "generated" = decode + fork - the forced-answer suffix tokens fed:
the suffix is a prompt-like insertion (prefix-cached prefill in vLLM), and with a
character-level tiny tokenizer it is ~25 tokens, a far larger share of a 17-256 token budget
than the ~10 Qwen3 tokens are of 2k-30k. Both ratios are printed; the last line is the
generated-token ratio on the paper's budget list (goal <= 0.30).

Without the model directory, a throwaway tiny model is trained into a temporary directory.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

PAPER_BUDGETS = [2000 + 4000 * i for i in range(8)]
SCALED_PAPER_BUDGETS = [round(b * 256 / 30000) for b in PAPER_BUDGETS]  # 17, 51, ..., 256
DEFAULT_BUDGETS = [32, 64, 128, 256]


def ensure_model(path: Path, tmp: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    from bitbudget.tinymodels import train_tiny_model

    out = tmp / "tiny-throwaway"
    print(f"{path} not found: training a throwaway tiny model into {out}", flush=True)
    train_tiny_model(out, hidden_size=64, num_layers=2, num_attention_heads=1, num_key_value_heads=1,
                     intermediate_size=128, steps=150, batch_size=16, learning_rate=3e-3, seed=0,
                     task={"kinds": ["integer"], "difficulty": {"integer": [4, 30]}, "truncated_fraction": 0.25})
    return out


def bench_config(model: Path, budgets: list[int], questions: int, samples: int) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["models"] = {"tiny": {"path": str(model)}}
    config["datasets"]["arith"]["synthetic"]["n_questions"] = questions
    config["datasets"] = {"arith": config["datasets"]["arith"]}
    config["sampling"]["samples_per_question"] = samples
    config["forcing"]["wait_extension"] = True
    config["engine"]["batch_size"] = questions * samples
    config["grids"] = {"bench": {"models": ["tiny"], "weight_formats": ["bf16"], "kv_strategies": ["full"],
                                 "datasets": ["arith"], "token_budgets": budgets, "parallel_samples": [1]}}
    return config


_RUNS = 0


def run(config: dict) -> dict:
    """One generation (all the config's budgets) with the HF engine; counters + suffix tokens fed."""
    from bitbudget.backends.hf import HFEngine
    from bitbudget.generate import write_generation
    from bitbudget.shards import read_shard
    from bitbudget.datasets import load_questions
    from bitbudget.study import build_study

    global _RUNS
    _RUNS += 1
    workdir = Path.cwd().parent / f"run-{_RUNS}"  # a fresh trace store: nothing is reused between runs
    workdir.mkdir()
    os.chdir(workdir)
    [gen] = build_study(config).generations.values()
    spec = gen.engine_spec()
    started = time.perf_counter()
    engine = HFEngine(spec)
    meta = write_generation(spec, gen.output, engine)
    seconds = time.perf_counter() - started
    forks = sum(len(sample["forks"]) for q in load_questions(spec.dataset)
                for sample in read_shard(gen.trace_dir, q["question_id"])["samples"])
    counters = dict(meta["counters"])
    counters["suffix_tokens"] = forks * len(engine.tokens.suffix)
    counters["seconds"] = seconds
    return counters


def totals(runs: list[dict]) -> dict:
    out = {k: sum(r[k] for r in runs) for k in ("decode_tokens", "fork_tokens", "prefill_tokens", "suffix_tokens", "seconds")}
    out["all"] = out["decode_tokens"] + out["fork_tokens"]
    out["generated"] = out["all"] - out["suffix_tokens"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "resources" / "tiny_models" / "tiny-s"))
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from snakemake.utils import validate

    from bitbudget.config import SCHEMA_PATH, validate_config

    with tempfile.TemporaryDirectory(prefix="bitbudget-bench-nesting-") as tmp:
        tmp = Path(tmp)
        model = ensure_model(Path(args.model).resolve(), tmp)
        (tmp / "run-0").mkdir()
        os.chdir(tmp / "run-0")  # each run gets its own results/ beside this one
        results = {}
        for name, budgets in (("default", DEFAULT_BUDGETS), ("paper", SCALED_PAPER_BUDGETS)):
            def config_for(b):
                config = bench_config(model, b, args.questions, args.samples)
                validate_config(config)
                validate(config, str(SCHEMA_PATH))
                return config

            nested = totals([run(config_for(budgets))])
            per_budget = totals([run(config_for([b])) for b in budgets])
            results[name] = (budgets, nested, per_budget)
        print(f"model {model.name}, {args.questions} questions x {args.samples} samples, wait_extension on")
        print(f"{'budgets':<8} {'mode':<10} {'decode':>8} {'fork':>7} {'suffix':>7} {'generated':>9} "
              f"{'prefill':>8} {'wall s':>7}")
        for name, (budgets, nested, per_budget) in results.items():
            for mode, t in (("nested", nested), ("per-budget", per_budget)):
                print(f"{name:<8} {mode:<10} {t['decode_tokens']:>8} {t['fork_tokens']:>7} {t['suffix_tokens']:>7} "
                      f"{t['generated']:>9} {t['prefill_tokens']:>8} {t['seconds']:>7.1f}")
            print(f"{name:<8} budgets {budgets}: ratio nested/per-budget, all decode+fork tokens "
                  f"{nested['all'] / per_budget['all']:.3f}, generated tokens "
                  f"{nested['generated'] / per_budget['generated']:.3f}, wall {nested['seconds'] / per_budget['seconds']:.3f}")
        _, nested, per_budget = results["paper"]
        print(f"nesting ratio (paper budgets, generated tokens): {nested['generated'] / per_budget['generated']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
