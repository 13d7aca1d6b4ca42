"""Generation engines (HF transformers, vLLM, simulated): each fills a trace directory's shards."""

from dataclasses import dataclass

from bitbudget.forcing import ForcingTokens, sample_at_budget


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
