"""Samples keyed by index: a generation extended from n to m samples keeps the first n byte for
byte and draws only the new indices; a stopped round resumes at the questions it had not written.
History-free draws: a sample drawn in two steps equals the sample drawn at once, token for token."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from bitbudget import artifacts, shards, versions
from bitbudget.backends.hf import HFEngine
from bitbudget.backends.simulated import Interrupted as SimulatedInterrupted
from bitbudget.enginespec import EngineSpec
from bitbudget.generate import run_generation, write_generation
from bitbudget.study import build_study
from tests.harness import REPO
from tests.unit.test_generation import make_spec

BUDGETS = (2000, 10000, 30000)


# --------------------------------------------------------------------------- shards


def test_missing_indices_and_merge_keep_every_stored_sample():
    shard = {"samples": [{"sample_idx": i} for i in (0, 1, 5)]}
    assert shards.missing_indices(shard, 4) == [2, 3]
    assert shards.missing_indices(shard, 2) == []
    assert shards.missing_indices(None, 3) == [0, 1, 2]
    assert [s["sample_idx"] for s in shards.first_samples(shard, 2)] == [0, 1]
    merged = shards.merge_samples(shard["samples"], [{"sample_idx": 3}, {"sample_idx": 2}])
    assert [s["sample_idx"] for s in merged] == [0, 1, 2, 3, 5]  # never truncated to n
    with pytest.raises(ValueError, match=r"\[1\]"):
        shards.merge_samples(shard["samples"], [{"sample_idx": 1}])


def test_batches_count_each_questions_new_rows():
    prompts = {q: [0] * 3 for q in "abcd"}
    assert list(shards.batches_by_prompt_length("abcd", prompts, 2, 4)) == [["a", "b"], ["c", "d"]]
    rows = {"a": 1, "b": 1, "c": 3, "d": 4}
    assert list(shards.batches_by_prompt_length("abcd", prompts, rows, 4)) == [["a", "b"], ["c"], ["d"]]


def test_only_sampled_traces_of_the_engines_whose_draws_changed_carry_the_draw_version():
    assert versions.draws_key("hf", 0.6) == versions.draws_key("vllm", 0.6) == {"draws": "draws-2"}
    assert versions.draws_key("hf", 0.0) == versions.draws_key("simulated", 0.6) == {}
    assert "draws" not in simulated_generation().key["trace_key"]


# --------------------------------------------------------------------------- simulated engine


def simulated_generation(samples: int = 4, budgets=BUDGETS):
    """The full design (a maximum of ``samples`` per question) of a one-generation simulated study."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config" / "simulated.yaml").read_text()))
    for model in config["models"].values():
        model["path"] = str(REPO / model["path"])
    config["grids"] = {"main": {**config["grids"]["main"], "models": ["qwen3-0.6b"], "weight_formats": ["bf16"],
                                "datasets": ["aime2025"], "token_budgets": list(budgets), "parallel_samples": [1]}}
    config["sampling"]["samples_per_question"] = samples
    (generation,) = build_study(config).generations.values()
    return generation


def run_round(generation, trace_dir: Path, output: Path, stop=lambda: False) -> tuple[pd.DataFrame, dict]:
    """``trace_dir``: the trace store of ``generation``'s trace (named by its id, as in results/traces/)."""
    assert trace_dir.name == generation.trace_id
    spec = dataclasses.replace(generation.engine_spec(), trace_dir=str(trace_dir))
    meta = run_generation(spec, output, stop_requested=stop)
    return pd.read_parquet(output), meta


def read_shards(trace_dir: Path) -> dict[str, dict]:
    return {p.stem: shards.read_shard(trace_dir, p.stem) for p in sorted((trace_dir / "shards").glob("*.json"))}


