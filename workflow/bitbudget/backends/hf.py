"""HF transformers engine: batched decoding with budget forks and pluggable KV caches.

Rows of a batch share one prompt length (no padding), so every KV strategy, eviction
included, sees plain rectangular caches. All rows advance one token per step; a row's
next input is either forced (a queued suffix, a "Wait", a replayed token) or sampled.

Samples are keyed by index: a generation that needs ``n`` samples per question first forks
the stored samples below ``n`` that lack a budget, then decodes only the indices its shards
lack, and writes each shard as its stored samples plus the new ones (bitbudget.shards).
Each token is drawn with the noise of its sample, stream (thinking, natural answer, answer
forced at a budget) and position (bitbudget.backends.draws, bitbudget.backends.sampler), never
from a generator shared by a batch: which questions and samples share a batch, the round and
where a sample resumed do not enter its draws. What a batch can still change is the logits
themselves: a batched matmul may round a row differently with another batch size (measured on
the tiny models in tests/unit/test_sample_extension.py).

Samples think to the generation's largest budget. A stored sample that stopped there is asked
for a larger budget by replaying its thinking and thinking on from its end with the draws of
those positions, so it continues as the sample drawn at once would, and never draws its stored
tokens again.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field

import torch

from bitbudget import kv as kv_strategies
from bitbudget.backends import Counters, EngineResult, Interrupted, TraceEngine, draws, sample_record
from bitbudget.backends.sampler import draw
from bitbudget.enginespec import EngineSpec
from bitbudget.forcing import ForcingTokens, open_thinking, thinks_on, trace_forcing_tokens
from bitbudget.revisions import loader_kwargs
from bitbudget.shards import (add_to_stored, batches_by_prompt_length, build_prompts, first_samples, missing_forks,
                               new_samples, write_new_samples, write_shard)

log = logging.getLogger(__name__)

THINK, ANSWER, DONE = "think", "answer", "done"


@dataclass
class Row:
    key: tuple  # (question_id, sample_idx)
    think_ids: list = field(default_factory=list)
    answer_ids: list = field(default_factory=list)
    queue: list = field(default_factory=list)
    phase: str = THINK
    closed_thinking: bool = False
    replay: list | None = None  # teacher-forced thinking tokens (fork replay)
    think_on: bool = False  # after the replay, the sample thinks on (it stopped short of the horizon)
    wanted: frozenset | None = None  # the budgets to fork (None: every fork budget of the batch)
    forks: dict = field(default_factory=dict)
    forced_at: int | None = None

    def record(self) -> dict:
        return sample_record(self.key[1], self.think_ids, self.closed_thinking, self.answer_ids, self.forks)

    def stream(self) -> str:
        """The stream the row draws its next token from (bitbudget.backends.draws)."""
        if self.phase == THINK:
            return draws.THINK
        return draws.NATURAL if self.forced_at is None else draws.fork_stream(self.forced_at)


@dataclass(frozen=True)
class StreamKeys:
    """The draw keys of one trace's samples (bitbudget.backends.draws.draw_key)."""

    seed: int
    trace_id: str

    def __call__(self, row_key: tuple, stream: str) -> int:
        return draws.draw_key(self.seed, self.trace_id, *row_key, stream)


