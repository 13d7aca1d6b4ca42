"""StreamingLLM cache: ``sink_tokens`` first tokens + the most recent window, <= ``budget``.

Keys keep the RoPE rotation of their absolute position (no re-rotation into the cache's
own slots); the model's position ids stay absolute (``get_seq_length`` is the absolute
length). After every forward the cache holds at most ``budget`` tokens; inside a forward the
attention also sees the tokens of that forward before they are evicted.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache

from .base import EvictingLayer


class StreamingLLMLayer(EvictingLayer):
    def __init__(self, budget: int, sink_tokens: int = 4):
        super().__init__(budget)
        if sink_tokens >= budget:
            raise ValueError(f"budget ({budget}) must exceed sink_tokens ({sink_tokens})")
        self.sink_tokens = int(sink_tokens)

    def update(self, key_states, value_states, *args, **kwargs):
        keys, values = self._append(key_states, value_states)
        self.keys, self.values = self._evict(keys), self._evict(values)
        return keys, values

    def _evict(self, t: torch.Tensor) -> torch.Tensor:
        n = t.shape[-2]
        if n <= self.budget:
            return t
        recent = self.budget - self.sink_tokens
        parts = [t[..., : self.sink_tokens, :]]
        if recent > 0:
            parts.append(t[..., n - recent :, :])
        return torch.cat(parts, dim=-2)


class StreamingLLMCache(Cache):
    """One :class:`StreamingLLMLayer` per decoder layer."""

    def __init__(self, num_layers: int, budget: int, sink_tokens: int = 4):
        super().__init__(layers=[StreamingLLMLayer(budget, sink_tokens) for _ in range(num_layers)])