def test_simulated_extension_reuses_the_first_samples_and_equals_a_one_shot_run(tmp_path):
    full = simulated_generation(samples=4)
    trace = tmp_path / "traces" / full.trace_id
    first, meta1 = run_round(full.with_samples(2), trace, tmp_path / "r2.parquet")
    assert meta1["id"] == full.with_samples(2).gen_id != full.gen_id
    assert sorted(first["sample_idx"].unique()) == [0, 1]
    after_first = read_shards(trace)
    n_questions = len(after_first)
    assert n_questions == first["question_id"].nunique() > 1
    assert all([s["sample_idx"] for s in shard["samples"]] == [0, 1] for shard in after_first.values())

    second, meta2 = run_round(full.with_samples(4), trace, tmp_path / "r4.parquet")
    assert meta2["id"] == full.gen_id
    assert meta2["generated"] == n_questions and meta2["reforked"] == 0
    # only the two new samples of each question thought to the horizon
    assert meta2["counters"]["decode_tokens"] == n_questions * 2 * max(BUDGETS)
    assert meta1["counters"]["decode_tokens"] == n_questions * 2 * max(BUDGETS)
    after_second = read_shards(trace)
    for question_id, shard in after_second.items():
        assert [s["sample_idx"] for s in shard["samples"]] == [0, 1, 2, 3]
        assert shard["samples"][:2] == after_first[question_id]["samples"]
    kept = second[second["sample_idx"] < 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, first)

    oneshot, meta = run_round(full, tmp_path / "oneshot" / full.trace_id, tmp_path / "oneshot.parquet")
    pd.testing.assert_frame_equal(second, oneshot)
    for question_id in after_second:
        assert (shards.shard_path(trace, question_id).read_bytes()
                == shards.shard_path(tmp_path / "oneshot" / full.trace_id, question_id).read_bytes())

    # the earlier round read again from the extended trace: its first samples only, nothing drawn
    again, meta = run_round(full.with_samples(2), trace, tmp_path / "r2-again.parquet")
    pd.testing.assert_frame_equal(again, first)
    assert meta["generated"] == 0 and meta["counters"]["decode_tokens"] == 0
    assert read_shards(trace) == after_second


def test_simulated_sample_drawn_in_two_steps_equals_the_one_drawn_at_once(tmp_path):
    """Fewer samples at smaller budgets first, then the full design: the one-shot trace, byte for byte."""
    full = simulated_generation(samples=4)
    trace = tmp_path / "traces" / full.trace_id
    run_round(full.with_samples(2, budgets=(2000, 10000)), trace, tmp_path / "low.parquet")
    table, _ = run_round(full, trace, tmp_path / "full.parquet")
    oneshot_trace = tmp_path / "oneshot" / full.trace_id
    oneshot, _ = run_round(full, oneshot_trace, tmp_path / "oneshot.parquet")
    pd.testing.assert_frame_equal(table, oneshot)
    assert read_shards(trace) == read_shards(oneshot_trace)


def test_extension_with_a_new_budget_forks_stored_samples_then_draws_new_ones(tmp_path):
    small = simulated_generation(samples=4, budgets=(2000, 30000))
    trace = tmp_path / "traces" / small.trace_id
    first, _ = run_round(small.with_samples(2), trace, tmp_path / "r2.parquet")
    stored = read_shards(trace)
    full = simulated_generation(samples=4)
    assert full.trace_id == small.trace_id  # the budget list is not part of the trace
    table, meta = run_round(full, trace, tmp_path / "r4.parquet")
    n_questions = len(stored)
    assert meta["generated"] == meta["reforked"] == n_questions
    assert meta["counters"]["decode_tokens"] == n_questions * 2 * max(BUDGETS)
    for question_id, shard in read_shards(trace).items():
        for old, new in zip(stored[question_id]["samples"], shard["samples"][:2]):
            assert set(new["forks"]) == {"2000", "10000", "30000"}
            assert {b: new["forks"][b] for b in old["forks"]} == old["forks"]
    oneshot, _ = run_round(full, tmp_path / "oneshot" / full.trace_id, tmp_path / "oneshot.parquet")
    pd.testing.assert_frame_equal(table, oneshot)


def test_a_stopped_round_resumes_at_the_questions_it_had_not_written(tmp_path):
    full = simulated_generation(samples=4)
    trace = tmp_path / "traces" / full.trace_id
    run_round(full.with_samples(2), trace, tmp_path / "r2.parquet")
    paths = sorted((trace / "shards").glob("*.json"))

    def extended() -> list[Path]:
        return [p for p in paths if len(json.loads(p.read_text())["samples"]) == 4]

    output = tmp_path / "r4.parquet"
    with pytest.raises(SimulatedInterrupted):
        run_round(full, trace, output, stop=lambda: len(extended()) >= 1)
    written = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in extended()}
    assert len(written) == 1
    assert not output.exists() and not artifacts.meta_path(output).exists()

    table, meta = run_round(full, trace, output)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in written} == written
    remaining = len(paths) - len(written)
    assert meta["generated"] == remaining
    assert meta["counters"]["decode_tokens"] == remaining * 2 * max(BUDGETS)
    counts = table.groupby("question_id")["sample_idx"].nunique()
    assert len(counts) == len(paths) and (counts == 4).all()
    oneshot, _ = run_round(full, tmp_path / "oneshot" / full.trace_id, tmp_path / "oneshot.parquet")
    pd.testing.assert_frame_equal(table, oneshot)


# --------------------------------------------------------------------------- HF engine


def hf_spec(model_dir, samples: int, maximum: int = 3, budgets=(8, 16), n_questions: int = 3) -> EngineSpec:
    """test_generation's spec at temperature 0.6 (distinct samples), a trace of ``maximum``
    samples per question read at its first ``samples``."""
    spec = make_spec(model_dir, {"method": "full"}, list(budgets), temperature=0.6, n_questions=n_questions,
                     samples=maximum)
    return dataclasses.replace(spec, samples=samples)


