"""Generation engines (HF transformers, vLLM): each fills a trace directory's shards."""

from dataclasses import dataclass

from bitbudget.forcing import ForcingTokens


@dataclass(frozen=True)
class EngineResult:
    """What every engine hands back to `bitbudget.generate.write_generation`."""

    counters: dict
    tokenizer: object
    tokens: ForcingTokens
    prompts: dict[str, list[int]]
