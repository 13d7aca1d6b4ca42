"""Group-wise asymmetric round-to-nearest (RTN) weight quantization of HF checkpoints.

Every nn.Linear weight inside the decoder blocks (attention q/k/v/o and MLP gate/up/down
projections) is split, per output row, into groups of ``group_size`` consecutive input
elements; each group gets a scale and an integer zero point:

    scale = (max - min) / (2^b - 1),  zero = round(-min / scale),
    code  = clamp(round(w / scale) + zero, 0, 2^b - 1),  w_hat = (code - zero) * scale.

Embeddings, lm_head and norms stay unchanged. The output checkpoint stores the dequantized
weights ``w_hat`` in float32 (so it loads with ``AutoModelForCausalLM`` and runs anywhere), plus
``quantization.safetensors`` with the uint8 codes, float32 scales and uint8 zeros of every
quantized weight (keys ``<name>.codes``, ``<name>.scales``, ``<name>.zeros``) and
``quantization.json``. ``bits=16`` copies the checkpoint unchanged (no codes file).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from . import llmcompressor_quantize, versions
from .artifacts import atomic_directory
from .interpreter import other_interpreter, run_in_interpreter
from .memory import architecture_record, count_parameters_of_model, stored_tensor_names
from .revisions import local_snapshot
from .specs import WeightFormat

SUPPORTED_BITS = (2, 3, 4, 8, 16)
SUPPORTED_METHODS = ("rtn",)


def quantize_tensor(weight: torch.Tensor, bits: int, group_size: int):
    """Return (dequantized weight, codes uint8 [out,in], scales f32 [out,in/g], zeros uint8)."""
    out_f, in_f = weight.shape
    if in_f % group_size:
        raise ValueError(f"group_size {group_size} does not divide in_features {in_f}")
    qmax = 2**bits - 1
    w = weight.detach().to(torch.float32).reshape(out_f, in_f // group_size, group_size)
    wmin = w.amin(dim=-1, keepdim=True)
    wmax = w.amax(dim=-1, keepdim=True)
    scale = (wmax - wmin) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # constant group: exact
    zero = torch.clamp(torch.round(-wmin / scale), 0, qmax)
    codes = torch.clamp(torch.round(w / scale) + zero, 0, qmax)
    deq = (codes - zero) * scale
    return (
        deq.reshape(out_f, in_f).to(weight.dtype),
        codes.reshape(out_f, in_f).to(torch.uint8),
        scale.squeeze(-1).contiguous(),
        zero.squeeze(-1).to(torch.uint8).contiguous(),
    )


def _is_decoder_linear(name: str, module) -> bool:
    return isinstance(module, torch.nn.Linear) and ".layers." in f".{name}."


def quantize_checkpoint(src_dir, out_dir, fmt: WeightFormat, *, python: str | None = None,
                        revision: str | None = None) -> dict:
    """Quantize a checkpoint directory (or a hub id at ``revision``, the pinned snapshot) into
    weight format ``fmt``; write ``out_dir`` atomically; return quantization.json.

    ``method: gptq`` or a format with a ``scheme`` makes a compressed-tensors checkpoint with
    llm-compressor (bitbudget.llmcompressor_quantize), in interpreter ``python`` when given.
    """
    if fmt.bits < 16 and fmt.uses_llmcompressor:
        return quantize_with_llmcompressor(src_dir, out_dir, fmt, python, revision)
    from transformers import AutoModelForCausalLM

    bits, group_size, method = fmt.bits, fmt.group_size, fmt.method
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits}")
    if method not in SUPPORTED_METHODS:
        raise ValueError(f"method must be one of {SUPPORTED_METHODS}, got {method!r}")
    if not isinstance(group_size, int) or group_size <= 0:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    source = str(src_dir)
    src_dir, out_dir = local_snapshot(source, revision), Path(out_dir)
    model = AutoModelForCausalLM.from_pretrained(str(src_dir), dtype=torch.float32)
    linears = [(n, m) for n, m in model.named_modules() if _is_decoder_linear(n, m)]
    for name, mod in linears:
        if mod.in_features % group_size:
            raise ValueError(
                f"group_size {group_size} does not divide in_features {mod.in_features} of {name}"
            )
    counts = count_parameters_of_model(model)
    meta = {
        "bits": bits,
        "group_size": group_size,
        "method": method if bits < 16 else "none",
        "version": versions.QUANTIZER_VERSION,
        "scale_dtype": "float32",
        "zero_dtype": "uint8",
        "storage_dtype": "float32 (dequantized values)",
        "n_quantized_params": counts["n_quantized"],
        "n_unquantized_params": counts["n_unquantized"],
        "quantized_modules": [n for n, _ in linears] if bits < 16 else [],
        "model": architecture_record(model.config, stored_tensor_names(src_dir)),
        "source": source,
        **({"revision": revision} if revision else {}),
    }
    with atomic_directory(out_dir) as tmp:
        if bits == 16:
            for f in src_dir.iterdir():
                if f.is_file() and f.name not in ("quantization.json", "quantization.safetensors"):
                    shutil.copy2(f, tmp / f.name)
        else:
            from safetensors.torch import save_file

            tensors = {}
            with torch.no_grad():
                for name, mod in linears:
                    deq, codes, scales, zeros = quantize_tensor(mod.weight, bits, group_size)
                    mod.weight.copy_(deq)
                    tensors[f"{name}.weight.codes"] = codes
                    tensors[f"{name}.weight.scales"] = scales
                    tensors[f"{name}.weight.zeros"] = zeros
            model.save_pretrained(tmp, safe_serialization=True)
            save_file(tensors, str(tmp / "quantization.safetensors"), metadata={"bits": str(bits)})
            for f in src_dir.iterdir():  # tokenizer files and any other side files
                if f.is_file() and not (tmp / f.name).exists() and not f.name.endswith(".safetensors"):
                    if f.name != "quantization.json":
                        shutil.copy2(f, tmp / f.name)
        (tmp / "quantization.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def quantize_with_llmcompressor(src_dir, out_dir, fmt: WeightFormat, python: str | None = None,
                                revision: str | None = None) -> dict:
    """Run llm-compressor here, or in its own interpreter (it pins its compressed-tensors)."""
    interpreter = other_interpreter(python)
    if interpreter:
        spec = {"source": str(src_dir), "format": fmt.key(), "revision": revision}
        run_in_interpreter(interpreter, "bitbudget.llmcompressor_quantize", spec, str(out_dir))
        return json.loads((Path(out_dir) / "quantization.json").read_text())
    return llmcompressor_quantize.quantize_with_llmcompressor(src_dir, out_dir, fmt, revision)
