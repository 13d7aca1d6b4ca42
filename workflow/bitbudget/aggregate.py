"""The aggregate stage: accuracy with intervals per scenario, placed at its memory cost."""

from __future__ import annotations

import json
import logging
import zlib

import numpy as np
import pandas as pd

from bitbudget import artifacts, memory
from bitbudget.artifacts import read_parquet_verified
from bitbudget.stats import Resampling, summarize_cell, summarize_scenario

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
    """weight_gib, kv_gib_per_seq, kv_gib (all G sequences) and total_gib of every scenario,
    and peak_total_gib: the total with eviction charged its peak (what the cache holds between
    forwards at its fullest: R-KV its budget plus its compression interval), to tell whether a
    verdict depends on charging eviction its budget.

    Weights: :func:`bitbudget.memory.weight_bytes` of the recorded architecture, the function
    behind the paper's table, with scales and zero points as the format's checkpoint stores them
    (:func:`bitbudget.memory.checkpoint_storage`). KV: the tokens of ``analysis.kv_tokens`` (the token budget, or
    ``prompt_tokens`` + budget + ``max_answer_tokens``), capped by eviction
    (:func:`bitbudget.memory.kv_bytes`).
    """
    kv_tokens = spec["analysis"]["kv_tokens"]
    budgets = scenarios["token_budget"].to_numpy(dtype=np.int64)
    prompts = np.zeros(len(scenarios)) if prompt_tokens is None else np.asarray(prompt_tokens)
    charged = memory.kv_charged_tokens(kv_tokens, budgets, prompts, spec["max_answer_tokens"])
    weight = np.empty(len(scenarios))
    kv_seq = np.empty(len(scenarios))
    kv_peak = np.empty(len(scenarios))
    keys = scenarios[["gen_id", "weights", "kv"]].astype(str)
    for (gen_id, weights, kv), rows in keys.groupby(["gen_id", "weights", "kv"], sort=False).indices.items():
        arch = records[gen_id]["architecture"]
        fmt = spec["weight_formats"][weights]
        weight[rows] = memory.to_gib(memory.weight_bytes(arch, fmt["bits"], fmt["group_size"],
                                                         **memory.checkpoint_storage(fmt)))
        kv_seq[rows] = memory.to_gib(memory.kv_bytes(
            arch, spec["kv_strategies"][kv], charged[rows], KV_DTYPE_BYTES, kv_tokens))
        kv_peak[rows] = memory.to_gib(memory.kv_bytes(
            arch, spec["kv_strategies"][kv], charged[rows], KV_DTYPE_BYTES, "context"))
    G = scenarios["G"].to_numpy(dtype=float)
    return pd.DataFrame({
        "n_params": [records[g]["param_counts"]["total"] for g in scenarios["gen_id"]],
        "kv_tokens": charged.astype(np.int64),
        "weight_gib": weight, "kv_gib_per_seq": kv_seq, "kv_gib": G * kv_seq,
        "total_gib": weight + G * kv_seq, "peak_total_gib": weight + G * np.maximum(kv_seq, kv_peak),
    }, index=scenarios.index)


def cell_arrays(at_budget: pd.DataFrame):
    """(question ids, correct [Q, n], answers [Q, n]) of one cell, or None when questions hold
    different numbers of samples (then the scenario-at-a-time estimators are used)."""
    at = at_budget.sort_values(["question_id", "sample_idx"])
    qids, sizes = np.unique(at["question_id"].astype(str).to_numpy(), return_counts=True)
    if not len(qids) or (sizes != sizes[0]).any():
        return None
    shape = (len(qids), int(sizes[0]))
    answers = at["extracted_answer"].astype(object).where(at["extracted_answer"].notna(), None)
    answers = np.array([None if a is None else str(a) for a in answers], dtype=object)
    return qids, at["correct"].to_numpy(dtype=bool).reshape(shape), answers.reshape(shape)


def _dataset_seed(seed: int, dataset: str) -> list[int]:
    """Bootstrap draws per dataset: shared by its scenarios, independent across datasets."""
    return [int(seed), zlib.crc32(str(dataset).encode())]


