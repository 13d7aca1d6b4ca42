"""One vLLM process for a whole test run (in the vLLM venv's interpreter), serving jobs to the
tests through a local socket; engines are kept per (checkpoint, engine settings), so each is
started once however many tests use it. Started and stopped by tests/vllmserver.py.

usage: python engine_server.py SOCKET_PATH   (the auth key comes in BITBUDGET_TEST_SERVER_KEY)

Requests are JSON: {"op": "generations" | "calls", "workdir": DIR, "jobs": [...]}, run with
DIR as the working directory (job paths are relative to it).
- generations: jobs [{"name", "spec", "output", "expect_error"?}] through write_generation;
  answers {name: {"meta", "seconds", "engine_start_s"}} ({"error"} for an expected refusal).
- calls: jobs [{"spec", "questions"}] through the engine's own call at the spec's budgets
  (shards only); answers {}.
A job's spec is bitbudget.enginespec.EngineSpec in its JSON form.
Every answer is {"ok": result} or {"error": traceback}. The tests end the server with a signal.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from multiprocessing.connection import Listener

from bitbudget.backends.vllm import VLLMEngine
from bitbudget.enginespec import EngineSpec
from bitbudget.generate import write_generation


class Engines:
    """VLLMEngine objects that share one started vLLM per (checkpoint, engine settings)."""

    def __init__(self):
        self.started: dict[tuple, object] = {}

    def engine(self, spec: EngineSpec) -> tuple[VLLMEngine, tuple]:
        engine = VLLMEngine(spec)
        shared = (spec.checkpoint_path, spec.engine, spec.runtime)
        engine.llm = self.started.get(shared)
        return engine, shared

    def keep(self, shared: tuple, engine: VLLMEngine) -> None:
        if engine.llm is not None:
            self.started[shared] = engine.llm


def run_generation_job(engines: Engines, job: dict) -> dict:
    spec, started = EngineSpec.from_dict(job["spec"]), time.time()
    try:
        engine, shared = engines.engine(spec)
    except Exception as error:  # noqa: BLE001  a test that expects a refusal checks its message
        if job.get("expect_error") and job["expect_error"] in str(error):
            return {"error": str(error)}
        raise
    meta = write_generation(spec, job["output"], engine)
    engines.keep(shared, engine)
    return {"meta": meta, "seconds": round(time.time() - started, 2), "engine_start_s": engine.start_seconds}


def run_call_job(engines: Engines, job: dict) -> None:
    spec = EngineSpec.from_dict(job["spec"])
    engine, shared = engines.engine(spec)
    questions = job["questions"]
    engine(questions, [q["question_id"] for q in questions], {}, list(spec.budgets))
    engines.keep(shared, engine)


def answer(engines: Engines, request: dict) -> dict:
    os.chdir(request["workdir"])
    if request["op"] == "generations":
        return {job["name"]: run_generation_job(engines, job) for job in request["jobs"]}
    for job in request["jobs"]:
        run_call_job(engines, job)
    return {}


def serve(address: str) -> None:
    engines = Engines()
    with Listener(address, family="AF_UNIX", authkey=os.environ["BITBUDGET_TEST_SERVER_KEY"].encode()) as listener:
        while True:
            with listener.accept() as connection:
                request = json.loads(connection.recv_bytes())
                try:
                    reply = {"ok": answer(engines, request)}
                except Exception:  # noqa: BLE001  the test shows the traceback; the server serves on
                    reply = {"error": traceback.format_exc()}
                connection.send_bytes(json.dumps(reply).encode())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(sys.argv[1])
