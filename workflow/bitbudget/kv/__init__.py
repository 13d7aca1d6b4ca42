"""KV-cache strategies for the HF generation backend.

A strategy is a dict, e.g. ``{"method": "full"}``,
``{"method": "quantized", "backend": "hqq", "bits": 4, "group_size": 64, "residual_length": 128}``,
``{"method": "streaming_llm", "budget": 2048, "sink_tokens": 4}``,
``{"method": "r_kv", "budget": 2048, "observation_window": 8, "pool_kernel": 7, "lam": 0.1,
"compress_every": 128}``.

Use::

    cache = make_cache(strategy, model.config)
    with prepare_model(model, strategy):          # hooks for r_kv, no-op otherwise
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
        ...  # step by step; copy.deepcopy(cache) and cache.batch_select_indices(idx) at forks

What the decode loop must pass. Rows of a batch share one prompt length (no padding), and
the loop passes NO ``attention_mask`` (or None): the evicting caches store fewer tokens
than their absolute length, and their ``get_mask_sizes`` sizes the causal mask to the
stored tensors. ``position_ids`` may be omitted: the model derives them from
``cache.get_seq_length()``, which stays the absolute length for every strategy; if the loop
passes them, they must be absolute (``arange(L, L + T)`` with ``L = cache.get_seq_length()``).
``cache.get_seq_length()`` is therefore NOT the number of stored tokens: use
``measure_cache_bytes`` / ``layer.stored_length()`` for that. Eviction caches cannot be
cropped (no speculative decoding rollback).
"""

from .factory import (
    METHODS,
    make_cache,
    measure_cache_bytes,
    prepare_model,
    validate_kv_strategy,
    with_defaults,
)
from .rkv import RKVCache, RKVLayer, install_query_hooks
from .streaming import StreamingLLMCache, StreamingLLMLayer

__all__ = [
    "METHODS",
    "RKVCache",
    "RKVLayer",
    "StreamingLLMCache",
    "StreamingLLMLayer",
    "install_query_hooks",
    "make_cache",
    "measure_cache_bytes",
    "prepare_model",
    "validate_kv_strategy",
    "with_defaults",
]
