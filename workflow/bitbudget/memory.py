"""GPU memory model: weights + KV cache, as in arXiv 2510.10964 (GB means GiB = 2**30 bytes).

Weights
    ``M_w = N_q*b/8 + (N_q/g)*(b_s+b_z)/8 + N_unq*2`` bytes. ``N_q`` are the linear layers of the
    decoder blocks (q, k, v, o, gate, up, down); ``N_unq`` are kept in 16-bit: the token
    embeddings, the lm_head and all RMSNorm weights (input/post-attention norms, q_norm, k_norm,
    final norm). ``b = 16`` means no quantization: everything at 2 bytes, no scales.

    Tied embeddings. The paper's Table 1 is reproduced (every cell within 3%) by one reading:
    a tied lm_head is counted once, except at 16-bit for the checkpoints that store a separate
    copy of it on disk (Qwen3-0.6B and 1.7B: their bf16 safetensors hold ``lm_head.weight``
    although the config ties it; the paper's 16-bit cells, 1.40 and 3.78 GiB, are those file
    sizes). The architecture JSONs mark such checkpoints with ``"checkpoint_stores_lm_head":
    true``; ``count_stored_lm_head=False`` gives the in-memory size (one copy) instead.
    Counting the lm_head as quantized, or the tied copy twice at 4/8-bit, misses the paper's
    0.6B cells by 15-40%.

    Scales and zero points. The paper's GPTQ checkpoints hold a 16-bit scale and a zero point
    packed at the weight bits per group: with that layout every Table 1 cell is reproduced
    within 0.5% (16-bit zero points put 32B 4-bit 1.8% high). A study's checkpoints are charged
    as they store them (:func:`checkpoint_storage`): llm-compressor's symmetric schemes have
    no zero points (8-bit 4B: 4.16 GiB against the paper's 4.19).

KV cache (per sequence)
    ``tokens * layers * kv_heads * head_dim * 2 * bytes_per_elem``; see :func:`kv_bytes` for the
    quantized layout. Which tokens are charged is the analysis setting ``kv_tokens``
    (:func:`kv_charged_tokens`): ``budget`` (the paper's convention, the default) charges the
    token budget T; ``context`` charges the whole context, prompt + T + answer tokens.

    Eviction (StreamingLLM and R-KV alike) caps the tokens at what the cache holds. Both
    methods overrun their KV budget for a moment: StreamingLLM holds the tokens of one forward
    before it evicts them, R-KV collects up to ``compress_every`` tokens beyond its budget
    before it compresses back to the budget. With ``budget`` both are charged their KV budget,
    ``min(T, budget)``, as the paper does; with ``context`` both are charged what they hold
    between forwards at its fullest (:func:`kv_resident_tokens`): StreamingLLM its budget,
    R-KV ``budget + compress_every``.

Checkpoint records
    The stage that loads a model records :func:`checkpoint_record` (its architecture fields,
    whether its files store a tied lm_head, its parameter counts) in its metadata; the
    analysis charges memory from that record with the same functions as the table.

``python -m bitbudget.memory`` prints the Qwen3 table next to the paper's values.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .revisions import local_snapshot

GIB = 2**30
KIB = 2**10

ARCH_DIR = Path(__file__).resolve().parents[2] / "resources" / "architectures"
QWEN3_SIZES = ("0.6b", "1.7b", "4b", "8b", "14b", "32b")

# Paper's reported weight memory (GiB) at 4/8/16-bit, group 128; None = not reported.
PAPER_WEIGHT_GIB: dict[str, tuple[float | None, float | None, float | None]] = {
    "0.6b": (0.50, 0.71, 1.40),
    "1.7b": (None, 1.93, 3.78),
    "4b": (2.49, 4.19, 7.49),
    "8b": (5.68, 8.94, 15.26),
    "32b": (18.01, 32.66, 61.02),
}
PAPER_KV_KIB_PER_TOKEN = {"0.6b": 112, "1.7b": 112, "4b": 144, "8b": 144, "14b": 160, "32b": 256}


def load_architecture(config: Any) -> dict:
    """An architecture config as a dict: a dict, a path to a config.json, or a HF config object."""
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, (str, Path)):
        return json.loads(Path(config).read_text())
    if hasattr(config, "to_dict"):
        text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        return text.to_dict()
    raise TypeError(f"cannot read an architecture config from {type(config).__name__}")


def architecture_path(size: str) -> Path:
    """Path of a shipped Qwen3 architecture JSON, e.g. ``architecture_path("4b")``."""
    return ARCH_DIR / f"qwen3-{size.lower()}.json"


def _head_dim(cfg: dict) -> int:
    return int(cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"])


def param_counts(config: Any, count_stored_lm_head: bool = False) -> dict[str, int]:
    """Parameter counts of a dense decoder (Qwen3/Llama style) from its config.

    Returns ``{"quantized": ..., "unquantized": ..., "total": ...}``. ``quantized`` = decoder
    linear layers; ``unquantized`` = embeddings + lm_head (if untied, or if
    ``count_stored_lm_head`` and the checkpoint stores a tied copy) + norms.
    """
    cfg = load_architecture(config)
    h = int(cfg["hidden_size"])
    inter = int(cfg["intermediate_size"])
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    hd = _head_dim(cfg)
    vocab = int(cfg["vocab_size"])
    bias = bool(cfg.get("attention_bias", False))

    attn = h * heads * hd * 2 + h * kv_heads * hd * 2  # q, o, k, v
    if bias:
        attn += heads * hd * 2 + kv_heads * hd * 2 + h
    mlp = 3 * h * inter
    n_q = layers * (attn + mlp)

    qk_norm = 2 * hd if cfg.get("model_type", "qwen3") == "qwen3" else 0
    norms = layers * (2 * h + qk_norm) + h
    embed = vocab * h
    tied = bool(cfg.get("tie_word_embeddings", False))
    lm_head = 0
    if not tied or (count_stored_lm_head and cfg.get("checkpoint_stores_lm_head", False)):
        lm_head = vocab * h
    n_unq = embed + lm_head + norms
    return {"quantized": n_q, "unquantized": n_unq, "total": n_q + n_unq}


def weight_bytes_from_counts(
    n_quantized: float,
    n_unquantized: float,
    bits: int,
    group_size: int = 128,
    scale_bits: int = 16,
    zero_bits: int | None = None,
) -> float:
    """``M_w`` in bytes from parameter counts; ``bits >= 16`` means everything at 2 bytes.
    ``zero_bits=None``: zero points packed at the weight bits, as GPTQ checkpoints store them."""
    if bits >= 16:
        return 2.0 * (n_quantized + n_unquantized)
    if group_size <= 0:
        raise ValueError(f"group_size must be positive, got {group_size}")
    zero_bits = bits if zero_bits is None else zero_bits
    return (
        n_quantized * bits / 8
        + (n_quantized / group_size) * (scale_bits + zero_bits) / 8
        + n_unquantized * 2
    )


def weight_bytes(
    config: Any,
    bits: int,
    group_size: int = 128,
    scale_bits: int = 16,
    zero_bits: int | None = None,
    count_stored_lm_head: bool | None = None,
) -> float:
    """Weight memory in bytes of an architecture at ``bits`` (16 = unquantized); by default
    with the paper's GPTQ layout (16-bit scales, zero points packed at ``bits``).

    ``count_stored_lm_head=None`` follows the paper: the on-disk duplicate lm_head of a tied
    checkpoint is charged at 16-bit only (see the module docstring).
    """
    if count_stored_lm_head is None:
        count_stored_lm_head = bits >= 16
    c = param_counts(config, count_stored_lm_head=count_stored_lm_head)
    return weight_bytes_from_counts(
        c["quantized"], c["unquantized"], bits, group_size, scale_bits, zero_bits
    )


def checkpoint_storage(weight_format: Mapping) -> dict[str, int]:
    """Bits of each group's scale and zero point as a weight format's checkpoint stores them
    (keyword arguments of :func:`weight_bytes`). llm-compressor's compressed-tensors schemes
    (every ``method: gptq`` format, and any with a ``scheme``) are symmetric: 16-bit scales, no
    zero points. This project's RTN is asymmetric: charged as packed GPTQ-style, 16-bit scales
    and zero points at the weight bits (its files hold unpacked codes for a CPU emulation)."""
    symmetric = weight_format.get("method") == "gptq" or weight_format.get("scheme") is not None
    return {"scale_bits": 16, "zero_bits": 0 if symmetric else int(weight_format["bits"])}


def kv_elems_per_token(config: Any) -> int:
    """K and V elements per token per sequence: layers * kv_heads * head_dim * 2."""
    cfg = load_architecture(config)
    kv_heads = int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])
    return int(cfg["num_hidden_layers"]) * kv_heads * _head_dim(cfg) * 2


KV_TOKENS = ("budget", "context")  # the analysis setting `kv_tokens` (schema default: budget)
EVICTION_METHODS = ("streaming_llm", "r_kv")


def kv_charged_tokens(kv_tokens: str, token_budget, prompt_tokens=0, answer_tokens=0):
    """Tokens of one sequence charged for its KV cache, before any eviction cap.

    ``budget``: the token budget T (the paper). ``context``: prompt + T + answer tokens.
    Works on scalars and numpy arrays alike.
    """
    if kv_tokens == "budget":
        return token_budget
    if kv_tokens == "context":
        return prompt_tokens + token_budget + answer_tokens
    raise ValueError(f"kv_tokens must be one of {KV_TOKENS}, got {kv_tokens!r}")


def kv_resident_tokens(strategy: Mapping | None, tokens, kv_tokens: str = "budget"):
    """Tokens charged for a sequence of ``tokens`` tokens under a KV strategy.

    full / quantized: all of them. Eviction (streaming_llm, r_kv): capped at the KV budget
    with ``kv_tokens="budget"`` (the paper's ``min(T, budget)``, both methods alike); with
    ``kv_tokens="context"`` capped at what the cache holds between forwards at its fullest:
    the budget for streaming_llm, ``budget + compress_every`` for r_kv (see the module
    docstring). ``tokens`` may be a numpy array.
    """
    strategy = dict(strategy or {"method": "full"})
    method = strategy.get("method", "full")
    if method not in EVICTION_METHODS:
        return tokens
    cap = int(strategy["budget"])
    if method == "r_kv" and kv_tokens == "context":
        cap += int(strategy["compress_every"])
    return np.minimum(tokens, cap) if isinstance(tokens, np.ndarray) else min(tokens, cap)


def kv_bytes(config: Any, strategy: Mapping | None, tokens, dtype_bytes: int = 2,
             kv_tokens: str = "budget"):
    """KV-cache bytes of ONE sequence of ``tokens`` charged tokens (see :func:`kv_charged_tokens`).

    ``dtype_bytes`` is the full-precision element size (2 for bf16/fp16, 4 for float32).
    Quantized (HQQ/quanto, KIVI-style): the newest ``min(tokens, residual_length)`` tokens are
    charged at full precision (the residual buffer at its fullest), the older ones at
    ``bits/8`` bytes per element plus one scale and one zero point per ``group_size`` elements,
    each ``dtype_bytes`` wide (HQQ keeps them in the compute dtype: 16-bit on GPU, as in the
    paper).
    """
    strategy = dict(strategy or {"method": "full"})
    elems = kv_elems_per_token(config)
    array = isinstance(tokens, np.ndarray)
    n = kv_resident_tokens(strategy, tokens if array else int(tokens), kv_tokens)
    if strategy.get("method") == "quantized":
        bits = int(strategy["bits"])
        group = int(strategy["group_size"])
        residual = np.minimum(n, int(strategy["residual_length"]))
        quant = n - residual
        per_elem_q = bits / 8 + 2 * dtype_bytes / group
        out = elems * (quant * per_elem_q + residual * dtype_bytes)
        return out if array else float(out)
    return elems * n * float(dtype_bytes) if array else float(elems * n * dtype_bytes)


def total_bytes(
    config: Any,
    bits: int,
    strategy: Mapping | None,
    token_budget: int,
    samples: int = 1,
    group_size: int = 128,
    dtype_bytes: int = 2,
    kv_tokens: str = "budget",
    prompt_tokens: int = 0,
    answer_tokens: int = 0,
) -> float:
    """Weights + ``samples`` (G) x KV of one sequence, in bytes (the tokens per ``kv_tokens``)."""
    tokens = kv_charged_tokens(kv_tokens, token_budget, prompt_tokens, answer_tokens)
    return weight_bytes(config, bits, group_size) + samples * kv_bytes(
        config, strategy, tokens, dtype_bytes, kv_tokens
    )


# --------------------------------------------------------------------------- checkpoint records

ARCHITECTURE_FIELDS = (
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "vocab_size", "attention_bias", "tie_word_embeddings",
    "checkpoint_stores_lm_head",
)
LM_HEAD_TENSOR = "lm_head.weight"
SIDE_WEIGHT_FILES = ("quantization.safetensors",)  # our RTN codes, not model weights


def safetensors_names(path: str | Path) -> list[str]:
    """Tensor names in a safetensors file, read from its header (no tensor is loaded)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return [k for k in header if k != "__metadata__"]


def stored_tensor_names(path: str | Path) -> list[str] | None:
    """Names of the weights a checkpoint directory stores; None when it holds no weight files
    (a metadata-only checkpoint: the architecture then says what its files would store)."""
    path = Path(path)
    index = sorted(path.glob("*.safetensors.index.json"))
    if index:
        return sorted(json.loads(index[0].read_text())["weight_map"])
    files = [f for f in sorted(path.glob("*.safetensors")) if f.name not in SIDE_WEIGHT_FILES]
    if not files:
        return None
    return sorted(name for f in files for name in safetensors_names(f))


def architecture_record(config: Any, stored: list[str] | None = None) -> dict:
    """What the analysis needs of a model, from its config and (when known) the names of the
    tensors its checkpoint stores: the architecture fields and the parameter counts.

    ``checkpoint_stores_lm_head`` is true when a tied model's files hold a separate
    ``lm_head.weight`` (charged at 16-bit, see the module docstring); an architecture JSON
    that states it keeps its value when ``stored`` is None.
    """
    cfg = load_architecture(config)
    arch = {k: cfg[k] for k in ARCHITECTURE_FIELDS if cfg.get(k) is not None}
    if stored is not None:
        arch["checkpoint_stores_lm_head"] = LM_HEAD_TENSOR in stored
    return {"architecture": arch, "param_counts": param_counts(arch)}


def checkpoint_record(path: str | Path, revision: str | None = None) -> dict:
    """:func:`architecture_record` of the checkpoint a stage has just loaded: a local directory,
    a hub id at ``revision`` (its snapshot in the hub cache the loader filled), or an
    architecture JSON (a model without weights, as the simulated engine uses)."""
    if Path(path).is_file():
        return architecture_record(Path(path))
    directory = local_snapshot(str(path), revision)
    return architecture_record(directory / "config.json", stored_tensor_names(directory))


def to_gib(n_bytes: float) -> float:
    return n_bytes / GIB


MEMORY_UNITS = (  # binary units, as the paper's GB
    ("GB", 1.0), ("MB", 2.0**-10), ("KB", 2.0**-20))


def _unit_for(smallest: float) -> tuple[str, float]:
    return next((unit, scale) for unit, scale in MEMORY_UNITS
                if smallest >= scale or unit == MEMORY_UNITS[-1][0])


def format_memory(gib: float) -> str:
    """Memory given in GiB, in the largest unit that keeps it >= 1 (tiny models live in KB)."""
    if gib is None or not math.isfinite(gib):
        return "n/a"
    unit, scale = _unit_for(abs(gib))
    return f"{gib / scale:.3g} {unit}"


def axis_unit(values) -> tuple[str, float]:
    """(unit, GiB per unit) of a chart axis: the one that shows the largest of ``values`` (GiB) as
    >= 1, so an axis from 0.7 to 90 GB reads in GB, not 700 to 92,000 MB."""
    return _unit_for(max((abs(v) for v in values if v and math.isfinite(v)), default=1.0))


def weight_table(group_size: int = 128) -> list[dict]:
    """Rows for the Qwen3 table: ours vs the paper's weight GiB and 16-bit KV KiB/token."""
    rows = []
    for size in QWEN3_SIZES:
        cfg = load_architecture(architecture_path(size))
        paper = PAPER_WEIGHT_GIB.get(size, (None, None, None))
        row: dict[str, Any] = {"model": f"Qwen3-{size.upper()}", "size": size}
        for bits, ref in zip((4, 8, 16), paper):
            ours = to_gib(weight_bytes(cfg, bits, group_size))
            row[f"w{bits}"] = ours
            row[f"paper_w{bits}"] = ref
            row[f"err_w{bits}"] = None if ref is None else (ours - ref) / ref
        row["kv_kib"] = kv_bytes(cfg, None, 1) / KIB
        row["paper_kv_kib"] = PAPER_KV_KIB_PER_TOKEN.get(size)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    def cell(ours: float, ref: float | None, err: float | None) -> str:
        if ref is None:
            return f"{ours:6.2f} (   -        )"
        return f"{ours:6.2f} ({ref:5.2f} {100 * err:+5.1f}%)"

    head = f"{'model':<11} | {'4-bit GiB (paper err)':<21} | {'8-bit GiB (paper err)':<21} | " \
        f"{'16-bit GiB (paper err)':<22} | KV KiB/token @16-bit (paper)"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<11} | {cell(r['w4'], r['paper_w4'], r['err_w4']):<21} | "
            f"{cell(r['w8'], r['paper_w8'], r['err_w8']):<21} | "
            f"{cell(r['w16'], r['paper_w16'], r['err_w16']):<22} | "
            f"{r['kv_kib']:.0f} ({r['paper_kv_kib']})"
        )
    lines.append("weights: group 128, 16-bit scales, zero points at the weight bits (GPTQ); GiB = 2**30 bytes")
    return "\n".join(lines)


DESCRIPTION = "Qwen3 weight / KV memory vs the paper's Table 1"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The table's options, shared by ``python -m bitbudget.memory`` and ``bitbudget memory``."""
    parser.add_argument("--group-size", type=int, default=128)
    return parser


def run(args: argparse.Namespace) -> int:
    print(format_table(weight_table(args.group_size)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitbudget.memory", description=DESCRIPTION)
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())


#: the decoder-block linear layers a weight format quantizes (embeddings, lm_head, norms stay)
DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def count_parameters_of_model(model) -> dict:
    """{n_quantized, n_unquantized} of a loaded model: decoder-block linear weights vs the rest."""
    n_q = 0
    n_all = 0
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:  # tied embeddings counted once
            continue
        seen.add(id(p))
        n_all += p.numel()
        parts = name.split(".")
        if ".layers." in name and parts[-1] == "weight" and parts[-2] in DECODER_LINEARS:
            n_q += p.numel()
    return {"n_quantized": n_q, "n_unquantized": n_all - n_q}
