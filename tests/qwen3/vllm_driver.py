"""Run VLLMEngine (in the vLLM venv's interpreter) on specs sharing one checkpoint, writing
their shards; used by test_qwen3_forcing.

usage: python vllm_driver.py jobs.json   (jobs: [{"spec", "model", "trace_dir", "questions", "budgets"}])
"""

from __future__ import annotations

import json
import sys

from bitbudget.backends.vllm import VLLMEngine


def main(jobs_file: str) -> int:
    llm = None
    for job in json.loads(open(jobs_file).read()):
        engine = VLLMEngine(job["spec"], job["model"], job["trace_dir"])
        engine.llm = llm
        questions = job["questions"]
        engine(questions, [q["question_id"] for q in questions], {}, job["budgets"])
        llm = engine.llm
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
