"""Shared pieces of the evicting caches: absolute length vs stored tokens."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class EvictingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose stored tensors may hold fewer tokens than it has seen.

    ``cumulative_length`` counts every token ever added (absolute length): ``get_seq_length``
    returns it, so the model derives absolute position ids from it. ``get_mask_sizes``
    returns ``(stored + query_length, cumulative_length - stored)``: the mask then spans
    exactly the tensors :meth:`update` returns, every stored token lies before the first
    query (fully visible) and the new tokens are causal among themselves.
    """

    is_croppable = False

    def __init__(self, budget: int):
        super().__init__()
        self.budget = int(budget)
        self.cumulative_length = 0

    def stored_length(self) -> int:
        if not self.is_initialized or self.keys is None or self.keys.numel() == 0:
            return 0
        return self.keys.shape[-2]

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        stored = self.stored_length()
        return stored + query_length, self.cumulative_length - stored

    def get_max_length(self) -> int:
        return self.budget

    def _append(self, key_states: torch.Tensor, value_states: torch.Tensor):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.cumulative_length += key_states.shape[-2]
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        return keys, values

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} evicts tokens and cannot be cropped")

    def reset(self) -> None:
        super().reset()
        self.cumulative_length = 0
