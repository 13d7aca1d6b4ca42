"""The measured throughput file: decode tokens/s per model size and engine, for `bitbudget plan`.

``bench/gpu_check.py`` writes it (``throughput.json``); ``bitbudget plan --throughput-file PATH``
reads it in place of the plan's assumed figures. The plan reads only these fields::

    {
      "format": "bitbudget-throughput",
      "version": 2,
      "device": "NVIDIA H100 80GB HBM3",
      "throughput": {
        "8b": {"hf": {"full": 310.0, "hqq4": 190.0, "streaming_llm-2000": 330.0, ...},
               "vllm": 2400.0,
               "load_seconds": {"hf": 40.0, "vllm": 95.0},
               "batches": {"hf": {"full": {"1": 52.0, "8": 310.0}, ...},
                           "vllm": {"16": 900.0, "64": 2400.0}}},
        ...
      }
    }

``throughput[size]["hf"]`` maps a KV label (:func:`kv_label`) to the decode tokens/s of one HF
generate job, all its sequences together; ``throughput[size]["vllm"]`` is the vLLM figure, where
one was measured. New in version 2, both optional: ``load_seconds`` (per engine, the seconds a
generate job takes to load the model before it decodes) and ``batches`` (decode tokens/s at
several numbers of concurrent sequences: per KV label for ``hf``, one curve for ``vllm``); the
plan reads a curve relative to its largest measured batch (:func:`batch_factor`). Version 1 files
(no such fields) still read. Every other field (the runs behind each figure, the memory beside
the memory model's) is for the reader.

Where a file gives no figure, the plan takes the assumed ones below (:data:`ASSUMED_LOAD_SECONDS`,
:data:`ASSUMED_SATURATION_SEQUENCES`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

from bitbudget.errors import ConfigError
from bitbudget.kvspec import with_defaults

FORMAT = "bitbudget-throughput"
VERSION = 2
READABLE_VERSIONS = (1, 2)
ENGINES = ("hf", "vllm")
V2_FIELDS = ("load_seconds", "batches")  # per size, new in version 2
FULL_KV = "full"
EVICTION_METHODS = ("streaming_llm", "r_kv")
REMAKE = "fix: rerun `python bench/gpu_check.py` to write it again, or edit the field"

# Seconds one generate job spends loading its model before it decodes (per engine and model size;
# an unknown size takes UNKNOWN_SIZE_LOAD_SECONDS). Assumed, not measured: vLLM reads the
# checkpoint (bf16 at about 1 GB/s from a shared file system), profiles memory and captures CUDA
# graphs (about a minute in vLLM's start-up logs of 8B-class models); HF only reads the weights.
# A throughput file's `load_seconds` replaces them per size and engine.
ASSUMED_LOAD_SECONDS = {
    "vllm": {"0.6b": 60.0, "1.7b": 70.0, "4b": 90.0, "8b": 110.0, "14b": 150.0, "32b": 240.0},
    "hf": {"0.6b": 15.0, "1.7b": 20.0, "4b": 30.0, "8b": 45.0, "14b": 75.0, "32b": 150.0},
}
UNKNOWN_SIZE_LOAD_SECONDS = 120.0
# Concurrent sequences at which one generate job's decode reaches the plan's tokens/s (assumed:
# below it throughput falls linearly with the sequences, decode being bound by reading the
# weights once per step for every sequence of the batch). HF: the paper's HF batch (one question's
# 8 samples, the batch its figures and bench/gpu_check.py's table are at). vLLM: at long reasoning
# contexts KV memory admits about 10-40 sequences of a Qwen3 model on one 80 GB GPU (the memory
# model), so the table's figure (batch limited by KV memory) is taken at 32. A throughput file's
# `batches` curve replaces the line for its size.
ASSUMED_SATURATION_SEQUENCES = {"hf": 8, "vllm": 32}


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


def _check_seconds(path, field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _fail(path, field, f"must be a number of seconds, 0 or more, got {value!r}")
    return float(value)


def _check_engines(path, field: str, value) -> Mapping:
    if not isinstance(value, Mapping) or not value:
        raise _fail(path, field, f"must map engines ({', '.join(ENGINES)}) to their figures")
    unknown = sorted(set(value) - set(ENGINES))
    if unknown:
        raise _fail(path, f"{field}.{unknown[0]}", f"is not an engine (one of {', '.join(ENGINES)})")
    return value


def _check_curve(path, field: str, curve) -> dict[int, float]:
    """{concurrent sequences: tokens/s}; JSON keys are strings of positive integers."""
    if not isinstance(curve, Mapping) or not curve:
        raise _fail(path, field, 'must map numbers of concurrent sequences to tokens/s, e.g. {"1": 52.0, "8": 310.0}')
    out = {}
    for batch, rate in curve.items():
        if not str(batch).isdigit() or int(batch) < 1:
            raise _fail(path, f"{field}.{batch}", "must be a number of concurrent sequences (a positive integer)")
        out[int(batch)] = _check_rate(path, f"{field}.{batch}", rate)
    return dict(sorted(out.items()))


def _check_v2_fields(path, size: str, entry: Mapping) -> dict:
    out: dict = {}
    if "load_seconds" in entry:
        field = f"throughput.{size}.load_seconds"
        out["load_seconds"] = {engine: _check_seconds(path, f"{field}.{engine}", seconds)
                               for engine, seconds in _check_engines(path, field, entry["load_seconds"]).items()}
    if "batches" in entry:
        field = f"throughput.{size}.batches"
        batches = _check_engines(path, field, entry["batches"])
        out["batches"] = {}
        if "vllm" in batches:
            out["batches"]["vllm"] = _check_curve(path, f"{field}.vllm", batches["vllm"])
        if "hf" in batches:
            if not isinstance(batches["hf"], Mapping) or not batches["hf"]:
                raise _fail(path, f"{field}.hf", "must map KV labels (full, hqq4, ...) to batch curves")
            out["batches"]["hf"] = {label: _check_curve(path, f"{field}.hf.{label}", curve)
                                    for label, curve in batches["hf"].items()}
    return out


def _check_size(path, size: str, entry, version: int) -> dict:
    if not isinstance(entry, Mapping):
        raise _fail(path, f"throughput.{size}", "must map engines (hf, vllm) to tokens/s")
    newer = [key for key in V2_FIELDS if key in entry]
    if newer and version < VERSION:
        raise _fail(path, f"throughput.{size}.{newer[0]}", f"is new in version {VERSION}, the file says version "
                                                           f"{version}; fix: set \"version\": {VERSION}")
    unknown = sorted(set(entry) - set(ENGINES) - set(V2_FIELDS))
    if unknown:
        raise _fail(path, f"throughput.{size}.{unknown[0]}",
                    f"is not an engine (one of {', '.join(ENGINES)}) nor one of {', '.join(V2_FIELDS)}")
    out: dict = _check_v2_fields(path, size, entry)
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
    version = data.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise _fail(path, "version", f"must be one of {', '.join(map(str, READABLE_VERSIONS))} (the versions this "
                                     f"bitbudget reads), got {version!r}")
    table = data.get("throughput")
    if not isinstance(table, Mapping) or not table:
        raise _fail(path, "throughput", "must map model sizes (0.6b, 8b, ...) to their engines' tokens/s")
    return {str(size).lower(): _check_size(path, size, entry, version) for size, entry in table.items()}


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


def hf_label(rates: Mapping[str, float], strategy: Mapping) -> str:
    """The label whose HF figure stands for a KV strategy in one size's ``hf`` table: its own
    label; else the same method at the nearest measured budget; else full KV; else the slowest."""
    label = kv_label(strategy)
    if label in rates:
        return label
    if strategy["method"] in EVICTION_METHODS:
        budgets = {int(other.rpartition("-")[2]): other for other in rates
                   if other.startswith(f"{strategy['method']}-")}
        if budgets:
            return budgets[min(budgets, key=lambda b: abs(b - int(strategy["budget"])))]
    return FULL_KV if FULL_KV in rates else min(rates, key=rates.get)


def hf_rate(rates: Mapping[str, float], strategy: Mapping) -> float:
    """The HF figure for a KV strategy from one size's ``hf`` table (:func:`hf_label`)."""
    return rates[hf_label(rates, strategy)]