class BatchDecoder:
    """Decodes one batch of same-length prompts up to `horizon` thinking tokens."""

    def __init__(self, model, kv_strategy: dict, sampling: dict, tokens: ForcingTokens,
                 fork_budgets: list[int], horizon: int, keys: StreamKeys, stop_requested=lambda: False):
        self.model = model
        self.kv_strategy = kv_strategy
        self.sampling = sampling
        self.tokens = tokens
        self.fork_budgets = sorted(b for b in fork_budgets if b < horizon)
        self.horizon = horizon
        self.keys = keys
        self.stop_requested = stop_requested
        self.counters = Counters()

    def _forward(self, ids: torch.Tensor, cache) -> torch.Tensor:
        """Logits of the last position. Token ids are built on the CPU and moved to the model's
        device; only the last position's logits are computed (a long prompt's prefill would
        otherwise hold prompt x vocabulary logits)."""
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(self.model.device), past_key_values=cache, use_cache=True,
                             logits_to_keep=1)
        return out.logits[:, -1, :].float()

    def _sample(self, logits: torch.Tensor, position: int, rows: list[Row], streams: list[str]) -> torch.Tensor:
        """One token per row, drawn with the noise of (the row's sample, ``streams``, ``position``:
        the number of tokens before the drawn one, the same for every row of a batch)."""
        s = self.sampling
        keys = positions = None
        if s["temperature"] > 0:
            keys = torch.tensor([self.keys(row.key, stream) for row, stream in zip(rows, streams)], dtype=torch.long)
            positions = torch.full((len(rows),), position, dtype=torch.long)
        return draw(logits, keys, positions, s["temperature"], s["top_k"], s["top_p"])

    def run(self, prompt_ids: list[list[int]], rows: list[Row]) -> list[Row]:
        cache = kv_strategies.make_cache(self.kv_strategy, self.model.config)
        with kv_strategies.prepare_model(self.model, self.kv_strategy):
            prompt = torch.tensor(prompt_ids, dtype=torch.long)
            logits = self._forward(prompt, cache)
            self.counters.prefill_tokens += prompt.numel()
            self._decode(cache, logits, prompt.shape[1], rows)
        return rows

    def _decode(self, cache, logits, position: int, rows: list[Row]) -> None:
        """``position``: the tokens in the cache (prompt and fed tokens), the same for every row."""
        active = list(range(len(rows)))  # row indices still in the cache, in cache order
        while active:
            if self.stop_requested():
                raise Interrupted("stop requested")
            step_rows = [rows[i] for i in active]
            self._fork_if_due(cache, position, step_rows)
            sampled = self._sample(logits, position, step_rows, [row.stream() for row in step_rows])
            next_ids = [self._advance(row, int(tok)) for row, tok in zip(step_rows, sampled.tolist())]
            keep = [pos for pos, row in enumerate(step_rows) if row.phase != DONE]
            if len(keep) < len(step_rows):
                if not keep:
                    return
                cache.batch_select_indices(torch.tensor(keep, dtype=torch.long))
                next_ids = [next_ids[pos] for pos in keep]
                active = [active[pos] for pos in keep]
            step = torch.tensor(next_ids, dtype=torch.long).unsqueeze(1)
            position += 1
            logits = self._forward(step, cache)
            self.counters.decode_tokens += len(active)

    def _advance(self, row: Row, sampled: int) -> int:
        """Decide the token `row` feeds next; update its phase."""
        if row.phase == THINK:
            return self._advance_thinking(row, sampled)
        if row.queue:  # the forced-answer suffix is fed, not part of the answer
            return row.queue.pop(0)
        row.answer_ids.append(sampled)
        cap = self.tokens.max_natural_answer_tokens if row.forced_at is None else self.tokens.max_answer_tokens
        if sampled == self.tokens.eos or len(row.answer_ids) >= cap:
            row.phase = DONE
            if row.forced_at is not None:
                row.forks[str(row.forced_at)] = row.answer_ids
                row.answer_ids = []
        return sampled

    def _advance_thinking(self, row: Row, sampled: int) -> int:
        if row.replay is not None and len(row.think_ids) >= len(row.replay):
            if not row.think_on:
                row.phase = DONE
                return self.tokens.eos
            row.replay = None  # the stored thinking is replayed: from here the sample thinks on
        if row.replay is not None:
            token = row.replay[len(row.think_ids)]
        elif row.queue:
            token = row.queue.pop(0)
        elif sampled == self.tokens.end_of_thinking and self.tokens.wait_extension:
            row.queue = list(self.tokens.wait[1:])
            token = self.tokens.wait[0]
        else:
            token = sampled
        if token == self.tokens.end_of_thinking and row.replay is None:
            row.closed_thinking = True
            row.phase = ANSWER
            return token
        row.think_ids.append(token)
        if len(row.think_ids) == self.horizon:
            self._start_forced_answer(row)
        return token

    def _start_forced_answer(self, row: Row) -> None:
        """At the horizon the row's own answer is the fork at the largest budget."""
        row.phase = ANSWER
        row.queue = list(self.tokens.suffix)
        row.forced_at = self.horizon

    def _fork_if_due(self, cache, position: int, step_rows: list[Row]) -> None:
        thinking = [pos for pos, row in enumerate(step_rows) if row.phase == THINK]
        if not thinking:
            return
        length = len(step_rows[thinking[0]].think_ids)
        if length not in self.fork_budgets:
            return
        # a refork row forks only the budgets it lacks: a fork it holds would be decoded and dropped
        thinking = [pos for pos in thinking if step_rows[pos].wanted is None or length in step_rows[pos].wanted]
        if not thinking:
            return
        fork_cache = copy.deepcopy(cache)
        fork_cache.batch_select_indices(torch.tensor(thinking, dtype=torch.long))
        answers = self._decode_answer(fork_cache, position, [step_rows[pos] for pos in thinking], length)
        for pos, answer in zip(thinking, answers):
            step_rows[pos].forks[str(length)] = answer

    def _decode_answer(self, cache, position: int, rows: list[Row], budget: int) -> list[list[int]]:
        """The answers forced at ``budget`` of ``rows`` (the cache holds ``position`` tokens each)."""
        suffix = torch.tensor([list(self.tokens.suffix)] * len(rows), dtype=torch.long)
        logits = self._forward(suffix, cache)
        self.counters.fork_tokens += suffix.numel()
        position += suffix.shape[1]
        stream = draws.fork_stream(budget)
        answers: list[list[int]] = [[] for _ in rows]
        open_rows = list(range(len(rows)))
        for _ in range(self.tokens.max_answer_tokens):
            sampled = self._sample(logits, position, [rows[pos] for pos in open_rows], [stream] * len(open_rows)).tolist()
            for pos, token in zip(open_rows, sampled):
                answers[pos].append(token)
            keep = [i for i, pos in enumerate(open_rows) if answers[pos][-1] != self.tokens.eos]
            if not keep or len(answers[open_rows[0]]) >= self.tokens.max_answer_tokens:
                break
            step = torch.tensor([[sampled[i]] for i in keep], dtype=torch.long)
            if len(keep) < len(open_rows):
                cache.batch_select_indices(torch.tensor(keep, dtype=torch.long))
                open_rows = [open_rows[i] for i in keep]
            position += 1
            logits = self._forward(step, cache)
            self.counters.fork_tokens += len(open_rows)
        return answers



