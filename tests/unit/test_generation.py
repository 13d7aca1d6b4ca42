"""The HF engine: nested budget forks equal direct runs; shards resume; new budgets only fork."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from bitbudget.backends.hf import HFEngine, Interrupted
from bitbudget.enginespec import EngineSpec
from bitbudget.generate import write_generation
from bitbudget.shards import shard_path
from tests.harness import hand_engine_spec

KV_STRATEGIES = {
    "full": {"method": "full"},
    "quantized": {"method": "quantized", "backend": "hqq", "bits": 8, "group_size": 64, "residual_length": 4},
    "streaming_llm": {"method": "streaming_llm", "budget": 40, "sink_tokens": 4},
    "r_kv": {"method": "r_kv", "budget": 40, "observation_window": 8, "pool_kernel": 7, "lam": 0.1, "compress_every": 8},
}


def arith(n_questions: int) -> dict:
    return {"name": "arith", "kind": "integer", "source": "synthetic",
            "synthetic": {"n_questions": n_questions, "seed": 3, "min_difficulty": 2, "max_difficulty": 4}}


def make_spec(model_dir, kv, budgets, temperature=0.0, n_questions=3, samples=2, batch_size=8, dataset=None,
              seed=0, max_answer_tokens=4) -> EngineSpec:
    trace_key = {
        "checkpoint": "a-model-this-test-made",  # not a results/checkpoints id: not verified
        "kv": kv,
        "dataset": dataset or arith(n_questions),
        "prompt": "{problem}",
        "chat_template_kwargs": {},
        "sampling": {"temperature": temperature, "top_p": 0.95, "top_k": 20, "seed": seed,
                     "samples_per_question": samples, "max_answer_tokens": max_answer_tokens},
        "forcing": {"end_of_thinking": "</think>", "wait_extension": False, "wait_text": "Wait",
                    "forced_answer_suffix": "</think>\n**Final Answer**\n\\boxed{"},
        "horizon": max(budgets),
    }
    return hand_engine_spec(trace_key, budgets, model_dir, batch_size=batch_size)


def generate(model_dir, trace_dir, spec, stop=lambda: False):
    output = trace_dir.parent / f"{trace_dir.name}-samples.parquet"
    spec = dataclasses.replace(spec, checkpoint_path=str(model_dir), trace_dir=str(trace_dir))
    meta = write_generation(spec, output, HFEngine(spec, stop))
    return pd.read_parquet(output), meta


def texts(table, budget):
    rows = table[table["token_budget"] == budget].sort_values(["question_id", "sample_idx"])
    return rows["text"].tolist()


@pytest.mark.parametrize("kv_name", list(KV_STRATEGIES))
def test_forks_equal_direct_generation_greedy(random_tiny_model, tmp_path, kv_name):
    kv = KV_STRATEGIES[kv_name]
    nested, _ = generate(random_tiny_model, tmp_path / "nested", make_spec(random_tiny_model, kv, [12, 24, 48]))
    for budget in (12, 24):
        direct, _ = generate(random_tiny_model, tmp_path / f"direct{budget}", make_spec(random_tiny_model, kv, [budget]))
        assert texts(nested, budget) == texts(direct, budget)


def test_forced_answer_holds_exactly_the_budget(random_tiny_model, tmp_path):
    table, _ = generate(random_tiny_model, tmp_path / "t", make_spec(random_tiny_model, KV_STRATEGIES["full"], [8, 16]))
    forced = table[table["forced"]]
    assert not forced.empty
    assert (forced["thinking_tokens"] == forced["token_budget"]).all()
    assert forced["text"].str.contains(r"\*\*Final Answer\*\*", regex=True).all()


def test_killed_generation_keeps_finished_shards_and_resumes(random_tiny_model, tmp_path):
    spec = make_spec(random_tiny_model, KV_STRATEGIES["full"], [8, 16], temperature=0.6, n_questions=4, batch_size=2)
    trace_dir = tmp_path / "trace"
    written = lambda: sorted((trace_dir / "shards").glob("*.json")) if (trace_dir / "shards").exists() else []
    with pytest.raises(Interrupted):
        generate(random_tiny_model, trace_dir, spec, stop=lambda: len(written()) >= 1)
    kept = {path.name: path.read_text() for path in written()}
    assert 1 <= len(kept) < 4
    assert not (tmp_path / "trace-samples.parquet").exists()
    table, meta = generate(random_tiny_model, trace_dir, spec)
    assert meta["generated"] == 4 - len(kept)
    assert {path.name: path.read_text() for path in written() if path.name in kept} == kept
    assert table["question_id"].nunique() == 4


def test_adding_a_budget_only_forks(random_tiny_model, tmp_path):
    kv = KV_STRATEGIES["streaming_llm"]
    trace_dir = tmp_path / "trace"
    generate(random_tiny_model, trace_dir, make_spec(random_tiny_model, kv, [10, 30]))
    table, meta = generate(random_tiny_model, trace_dir, make_spec(random_tiny_model, kv, [10, 20, 30]))
    assert meta["generated"] == 0 and meta["reforked"] > 0
    direct, _ = generate(random_tiny_model, tmp_path / "direct", make_spec(random_tiny_model, kv, [20]))
    assert texts(table, 20) == texts(direct, 20)


def test_shards_are_complete_json(random_tiny_model, tmp_path):
    spec = make_spec(random_tiny_model, KV_STRATEGIES["full"], [8])
    generate(random_tiny_model, tmp_path / "trace", spec)
    shard = json.loads(shard_path(tmp_path / "trace", "int-0000").read_text())
    assert len(shard["samples"]) == 2
    assert {"think_ids", "closed_thinking", "answer_ids", "forks"} <= set(shard["samples"][0])


def test_nested_and_direct_budgets_agree_within_sampling_error(tmp_path):
    """Sampled runs: accuracy at a budget forked from a longer run matches a direct run."""
    from scipy.stats import chi2_contingency

    from bitbudget.grading import grade_samples
    from tests.harness import REPO

    model = REPO / "resources" / "tiny_models" / "tiny-m"
    budget = 48

    def accuracy_counts(budgets, name):
        choice = {"name": "choice", "kind": "choice", "source": "synthetic",
                  "synthetic": {"n_questions": 24, "seed": 11, "min_difficulty": 2, "max_difficulty": 12}}
        spec = make_spec(model, KV_STRATEGIES["full"], budgets, temperature=0.6, samples=8, batch_size=64,
                         dataset=choice, max_answer_tokens=32, seed=len(budgets))  # seed: independent draws
        table, _ = generate(model, tmp_path / name, spec)
        graded = grade_samples(table[table["token_budget"] == budget], "choice", "</think>", 5, 1)
        return int(graded["correct"].sum()), int((~graded["correct"]).sum())

    nested = accuracy_counts([budget, 128], "nested")
    direct = accuracy_counts([budget], "direct")
    assert sum(nested) == sum(direct) == 24 * 8
    p_value = chi2_contingency([nested, direct])[1]
    assert p_value > 0.01, (nested, direct)
    assert nested[0] > 0 and direct[0] > 0
