"""History-free sampling (torch): Gumbel-max draws with noise from a counter-based hash.

A draw samples from ``softmax(logits / temperature)`` restricted by ``top_k`` then ``top_p``
(the order and rules of transformers' warpers and of vLLM's sampler) as the argmax of the
restricted scores plus Gumbel noise. The noise of token ``v`` is a hash of (the stream's key,
the position, ``v``) computed with integer tensor arithmetic: no generator state, so a row's
draw depends on its own logits, key and position only (bitbudget.backends.draws), on any device.
The HF engine draws with it in its decode loop; the vLLM engine through the logits processor in
bitbudget.backends.vllm_sampler. Greedy decoding (temperature 0) is the plain argmax.

The uniforms have 32 bits: a token more than about 22 nats below the best one (probability
below 1e-9 relative to it) is never drawn.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
MASK16 = 0xFFFF
# the "lowbias32" integer hash (C. Wellons): two multiply-xorshift rounds of a 32-bit word
MIX_SHIFTS = (16, 15, 16)
MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
GOLDEN32 = 0x9E3779B9  # spreads consecutive token ids before they are mixed
UNIFORM_SCALE = 2.0**-32


def mul32(x: torch.Tensor, multiplier: int) -> torch.Tensor:
    """``x * multiplier`` modulo 2**32 for int64 ``x`` below 2**32, in 16-bit halves of the
    multiplier: no product leaves int64's range (an overflow would be the kernel's choice)."""
    low = x * (multiplier & MASK16)
    high = ((x * (multiplier >> 16)) & MASK16) << 16
    return (low + high) & MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash of each element (int64 tensors holding values below 2**32)."""
    first, second, third = MIX_SHIFTS
    x = x ^ (x >> first)
    x = mul32(x, MIX_MULTIPLIERS[0])
    x = x ^ (x >> second)
    x = mul32(x, MIX_MULTIPLIERS[1])
    return x ^ (x >> third)


def uniforms(keys: torch.Tensor, positions: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Uniforms in (0, 1), float64, one per (row, token): ``keys`` and ``positions`` per row
    (int64, shape [rows]); ``token_ids`` int64 [rows, candidates]."""
    low, high = keys & MASK32, (keys >> 32) & MASK32
    row = mix32(mix32(low ^ mix32(positions & MASK32)) ^ high)
    spread = mul32(token_ids, GOLDEN32)
    word = mix32(mix32(spread ^ row.unsqueeze(1)) ^ low.unsqueeze(1))
    return (word.double() + 0.5) * UNIFORM_SCALE


def gumbel(keys: torch.Tensor, positions: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(uniforms(keys, positions, token_ids)))


def candidates(scores: torch.Tensor, top_k: int, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, token ids) of the tokens ``top_k`` and ``top_p`` keep, best first; the scores of
    the tokens top_p removes are -inf."""
    vocab = scores.shape[-1]
    if 0 < top_k < vocab:
        values, ids = scores.topk(top_k, dim=-1)
    elif top_p < 1:
        values, ids = scores.sort(dim=-1, descending=True)
    else:
        return scores, torch.arange(vocab, device=scores.device).expand_as(scores)
    if top_p < 1:
        probs = torch.softmax(values, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        values = values.masked_fill(mass_before >= top_p, float("-inf"))  # the first token is always kept
    return values, ids


def draw(logits: torch.Tensor, keys: torch.Tensor | None, positions: torch.Tensor | None,
         temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """One token per row of ``logits`` [rows, vocab]: the argmax at temperature 0, else the
    Gumbel-max draw with the noise of (key, position) per row."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    values, ids = candidates(logits.float() / temperature, top_k, top_p)
    noisy = values.double() + gumbel(keys.to(ids.device), positions.to(ids.device), ids)
    return ids.gather(1, noisy.argmax(dim=-1, keepdim=True)).squeeze(1)