def load_model(path: str, dtype: str, device: str, revision: str | None = None):
    """Model and tokenizer of `path` at the pinned `revision` (bitbudget.revisions)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer


    pinned = loader_kwargs(path, revision)
    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **pinned).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, **pinned)
    return model, tokenizer


class HFEngine(TraceEngine):
    """Fills the shards of one trace directory: missing forks of stored samples, then missing samples."""

    name = "hf"

    def __init__(self, spec: EngineSpec, stop_requested=lambda: False):
        super().__init__(spec, stop_requested)
        self.model, self.tokenizer = load_model(spec.checkpoint_path, spec.engine.dtype, spec.runtime.device,
                                                spec.revision)
        self.tokens = trace_forcing_tokens(self.tokenizer, self.key)
        self.counters = Counters()

    def __call__(self, questions, fresh, incomplete, budgets):
        prompts = build_prompts(self.tokenizer, questions, self.key["prompt"], self.key["chat_template_kwargs"])
        prompts = {q: open_thinking(ids, self.tokens) for q, ids in prompts.items()}
        progress = Progress(len(fresh) + len(incomplete))
        # stored samples first: a question extended to more samples may lack forks of its stored ones
        for batch in batches_by_prompt_length(list(incomplete), prompts, {q: self.samples_of(q) for q in incomplete},
                                              self.spec.runtime.batch_size):
            self._refork(prompts, {q: incomplete[q] for q in batch}, budgets)
            progress.update(len(batch), self.counters)
        todo = new_samples(self.trace_dir, fresh, self.samples_of)
        rows_per_question = {q: len(indices) for q, indices in todo.items()}
        for batch in batches_by_prompt_length(fresh, prompts, rows_per_question, self.spec.runtime.batch_size):
            rows = [Row((q, i)) for q in batch for i in todo[q]]
            self._decode(prompts, rows, budgets, max(budgets))
            for question_id in batch:
                write_new_samples(self.trace_dir, question_id, [r.record() for r in rows if r.key[0] == question_id])
            progress.update(len(batch), self.counters)
        return EngineResult(asdict(self.counters), self.tokenizer, self.tokens, prompts)

    def _decode(self, prompts, rows, fork_budgets, horizon):
        decoder = BatchDecoder(
            self.model, self.key["kv"], self.key["sampling"], self.tokens, fork_budgets, horizon,
            StreamKeys(self.key["sampling"]["seed"], self.trace_dir.name), self.stop_requested,
        )
        decoder.run([prompts[row.key[0]] for row in rows], rows)
        self.counters.add(decoder.counters)

    def _refork(self, prompts, shards: dict[str, dict], budgets):
        """Teacher-force stored thinking to recreate each KV state, then fork the missing budgets;
        a sample that stopped thinking short of them thinks on first."""
        rows, missing = {}, set()
        for question_id, shard in shards.items():
            for sample in first_samples(shard, self.samples_of(question_id)):
                todo = missing_forks(sample, budgets)
                if todo:
                    rows[question_id, sample["sample_idx"]] = Row(
                        (question_id, sample["sample_idx"]), replay=sample["think_ids"],
                        think_on=thinks_on(sample, max(todo)), wanted=frozenset(todo))
                    missing.update(todo)
        self._decode(prompts, list(rows.values()), sorted(missing), max(missing))
        for question_id, shard in shards.items():
            for sample in shard["samples"]:
                row = rows.get((question_id, sample["sample_idx"]))
                if row is not None:
                    add_to_stored(sample, row.forks, row.record() if row.think_on else None)
            write_shard(self.trace_dir, question_id, shard["samples"])


class Progress:
    def __init__(self, total: int):
        self.total, self.done, self.started = total, 0, time.time()

    def update(self, questions: int, counters: Counters) -> None:
        self.done += questions
        elapsed = max(time.time() - self.started, 1e-9)
        tokens = counters.decode_tokens + counters.fork_tokens
        log.info("questions %d/%d, %d decode tokens, %.0f tokens/s", self.done, self.total, tokens, tokens / elapsed)
