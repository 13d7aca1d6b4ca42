"""Quantize one model to several llm-compressor formats through bitbudget.quantize, in this (the
llm-compressor venv's) interpreter: one process and one llm-compressor import for all of them.

usage: python quantize_formats.py MODEL_DIR JOBS_JSON RESULTS_JSON
jobs: {name: {"fmt": {...}, "out": DIR}}; results: {name: quantization metadata}.
"""

from __future__ import annotations

import json
import sys

from bitbudget.quantize import quantize_checkpoint
from bitbudget.specs import WeightFormat


def main(model_dir: str, jobs_file: str, results_file: str) -> int:
    results = {}
    for name, job in json.loads(open(jobs_file).read()).items():
        results[name] = quantize_checkpoint(model_dir, job["out"], WeightFormat.from_config(job["fmt"]))
    with open(results_file, "w") as handle:
        json.dump(results, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
