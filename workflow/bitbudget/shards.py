"""Per-question trace shards: the resumable unit of generation, shared by every engine.

`results/traces/{trace_id}/shards/{question_id}.json` holds all samples of one question:
thinking token ids up to the horizon, the natural answer, and the forced answers (forks)
per budget. Shards are written atomically, so a killed job resumes at the first missing one.

Samples are keyed by their index. A generation that needs ``n`` samples per question reads
indices ``0..n-1`` and generates only the indices its question's shard lacks; a shard keeps
every sample ever drawn (a later round's included), so extending a generation from ``n`` to
``m`` samples leaves the first ``n`` byte for byte as they were.

Each shard carries the sha256 of its own content (the canonical JSON of its question id and
samples), written in the same atomic rename: a shard that was edited, truncated or damaged is
refused where it is read, naming the file and the fix, instead of flowing into samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from itertools import groupby
from pathlib import Path

from bitbudget import artifacts
from bitbudget.forcing import needs_fork

log = logging.getLogger(__name__)

#: Fault drills: when this variable names a file, a writer that has written a shard waits until
#: that file exists, so a drill stops a job at a known point (one shard written) instead of racing it.
HOLD_AFTER_SHARD = "BITBUDGET_HOLD_AFTER_SHARD"
HOLD_POLL_S = 0.05


def shard_path(trace_dir: str | Path, question_id: str) -> Path:
    return Path(trace_dir) / "shards" / f"{question_id}.json"


class ShardError(artifacts.ArtifactError):
    """A stored trace shard is damaged or was modified."""


def shard_checksum(question_id: str, samples: list[dict]) -> str:
    text = artifacts.canonical_json({"question_id": question_id, "samples": samples})
    return hashlib.sha256(text.encode()).hexdigest()


def _shard_fix(path: Path) -> str:
    return (
        f"Fix: `rm {path}`, then rerun snakemake as before (e.g. `snakemake -c2`): the generation "
        "makes that question again and keeps every other shard."
    )


def read_shard(trace_dir: str | Path, question_id: str) -> dict | None:
    """The shard of one question, verified against its checksum; None when there is none."""
    path = shard_path(trace_dir, question_id)
    if not path.exists():
        return None
    try:
        shard = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ShardError(f"Trace shard {path} is damaged ({type(error).__name__}: {error}). {_shard_fix(path)}") from error
    if not isinstance(shard, dict) or not isinstance(shard.get("samples"), list):
        raise ShardError(f"Trace shard {path} has no list of samples. {_shard_fix(path)}")
    if shard.get("question_id") != question_id:
        raise ShardError(
            f"Trace shard {path} holds question {shard.get('question_id')!r}, not {question_id!r}. {_shard_fix(path)}"
        )
    if "sha256" not in shard:
        log.warning("trace shard %s predates shard checksums: read unverified", path)
    elif shard["sha256"] != shard_checksum(question_id, shard["samples"]):
        raise ShardError(
            f"Trace shard {path} does not match its checksum: it was modified after it was written. "
            f"{_shard_fix(path)}"
        )
    return shard


def write_shard(trace_dir: str | Path, question_id: str, samples: list[dict]) -> None:
    # As a reader will see them (JSON object keys become strings), so the checksum matches.
    samples = json.loads(json.dumps(sorted(samples, key=lambda s: s["sample_idx"])))
    payload = {"question_id": question_id, "samples": samples, "sha256": shard_checksum(question_id, samples)}
    artifacts.write_text(shard_path(trace_dir, question_id), json.dumps(payload, separators=(",", ":")))
    _hold_after_shard()


def _hold_after_shard() -> None:
    gate = os.environ.get(HOLD_AFTER_SHARD)
    if gate:
        log.warning("holding after a shard until %s exists (%s)", gate, HOLD_AFTER_SHARD)
        while not Path(gate).exists():
            time.sleep(HOLD_POLL_S)


def remove_stale_temporaries(trace_dir: str | Path) -> list[Path]:
    """Partial shard files of a killed job (the generate job owns its trace directory)."""
    return artifacts.remove_stale_temporaries(Path(trace_dir) / "shards") + artifacts.remove_stale_temporaries(trace_dir)


def missing_forks(sample: dict, budgets) -> list[int]:
    return [b for b in budgets if needs_fork(sample, b) and str(b) not in sample["forks"]]


def first_samples(shard: dict | None, samples: int) -> list[dict]:
    """The stored samples of indices below ``samples`` (the dicts of ``shard``, not copies)."""
    return [s for s in shard["samples"] if s["sample_idx"] < samples] if shard else []


def missing_indices(shard: dict | None, samples: int) -> list[int]:
    """The sample indices of ``0..samples-1`` that ``shard`` (None: no shard) does not hold."""
    held = {s["sample_idx"] for s in shard["samples"]} if shard else set()
    return [i for i in range(samples) if i not in held]


def new_samples(trace_dir, question_ids, samples_of) -> dict[str, list[int]]:
    """The indices each question still needs (below ``samples_of(question_id)``), read from its
    shard as it is now."""
    return {q: missing_indices(read_shard(trace_dir, q), samples_of(q)) for q in question_ids}


def merge_samples(stored: list[dict], new: list[dict]) -> list[dict]:
    """Stored samples and newly drawn ones, by index; a stored sample is never replaced."""
    held = {s["sample_idx"] for s in stored}
    clash = sorted(s["sample_idx"] for s in new if s["sample_idx"] in held)
    if clash:
        raise ValueError(f"samples {clash} are stored already: only missing indices may be drawn")
    return sorted([*stored, *new], key=lambda s: s["sample_idx"])


def add_to_stored(stored: dict, forks: dict, thinking: dict | None = None) -> None:
    """Add what a refork drew to a stored sample: the forks it lacked and, when its thinking
    went on (``thinking``: the record's ``think_ids``, ``closed_thinking``, ``answer_ids``), the
    longer thinking and its natural answer. Nothing stored is replaced."""
    for budget, answer in forks.items():
        stored["forks"].setdefault(budget, answer)
    if thinking is None:
        return
    held = stored["think_ids"]
    if stored["closed_thinking"] or thinking["think_ids"][: len(held)] != held:
        raise ValueError(f"sample {stored['sample_idx']}: continued thinking must extend the stored thinking")
    stored.update(think_ids=thinking["think_ids"], closed_thinking=thinking["closed_thinking"],
                  answer_ids=thinking["answer_ids"])


def write_new_samples(trace_dir: str | Path, question_id: str, new: list[dict]) -> None:
    """Write a question's shard as its stored samples (read again now: a refork may have
    rewritten them since the work was planned) plus the newly drawn ones."""
    stored = read_shard(trace_dir, question_id)
    write_shard(trace_dir, question_id, merge_samples(stored["samples"] if stored else [], new))


def plan_work(questions, trace_dir, budgets, samples_of) -> tuple[list[str], dict[str, dict]]:
    """Questions whose shard lacks some of the sample indices ``0..n-1`` (fresh), and stored
    shards whose samples below ``n`` lack some budgets' forks (incomplete), ``n`` the question's
    samples read (``samples_of(question_id)``).

    A question may be in both: its stored samples are forked first, then its missing indices
    drawn. Engines handle ``incomplete`` before ``fresh``, and draw for a fresh question only
    its missing indices (:func:`new_samples`, :func:`write_new_samples`).
    """
    fresh, incomplete = [], {}
    for question in questions:
        shard = read_shard(trace_dir, question["question_id"])
        samples = samples_of(question["question_id"])
        if missing_indices(shard, samples):
            fresh.append(question["question_id"])
        if any(missing_forks(sample, budgets) for sample in first_samples(shard, samples)):
            incomplete[question["question_id"]] = shard
    return fresh, incomplete


def prompt_text(template: str, problem: str) -> str:
    """The user message: `{problem}` filled in, every other brace kept (the paper's AIME prompt
    asks for `\\boxed{}`, which str.format would take for a field)."""
    return template.replace("{problem}", problem)


def build_prompts(tokenizer, questions: list[dict], template: str, chat_kwargs: dict) -> dict[str, list[int]]:
    prompts = {}
    for question in questions:
        message = prompt_text(template, question["problem"])
        prompts[question["question_id"]] = list(tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=True,
            return_dict=False, **chat_kwargs,
        ))
    return prompts


def chunks_by_rows(question_ids, rows_per_question, batch_rows):
    """Consecutive chunks of ``question_ids`` holding at most ``batch_rows`` rows (at least one
    question each). ``rows_per_question``: one count for every question, or a count per question."""
    rows = rows_per_question if isinstance(rows_per_question, dict) else dict.fromkeys(question_ids, rows_per_question)
    chunk, used = [], 0
    for question_id in question_ids:
        if chunk and used + rows[question_id] > batch_rows:
            yield chunk
            chunk, used = [], 0
        chunk.append(question_id)
        used += rows[question_id]
    if chunk:
        yield chunk


def batches_by_prompt_length(question_ids, prompts, rows_per_question, batch_rows):
    """Group questions whose prompts have equal length (no padding), batch_rows rows at most.
    ``rows_per_question``: one count for every question, or a count per question."""
    ordered = sorted(question_ids, key=lambda q: (len(prompts[q]), q))
    for _, same_length in groupby(ordered, key=lambda q: len(prompts[q])):
        yield from chunks_by_rows(list(same_length), rows_per_question, batch_rows)
