"""GPU check: the HF engine's KV strategies on Qwen3-shaped models with random weights.

usage: python bench/gpu_check.py [--device cuda|cpu] [--sizes 0.6b,1.7b,4b,8b] [--out DIR]
           [--batches 1,8] [--context TOKENS] [--new-tokens TOKENS] [--skip-vllm]

Needs CUDA PyTorch, transformers and the packages bitbudget's engine imports (docs/gpu_check.md
lists them); downloads nothing. For each size, a Qwen3 model is built from
``resources/architectures/qwen3-<size>.json`` with random weights (bf16 on cuda, float32 on cpu)
and decoded by the HF engine's batch decoder (``bitbudget.backends.hf.BatchDecoder``: the
engine's own decode loop, KV caches and sampling) under the KV strategies of the paper's KV grid
(``config/paper.yaml``, grid ``kv_cache``): full, HQQ 8- and 4-bit, and StreamingLLM and R-KV at
the grid's smallest and largest KV budget. Batch shapes are the grid's: G and the engine's batch
(one question's samples decode together). Each batch row holds ``--context`` prompt tokens
(default half the grid's largest token budget: a sample thinking to the horizon decodes at
contexts from 0 to the horizon, on average half of it; every eviction budget is then full), then
decodes ``--new-tokens`` thinking tokens and the forced answer. No budget forks: decode alone.

Each run records decode tokens/s (decode steps only, the prefill timed apart), on cuda the peak
memory allocated during the decode (torch.cuda.max_memory_allocated after
reset_peak_memory_stats at the first decode step), the KV cache bytes the cache holds at the end
(``bitbudget.kv.measure_cache_bytes``), and the memory model's figures for the same shape
(``bitbudget.memory``: parameters x element size, plus batch x KV of the context with
``kv_tokens="context"``) with the ratios. On a CPU, torch keeps no allocator statistics: the peak is
null there, and the KV bytes are the memory comparison.

``--device cpu`` runs the same code on a toy architecture scaled down from the same file
(:data:`TOY_ARCHITECTURE`) with every token count of the setup divided by
:data:`TOY_TOKEN_DIVISOR`: the test suite runs it (tests/unit/test_gpu_check.py).

Writes ``OUT/throughput.json`` (:mod:`bitbudget.throughput`, version 2; ``bitbudget plan
--throughput-file`` reads it): per size, the HF tokens/s of each KV strategy at the largest batch
shape (one generate job's batch), each strategy's tokens/s at every batch shape (``batches``: the
plan's batch effect in place of its assumed line), every run behind it, and the vLLM runs. It
writes no ``load_seconds``: its models are built with random weights on the device, which reads
no checkpoint, so their build time is not a generate job's load (add measured loads by hand). The vLLM part runs only where ``import
vllm`` works: ``bench/vllm_throughput.py`` on a tiny model of resources/tiny_models (engine vs bare
vLLM, bf16 and fp8 KV, W4A16 when bench/checkpoints holds it); those runs are recorded, not put
in the per-size table (the tiny model is no Qwen3 size).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
import yaml
from transformers import AutoModelForCausalLM, Qwen3Config

from bitbudget import memory
from bitbudget import throughput as throughput_file
from bitbudget.backends.hf import BatchDecoder, Row, StreamKeys
from bitbudget.forcing import ForcingTokens
from bitbudget.kv import measure_cache_bytes
from bitbudget.kvspec import with_defaults

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIG = REPO / "config" / "paper.yaml"
KV_GRID = "kv_cache"  # the paper's grid of KV strategies under the HF engine
CUDA_SIZES = ("0.6b", "1.7b", "4b", "8b")
CPU_SIZES = ("0.6b",)
QUANTIZED_BITS = (8, 4)  # the HQQ strategies checked
MEAN_CONTEXT_DIVISOR = 2  # the mean context of a sample thinking to the horizon: horizon / 2
CUDA_NEW_TOKENS = 256  # thinking tokens per row on cuda: two R-KV compressions and HQQ flushes at 128
SEED = 0
SUFFIX_TOKENS = 10  # the forced-answer suffix fed at the horizon (a few steps of the decode)
RESERVED_IDS = 2 + SUFFIX_TOKENS  # end of thinking, eos and the suffix: the top ids of the vocabulary

# The toy of --device cpu: the shape of resources/tiny_models/tiny-m (2 layers, hidden 128, two
# query heads, one KV head of 64, MLP 256) with a 1,024-token vocabulary and no bos/eos, over the real file's
# other fields; every token count (context, KV budgets, compression interval, HQQ residual)
# divided by TOY_TOKEN_DIVISOR (KV counts at least TOY_MIN_TOKENS), thinking TOY_NEW_TOKENS tokens.
TOY_ARCHITECTURE = {"num_hidden_layers": 2, "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2,
                    "num_key_value_heads": 1, "head_dim": 64, "vocab_size": 1024, "bos_token_id": None,
                    "eos_token_id": None}
TOY_TOKEN_DIVISOR = 125
TOY_MIN_TOKENS = 8  # the least a token count of the toy falls to (a compression or HQQ flush every 8 steps)
TOY_NEW_TOKENS = 16
TOY_THREADS = 1  # the toy's tensors are too small for threads to pay (on a busy CPU they spin)
KV_TOKEN_FIELDS = ("budget", "compress_every", "residual_length")

TINY_VLLM_MODEL = REPO / "resources" / "tiny_models" / "tiny-m"
VLLM_RUNS = {"bf16": ["--dtype", "bfloat16"], "bf16-fp8kv": ["--dtype", "bfloat16", "--kv-cache-dtype", "fp8"]}
VLLM_W4A16 = REPO / "bench" / "checkpoints" / f"{TINY_VLLM_MODEL.name}-w4a16"  # carried, when it is
VLLM_TIMEOUT_S = 900


@dataclass(frozen=True)
class Settings:
    device: str
    dtype: torch.dtype
    sizes: tuple[str, ...]
    batches: tuple[int, ...]
    context_tokens: int  # prompt tokens per row before the decode
    new_tokens: int  # thinking tokens decoded per row, then the forced answer
    token_divisor: int  # the KV strategies' token counts divided by it (1: the paper's)
    toy: bool


# --------------------------------------------------------------------------- the paper's setup
def kv_grid(config: dict) -> dict:
    return config["grids"][KV_GRID]


def paper_batches(config: dict) -> tuple[int, ...]:
    """The grid's batch shapes: each G, and the engine's batch (one question's samples)."""
    grid = kv_grid(config)
    return tuple(sorted({*grid["parallel_samples"], grid["engine"]["batch_size"]}))


def paper_context(config: dict) -> int:
    return max(kv_grid(config)["token_budgets"]) // MEAN_CONTEXT_DIVISOR


def checked_strategies(config: dict) -> list[dict]:
    """Full, HQQ at QUANTIZED_BITS, and each eviction method at its smallest and largest budget."""
    grid = [with_defaults(config["kv_strategies"][name]) for name in kv_grid(config)["kv_strategies"]]
    chosen = [s for s in grid if s["method"] == throughput_file.FULL_KV]
    chosen += [s for bits in QUANTIZED_BITS for s in grid if s["method"] == "quantized" and s["bits"] == bits]
    for method in throughput_file.EVICTION_METHODS:
        budgets = sorted((s for s in grid if s["method"] == method), key=lambda s: s["budget"])
        chosen += [budgets[0], budgets[-1]] if budgets else []
    return chosen


def scaled(strategy: dict, divisor: int) -> dict:
    """The strategy with its token counts divided by `divisor` (1: as it is; else at least TOY_MIN_TOKENS)."""
    if divisor == 1:
        return strategy
    return {k: max(TOY_MIN_TOKENS, v // divisor) if k in KV_TOKEN_FIELDS else v for k, v in strategy.items()}


def settings_for(args, config: dict) -> Settings:
    toy = args.device == "cpu"
    divisor = TOY_TOKEN_DIVISOR if toy else 1
    sizes = tuple(args.sizes.split(",")) if args.sizes else (CPU_SIZES if toy else CUDA_SIZES)
    batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else paper_batches(config)
    return Settings(args.device, torch.float32 if toy else torch.bfloat16, sizes, batches,
                    args.context or paper_context(config) // divisor,
                    args.new_tokens or (TOY_NEW_TOKENS if toy else CUDA_NEW_TOKENS), divisor, toy)


# --------------------------------------------------------------------------- model and engine
def architecture(size: str, settings: Settings) -> dict:
    arch = memory.load_architecture(memory.architecture_path(size))
    return {**arch, **TOY_ARCHITECTURE} if settings.toy else arch


def build_model(arch: dict, settings: Settings):
    """A Qwen3 model of `arch` with random weights, made on the device (no host copy)."""
    torch.manual_seed(SEED)
    with torch.device(settings.device):
        model = AutoModelForCausalLM.from_config(Qwen3Config(**arch), dtype=settings.dtype)
    return model.eval()


def forcing_tokens(vocab_size: int, sampling: dict) -> ForcingTokens:
    """Budget forcing on the top ids of the vocabulary (random weights need no tokenizer)."""
    top = vocab_size - 1
    suffix = tuple(range(top - 1 - SUFFIX_TOKENS, top - 1))
    return ForcingTokens(end_of_thinking=top, eos=top - 1, suffix=suffix, wait=(suffix[0],), wait_extension=True,
                         max_answer_tokens=sampling["max_answer_tokens"],
                         max_natural_answer_tokens=sampling["max_answer_tokens"])


def prompt_ids(vocab_size: int, length: int) -> list[int]:
    generator = torch.Generator().manual_seed(SEED)
    return torch.randint(0, vocab_size - RESERVED_IDS, (length,), generator=generator).tolist()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class TimedDecoder(BatchDecoder):
    """The engine's batch decoder, timed from its first decode step; on cuda the peak memory
    allocated during the decode; the KV bytes its cache holds at the end."""

    def _decode(self, cache, logits, position, rows) -> None:
        device = str(self.model.device)
        synchronize(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        self.decode_started = time.perf_counter()
        super()._decode(cache, logits, position, rows)
        synchronize(device)
        self.decode_seconds = time.perf_counter() - self.decode_started
        self.peak_bytes = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
        self.cache_bytes = measure_cache_bytes(cache)


def decode(model, strategy: dict, batch: int, settings: Settings, sampling: dict) -> TimedDecoder:
    vocab = model.config.vocab_size
    keys = StreamKeys(SEED, f"gpu-check-{throughput_file.kv_label(strategy)}")
    decoder = TimedDecoder(model, strategy, sampling, forcing_tokens(vocab, sampling), [], settings.new_tokens, keys)
    started = time.perf_counter()
    decoder.run([prompt_ids(vocab, settings.context_tokens)] * batch, [Row(("gpu-check", i)) for i in range(batch)])
    decoder.prefill_seconds = decoder.decode_started - started
    return decoder


# --------------------------------------------------------------------------- one run
def predicted(arch: dict, strategy: dict, batch: int, context: int, dtype: torch.dtype) -> dict:
    """The memory model's figures: parameters x element size, batch x KV of `context` tokens."""
    element = torch.tensor([], dtype=dtype).element_size()
    weights = memory.param_counts(arch)["total"] * element
    kv = batch * memory.kv_bytes(arch, strategy, context, element, kv_tokens="context")
    return {"weights_bytes": int(weights), "kv_bytes": int(kv), "total_bytes": int(weights + kv)}


def ratio(measured: float | None, model: float) -> float | None:
    return None if measured is None or not model else round(measured / model, 4)


def run_one(size: str, arch: dict, model, strategy: dict, batch: int, settings: Settings, sampling: dict) -> dict:
    decoder = decode(model, strategy, batch, settings, sampling)
    tokens = decoder.counters.decode_tokens
    context = settings.context_tokens + tokens // batch
    figure = predicted(arch, strategy, batch, context, settings.dtype)
    return {
        "size": size, "engine": "hf", "kv": throughput_file.kv_label(strategy), "strategy": strategy,
        "batch": batch, "context_tokens": context, "decode_tokens": tokens,
        "prefill_seconds": round(decoder.prefill_seconds, 4), "decode_seconds": round(decoder.decode_seconds, 4),
        "tokens_per_s": round(tokens / decoder.decode_seconds, 2),
        "peak_allocated_bytes": decoder.peak_bytes, "kv_cache_bytes": decoder.cache_bytes,
        "memory_model": figure,
        "peak_over_memory_model": ratio(decoder.peak_bytes, figure["total_bytes"]),
        "kv_over_memory_model": ratio(decoder.cache_bytes, figure["kv_bytes"]),
    }


def run_size(size: str, settings: Settings, strategies: list[dict], sampling: dict) -> list[dict]:
    arch = architecture(size, settings)
    model = build_model(arch, settings)
    runs = []
    for strategy in strategies:
        for batch in settings.batches:
            runs.append(run_one(size, arch, model, strategy, batch, settings, sampling))
            print(summary_line(runs[-1]), flush=True)
    del model
    if settings.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return runs


# --------------------------------------------------------------------------- vLLM
def vllm_imports() -> bool:
    """Whether `import vllm` works in this interpreter (probed in a child: importing it here
    would initialise CUDA state the HF runs share)."""
    return subprocess.run([sys.executable, "-c", "import vllm"], capture_output=True).returncode == 0


def vllm_run(name: str, checkpoint: Path, flags: list[str], out: Path) -> dict:
    command = [sys.executable, str(REPO / "bench" / "vllm_throughput.py"), str(checkpoint),
               "--workdir", str(out / "vllm" / name), *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=VLLM_TIMEOUT_S)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"run": name, "error": done.stderr[-2000:]}
    return {"run": name, **json.loads(lines[-1])}


def vllm_runs(out: Path) -> list[dict] | None:
    if not vllm_imports():
        print("vLLM part skipped: `import vllm` fails in this interpreter")
        return None
    runs = {**VLLM_RUNS, **({"w4a16": VLLM_RUNS["bf16"]} if VLLM_W4A16.is_dir() else {})}
    return [vllm_run(name, VLLM_W4A16 if name == "w4a16" else TINY_VLLM_MODEL, flags, out)
            for name, flags in runs.items()]


# --------------------------------------------------------------------------- the file
def device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device.startswith("cuda") else f"cpu ({platform.processor() or 'unknown'})"


def throughput_table(runs: list[dict]) -> dict:
    """Per size, the HF tokens/s of each KV label at the largest batch shape, and each label's
    batch curve (tokens/s at every batch shape run: the plan's batch effect)."""
    largest = max(run["batch"] for run in runs)
    table: dict = {}
    for run in runs:
        entry = table.setdefault(run["size"], {"hf": {}, "batches": {"hf": {}}})
        entry["batches"]["hf"].setdefault(run["kv"], {})[str(run["batch"])] = run["tokens_per_s"]
        if run["batch"] == largest:
            entry["hf"][run["kv"]] = run["tokens_per_s"]
    return table


def write_file(out: Path, settings: Settings, runs: list[dict], vllm: list[dict] | None) -> Path:
    details = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "settings": {"device": settings.device, "dtype": str(settings.dtype).removeprefix("torch."),
                     "toy_architecture": TOY_ARCHITECTURE if settings.toy else None,
                     "batches": list(settings.batches), "context_tokens": settings.context_tokens,
                     "new_tokens": settings.new_tokens, "kv_token_divisor": settings.token_divisor},
        "peak_allocated": "torch.cuda.max_memory_allocated over the decode" if settings.device.startswith("cuda")
        else "null: torch keeps no allocator statistics on the CPU",
        "runs": runs, "vllm_runs": vllm,
    }
    path = out / "throughput.json"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(throughput_file.document(device_name(settings.device), throughput_table(runs), details),
                               indent=1) + "\n")
    return path


def summary_line(run: dict) -> str:
    peak = "-" if run["peak_allocated_bytes"] is None else f"{run['peak_allocated_bytes'] / memory.GIB:.2f}"
    return (f"{run['size']:>5} {run['kv']:<20} batch {run['batch']:>3} {run['tokens_per_s']:>10.1f} tok/s  "
            f"peak {peak} GiB / model {run['memory_model']['total_bytes'] / memory.GIB:.2f} GiB  "
            f"KV {run['kv_cache_bytes'] / memory.GIB:.3f} / {run['memory_model']['kv_bytes'] / memory.GIB:.3f} GiB")


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--sizes", help=f"Qwen3 sizes (default {','.join(CUDA_SIZES)} on cuda, "
                                        f"{','.join(CPU_SIZES)} as a toy on cpu)")
    parser.add_argument("--batches", help="batch shapes (default: the paper's KV grid's G and engine batch)")
    parser.add_argument("--context", type=int, help="prompt tokens per row (default: half the largest budget)")
    parser.add_argument("--new-tokens", type=int, help="thinking tokens decoded per row")
    parser.add_argument("--out", default="gpu_check", help="folder of throughput.json")
    parser.add_argument("--skip-vllm", action="store_true", help="do not probe or run vLLM")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible to torch; fix: run on a GPU node with CUDA PyTorch, or --device cpu")
        return 1
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    settings = settings_for(args, config)
    if settings.toy:
        torch.set_num_threads(TOY_THREADS)
    strategies = [scaled(s, settings.token_divisor) for s in checked_strategies(config)]
    runs = [run for size in settings.sizes for run in run_size(size, settings, strategies, config["sampling"])]
    vllm = None if args.skip_vllm else vllm_runs(Path(args.out))
    print(f"wrote {write_file(Path(args.out), settings, runs, vllm)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
