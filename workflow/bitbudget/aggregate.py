"""The aggregate stage: accuracy with intervals per scenario, placed at its memory cost."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from bitbudget import artifacts, memory
from bitbudget.artifacts import read_parquet_verified
from bitbudget.stats import summarize_scenario

log = logging.getLogger(__name__)

KV_DTYPE_BYTES = 2  # the paper charges a 16-bit KV cache (GPU serving dtype)


class MissingModelRecord(RuntimeError):
    """A generation's metadata lacks the model record the memory columns need."""


def model_records(generations: dict[str, str]) -> dict[str, dict]:
    """gen_id -> the model record (:func:`bitbudget.memory.checkpoint_record`) that the
    generate stage wrote into its ``samples.meta.json``: the analysis never opens a model."""
    records = {}
    for gen_id, path in generations.items():
        meta_file = artifacts.meta_path(path)
        record = json.loads(meta_file.read_text()).get("model")
        if not record:
            raise MissingModelRecord(
                f"{meta_file} has no model record (written by an older generate stage); "
                f"rerun `snakemake --forcerun {path}`: its shards are reused, nothing is regenerated")
        records[gen_id] = record
    return records


def memory_columns(scenarios: pd.DataFrame, records: dict[str, dict], spec: dict,
                   prompt_tokens: np.ndarray | None = None) -> pd.DataFrame:
    """weight_gib, kv_gib_per_seq, kv_gib (all G sequences) and total_gib of every scenario.

    Weights: :func:`bitbudget.memory.weight_bytes` of the recorded architecture, the function
    behind the paper's table. KV: the tokens of ``analysis.kv_tokens`` (the token budget, or
    ``prompt_tokens`` + budget + ``max_answer_tokens``), capped by eviction
    (:func:`bitbudget.memory.kv_bytes`).
    """
    kv_tokens = spec["analysis"]["kv_tokens"]
    budgets = scenarios["token_budget"].to_numpy(dtype=np.int64)
    prompts = np.zeros(len(scenarios)) if prompt_tokens is None else np.asarray(prompt_tokens)
    charged = memory.kv_charged_tokens(kv_tokens, budgets, prompts, spec["max_answer_tokens"])
    weight = np.empty(len(scenarios))
    kv_seq = np.empty(len(scenarios))
    keys = scenarios[["gen_id", "weights", "kv"]].astype(str)
    for (gen_id, weights, kv), rows in keys.groupby(["gen_id", "weights", "kv"], sort=False).indices.items():
        arch = records[gen_id]["architecture"]
        fmt = spec["weight_formats"][weights]
        weight[rows] = memory.to_gib(memory.weight_bytes(arch, fmt["bits"], fmt["group_size"]))
        kv_seq[rows] = memory.to_gib(memory.kv_bytes(
            arch, spec["kv_strategies"][kv], charged[rows], KV_DTYPE_BYTES, kv_tokens))
    G = scenarios["G"].to_numpy(dtype=float)
    return pd.DataFrame({
        "n_params": [records[g]["param_counts"]["total"] for g in scenarios["gen_id"]],
        "kv_tokens": charged.astype(np.int64),
        "weight_gib": weight, "kv_gib_per_seq": kv_seq, "kv_gib": G * kv_seq,
        "total_gib": weight + G * kv_seq,
    }, index=scenarios.index)


def aggregate(scenarios: pd.DataFrame, spec: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    grades = {grade_id: read_parquet_verified(path) for grade_id, path in spec["grades"].items()}
    records = model_records(spec["generations"])
    analysis = spec["analysis"]
    rows, questions = [], []
    for scenario in scenarios.to_dict("records"):
        graded = grades[scenario["grade_id"]]
        metric = "pass@1" if scenario["G"] == 1 else "maj@G"
        summary, per_question = summarize_scenario(
            graded, metric=metric, g=scenario["G"], n_boot=analysis["bootstrap_samples"],
            seed=analysis["seed"], token_budget=scenario["token_budget"],
        )
        at_budget = graded[graded["token_budget"] == scenario["token_budget"]]
        prompt_tokens = float(at_budget["prompt_tokens"].mean())
        rows.append({
            **{k: v for k, v in scenario.items() if k != "grids"},
            "grids": ",".join(scenario["grids"]),
            "metric": metric,
            "accuracy": summary["accuracy"],
            "ci_low": summary["ci_low"],
            "ci_high": summary["ci_high"],
            "n_questions": summary["n_questions"],
            "mean_thinking_tokens": float(at_budget["thinking_tokens"].mean()),
            "forced_fraction": float(at_budget["forced"].mean()),
            "prompt_tokens": prompt_tokens,
            "context_tokens": int(round(prompt_tokens)) + scenario["token_budget"] + spec["max_answer_tokens"],
        })
        questions.append(per_question.assign(scenario_id=scenario["scenario_id"]))
    table = pd.DataFrame(rows)
    prompts = np.rint(table["prompt_tokens"].to_numpy()).astype(np.int64)
    table = pd.concat([table, memory_columns(table, records, spec, prompts)], axis=1)
    return table, pd.concat(questions, ignore_index=True)
