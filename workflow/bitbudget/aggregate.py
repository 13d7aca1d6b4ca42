"""The aggregate stage: accuracy with intervals per scenario, placed at its memory cost."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

import pandas as pd

from bitbudget import memory
from bitbudget.artifacts import read_parquet_verified
from bitbudget.stats import summarize_scenario

log = logging.getLogger(__name__)

KV_DTYPE_BYTES = 2  # the paper charges a 16-bit KV cache (GPU serving dtype)


@lru_cache(maxsize=None)
def architecture(path: str) -> dict:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path).to_dict()


def weight_gib(checkpoint: dict, weight_format: dict) -> float:
    """Weights from the checkpoint's real parameter counts (quantization.json when quantized)."""
    quant_file = Path(checkpoint["path"]) / "quantization.json"
    if checkpoint["quantized"] and quant_file.exists():
        counts = json.loads(quant_file.read_text())
        n_quantized, n_unquantized = counts["n_quantized_params"], counts["n_unquantized_params"]
    else:
        counts = memory.param_counts(architecture(checkpoint["path"]))
        n_quantized, n_unquantized = counts["quantized"], counts["unquantized"]
    return memory.to_gib(memory.weight_bytes_from_counts(
        n_quantized, n_unquantized, weight_format["bits"], weight_format.get("group_size", 128)
    ))


def kv_gib_per_sequence(checkpoint: dict, strategy: dict, tokens: int) -> float:
    return memory.to_gib(memory.kv_bytes(architecture(checkpoint["path"]), strategy, tokens, KV_DTYPE_BYTES))


def aggregate(scenarios: pd.DataFrame, spec: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    grades = {grade_id: read_parquet_verified(path) for grade_id, path in spec["grades"].items()}
    analysis = spec["analysis"]
    rows, questions = [], []
    for scenario in scenarios.to_dict("records"):
        graded = grades[scenario["grade_id"]]
        metric = "pass@1" if scenario["G"] == 1 else "maj@G"
        summary, per_question = summarize_scenario(
            graded, metric=metric, g=scenario["G"], n_boot=analysis["bootstrap_samples"],
            seed=analysis["seed"], token_budget=scenario["token_budget"],
        )
        checkpoint = spec["checkpoints"][scenario["ckpt_id"]]
        at_budget = graded[graded["token_budget"] == scenario["token_budget"]]
        context_tokens = int(round(at_budget["prompt_tokens"].mean())) + scenario["token_budget"] + spec["max_answer_tokens"]
        kv_per_seq = kv_gib_per_sequence(checkpoint, spec["kv_strategies"][scenario["kv"]], context_tokens)
        weights = weight_gib(checkpoint, spec["weight_formats"][scenario["weights"]])
        rows.append({
            **{k: v for k, v in scenario.items() if k != "grids"},
            "grids": ",".join(scenario["grids"]),
            "n_params": memory.param_counts(architecture(checkpoint["path"]))["total"],
            "metric": metric,
            "accuracy": summary["accuracy"],
            "ci_low": summary["ci_low"],
            "ci_high": summary["ci_high"],
            "n_questions": summary["n_questions"],
            "mean_thinking_tokens": float(at_budget["thinking_tokens"].mean()),
            "forced_fraction": float(at_budget["forced"].mean()),
            "context_tokens": context_tokens,
            "weight_gib": weights,
            "kv_gib_per_seq": kv_per_seq,
            "kv_gib": scenario["G"] * kv_per_seq,
            "total_gib": weights + scenario["G"] * kv_per_seq,
        })
        questions.append(per_question.assign(scenario_id=scenario["scenario_id"]))
    return pd.DataFrame(rows), pd.concat(questions, ignore_index=True)
