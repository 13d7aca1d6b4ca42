"""Engine throughput vs bare vLLM on the same prompts (run in the vLLM venv).

usage: python bench/vllm_throughput.py CHECKPOINT [--kv-cache-dtype fp8] [--dtype bfloat16]
           [--questions 64] [--samples 8] [--budgets 32,64,128,256] [--workdir DIR]

Engine: VLLMEngine over the synthetic task (think to the horizon, forks at every budget).
Bare: one `llm.generate` of the same prompt ids x samples, `max_tokens` = horizon +
max_answer_tokens, no forcing: the tokens/s a plain sampling run gets on this device.
Both share one `vllm.LLM`; the engine's start is timed apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def generation_spec(checkpoint: str, args) -> tuple:
    """The EngineSpec of the benchmark's one generation, and the samples table it writes."""
    import bitbudget.config
    import bitbudget.study
    from bitbudget.study import build_study

    try:
        import snakemake  # noqa: F401  (the study validates configs with Snakemake's validate)
    except ImportError:  # the vLLM venv has no Snakemake: check the schema alone
        def validate_config(config, schema_path=bitbudget.config.SCHEMA_PATH):
            bitbudget.config.check_schema(config, schema_path)
            return config

        bitbudget.study.validate_study_config = validate_config

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["models"] = {"m": {"path": checkpoint}}
    config["weight_formats"] = {"as_is": {"bits": 16}}
    config["kv_strategies"] = {"full": {"method": "full"}}
    config["datasets"] = {"arith": {"kind": "integer", "source": "synthetic", "synthetic": {
        "n_questions": args.questions, "seed": 11, "min_difficulty": 4, "max_difficulty": 40}}}
    budgets = [int(b) for b in args.budgets.split(",")]
    config["grids"] = {"g": {"models": ["m"], "weight_formats": ["as_is"], "kv_strategies": ["full"],
                             "datasets": ["arith"], "token_budgets": budgets, "parallel_samples": [1]}}
    config["sampling"]["samples_per_question"] = args.samples
    config["engine"] = {"name": "vllm", "dtype": args.dtype, "batch_size": 256, "device": args.device,
                        "kv_cache_dtype": args.kv_cache_dtype, "max_model_len": 1024,
                        "gpu_memory_utilization": 0.5}
    gen = next(iter(build_study(config).generations.values()))
    return dataclasses.replace(gen.engine_spec(), checkpoint_path=checkpoint, revision=None), gen.output


def main() -> None:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from bitbudget.backends.vllm import VLLMEngine
    from bitbudget.datasets import load_questions
    from bitbudget.generate import write_generation
    from bitbudget.shards import build_prompts

    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--kv-cache-dtype", default="auto")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--budgets", default="32,64,128,256")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--device", default="cuda", help="engine.device recorded in the spec (cpu for a CPU trial)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    checkpoint = str(Path(args.checkpoint).absolute())
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="vllm-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    spec, output = generation_spec(checkpoint, args)
    engine = VLLMEngine(spec)
    questions = load_questions(spec.dataset)
    key = spec.trace_key
    prompts = build_prompts(engine.tokenizer, questions, key["prompt"], key["chat_template_kwargs"])
    engine.start(max(len(p) for p in prompts.values()))
    started = time.time()
    meta = write_generation(spec, output, engine)
    engine_s = time.time() - started
    counters = meta["counters"]
    engine_tokens = counters["decode_tokens"] + counters["fork_tokens"]

    horizon = key["horizon"]
    max_tokens = horizon + key["sampling"]["max_answer_tokens"]
    s = key["sampling"]
    requests, params = [], []
    for q in questions:
        for i in range(args.samples):
            requests.append(TokensPrompt(prompt_token_ids=prompts[q["question_id"]]))
            params.append(SamplingParams(temperature=s["temperature"], top_p=s["top_p"], top_k=s["top_k"],
                                         seed=1000 + i, max_tokens=max_tokens, detokenize=False))
    started = time.time()
    outputs = engine.llm.generate(requests, params, use_tqdm=False)
    bare_s = time.time() - started
    bare_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    result = {
        "checkpoint": args.checkpoint, "kv_cache_dtype": args.kv_cache_dtype, "dtype": args.dtype,
        "questions": args.questions, "samples": args.samples, "budgets": args.budgets,
        "engine_start_s": engine.start_seconds,
        "engine": {"seconds": round(engine_s, 2), "tokens": engine_tokens, "tokens_per_s": round(engine_tokens / engine_s),
                   "counters": counters},
        "bare_vllm": {"seconds": round(bare_s, 2), "tokens": bare_tokens, "tokens_per_s": round(bare_tokens / bare_s)},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
