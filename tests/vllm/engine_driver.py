"""Run generation specs with VLLMEngine in this (the vLLM venv's) interpreter, sharing one
engine between specs of the same checkpoint. Used by tests/vllm and bench/gpu_check.sh.

usage: python engine_driver.py jobs.json results.json
jobs: [{"name", "spec", "output"}]; results: {name: {"meta", "seconds", "engine_start_s"}}.
A job may carry "expect_error": the substring its failure must contain.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from bitbudget.backends.vllm import VLLMEngine
from bitbudget.generate import write_generation


def main(jobs_file: str, results_file: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    jobs = json.loads(open(jobs_file).read())
    engines: dict[tuple, object] = {}
    results = {}
    for job in jobs:
        spec = job["spec"]
        started = time.time()
        try:
            engine = VLLMEngine(spec, spec["checkpoint_path"], spec["trace_dir"])
        except Exception as error:  # noqa: BLE001  the tests check the message
            if job.get("expect_error") and job["expect_error"] in str(error):
                results[job["name"]] = {"error": str(error)}
                continue
            raise
        shared = (spec["checkpoint_path"], json.dumps(spec["engine"], sort_keys=True))
        if shared in engines:
            engine.llm = engines[shared]
        meta = write_generation(spec, job["output"], spec["trace_dir"], engine)
        engines[shared] = engine.llm
        results[job["name"]] = {"meta": meta, "seconds": round(time.time() - started, 2),
                                "engine_start_s": engine.start_seconds}
    with open(results_file, "w") as handle:
        json.dump(results, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
