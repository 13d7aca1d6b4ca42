"""The measured throughput file: decode tokens/s per model size and engine, for `bitbudget plan`.

``bench/gpu_check.py`` writes it (``throughput.json``); ``bitbudget plan --throughput-file PATH``
reads it in place of the plan's assumed figures. The plan reads only these fields::

    {
      "format": "bitbudget-throughput",
      "version": 1,
      "device": "NVIDIA H100 80GB HBM3",
      "throughput": {
        "8b": {"hf": {"full": 310.0, "hqq4": 190.0, "streaming_llm-2000": 330.0, ...},
               "vllm": 2400.0},
        ...
      }
    }

``throughput[size]["hf"]`` maps a KV label (:func:`kv_label`) to the decode tokens/s of one HF
generate job, all its sequences together; ``throughput[size]["vllm"]`` is the vLLM figure, where
one was measured. Every other field (the runs behind each figure, the memory beside the memory
model's) is for the reader.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

from bitbudget.errors import ConfigError
from bitbudget.kvspec import with_defaults

FORMAT = "bitbudget-throughput"
VERSION = 1
ENGINES = ("hf", "vllm")
FULL_KV = "full"
EVICTION_METHODS = ("streaming_llm", "r_kv")
REMAKE = "fix: rerun `python bench/gpu_check.py` to write it again, or edit the field"


class ThroughputFileError(ConfigError):
    """The throughput file is unreadable or malformed; the message names the field and the fix."""


def kv_label(strategy: Mapping) -> str:
    """The label of a KV strategy in a throughput file: ``full``, ``hqq4`` (backend and bits),
    ``streaming_llm-2000`` / ``r_kv-8000`` (method and KV budget)."""
    strategy = with_defaults(strategy)
    method = strategy["method"]
    if method == "quantized":
        return f"{str(strategy['backend']).lower()}{strategy['bits']}"
    if method in EVICTION_METHODS:
        return f"{method}-{strategy['budget']}"
    return method


def document(device: str, throughput: dict, details: dict) -> dict:
    """The file's content: the fields the plan reads, then ``details`` for the reader."""
    return {"format": FORMAT, "version": VERSION, "device": device, "throughput": throughput, **details}


def _fail(path, field: str, problem: str) -> ThroughputFileError:
    return ThroughputFileError(f"{path}: field '{field}' {problem}; {REMAKE}")


def _check_rate(path, field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise _fail(path, field, f"must be a positive number of decode tokens per second, got {value!r}")
    return float(value)


def _check_size(path, size: str, entry) -> dict:
    if not isinstance(entry, Mapping):
        raise _fail(path, f"throughput.{size}", "must map engines (hf, vllm) to tokens/s")
    unknown = sorted(set(entry) - set(ENGINES))
    if unknown:
        raise _fail(path, f"throughput.{size}.{unknown[0]}", f"is not an engine (one of {', '.join(ENGINES)})")
    out: dict = {}
    if "vllm" in entry:
        out["vllm"] = _check_rate(path, f"throughput.{size}.vllm", entry["vllm"])
    if "hf" in entry:
        if not isinstance(entry["hf"], Mapping) or not entry["hf"]:
            raise _fail(path, f"throughput.{size}.hf", "must map KV labels (full, hqq4, ...) to tokens/s")
        out["hf"] = {label: _check_rate(path, f"throughput.{size}.hf.{label}", rate)
                     for label, rate in entry["hf"].items()}
    return out


def check(data, path: str | Path = "throughput file") -> dict:
    """The ``throughput`` table of a parsed file, sizes lower-cased; raises naming the field."""
    if not isinstance(data, Mapping):
        raise _fail(path, "(top level)", "must be a JSON object")
    if data.get("format") != FORMAT:
        raise _fail(path, "format", f"must be {FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != VERSION:
        raise _fail(path, "version",
                    f"must be {VERSION} (the version this bitbudget reads), got {data.get('version')!r}")
    table = data.get("throughput")
    if not isinstance(table, Mapping) or not table:
        raise _fail(path, "throughput", "must map model sizes (0.6b, 8b, ...) to their engines' tokens/s")
    return {str(size).lower(): _check_size(path, size, entry) for size, entry in table.items()}


def read(path: str | Path) -> dict:
    """The checked ``throughput`` table of a throughput file."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise ThroughputFileError(f"{path}: cannot read it ({error.strerror}); fix: give the path of the "
                                  f"throughput.json that bench/gpu_check.py wrote") from None
    except json.JSONDecodeError as error:
        raise ThroughputFileError(f"{path}: not valid JSON (line {error.lineno}: {error.msg}); {REMAKE}") from None
    return check(data, path)


def hf_rate(rates: Mapping[str, float], strategy: Mapping) -> float:
    """The HF figure for a KV strategy from one size's ``hf`` table: its own label; else the same
    method at the nearest measured budget; else the full-KV figure; else the slowest measured."""
    label = kv_label(strategy)
    if label in rates:
        return rates[label]
    if strategy["method"] in EVICTION_METHODS:
        budgets = {int(other.rpartition("-")[2]): rate for other, rate in rates.items()
                   if other.startswith(f"{strategy['method']}-")}
        if budgets:
            return budgets[min(budgets, key=lambda b: abs(b - int(strategy["budget"])))]
    return rates.get(FULL_KV, min(rates.values()))
