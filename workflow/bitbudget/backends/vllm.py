"""vLLM engine: the HF engine's contract (shards, forks, counters) on offline `vllm.LLM`.

Every request is a token-id prompt (`TokensPrompt`); text is never re-tokenized, so a fork
sees exactly the thinking tokens of the sample it forks from. Per question chunk:

1. thinking: `prompt + think` is extended up to the horizon (the generation's largest budget), stopping at
   the end-of-thinking token. With `wait_extension` an early end of thinking is replaced by
   the wait tokens and the sample goes on in a new segment.
2. answers, in one batch: a sample that closed its thinking gets its natural answer
   (`prompt + think + </think>`); a sample that reached the horizon gets the forced suffix
   and its answer (the fork at the horizon); for every smaller budget T that the sample's
   thinking exceeds, `prompt + think[:T] + suffix` is answered. Prefix caching makes the
   shared prefixes nearly free.

Stored shards that lack forks for a newly added budget only get the fork requests; they are
answered first. A stored sample drawn for a generation of smaller budgets stopped thinking at
its largest one: asked for a larger budget, it thinks on from its stored tokens, so no stored
token is drawn again or changed. Samples are keyed by index: a generation that needs ``n``
samples per question draws only the indices its shards lack and writes each shard as its
stored samples plus the new ones (bitbudget.shards).

Draws are history-free: vLLM's own seeded generators advance with each request, so a request
resumed at position p cannot continue the stream of a request started at 0. Every sampled
request is therefore greedy for vLLM, and the logits processor of
bitbudget.backends.vllm_sampler draws its token with the noise of (sample, stream, position)
(bitbudget.backends.draws), the HF engine's rule. A sample's tokens then do not depend on the
requests, segments, rounds or resume points that produced them: a sample thought on from a
smaller horizon, or drawn in a later round, equals the sample drawn at once, given the same
logits (vLLM's batches may round logits differently: docs/vllm.md).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bitbudget import capabilities
from bitbudget.backends import Counters, EngineResult, Interrupted, TraceEngine, draws, sample_record
from bitbudget.enginespec import EngineSettings, EngineSpec
from bitbudget.forcing import needs_fork, open_thinking, thinks_on, trace_forcing_tokens
from bitbudget.revisions import loader_kwargs
from bitbudget.shards import (add_to_stored, build_prompts, chunks_by_rows, first_samples, missing_forks, new_samples,
                               write_new_samples, write_shard)

log = logging.getLogger(__name__)

#: the logits processor that draws sampled requests (loaded by vLLM by name, in its engine process)
DRAW_PROCESSOR = "bitbudget.backends.vllm_sampler:HistoryFreeSampler"
#: the SamplingParams.extra_args entry that carries a request's draw (key and sampling settings)
DRAW_ARG = "bitbudget_draw"


class UnsupportedOnThisDevice(RuntimeError):
    """A configured feature cannot run on this hardware; the message names the config field."""


@dataclass
class Sample:
    question_id: str
    sample_idx: int
    think_ids: list = field(default_factory=list)
    closed_thinking: bool = False
    answer_ids: list = field(default_factory=list)
    forks: dict = field(default_factory=dict)

    def record(self) -> dict:
        return sample_record(self.sample_idx, self.think_ids, self.closed_thinking, self.answer_ids, self.forks)


def cpu_flags() -> frozenset[str]:
    return capabilities.cpu_flags()


def check_device_support(engine: EngineSettings, checkpoint_path: str, platform=None) -> None:
    """Fail before loading anything when the config asks for what this device cannot run."""
    if platform is None:
        from vllm.platforms import current_platform as platform
    if not platform.is_cpu():
        return
    # the same rules config validation applies (bitbudget.capabilities), checked again on the
    # machine that runs the job, against the checkpoint's actual scheme
    flags = cpu_flags()
    refusal = capabilities.vllm_cpu_kv_refusal(engine.kv_cache_dtype, flags)
    if refusal:
        raise UnsupportedOnThisDevice(refusal.message("engine.kv_cache_dtype"))
    refusal = capabilities.vllm_cpu_weight_refusal(weight_scheme(checkpoint_path), flags)
    if refusal:
        raise UnsupportedOnThisDevice(f"{refusal.message('weight_formats')} (checkpoint {checkpoint_path})")
    refusal = capabilities.vllm_cpu_activation_refusal(weight_scheme(checkpoint_path), flags,
                                                       engine.dtype)
    if refusal:
        raise UnsupportedOnThisDevice(f"{refusal.message('engine.dtype')} (checkpoint {checkpoint_path})")


def weight_scheme(checkpoint_path: str) -> str | None:
    """`W4A16`-style name of a compressed-tensors checkpoint, or None for plain weights."""
    import json

    config = Path(checkpoint_path) / "config.json"
    if not config.exists():
        return None
    quant = json.loads(config.read_text()).get("quantization_config")
    if not quant or quant.get("quant_method") != "compressed-tensors":
        return None
    for group in quant.get("config_groups", {}).values():
        weights = group.get("weights") or {}
        acts = group.get("input_activations") or {}
        return f"W{weights.get('num_bits', 16)}A{acts.get('num_bits', 16) if acts else 16}"
    return None


def engine_args(engine: EngineSettings, batch_size: int, checkpoint_path: str, max_model_len: int, seed: int,
                revision: str | None = None) -> dict:
    """Keyword arguments of `vllm.LLM` for the engine settings, ``batch_size`` rows at a time
    (the model at its pinned revision)."""
    pinned = loader_kwargs(checkpoint_path, revision).get("revision")
    args = {
        "model": checkpoint_path,
        "tokenizer": checkpoint_path,
        **({"revision": pinned, "tokenizer_revision": pinned} if pinned else {}),
        "dtype": engine.dtype,
        "enable_prefix_caching": True,
        "max_model_len": max_model_len,
        "max_num_seqs": batch_size,
        "seed": seed,
        "kv_cache_dtype": engine.kv_cache_dtype,
        "logits_processors": [DRAW_PROCESSOR],
    }
    if engine.gpu_memory_utilization is not None:
        args["gpu_memory_utilization"] = engine.gpu_memory_utilization
    if engine.enforce_eager:
        args["enforce_eager"] = True
    if engine.block_size is not None:
        args["block_size"] = engine.block_size
    return args


class VLLMEngine(TraceEngine):
    """Fills the shards of one trace directory: missing forks of stored samples, then missing samples."""

    name = "vllm"

    def __init__(self, spec: EngineSpec, stop_requested=lambda: False):
        from transformers import AutoTokenizer

        super().__init__(spec, stop_requested)
        checkpoint_path = spec.checkpoint_path
        self.horizon = self.key["horizon"]  # the trace's largest budget: sizes the model length
        self.sampling = self.key["sampling"]
        check_device_support(spec.engine, checkpoint_path)
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint_path, **loader_kwargs(checkpoint_path, spec.revision))
        self.tokens = trace_forcing_tokens(self.tokenizer, self.key)
        self.counters = Counters()
        self.llm = None
        self.start_seconds = 0.0

    # -- engine -----------------------------------------------------------------------
    def start(self, longest_prompt: int) -> None:
        if self.llm is not None:
            return
        from vllm import LLM

        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.spec.runtime.cpu_kv_cache_gb))
        slack = len(self.tokens.suffix) + len(self.tokens.wait) + self.tokens.longest_answer + 1
        max_model_len = self.spec.engine.max_model_len or longest_prompt + self.horizon + slack
        args = engine_args(self.spec.engine, self.spec.runtime.batch_size, self.spec.checkpoint_path, max_model_len,
                           self.sampling["seed"], self.spec.revision)
        started = time.time()
        try:
            self.llm = LLM(**args)
        except Exception as error:
            if str(args["kv_cache_dtype"]).startswith("fp8"):
                raise UnsupportedOnThisDevice(
                    f"vLLM could not start with engine.kv_cache_dtype: {args['kv_cache_dtype']} "
                    f"on this device ({type(error).__name__}: {error}). Set engine.kv_cache_dtype: auto "
                    f"or run on hardware with fp8 KV-cache support."
                ) from error
            raise
        self.start_seconds = round(time.time() - started, 2)
        log.info("vLLM engine started in %.1f s (%s)", self.start_seconds, args)

    def _draw_key(self, question_id: str, sample_idx: int, stream: str) -> int:
        return draws.draw_key(self.sampling["seed"], self.trace_dir.name, question_id, sample_idx, stream)

    def _params(self, draw_key: int, max_tokens: int, stop_token: int, ignore_eos: bool):
        """Greedy for vLLM: a sampled request's token is drawn by the DRAW_PROCESSOR (the
        argmax of the scores it leaves), from ``draw_key`` and the token's position."""
        from vllm import SamplingParams

        s = self.sampling
        draw = None
        if s["temperature"] > 0:
            draw = {"key": draw_key, "temperature": s["temperature"], "top_k": s["top_k"], "top_p": s["top_p"]}
        return SamplingParams(
            n=1,
            temperature=0.0,
            extra_args={DRAW_ARG: draw} if draw else None,
            max_tokens=max_tokens,
            stop_token_ids=[stop_token],
            ignore_eos=ignore_eos,
            skip_special_tokens=False,
            detokenize=False,
        )

    def _generate(self, requests: list[tuple[list[int], object]]) -> list[list[int]]:
        """Run (prompt ids, sampling params) requests; return each one's generated ids."""
        from vllm.inputs import TokensPrompt

        if self.stop_requested():
            raise Interrupted("stop requested")
        if not requests:
            return []
        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids, _ in requests]
        outputs = self.llm.generate(prompts, [p for _, p in requests], use_tqdm=False)
        results = []
        for (ids, _), output in zip(requests, outputs):
            cached = getattr(output, "num_cached_tokens", None) or 0
            self.counters.prefill_tokens += len(ids) - cached
            self.counters.cached_prompt_tokens += cached
            self.counters.requests += 1
            results.append(list(output.outputs[0].token_ids))
        return results

    # -- the HF engine's contract --------------------------------------------------------
    def __call__(self, questions, fresh, incomplete, budgets):
        prompts = build_prompts(self.tokenizer, questions, self.key["prompt"], self.key["chat_template_kwargs"])
        prompts = {q: open_thinking(ids, self.tokens) for q, ids in prompts.items()}
        todo = list(fresh) + list(incomplete)
        self.start(max((len(prompts[q]) for q in todo), default=1))
        batch_rows = self.spec.runtime.batch_size
        think_to = max(budgets)  # a generation of smaller budgets than the trace's thinks less
        started, done = time.time(), 0
        # stored samples first: a question extended to more samples may lack forks of its stored ones
        for pending in chunks_by_rows(list(incomplete), {q: self.samples_of(q) for q in incomplete}, batch_rows):
            self._refork(prompts, {q: incomplete[q] for q in pending}, budgets)
            done += len(pending)
            self._progress(done, len(todo), started)
        indices = new_samples(self.trace_dir, fresh, self.samples_of)
        for chunk in chunks_by_rows(list(fresh), {q: len(indices[q]) for q in fresh}, batch_rows):
            rows = [Sample(q, i) for q in chunk for i in indices[q]]
            self._think(prompts, rows, think_to)
            self._answer(prompts, rows, budgets, think_to)
            for question_id in chunk:
                write_new_samples(self.trace_dir, question_id, [r.record() for r in rows if r.question_id == question_id])
            done += len(chunk)
            self._progress(done, len(todo), started)
        return EngineResult(asdict(self.counters), self.tokenizer, self.tokens, prompts)

    def _think(self, prompts, rows: list[Sample], horizon: int) -> None:
        """Extend every sample's thinking to ``horizon`` or its end of thinking."""
        eot = self.tokens.end_of_thinking
        open_rows = list(rows)
        while open_rows:
            requests = []
            for row in open_rows:
                key = self._draw_key(row.question_id, row.sample_idx, draws.THINK)
                params = self._params(key, horizon - len(row.think_ids), eot, ignore_eos=True)
                requests.append((prompts[row.question_id] + row.think_ids, params))
            outputs = self._generate(requests)
            still_open = []
            for row, generated in zip(open_rows, outputs):
                self.counters.decode_tokens += len(generated)
                stopped = bool(generated) and generated[-1] == eot and len(row.think_ids) + len(generated) <= horizon
                if stopped:
                    generated = generated[:-1]
                row.think_ids.extend(generated)
                if not stopped or len(row.think_ids) >= horizon:
                    del row.think_ids[horizon:]
                    continue
                if self.tokens.wait_extension:
                    row.think_ids.extend(self.tokens.wait[: horizon - len(row.think_ids)])
                    if len(row.think_ids) < horizon:
                        still_open.append(row)
                else:
                    row.closed_thinking = True
            open_rows = still_open

    def _answer_params(self, row_key: tuple, stream: str):
        cap = self.tokens.max_natural_answer_tokens if stream == draws.NATURAL else self.tokens.max_answer_tokens
        return self._params(self._draw_key(*row_key, stream), cap, self.tokens.eos, ignore_eos=True)

    def _fork_request(self, prompt, think_ids, budget, row_key):
        ids = prompt + think_ids[:budget] + list(self.tokens.suffix)
        return ids, self._answer_params(row_key, draws.fork_stream(budget))

    def _answer(self, prompts, rows: list[Sample], budgets, horizon: int) -> None:
        """Natural answers, the forced answer at ``horizon``, and forks at smaller budgets (those
        a row does not hold yet)."""
        requests, targets = [], []
        for row in rows:
            prompt = prompts[row.question_id]
            key = (row.question_id, row.sample_idx)
            if row.closed_thinking:
                ids = prompt + row.think_ids + [self.tokens.end_of_thinking]
                requests.append((ids, self._answer_params(key, draws.NATURAL)))
                targets.append((row, None))
            else:
                requests.append(self._fork_request(prompt, row.think_ids, horizon, key))
                targets.append((row, horizon))
            for budget in budgets:
                if budget < horizon and needs_fork(row.record(), budget) and str(budget) not in row.forks:
                    requests.append(self._fork_request(prompt, row.think_ids, budget, key))
                    targets.append((row, budget))
        for (row, budget), answer in zip(targets, self._generate(requests)):
            if budget is None:
                row.answer_ids = answer
                self.counters.decode_tokens += len(answer)
            elif budget == horizon:
                row.forks[str(budget)] = answer
                self.counters.decode_tokens += len(answer)
            else:
                row.forks[str(budget)] = answer
                self.counters.fork_tokens += len(self.tokens.suffix) + len(answer)

    def _refork(self, prompts, shards: dict[str, dict], budgets) -> None:
        """Answer the forks a stored shard lacks (a budget added after it was generated); a
        sample that stopped thinking short of them thinks on first (with the draws of the
        positions it thinks at)."""
        requests, targets, thinking_on = [], [], []
        for question_id, shard in shards.items():
            for sample in first_samples(shard, self.samples_of(question_id)):
                todo = missing_forks(sample, budgets)
                if todo and thinks_on(sample, max(todo)):
                    thinking_on.append((sample, Sample(question_id, sample["sample_idx"], list(sample["think_ids"]),
                                                       forks=dict(sample["forks"]))))
                    continue
                for budget in todo:
                    key = (question_id, sample["sample_idx"])
                    requests.append(self._fork_request(prompts[question_id], sample["think_ids"], budget, key))
                    targets.append((sample, budget))
        for (sample, budget), answer in zip(targets, self._generate(requests)):
            sample["forks"][str(budget)] = answer
            self.counters.fork_tokens += len(self.tokens.suffix) + len(answer)
        rows = [row for _, row in thinking_on]
        self._think(prompts, rows, max(budgets))
        self._answer(prompts, rows, budgets, max(budgets))
        for sample, row in thinking_on:
            add_to_stored(sample, row.forks, row.record())
        for question_id, shard in shards.items():
            write_shard(self.trace_dir, question_id, shard["samples"])

    def _progress(self, done: int, total: int, started: float) -> None:
        elapsed = max(time.time() - started, 1e-9)
        tokens = self.counters.decode_tokens + self.counters.fork_tokens
        log.info("questions %d/%d, %d decode tokens, %.0f tokens/s", done, total, tokens, tokens / elapsed)
