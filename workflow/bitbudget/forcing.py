"""Budget forcing (s1-style) as token ids, shared by every engine.

A sample thinks until it closes its thinking or reaches the horizon (the largest token
budget). For each smaller budget T the answer is forked: the first T thinking tokens,
then the forced-answer suffix, then the model finishes a short answer. A sample that
closed its thinking within T keeps its natural answer at that budget.

Two answer caps. A forced answer (after the suffix, which ends in ``\boxed{`` or
``Answer: ``) needs only the answer itself: ``sampling.max_answer_tokens``. A natural answer
follows the model's own end of thinking, where Qwen3 writes a summary before its
``\boxed{}``: ``sampling.max_natural_answer_tokens`` (the schema holds its default). With
the "Wait" extension on, thinking never ends early, so only the forced cap applies.
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
    max_answer_tokens: int  # after the forced suffix
    max_natural_answer_tokens: int  # after the model's own end of thinking
    start_of_thinking: int | None = None  # `<think>` when the tokenizer has it as one token

    @property
    def longest_answer(self) -> int:
        return max(self.max_answer_tokens, self.max_natural_answer_tokens)


NATURAL_CAP = "max_natural_answer_tokens"


def natural_answer_tokens(sampling: dict) -> int:
    """The natural-answer cap of a trace key's sampling section: absent there when it
    equals `max_answer_tokens` (see :func:`sampling_key`)."""
    return int(sampling.get(NATURAL_CAP, sampling["max_answer_tokens"]))


def sampling_key(sampling: dict, forcing: dict) -> dict:
    """The sampling section as it enters a trace key. The natural-answer cap enters only
    where it acts (wait extension off) and differs from `max_answer_tokens`, the cap that
    natural answers had before it existed: every earlier trace keeps its id."""
    key = dict(sampling)
    if forcing["wait_extension"] or key.get(NATURAL_CAP, sampling["max_answer_tokens"]) == sampling["max_answer_tokens"]:
        key.pop(NATURAL_CAP, None)
    return key


def answer_token_caps(sampling: dict, forcing: dict) -> dict:
    """Answer tokens a sequence may hold after its thinking: ``forced`` (after the suffix)
    and ``natural`` (after an early end of thinking; None with the wait extension on, when
    thinking never ends early). What the memory model charges for answers."""
    natural = None if forcing["wait_extension"] else natural_answer_tokens(sampling_key(sampling, forcing))
    return {"forced": int(sampling["max_answer_tokens"]), "natural": natural}


def thinking_opener(end_of_thinking: str) -> str | None:
    """The tag that opens what `end_of_thinking` closes: `<think>` for `</think>`."""
    return "<" + end_of_thinking[2:] if end_of_thinking.startswith("</") else None


def open_thinking(prompt: list[int], tokens: ForcingTokens) -> list[int]:
    """The prompt with its thinking opened, so that every generated token is a thinking token.

    Qwen3's chat template with ``enable_thinking`` ends the prompt at ``assistant\n`` and
    leaves ``<think>`` to the model, which would count it as thinking; a template that
    opens (the tiny models': ``assistant\n<think>\n``) or closes (``enable_thinking:
    false``) the thinking itself is left as it is. Read in the generation prompt: the
    tokens after the prompt's last end of turn (eos).
    """
    if tokens.start_of_thinking is None:
        return list(prompt)
    last_eos = max((i for i, t in enumerate(prompt) if t == tokens.eos), default=-1)
    generation_prompt = prompt[last_eos + 1:]
    if tokens.start_of_thinking in generation_prompt or tokens.end_of_thinking in generation_prompt:
        return list(prompt)
    return list(prompt) + [tokens.start_of_thinking]


def forcing_tokens(tokenizer, forcing: dict, max_answer_tokens: int,
                   max_natural_answer_tokens: int | None = None) -> ForcingTokens:
    """Token ids of a forcing config whose `forced_answer_suffix` is the dataset kind's string.
    The natural-answer cap defaults to the forced one."""
    end_ids = tokenizer.encode(forcing["end_of_thinking"], add_special_tokens=False)
    if len(end_ids) != 1:
        raise ValueError(
            f"forcing.end_of_thinking '{forcing['end_of_thinking']}' is {len(end_ids)} tokens for this "
            f"tokenizer; it must be exactly one token (e.g. '</think>' for Qwen3)"
        )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token; set eos_token in its tokenizer_config.json")
    opener = thinking_opener(forcing["end_of_thinking"])
    opener_ids = tokenizer.encode(opener, add_special_tokens=False) if opener else []
    return ForcingTokens(
        end_of_thinking=end_ids[0],
        eos=eos,
        suffix=tuple(tokenizer.encode(forcing["forced_answer_suffix"], add_special_tokens=False)),
        wait=tuple(tokenizer.encode(forcing["wait_text"], add_special_tokens=False)),
        wait_extension=forcing["wait_extension"],
        max_answer_tokens=max_answer_tokens,
        max_natural_answer_tokens=max_answer_tokens if max_natural_answer_tokens is None else max_natural_answer_tokens,
        start_of_thinking=opener_ids[0] if len(opener_ids) == 1 else None,
    )


def trace_forcing_tokens(tokenizer, trace_key: dict) -> ForcingTokens:
    """The forcing tokens and answer caps of a trace key (what every engine runs)."""
    sampling = trace_key["sampling"]
    return forcing_tokens(tokenizer, trace_key["forcing"], sampling["max_answer_tokens"],
                          natural_answer_tokens(sampling))


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


def thinks_on(sample: dict, budget: int) -> bool:
    """A stored sample whose thinking stopped short of ``budget`` without ending (it was drawn
    for a generation whose largest budget was smaller): it continues thinking from where it
    stopped before it is forked at ``budget``."""
    return not sample["closed_thinking"] and len(sample["think_ids"]) < budget
