"""Budget forcing (s1-style) as token ids, shared by every engine.

A sample thinks until it closes its thinking or reaches the horizon (the largest token
budget). For each smaller budget T the answer is forked: the first T thinking tokens,
then the forced-answer suffix, then the model finishes a short answer. A sample that
closed its thinking within T keeps its natural answer at that budget.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ForcingTokens:
    end_of_thinking: int
    eos: int
    suffix: tuple[int, ...]
    wait: tuple[int, ...]
    wait_extension: bool
    max_answer_tokens: int


def forcing_tokens(tokenizer, forcing: dict, max_answer_tokens: int) -> ForcingTokens:
    """Token ids of a forcing config whose `forced_answer_suffix` is the dataset kind's string."""
    end_ids = tokenizer.encode(forcing["end_of_thinking"], add_special_tokens=False)
    if len(end_ids) != 1:
        raise ValueError(
            f"forcing.end_of_thinking '{forcing['end_of_thinking']}' is {len(end_ids)} tokens for this "
            f"tokenizer; it must be exactly one token (e.g. '</think>' for Qwen3)"
        )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token; set eos_token in its tokenizer_config.json")
    return ForcingTokens(
        end_of_thinking=end_ids[0],
        eos=eos,
        suffix=tuple(tokenizer.encode(forcing["forced_answer_suffix"], add_special_tokens=False)),
        wait=tuple(tokenizer.encode(forcing["wait_text"], add_special_tokens=False)),
        wait_extension=forcing["wait_extension"],
        max_answer_tokens=max_answer_tokens,
    )


def sample_at_budget(sample: dict, budget: int, tokens: ForcingTokens) -> dict:
    """The token ids a run with this budget would have produced for one stored sample."""
    think = sample["think_ids"]
    if sample["closed_thinking"] and len(think) <= budget:
        return {
            "ids": think + [tokens.end_of_thinking] + sample["answer_ids"],
            "thinking_tokens": len(think),
            "answer_tokens": len(sample["answer_ids"]),
            "forced": False,
        }
    answer = sample["forks"][str(budget)]
    return {
        "ids": think[:budget] + list(tokens.suffix) + answer,
        "thinking_tokens": budget,
        "answer_tokens": len(answer),
        "forced": True,
    }


def needs_fork(sample: dict, budget: int) -> bool:
    return not (sample["closed_thinking"] and len(sample["think_ids"]) <= budget)
