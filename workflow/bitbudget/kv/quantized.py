"""KIVI-style quantized KV cache (transformers ``QuantizedCache``) with working row selection.

transformers' quantized layers inherit ``batch_select_indices`` / ``batch_repeat_interleave``
from ``DynamicLayer``, which touch only the full-precision residual and leave the quantized
part with the old batch. HQQ groups the flattened tensor (axis 0), so a group can mix batch
rows: the rows cannot be sliced out of the packed data. The layers here dequantize, apply the
row operation, and quantize again (one extra quantization round trip at a fork point).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import HQQQuantizedLayer, QuantizedCache, QuantoQuantizedLayer


class _RowOpsMixin:
    def _map_rows(self, fn) -> None:
        if not self.is_initialized:
            return
        if self._quantized_keys is not None:
            keys = self._dequantize(self._quantized_keys)
            values = self._dequantize(self._quantized_values)
            keys, values = self._apply_pending_reorder(keys, values)
            self._pending_beam_idx = None
            self._quantized_keys = self._quantize(fn(keys).contiguous(), axis=self.axis_key)
            self._quantized_values = self._quantize(fn(values).contiguous(), axis=self.axis_value)
        if self.keys is not None and self.keys.dim() == 4 and self.keys.numel() > 0:
            self.keys = fn(self.keys)
            self.values = fn(self.values)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map_rows(lambda t: t[indices.to(t.device), ...])

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map_rows(lambda t: t.repeat_interleave(repeats, dim=0))


class HQQLayer(_RowOpsMixin, HQQQuantizedLayer):
    pass


class QuantoLayer(_RowOpsMixin, QuantoQuantizedLayer):
    pass


_LAYER_CLASSES = {"hqq": HQQLayer, "quanto": QuantoLayer}


def make_quantized_cache(model_config, backend: str, bits: int, group_size: int, residual_length: int) -> QuantizedCache:
    backend = backend.lower()
    cache = QuantizedCache(backend, model_config, nbits=bits, q_group_size=group_size,
                           residual_length=residual_length)
    cls = _LAYER_CLASSES[backend]
    cache.layers = [
        cls(nbits=bits, q_group_size=group_size, residual_length=residual_length) for _ in cache.layers
    ]
    return cache
