"""Per-question trace shards: the resumable unit of generation, shared by every engine.

`results/traces/{trace_id}/shards/{question_id}.json` holds all samples of one question:
thinking token ids up to the horizon, the natural answer, and the forced answers (forks)
per budget. Shards are written atomically, so a killed job resumes at the first missing one.
"""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path

from bitbudget import artifacts
from bitbudget.forcing import needs_fork


def shard_path(trace_dir: str | Path, question_id: str) -> Path:
    return Path(trace_dir) / "shards" / f"{question_id}.json"


def read_shard(trace_dir: str | Path, question_id: str) -> dict | None:
    path = shard_path(trace_dir, question_id)
    return json.loads(path.read_text()) if path.exists() else None


def write_shard(trace_dir: str | Path, question_id: str, samples: list[dict]) -> None:
    payload = {"question_id": question_id, "samples": sorted(samples, key=lambda s: s["sample_idx"])}
    artifacts.write_text(shard_path(trace_dir, question_id), json.dumps(payload, separators=(",", ":")))


def missing_forks(sample: dict, budgets) -> list[int]:
    return [b for b in budgets if needs_fork(sample, b) and str(b) not in sample["forks"]]


def plan_work(questions, trace_dir, budgets, samples) -> tuple[list[str], dict[str, dict]]:
    """Questions to generate from scratch, and stored shards that lack some budgets' forks."""
    fresh, incomplete = [], {}
    for question in questions:
        shard = read_shard(trace_dir, question["question_id"])
        if shard is None or len(shard["samples"]) < samples:
            fresh.append(question["question_id"])
        elif any(missing_forks(sample, budgets) for sample in shard["samples"]):
            incomplete[question["question_id"]] = shard
    return fresh, incomplete


def build_prompts(tokenizer, questions: list[dict], template: str, chat_kwargs: dict) -> dict[str, list[int]]:
    prompts = {}
    for question in questions:
        message = template.format(problem=question["problem"])
        prompts[question["question_id"]] = list(tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=True,
            return_dict=False, **chat_kwargs,
        ))
    return prompts


def batches_by_prompt_length(question_ids, prompts, rows_per_question, batch_rows):
    """Group questions whose prompts have equal length (no padding), batch_rows rows at most."""
    per_batch = max(1, batch_rows // rows_per_question)
    ordered = sorted(question_ids, key=lambda q: (len(prompts[q]), q))
    for _, same_length in groupby(ordered, key=lambda q: len(prompts[q])):
        same_length = list(same_length)
        for start in range(0, len(same_length), per_batch):
            yield same_length[start:start + per_batch]
