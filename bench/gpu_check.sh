#!/usr/bin/env bash
# GPU check (docs/gpu_check.md): bench/gpu_check.py under an interpreter with CUDA PyTorch and
# transformers; writes ${OUT:-/tmp/gpu_check}/throughput.json for `bitbudget plan --throughput-file`.
#   bash bench/gpu_check.sh fetch-wheels          where PyPI is reachable: the wheels of
#                                                 bench/gpu_check_wheels.txt into bench/wheels/
#   bash bench/gpu_check.sh [gpu_check.py options] on the GPU node (e.g. --sizes 0.6b,8b)
# PYTHON picks the interpreter (default python3; .venv-vllm/bin/python adds the vLLM part). When
# it lacks a package of the list, the carried wheels are unpacked under $OUT/site, never installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
out="${OUT:-/tmp/gpu_check}"
wheels="${WHEELS:-$root/bench/wheels}"
if [[ "${1:-}" == fetch-wheels ]]; then
  # pip wheel: hqq is published as a source archive; run it with the GPU node's Python version
  "$py" -m pip wheel --no-deps -w "$wheels" -r bench/gpu_check_wheels.txt
  exit
fi
mkdir -p "$out"
site=""
if ! "$py" -c "import pandas, dateutil, hqq, termcolor" 2>/dev/null; then
  compgen -G "$wheels/*.whl" >/dev/null || { echo "missing packages of bench/gpu_check_wheels.txt and no bench/wheels/ (run: bash bench/gpu_check.sh fetch-wheels)"; exit 1; }
  "$py" -m pip install --quiet --no-index --no-deps --target "$out/site" "$wheels"/*.whl
  site="$out/site:"
fi
export PYTHONPATH="${site}$root/workflow:$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$py" bench/gpu_check.py --out "$out" "$@"
