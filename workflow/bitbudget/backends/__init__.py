"""Generation engines (HF transformers, vLLM, simulated): each fills a trace directory's shards."""

from dataclasses import dataclass, fields
from pathlib import Path

from bitbudget.enginespec import EngineSpec
from bitbudget.forcing import ForcingTokens, sample_at_budget


class TraceEngine:
    """What every engine holds of the generation it fills: its spec, its trace key, the samples
    per question it reads (``samples_of``: fewer for a closed question), its trace directory and
    the stop flag it polls."""

    def __init__(self, spec: EngineSpec, stop_requested=lambda: False):
        self.spec = spec
        self.key = spec.trace_key
        self.samples_of = spec.samples_of
        self.trace_dir = Path(spec.trace_dir)
        self.stop_requested = stop_requested


class Interrupted(RuntimeError):
    """Generation was asked to stop (SIGTERM); finished shards are kept."""


@dataclass
class Counters:
    """Token work of one generation, recorded in its metadata (never part of an id)."""

    decode_tokens: int = 0  # sampled (or teacher-forced) thinking and answer tokens of the sample's own run
    prefill_tokens: int = 0  # prompt tokens computed (not served from a prefix cache)
    fork_tokens: int = 0  # suffix and answer tokens of forks below the horizon
    cached_prompt_tokens: int = 0  # prompt tokens served from vLLM's prefix cache
    requests: int = 0  # engine requests (vLLM)

    def add(self, other: "Counters") -> None:
        for counter in fields(self):
            setattr(self, counter.name, getattr(self, counter.name) + getattr(other, counter.name))


def sample_record(sample_idx: int, think_ids: list, closed_thinking: bool, answer_ids: list, forks: dict) -> dict:
    """One sample as a trace shard stores it, the same for every engine."""
    return {
        "sample_idx": sample_idx,
        "think_ids": think_ids,
        "closed_thinking": closed_thinking,
        "answer_ids": answer_ids,
        "forks": forks,
    }


@dataclass(frozen=True)
class EngineResult:
    """What every engine hands back to `bitbudget.generate.write_generation`.

    The two methods are the contract `samples_table` reads; an engine without token ids (the
    simulated one) returns another object with the same two methods and `counters`.
    """

    counters: dict
    tokenizer: object
    tokens: ForcingTokens
    prompts: dict[str, list[int]]

    def prompt_tokens(self, question_id: str) -> int:
        return len(self.prompts[question_id])

    def at_budget(self, sample: dict, budget: int) -> dict:
        """text, thinking_tokens, answer_tokens, forced of one stored sample at one budget."""
        at = sample_at_budget(sample, budget, self.tokens)
        text = self.tokenizer.decode(at.pop("ids"), skip_special_tokens=False)
        return {**at, "text": text}
