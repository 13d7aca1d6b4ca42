"""HF transformers engine: batched decoding with budget forks and pluggable KV caches.

Rows of a batch share one prompt length (no padding), so every KV strategy, eviction
included, sees plain rectangular caches. All rows advance one token per step; a row's
next input is either forced (a queued suffix, a "Wait", a replayed token) or sampled.

Samples are keyed by index: a generation that needs ``n`` samples per question first forks
the stored samples below ``n`` that lack a budget, then decodes only the indices its shards
lack, and writes each shard as its stored samples plus the new ones (bitbudget.shards).
Each batch draws from one ``torch.Generator`` seeded by the batch's content
(:func:`batch_generator`): the seed, the trace and the batch's questions, and, when the batch
draws no sample of index 0 (an extension from n to m samples), its smallest drawn index. A
batch that draws from index 0 keeps the seed it always had, so traces made before are
unchanged. HF draws therefore depend on the batch's composition, as before: which questions
share a batch (batch_size and prompt lengths) and which indices it draws. Extending from n
to m samples does not reproduce a one-shot run of m samples (the simulated and vLLM engines
seed each sample by its index and do); it keeps the stored n samples as they were, token
for token, and reruns of the same extension draw the same new samples.

Samples think to the generation's largest budget. A stored sample that stopped there is asked
for a larger budget by replaying its thinking and thinking on from its end (the refork
batch's generator), never by drawing its stored tokens again.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from bitbudget import kv as kv_strategies
from bitbudget.artifacts import content_id
from bitbudget.backends import Counters, EngineResult, Interrupted, sample_record
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


def make_sampler(sampling: dict) -> LogitsProcessorList:
    warpers = []
    if sampling["temperature"] > 0:
        warpers.append(TemperatureLogitsWarper(sampling["temperature"]))
        if sampling["top_k"] > 0:
            warpers.append(TopKLogitsWarper(sampling["top_k"]))
        if sampling["top_p"] < 1:
            warpers.append(TopPLogitsWarper(sampling["top_p"]))
    return LogitsProcessorList(warpers)


class BatchDecoder:
    """Decodes one batch of same-length prompts up to `horizon` thinking tokens."""

    def __init__(self, model, kv_strategy: dict, sampling: dict, tokens: ForcingTokens,
                 fork_budgets: list[int], horizon: int, generator: torch.Generator, stop_requested=lambda: False):
        self.model = model
        self.kv_strategy = kv_strategy
        self.temperature = sampling["temperature"]
        self.warpers = make_sampler(sampling)
        self.tokens = tokens
        self.fork_budgets = sorted(b for b in fork_budgets if b < horizon)
        self.horizon = horizon
        self.generator = generator
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

    def _sample(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        if self.temperature == 0:
            return logits.argmax(dim=-1)
        scores = self.warpers(history, logits)
        probs = torch.softmax(scores, dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)

    def run(self, prompt_ids: list[list[int]], rows: list[Row]) -> list[Row]:
        cache = kv_strategies.make_cache(self.kv_strategy, self.model.config)
        with kv_strategies.prepare_model(self.model, self.kv_strategy):
            prompt = torch.tensor(prompt_ids, dtype=torch.long)
            logits = self._forward(prompt, cache)
            self.counters.prefill_tokens += prompt.numel()
            self._decode(cache, logits, prompt, rows)
        return rows

    def _decode(self, cache, logits, history, rows: list[Row]) -> None:
        active = list(range(len(rows)))  # row indices still in the cache, in cache order
        while active:
            if self.stop_requested():
                raise Interrupted("stop requested")
            step_rows = [rows[i] for i in active]
            self._fork_if_due(cache, history, step_rows)
            sampled = self._sample(logits, history)
            next_ids = [self._advance(row, int(tok)) for row, tok in zip(step_rows, sampled.tolist())]
            keep = [pos for pos, row in enumerate(step_rows) if row.phase != DONE]
            if len(keep) < len(step_rows):
                if not keep:
                    return
                index = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(index)
                history = history[index]
                next_ids = [next_ids[pos] for pos in keep]
                active = [active[pos] for pos in keep]
            step = torch.tensor(next_ids, dtype=torch.long).unsqueeze(1)
            history = torch.cat([history, step], dim=1)
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

    def _fork_if_due(self, cache, history, step_rows: list[Row]) -> None:
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
        index = torch.tensor(thinking, dtype=torch.long)
        fork_cache = copy.deepcopy(cache)
        fork_cache.batch_select_indices(index)
        answers = self._decode_answer(fork_cache, history[index], len(thinking))
        for pos, answer in zip(thinking, answers):
            step_rows[pos].forks[str(length)] = answer

    def _decode_answer(self, cache, history, n_rows: int) -> list[list[int]]:
        suffix = torch.tensor([list(self.tokens.suffix)] * n_rows, dtype=torch.long)
        logits = self._forward(suffix, cache)
        self.counters.fork_tokens += suffix.numel()
        history = torch.cat([history, suffix], dim=1)
        answers: list[list[int]] = [[] for _ in range(n_rows)]
        open_rows = list(range(n_rows))
        for _ in range(self.tokens.max_answer_tokens):
            sampled = self._sample(logits, history).tolist()
            for pos, token in zip(open_rows, sampled):
                answers[pos].append(token)
            keep = [i for i, pos in enumerate(open_rows) if answers[pos][-1] != self.tokens.eos]
            if not keep or len(answers[open_rows[0]]) >= self.tokens.max_answer_tokens:
                break
            step = torch.tensor([[sampled[i]] for i in keep], dtype=torch.long)
            if len(keep) < len(open_rows):
                index = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(index)
                history = history[index]
                open_rows = [open_rows[i] for i in keep]
            history = torch.cat([history, step], dim=1)
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


def batch_generator(base_seed: int, trace_id: str, question_ids: list[str], first_index: int = 0,
                    device: str = "cpu") -> torch.Generator:
    """A seed fixed by the content of the batch, so reruns and resumes draw the same samples.
    ``first_index``: the smallest sample index the batch draws; it enters the seed only when
    above 0 (a batch drawing from index 0 keeps the seed of every trace made before).
    ``device``: the model's device, where the sampling runs (a CUDA generator draws other
    numbers than a CPU one from the same seed)."""
    content = {"seed": base_seed, "trace": trace_id, "questions": sorted(question_ids)}
    if first_index > 0:
        content["first_index"] = first_index
    seed = int(content_id(content), 16)
    return torch.Generator(device=device).manual_seed(seed)


class HFEngine:
    """Fills the shards of one trace directory: missing forks of stored samples, then missing samples."""

    name = "hf"

    def __init__(self, spec: dict, checkpoint_path: str, trace_dir: str, stop_requested=lambda: False,
                 revision: str | None = None):
        self.key = spec["trace_key"]
        self.samples = spec.get("samples", self.key["sampling"]["samples_per_question"])
        self.trace_dir = Path(trace_dir)
        self.engine = spec["engine"]
        self.model, self.tokenizer = load_model(checkpoint_path, self.engine["dtype"], self.engine["device"], revision)
        self.tokens = trace_forcing_tokens(self.tokenizer, self.key)
        self.stop_requested = stop_requested
        self.counters = Counters()

    def __call__(self, questions, fresh, incomplete, budgets):
        prompts = build_prompts(self.tokenizer, questions, self.key["prompt"], self.key["chat_template_kwargs"])
        prompts = {q: open_thinking(ids, self.tokens) for q, ids in prompts.items()}
        progress = Progress(len(fresh) + len(incomplete))
        # stored samples first: a question extended to more samples may lack forks of its stored ones
        for batch in batches_by_prompt_length(list(incomplete), prompts, self.samples, self.engine["batch_size"]):
            self._refork(prompts, {q: incomplete[q] for q in batch}, budgets)
            progress.update(len(batch), self.counters)
        todo = new_samples(self.trace_dir, fresh, self.samples)
        rows_per_question = {q: len(indices) for q, indices in todo.items()}
        for batch in batches_by_prompt_length(fresh, prompts, rows_per_question, self.engine["batch_size"]):
            rows = [Row((q, i)) for q in batch for i in todo[q]]
            self._decode(prompts, rows, budgets, max(budgets), batch, min(todo[q][0] for q in batch))
            for question_id in batch:
                write_new_samples(self.trace_dir, question_id, [r.record() for r in rows if r.key[0] == question_id])
            progress.update(len(batch), self.counters)
        return EngineResult(asdict(self.counters), self.tokenizer, self.tokens, prompts)

    def _decode(self, prompts, rows, fork_budgets, horizon, batch, first_index: int = 0):
        """``first_index``: the smallest index of the samples the batch draws (0 for a refork,
        whose seed is the one it always had)."""
        decoder = BatchDecoder(
            self.model, self.key["kv"], self.key["sampling"], self.tokens, fork_budgets, horizon,
            batch_generator(self.key["sampling"]["seed"], self.trace_dir.name, batch, first_index,
                            self.engine["device"]),
            self.stop_requested,
        )
        decoder.run([prompts[row.key[0]] for row in rows], rows)
        self.counters.add(decoder.counters)

    def _refork(self, prompts, shards: dict[str, dict], budgets):
        """Teacher-force stored thinking to recreate each KV state, then fork the missing budgets;
        a sample that stopped thinking short of them thinks on first."""
        rows, missing = {}, set()
        for question_id, shard in shards.items():
            for sample in first_samples(shard, self.samples):
                todo = missing_forks(sample, budgets)
                if todo:
                    rows[question_id, sample["sample_idx"]] = Row(
                        (question_id, sample["sample_idx"]), replay=sample["think_ids"],
                        think_on=thinks_on(sample, max(todo)), wanted=frozenset(todo))
                    missing.update(todo)
        self._decode(prompts, list(rows.values()), sorted(missing), max(missing), list(shards))
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
