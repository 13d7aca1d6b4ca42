"""Build KV caches from a strategy dict, validate strategies, measure cache bytes."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from transformers.cache_utils import Cache, DynamicCache

from bitbudget.kvspec import KV_METHODS, check_kv_strategy, with_defaults

from .quantized import make_quantized_cache
from .rkv import QueryHooks, RKVCache, install_query_hooks
from .streaming import StreamingLLMCache

METHODS = KV_METHODS


def validate_kv_strategy(strategy: Mapping) -> None:
    """Raise ``ValueError`` (a ConfigError) naming the offending field; return None when valid."""
    check_kv_strategy(strategy)


def _num_layers(model_config) -> int:
    cfg = model_config.get_text_config(decoder=True) if hasattr(model_config, "get_text_config") else model_config
    if isinstance(cfg, Mapping):
        return int(cfg["num_hidden_layers"])
    return int(cfg.num_hidden_layers)


def make_cache(strategy: Mapping, model_config) -> Cache:
    """A fresh transformers ``Cache`` for one batch, following ``strategy``."""
    validate_kv_strategy(strategy)
    s = with_defaults(strategy)
    method = s["method"]
    if method == "full":
        return DynamicCache(config=model_config)
    if method == "quantized":
        return make_quantized_cache(model_config, str(s["backend"]).lower(), int(s["bits"]),
                                    int(s["group_size"]), int(s["residual_length"]))
    layers = _num_layers(model_config)
    if method == "streaming_llm":
        return StreamingLLMCache(layers, int(s["budget"]), int(s["sink_tokens"]))
    return RKVCache(layers, int(s["budget"]), int(s["observation_window"]), int(s["pool_kernel"]),
                    float(s["lam"]), int(s["compress_every"]))


class _NoHooks:
    def remove(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def prepare_model(model: torch.nn.Module, strategy: Mapping):
    """Install what a strategy needs on the model; returns a handle with ``.remove()``
    (also a context manager). Only ``r_kv`` installs hooks (query capture + compression)."""
    validate_kv_strategy(strategy)
    if strategy["method"] == "r_kv":
        return install_query_hooks(model)
    return _NoHooks()


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _tensors(v)
    elif obj is not None:  # quanto QTensor-like
        for name in ("_data", "_scale", "_shift"):
            if isinstance(getattr(obj, name, None), torch.Tensor):
                yield getattr(obj, name)


def measure_cache_bytes(cache: Cache) -> int:
    """Bytes of storage held by the cache's K/V state: full-precision keys/values, and for
    quantized layers the packed data plus every tensor of its metadata (scales, zeros).
    Storages are counted whole and once (a view holding a larger buffer counts the buffer).
    R-KV's query buffer (``observation_window`` queries per layer) is not K/V and is left out.
    """
    seen: dict[int, int] = {}
    for layer in getattr(cache, "layers", []):
        for attr in ("keys", "values", "_quantized_keys", "_quantized_values"):
            for t in _tensors(getattr(layer, attr, None)):
                st = t.untyped_storage()
                if st.nbytes():
                    seen[st.data_ptr()] = st.nbytes()
    return int(sum(seen.values()))