def load_seconds(measured: Mapping | None, size: str | None, engine: str) -> float:
    """A generate job's model-load seconds: the file's figure for the size and engine, else assumed."""
    entry = (measured or {}).get(size, {})
    if engine in entry.get("load_seconds", {}):
        return entry["load_seconds"][engine]
    return ASSUMED_LOAD_SECONDS.get(engine, {}).get(size, UNKNOWN_SIZE_LOAD_SECONDS)


def assumed_curve(engine: str) -> dict[int, float]:
    """The assumed batch curve (relative tokens/s): linear up to the engine's saturation, then flat."""
    return {ASSUMED_SATURATION_SEQUENCES[engine]: 1.0}


def batch_curve(measured: Mapping | None, size: str | None, engine: str, strategy: Mapping | None = None) -> dict:
    """{concurrent sequences: tokens/s} of a size and engine (HF: of the KV strategy's label, as
    :func:`hf_label` picks it), from a throughput file; else the assumed line."""
    curves = (measured or {}).get(size, {}).get("batches", {}).get(engine)
    if curves and engine == "hf":
        curves = curves[hf_label({label: max(c.values()) for label, c in curves.items()},
                                 strategy or {"method": FULL_KV})]
    return dict(curves) if curves else assumed_curve(engine)


def batch_factor(curve: Mapping[int, float], sequences: float) -> float:
    """Decode tokens/s at ``sequences`` concurrent sequences relative to the curve's largest batch:
    linear between measured batches and from (0, 0) to the first; flat beyond the largest (a job
    with more sequences than measured runs at the largest batch's rate)."""
    points = [(0, 0.0), *sorted(curve.items())]
    top = points[-1][1]
    for (b0, r0), (b1, r1) in zip(points, points[1:]):
        if sequences <= b1:
            return (r0 + (r1 - r0) * (sequences - b0) / (b1 - b0)) / top
    return 1.0