def hf_round(model_dir, trace_dir: Path, spec: EngineSpec, output: Path):
    spec = dataclasses.replace(spec, checkpoint_path=str(model_dir), trace_dir=str(trace_dir))
    engine = HFEngine(spec)
    meta = write_generation(spec, output, engine)
    return pd.read_parquet(output), meta, engine


def fork_decode_tokens(sample: dict, budget: int, tokens) -> int:
    """Tokens one fork fed back to the model: the answer suffix and its answer but the last token."""
    return len(tokens.suffix) + len(sample["forks"][str(budget)]) - 1


def row_decode_tokens(sample: dict, horizon: int, tokens) -> int:
    """Tokens one sample's row fed back to the model: every token it advanced but its last."""
    if sample["closed_thinking"]:
        return len(sample["think_ids"]) + 1 + len(sample["answer_ids"]) - 1
    return horizon + fork_decode_tokens(sample, horizon, tokens)


def test_hf_extension_keeps_samples_token_for_token_and_decodes_only_the_new_one(random_tiny_model, tmp_path):
    trace = tmp_path / "trace"
    first, meta1, engine = hf_round(random_tiny_model, trace, hf_spec(random_tiny_model, 2), tmp_path / "r2.parquet")
    after_first = read_shards(trace)
    horizon = 16
    # the counter formula, checked on the first round's two rows per question
    assert meta1["counters"]["decode_tokens"] == sum(
        row_decode_tokens(s, horizon, engine.tokens) for shard in after_first.values() for s in shard["samples"])
    prompt_tokens = first.drop_duplicates("question_id")["prompt_tokens"].sum()
    assert meta1["counters"]["prefill_tokens"] == 2 * prompt_tokens

    second, meta2, engine = hf_round(random_tiny_model, trace, hf_spec(random_tiny_model, 3), tmp_path / "r3.parquet")
    after_second = read_shards(trace)
    assert meta2["generated"] == len(after_first) == 3 and meta2["reforked"] == 0
    new = [shard["samples"][2] for shard in after_second.values()]
    for question_id, shard in after_second.items():
        assert [s["sample_idx"] for s in shard["samples"]] == [0, 1, 2]
        assert shard["samples"][:2] == after_first[question_id]["samples"]  # think_ids, answer_ids, forks
        assert shard["samples"][2]["think_ids"] not in [s["think_ids"] for s in shard["samples"][:2]]
    assert meta2["counters"]["prefill_tokens"] == prompt_tokens  # one new row per question
    assert meta2["counters"]["decode_tokens"] == sum(row_decode_tokens(s, horizon, engine.tokens) for s in new)
    kept = second[second["sample_idx"] < 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, first)
    assert second.groupby("question_id")["sample_idx"].nunique().eq(3).all()


def test_hf_sample_drawn_in_two_steps_equals_the_one_drawn_at_once(random_tiny_model, tmp_path):
    """Two samples thought to 8 tokens, then three to 24: the trace of one run of three to 24,
    token for token. The stored two think on in a batch of their own, the third is drawn in
    another (one run draws all three in one batch): a sample's draws ignore its batch."""
    full = hf_spec(random_tiny_model, 3, budgets=(4, 8, 24))
    stepped, oneshot = tmp_path / "stepped" / "trace", tmp_path / "oneshot" / "trace"  # the draws name the trace
    hf_round(random_tiny_model, stepped, dataclasses.replace(full, samples=2, budgets=(4, 8)), tmp_path / "low.parquet")
    stored = read_shards(stepped)
    table, meta, _ = hf_round(random_tiny_model, stepped, full, tmp_path / "full.parquet")
    assert meta["reforked"] == meta["generated"] == len(stored)
    reference, _, _ = hf_round(random_tiny_model, oneshot, full, tmp_path / "oneshot.parquet")
    assert read_shards(stepped) == read_shards(oneshot)
    pd.testing.assert_frame_equal(table, reference)
    thought_on = [s for shard in stored.values() for s in shard["samples"] if not s["closed_thinking"]]
    assert thought_on and all(len(s["think_ids"]) == 8 for s in thought_on)
    for shard in read_shards(oneshot).values():
        assert len({tuple(s["think_ids"]) for s in shard["samples"]}) == 3  # drawn, not greedy


# --------------------------------------------------------------------------- thinking on


def test_a_generation_of_smaller_budgets_reads_the_same_trace_and_checks_its_budgets():
    full = simulated_generation(samples=4)
    low = full.with_samples(2, budgets=(10000, 2000))
    assert low.trace_id == full.trace_id and low.budgets == (2000, 10000)
    assert low.gen_id not in {full.gen_id, full.with_samples(2).gen_id}
    assert low.engine_spec().budgets == (2000, 10000)
    assert full.with_samples(4, budgets=full.budgets).gen_id == full.gen_id
    for bad in ((), (2000, 5000)):
        with pytest.raises(ValueError, match="budgets must be a non-empty subset"):
            full.with_samples(2, budgets=bad)


