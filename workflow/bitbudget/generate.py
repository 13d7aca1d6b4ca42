"""The generate stage: think once to the horizon, fork every budget, write per-question shards."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import pandas as pd

from bitbudget import artifacts, memory, shards
from bitbudget.backends.simulated import SimulatedEngine
from bitbudget.backends.vllm import VLLMEngine
from bitbudget.datasets import dataset_summary, load_questions
from bitbudget.enginespec import EngineSpec
from bitbudget.gpu_slots import acquire_gpus
from bitbudget.interpreter import cli_arguments, other_interpreter, run_in_interpreter
from bitbudget.shards import first_samples, plan_work, read_shard

log = logging.getLogger(__name__)

#: engines that run in this interpreter on no device whatever the job's GPU resources say
SELF_CONTAINED_ENGINES = ("simulated",)


class StopFlag:
    """Set by SIGTERM/SIGINT: the job stops at the next decode step, keeping written shards."""

    def __init__(self):
        self.requested = False

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        log.warning("received signal %s: stopping after the shards already written", signum)
        self.requested = True

    def __call__(self) -> bool:
        return self.requested


def samples_table(questions, trace_dir, budgets, result, samples_of) -> pd.DataFrame:
    """One row per (question, sample, budget) for the samples of indices below the question's
    ``samples_of(question_id)``: a trace may hold more (a later round ran before)."""
    records = []
    for question in questions:
        shard = read_shard(trace_dir, question["question_id"])
        if shard is None:
            raise RuntimeError(
                f"trace {trace_dir} has no shard for question {question['question_id']} (the job was "
                "stopped): rerun snakemake to resume at the first missing question"
            )
        prompt_tokens = result.prompt_tokens(question["question_id"])
        samples = samples_of(question["question_id"])
        held = first_samples(shard, samples)
        if len(held) < samples:
            raise RuntimeError(
                f"trace {trace_dir} holds {len(held)} of the {samples} samples of question "
                f"{question['question_id']} (the job was stopped): rerun snakemake to resume"
            )
        for sample in held:
            for budget in budgets:
                at_budget = result.at_budget(sample, budget)
                records.append({
                    "question_id": question["question_id"],
                    "sample_idx": sample["sample_idx"],
                    "token_budget": budget,
                    "reference_answer": question["answer"],
                    "choices": json.dumps(question.get("choices")),
                    "difficulty": question.get("difficulty"),
                    "prompt_tokens": prompt_tokens,
                    "thinking_tokens": at_budget["thinking_tokens"],
                    "answer_tokens": at_budget["answer_tokens"],
                    "forced": at_budget["forced"],
                    "text": at_budget["text"],
                })
    return pd.DataFrame.from_records(records)


def write_generation(spec: EngineSpec, output: str | Path, engine_run) -> dict:
    """Drive one generation: load questions, let the engine fill missing shards, assemble."""
    started = time.time()
    trace_dir = spec.trace_dir
    # Metadata means complete: a stale meta file must not outlive the data it described.
    artifacts.meta_path(output).unlink(missing_ok=True)
    for stale in shards.remove_stale_temporaries(trace_dir) + artifacts.remove_stale_temporaries(Path(output).parent):
        log.warning("removed %s, left by a writer that was stopped", stale)
    checkpoint = Path(spec.checkpoint_path)
    if checkpoint.name == spec.trace_key["checkpoint"]:  # a checkpoint this pipeline made: check it
        artifacts.verify_directory(checkpoint)
    questions = load_questions(spec.dataset)
    unknown = sorted(set(spec.closed_questions) - {q["question_id"] for q in questions})
    if unknown:
        raise ValueError(f"closed_questions names questions its dataset does not hold: {unknown[:5]}; "
                         "close only questions of the generation's dataset")
    budgets = list(spec.budgets)
    fresh, incomplete = plan_work(questions, trace_dir, budgets, spec.samples_of)
    log.info("%d questions at %d samples (%d closed at fewer): %d need new samples, %d need new forks, %d cached",
             len(questions), spec.samples, len(spec.closed_questions), len(fresh), len(incomplete),
             len({q["question_id"] for q in questions} - set(fresh) - set(incomplete)))
    artifacts.write_json(Path(trace_dir) / "trace.meta.json", {"id": Path(trace_dir).name, "key": spec.trace_key})
    result = engine_run(questions, fresh, incomplete, budgets)
    table = samples_table(questions, trace_dir, budgets, result, spec.samples_of)
    artifacts.write_parquet(output, table)
    gen_key = spec.generation_key()
    return artifacts.write_meta(
        output, {**gen_key, "trace_key": spec.trace_key}, artifact_id=artifacts.content_id(gen_key),
        counters=result.counters, seconds=round(time.time() - started, 3),
        questions=len(questions), generated=len(fresh), reforked=len(incomplete),
        dataset=dataset_summary(questions),
        model=getattr(result, "model", None) or memory.checkpoint_record(spec.checkpoint_path, spec.revision),
    )


def make_engine(spec: EngineSpec, stop_requested):
    name = spec.engine.name
    if name == "hf":
        from bitbudget.backends.hf import HFEngine  # imports torch: only a job that runs the HF engine loads it

        return HFEngine(spec, stop_requested)
    if name == "vllm":
        return VLLMEngine(spec, stop_requested)
    if name == "simulated":
        return SimulatedEngine(spec, stop_requested)
    raise ValueError(f"engine.name '{name}' is unknown; use 'hf', 'vllm' or 'simulated'")


def run_generation(spec: EngineSpec, output: str | Path, stop_requested=lambda: False, gpus: int = 0) -> dict:
    """Generate into the trace store, holding `gpus` devices when no scheduler assigned them.

    With `engine.python` naming another interpreter (vLLM pins its own torch), the work runs
    there as `python -m bitbudget.generate`, under the devices held here.
    """
    if spec.engine.name in SELF_CONTAINED_ENGINES:  # no device, no engine environment
        return write_generation(spec, output, make_engine(spec, stop_requested))
    with _gpu_devices(gpus):
        python = other_interpreter(spec.runtime.python)
        if python:
            run_in_interpreter(python, "bitbudget.generate", spec.to_dict(), output, stop_requested)
            return json.loads(artifacts.meta_path(output).read_text())
        return write_generation(spec, output, make_engine(spec, stop_requested))


def _gpu_devices(gpus: int):
    import contextlib
    import os

    if gpus <= 0 or "SLURM_JOB_ID" in os.environ:
        return contextlib.nullcontext()
    return acquire_gpus(gpus)


def main(argv=None) -> int:
    """`python -m bitbudget.generate --spec spec.json --output samples.parquet [--log file]`."""
    args = cli_arguments("generate one trace into its shards and samples table", argv)
    stop = StopFlag().install()
    run_generation(EngineSpec.from_dict(json.loads(Path(args.spec).read_text())), args.output, stop_requested=stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