def _summaries(cell: pd.DataFrame, at_budget: pd.DataFrame, analysis: dict,
               resamplings: dict) -> tuple[dict, list[pd.DataFrame]]:
    """scenario_id -> summary, and the per-question tables, of the scenarios of one cell."""
    arrays = cell_arrays(at_budget)
    summaries, questions = {}, []
    if arrays is None:
        for scenario in cell.itertuples():
            metric = "pass@1" if scenario.G == 1 else "maj@G"
            summary, per_question = summarize_scenario(
                at_budget, metric=metric, g=scenario.G, n_boot=analysis["bootstrap_samples"],
                seed=analysis["seed"])
            summaries[scenario.scenario_id] = summary
            questions.append(per_question.assign(scenario_id=scenario.scenario_id))
        return summaries, questions
    qids, correct, answers = arrays
    dataset = str(cell["dataset"].iloc[0])
    key = (dataset, *correct.shape)
    if key not in resamplings and analysis["bootstrap_samples"] > 0:
        resamplings[key] = Resampling(*correct.shape, analysis["bootstrap_samples"],
                                      _dataset_seed(analysis["seed"], dataset))
    # a maj@G with G above the samples drawn (an adaptive round) has no estimate: NaN
    gs = sorted(set(cell["G"].astype(int)))
    by_g = summarize_cell(correct, answers, [g for g in gs if g <= correct.shape[1]], resamplings.get(key))
    none = np.full(len(qids), np.nan)
    n_correct = correct.sum(axis=1)
    for scenario in cell.itertuples():
        result = by_g.get(int(scenario.G)) or {"accuracy": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                                                "per_question": none}
        summaries[scenario.scenario_id] = {k: result[k] for k in ("accuracy", "ci_low", "ci_high")} | {
            "n_questions": len(qids)}
        questions.append(pd.DataFrame({
            "question_id": qids, "n_samples": correct.shape[1], "n_correct": n_correct,
            "accuracy": result["per_question"], "scenario_id": scenario.scenario_id}))
    return summaries, questions


def aggregate(scenarios: pd.DataFrame, spec: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every scenario's accuracy with its bootstrap interval, placed at its memory cost.

    Scenarios are summarized a cell (grades table x token budget) at a time, with bootstrap
    draws shared by the scenarios of a dataset (:class:`bitbudget.stats.Resampling`).
    """
    records = model_records(spec["generations"])
    analysis = spec["analysis"]
    scenarios = scenarios.reset_index(drop=True)
    summaries, questions, cells, resamplings = {}, [], {}, {}
    for grade_id, grade_scenarios in scenarios.groupby("grade_id", sort=False):
        graded = read_parquet_verified(spec["grades"][grade_id])
        by_budget = dict(tuple(graded.groupby("token_budget", sort=False)))
        for budget, cell in grade_scenarios.groupby("token_budget", sort=False):
            at_budget = by_budget[budget]
            done, per_question = _summaries(cell, at_budget, analysis, resamplings)
            summaries.update(done)
            questions.extend(per_question)
            cells[grade_id, budget] = {
                "mean_thinking_tokens": float(at_budget["thinking_tokens"].mean()),
                "forced_fraction": float(at_budget["forced"].mean()),
                "prompt_tokens": float(at_budget["prompt_tokens"].mean()),
            }
    rows = []
    for scenario in scenarios.to_dict("records"):
        summary = summaries[scenario["scenario_id"]]
        cell = cells[scenario["grade_id"], scenario["token_budget"]]
        rows.append({
            **{k: v for k, v in scenario.items() if k != "grids"},
            "grids": ",".join(scenario["grids"]),
            "metric": "pass@1" if scenario["G"] == 1 else "maj@G",
            **{k: summary[k] for k in ("accuracy", "ci_low", "ci_high", "n_questions")},
            **cell,
            "context_tokens": int(round(cell["prompt_tokens"])) + scenario["token_budget"] + spec["max_answer_tokens"],
        })
    table = pd.DataFrame(rows)
    prompts = np.rint(table["prompt_tokens"].to_numpy()).astype(np.int64)
    table = pd.concat([table, memory_columns(table, records, spec, prompts)], axis=1)
    return table, pd.concat(questions, ignore_index=True)