def test_simulated_samples_think_only_to_the_largest_budget_asked_then_think_on(tmp_path):
    full = simulated_generation(samples=4)
    trace = tmp_path / "traces" / full.trace_id
    low, meta1 = run_round(full.with_samples(2, budgets=(2000, 10000)), trace, tmp_path / "low.parquet")
    n_questions = low["question_id"].nunique()
    assert set(low["token_budget"]) == {2000, 10000}
    assert meta1["counters"]["decode_tokens"] == n_questions * 2 * 10000
    table, meta = run_round(full, trace, tmp_path / "full.parquet")
    assert meta["reforked"] == meta["generated"] == n_questions
    # two stored samples think on from 10,000 tokens, two new ones from the start
    assert meta["counters"]["decode_tokens"] == n_questions * 2 * (30000 - 10000) + n_questions * 2 * 30000
    kept = table[(table["sample_idx"] < 2) & (table["token_budget"] <= 10000)].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, low)
    oneshot, _ = run_round(full, tmp_path / "oneshot" / full.trace_id, tmp_path / "oneshot.parquet")
    pd.testing.assert_frame_equal(table, oneshot)


def test_hf_sample_thought_to_a_smaller_budget_thinks_on_and_keeps_every_stored_token(random_tiny_model, tmp_path):
    trace = tmp_path / "trace"
    full = hf_spec(random_tiny_model, 2, budgets=(8, 16, 32))
    low, _, _ = hf_round(random_tiny_model, trace, dataclasses.replace(full, budgets=(8, 16)), tmp_path / "low.parquet")
    stored = read_shards(trace)
    short = [s for shard in stored.values() for s in shard["samples"] if not s["closed_thinking"]]
    assert short and all(len(s["think_ids"]) == 16 and set(s["forks"]) == {"8", "16"} for s in short)

    table, meta, _ = hf_round(random_tiny_model, trace, full, tmp_path / "full.parquet")
    assert meta["reforked"] == len(stored) and meta["generated"] == 0
    grown = 0
    for question_id, shard in read_shards(trace).items():
        for old, new in zip(stored[question_id]["samples"], shard["samples"]):
            assert new["think_ids"][: len(old["think_ids"])] == old["think_ids"]
            assert {b: new["forks"][b] for b in old["forks"]} == old["forks"]
            if not old["closed_thinking"]:
                assert 16 < len(new["think_ids"]) <= 32
                assert new["closed_thinking"] or "32" in new["forks"]
                grown += 1
    assert grown == len(short)
    kept = table[table["token_budget"] <= 16].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, low)
    assert set(table["token_budget"]) == {8, 16, 32}


def test_hf_refork_decodes_only_the_forks_each_sample_lacks(random_tiny_model, tmp_path):
    trace = tmp_path / "trace"
    hf_round(random_tiny_model, trace, hf_spec(random_tiny_model, 2, budgets=(8, 16)), tmp_path / "first.parquet")
    stored = read_shards(trace)
    # one sample lost its fork at 8: it needs 8 and the new 12, every other sample only 12 (or
    # nothing, if it stopped thinking before 12). A refork thinks to the largest budget its batch
    # lacks, 12, and answers there as a sample answers at its horizon: what is left to fork is 8
    question_id, shard = next((q, s) for q, s in stored.items() if "8" in s["samples"][0]["forks"])
    del shard["samples"][0]["forks"]["8"]
    shards.write_shard(trace, question_id, shard["samples"])
    lacking = {(q, s["sample_idx"]): shards.missing_forks(s, [8, 12, 16]) for q, sh in stored.items() for s in sh["samples"]}
    assert lacking[question_id, 0] == [8, 12] and sum(len(b) > 1 for b in lacking.values()) == 1

    _, meta, engine = hf_round(random_tiny_model, trace, hf_spec(random_tiny_model, 2, budgets=(8, 12, 16)),
                               tmp_path / "second.parquet")
    after = read_shards(trace)
    assert meta["generated"] == 0 and meta["reforked"] == len(after)
    assert all("12" in s["forks"] for q, sh in after.items() for s in sh["samples"] if 12 in lacking[q, s["sample_idx"]])
    # that one sample's fork at 8 only: the others hold theirs
    assert meta["counters"]["fork_tokens"] == fork_decode_tokens(after[question_id]["samples"][0], 8, engine.tokens)
    for q, sh in after.items():  # the forks a sample held are kept as they were
        for old, new in zip(stored[q]["samples"], sh["samples"]):
            assert {b: new["forks"][b] for b in old["forks"]} == old["forks"]
