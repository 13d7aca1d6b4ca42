"""KV-cache strategy rules, torch-free: parse-time validation and the cache factory share them.

Defaults come from the config schema (one place); a strategy given without them, e.g. by a
test or a benchmark, is completed from there.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Mapping

from bitbudget.errors import ConfigError
from bitbudget.schema import load_schema

KV_METHODS = ("full", "quantized", "streaming_llm", "r_kv")
KV_QUANT_BITS = {"hqq": (2, 4, 8), "quanto": (2, 4)}


@cache
def kv_defaults(method: str) -> dict[str, Any]:
    """The schema's defaults for one KV method's fields."""
    for branch in load_schema()["properties"]["kv_strategies"]["additionalProperties"]["allOf"]:
        if branch["if"]["properties"]["method"]["const"] == method:
            fields = branch["then"]["properties"]
            return {name: spec["default"] for name, spec in fields.items() if "default" in spec}
    return {}


def with_defaults(strategy: Mapping) -> dict:
    """The strategy with the defaults of its method filled in."""
    method = strategy.get("method")
    return {"method": method, **kv_defaults(method), **dict(strategy)}


def _integer(strategy: Mapping, name: str, minimum: int, field: str) -> int:
    value = strategy.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"config field '{field}.{name}': must be an integer >= {minimum}, got {value!r}; "
                          f"fix: give such an integer")
    return value


def check_kv_strategy(strategy: Mapping, field: str = "kv_strategy") -> dict:
    """The strategy with its defaults, or ConfigError naming the offending field and the fix."""
    if not isinstance(strategy, Mapping):
        raise ConfigError(f"config field '{field}': must be a mapping, got {type(strategy).__name__}")
    method = strategy.get("method")
    if method not in KV_METHODS:
        raise ConfigError(f"config field '{field}.method': unknown method {method!r}; fix: use one of {KV_METHODS}")
    spec = with_defaults(strategy)
    if method == "quantized":
        _check_quantized(spec, field)
    elif method == "streaming_llm":
        budget = _integer(spec, "budget", 1, field)
        sinks = _integer(spec, "sink_tokens", 0, field)
        if budget <= sinks:
            raise ConfigError(
                f"config field '{field}.budget': KV budget {budget} must exceed sink_tokens={sinks} (the recent "
                f"window needs at least one token); fix: raise the budget or lower sink_tokens")
    elif method == "r_kv":
        _check_r_kv(spec, field)
    return spec


def _check_quantized(spec: dict, field: str) -> None:
    backend = str(spec["backend"]).lower()
    if backend not in KV_QUANT_BITS:
        raise ConfigError(f"config field '{field}.backend': unknown backend {spec['backend']!r}; "
                          f"fix: use one of {tuple(KV_QUANT_BITS)}")
    if spec.get("bits") not in KV_QUANT_BITS[backend]:
        raise ConfigError(f"config field '{field}.bits': {spec.get('bits')!r}-bit is not supported by the "
                          f"{backend} backend; fix: use one of {list(KV_QUANT_BITS[backend])}")
    _integer(spec, "group_size", 1, field)
    _integer(spec, "residual_length", 0, field)


def _check_r_kv(spec: dict, field: str) -> None:
    budget = _integer(spec, "budget", 1, field)
    window = _integer(spec, "observation_window", 1, field)
    _integer(spec, "pool_kernel", 1, field)
    _integer(spec, "compress_every", 1, field)
    if budget < window:
        raise ConfigError(f"config field '{field}.budget': KV budget {budget} is below observation_window "
                          f"({window}); fix: raise the budget")
    lam = spec["lam"]
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        raise ConfigError(f"config field '{field}.lam': must be a number in [0, 1], got {lam!r}; fix: give one")
