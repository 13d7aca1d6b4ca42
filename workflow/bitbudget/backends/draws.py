"""Which randomness each drawn token gets: one rule for every engine that draws tokens.

A token of sample ``i`` of question ``q`` in trace ``t`` is drawn with noise fixed by
``(seed, t, q, i, stream, position)``: the stream is the sample's thinking, its natural answer
(after its own end of thinking) or its answer forced at budget ``T``; the position is the number
of tokens before the drawn one, prompt included. Nothing else enters: not the batch (which
other questions and samples share it), the round, the request, where a sample resumed, nor the
horizon. A sample drawn in two steps (stopped at a smaller horizon, or at fewer samples, then
extended) therefore gets the noise of the sample drawn at once, token for token.

This module names the noise (a 63-bit key per sample and stream); bitbudget.backends.sampler
turns a key, a position and a token id into the noise and draws with it (torch).
"""

from __future__ import annotations

import functools
import hashlib

from bitbudget.artifacts import canonical_json

THINK = "think"  # the thinking, every segment of it ("Wait" extensions and resumed thinking included)
NATURAL = "natural"  # the answer after the model's own end of thinking
KEY_BITS = 63  # a key fits a signed 64-bit integer (torch int64, vLLM's msgpack transport)
#: keys kept per process: the HF engine asks for a row's key at every token it draws, and a
#: batch's rows x streams are far fewer than this
KEY_CACHE_SIZE = 1 << 16


def fork_stream(budget: int) -> str:
    """The stream of the answer forced at ``budget`` (the horizon's own answer included)."""
    return f"fork-{budget}"


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def draw_key(seed: int, trace_id: str, question_id: str, sample_idx: int, stream: str) -> int:
    """The key of one sample's stream: fixed by what names the sample, nothing else."""
    content = {"seed": seed, "trace": trace_id, "question": question_id, "sample": sample_idx, "stream": stream}
    digest = hashlib.sha256(canonical_json(content).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - KEY_BITS)
