#!/usr/bin/env bash
# GPU check of the vLLM path, on a tiny model carried in the tree (resources/tiny_models).
#   bash bench/gpu_check.sh [MODEL_DIR]      (default resources/tiny_models/tiny-m)
# Needs: .venv-vllm (made here by envs/install.sh vllm when missing: the CUDA vllm wheel).
# Runs, each as engine (budget forcing + forks) vs bare vLLM on the same prompts:
#   1. the model in bf16, full-precision KV
#   2. the same with engine.kv_cache_dtype: fp8
#   3. a W4A16 (group 64, RTN) compressed-tensors checkpoint: made with .venv-llmc when that
#      exists, else taken from bench/checkpoints/<model>-w4a16 when carried
# and prints one JSON line per run plus a summary table. Writes under ${OUT:-/tmp/gpu_check}.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
model="${1:-resources/tiny_models/tiny-m}"
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
[[ -f "$model/config.json" ]] || { echo "no model at $model (train or carry resources/tiny_models first)"; exit 1; }
nvidia-smi -L || { echo "no GPU visible (nvidia-smi)"; exit 1; }
[[ -x .venv-vllm/bin/python ]] || bash envs/install.sh vllm
py=.venv-vllm/bin/python
export PYTHONUNBUFFERED=1
"$py" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__, torch.cuda.get_device_name(0))"

w4="$out/$(basename "$model")-w4a16"
if [[ -x .venv-llmc/bin/python ]]; then
  .venv-llmc/bin/python - "$model" "$w4" <<'PY'
import sys
from bitbudget.llmcompressor_quantize import quantize_with_llmcompressor
print(quantize_with_llmcompressor(sys.argv[1], sys.argv[2], {"bits": 4, "scheme": "W4A16", "method": "rtn", "group_size": 64}))
PY
elif [[ -d "bench/checkpoints/$(basename "$model")-w4a16" ]]; then
  w4="bench/checkpoints/$(basename "$model")-w4a16"
else
  w4=""
  echo "no .venv-llmc and no bench/checkpoints/$(basename "$model")-w4a16: skipping W4A16"
fi

run() {  # name, checkpoint, extra args
  local name=$1 ckpt=$2; shift 2
  echo "== $name"
  timeout 900 "$py" bench/vllm_throughput.py "$ckpt" --workdir "$out/$name" "$@" | tee "$out/$name.json" | tail -1
}
run bf16 "$model" --dtype bfloat16
run bf16-fp8kv "$model" --dtype bfloat16 --kv-cache-dtype fp8
[[ -n "$w4" ]] && run w4a16 "$w4" --dtype bfloat16

"$py" - "$out" <<'PY'
import json, pathlib, sys
print(f"{'run':<12} {'start s':>8} {'engine tok/s':>13} {'bare tok/s':>11} {'ratio':>6}")
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    lines = [l for l in f.read_text().splitlines() if l.startswith("{")]
    if not lines:
        continue
    r = json.loads(lines[-1])
    e, b = r["engine"]["tokens_per_s"], r["bare_vllm"]["tokens_per_s"]
    print(f"{f.stem:<12} {r['engine_start_s']:>8} {e:>13} {b:>11} {e / b:>6.2f}")
PY
