"""VLLMEngine: a sample drawn in two steps (a later round, thinking on from a smaller horizon, or
a question closed and reopened) equals the sample drawn at once, token for token (history-free draws)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from bitbudget.datasets import load_questions
from bitbudget.shards import read_shard
from bitbudget.study import build_study

from engine_support import needs_vllm, study_config

pytestmark = [pytest.mark.vllm, needs_vllm]


def test_extension_reuses_stored_samples_and_equals_a_one_shot_run(vllm_server, tiny_model, tmp_path):
    (full,) = build_study(study_config(tiny_model, [8, 16, 32], samples=3)).generations.values()
    first = full.with_samples(2)
    oneshot_dir = f"oneshot/{full.trace_dir}"  # same trace id (the draws hold it), another store
    jobs = [
        {"name": "two", "spec": first.engine_spec(), "output": first.output},
        {"name": "three", "spec": full.engine_spec(), "output": full.output},
        {"name": "oneshot", "spec": dataclasses.replace(full.engine_spec(), trace_dir=oneshot_dir),
         "output": f"oneshot/{full.output}"},
    ]
    results = vllm_server.generations(jobs, tmp_path)
    two, three, oneshot = (results[name]["meta"] for name in ("two", "three", "oneshot"))
    assert two["id"] == first.gen_id and three["id"] == oneshot["id"] == full.gen_id
    assert three["generated"] == two["generated"] == 4 and three["reforked"] == 0
    for counter in ("requests", "decode_tokens", "fork_tokens"):  # the extension drew only sample 2
        assert two["counters"][counter] + three["counters"][counter] == oneshot["counters"][counter], counter
    question_ids = sorted(p.stem for p in (tmp_path / oneshot_dir / "shards").glob("*.json"))
    assert len(question_ids) == 4
    distinct = []
    for question_id in question_ids:
        extended = read_shard(tmp_path / full.trace_dir, question_id)
        assert extended == read_shard(tmp_path / oneshot_dir, question_id)
        assert [s["sample_idx"] for s in extended["samples"]] == [0, 1, 2]
        distinct.append(len({tuple(s["think_ids"]) for s in extended["samples"]}))
    assert max(distinct) > 1  # sampled, not greedy: a question's samples may still agree by chance
    table_two = pd.read_parquet(tmp_path / first.output)
    table_oneshot = pd.read_parquet(tmp_path / "oneshot" / full.output)
    pd.testing.assert_frame_equal(table_two, table_oneshot[table_oneshot["sample_idx"] < 2].reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / full.output), table_oneshot)


@pytest.mark.parametrize("wait_extension", [False, True], ids=["plain", "wait"])
def test_a_sample_thought_to_a_smaller_budget_thinks_on_as_the_sample_drawn_at_once(
        vllm_server, tiny_model, tmp_path, wait_extension):
    (full,) = build_study(study_config(tiny_model, [4, 8, 32], samples=2,
                                       wait_extension=wait_extension)).generations.values()
    low = full.with_samples(2, budgets=(4, 8))
    oneshot_dir = f"oneshot/{full.trace_dir}"
    jobs = [{"name": "low", "spec": low.engine_spec(), "output": low.output},
            {"name": "full", "spec": full.engine_spec(), "output": full.output},
            {"name": "oneshot", "spec": dataclasses.replace(full.engine_spec(), trace_dir=oneshot_dir),
             "output": f"oneshot/{full.output}"}]

    results = vllm_server.generations(jobs[:1], tmp_path)
    question_ids = sorted(p.stem for p in (tmp_path / full.trace_dir / "shards").glob("*.json"))
    stored = {q: read_shard(tmp_path / full.trace_dir, q) for q in question_ids}
    short = [s for shard in stored.values() for s in shard["samples"] if not s["closed_thinking"]]
    assert short and all(len(s["think_ids"]) == 8 and set(s["forks"]) == {"4", "8"} for s in short)
    assert results["low"]["meta"]["id"] == low.gen_id

    results = vllm_server.generations(jobs[1:], tmp_path)
    meta = results["full"]["meta"]
    assert meta["id"] == full.gen_id and meta["generated"] == 0 and meta["reforked"] == len(question_ids)
    assert meta["counters"]["decode_tokens"] > 0  # thinking went on; nothing stored was drawn again
    grown, drawn = 0, []
    for question_id in question_ids:
        extended = read_shard(tmp_path / full.trace_dir, question_id)
        for old, new in zip(stored[question_id]["samples"], extended["samples"]):
            assert new["think_ids"][: len(old["think_ids"])] == old["think_ids"]
            assert {b: new["forks"][b] for b in old["forks"]} == old["forks"]
            if not old["closed_thinking"]:
                assert 8 < len(new["think_ids"]) <= 32 and (new["closed_thinking"] or "32" in new["forks"])
                grown += 1
        # resumed at 8 (in another request, segment and batch): the sample drawn at once
        assert extended == read_shard(tmp_path / oneshot_dir, question_id)
        drawn.append(extended["samples"][0]["think_ids"] != extended["samples"][1]["think_ids"])
    assert any(drawn)  # sampled, not greedy: two samples of a question may still agree by chance
    assert grown == len(short)
    table = pd.read_parquet(tmp_path / full.output)
    kept = table[table["token_budget"] <= 8].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, pd.read_parquet(tmp_path / low.output))
    pd.testing.assert_frame_equal(table, pd.read_parquet(tmp_path / "oneshot" / full.output))


def test_a_closed_question_draws_nothing_and_reopened_equals_a_one_shot_run(vllm_server, tiny_model, tmp_path):
    (full,) = build_study(study_config(tiny_model, [8, 32], samples=3)).generations.values()
    question_ids = sorted(q["question_id"] for q in load_questions(full.engine_spec().dataset))
    closed = {question_ids[0]: 1}
    first, ragged = full.with_samples(1), full.with_samples(3, closed_questions=closed)
    oneshot_dir = f"oneshot/{full.trace_dir}"
    jobs = [{"name": "one", "spec": first.engine_spec(), "output": first.output},
            {"name": "ragged", "spec": ragged.engine_spec(), "output": ragged.output},
            {"name": "full", "spec": full.engine_spec(), "output": full.output},
            {"name": "oneshot", "spec": dataclasses.replace(full.engine_spec(), trace_dir=oneshot_dir),
             "output": f"oneshot/{full.output}"}]
    results = vllm_server.generations(jobs[:2], tmp_path)
    assert results["ragged"]["meta"]["id"] == ragged.gen_id
    assert results["ragged"]["meta"]["generated"] == len(question_ids) - 1
    table = pd.read_parquet(tmp_path / ragged.output)
    counts = table.groupby("question_id")["sample_idx"].nunique().to_dict()
    assert counts == {q: 1 if q in closed else 3 for q in question_ids}
    closed_shard = read_shard(tmp_path / full.trace_dir, question_ids[0])
    assert [s["sample_idx"] for s in closed_shard["samples"]] == [0]

    results = vllm_server.generations(jobs[2:], tmp_path)
    assert results["full"]["meta"]["generated"] == 1  # the closed question's samples 1 and 2 only
    for question_id in question_ids:
        assert read_shard(tmp_path / full.trace_dir, question_id) == read_shard(tmp_path / oneshot_dir, question_id)
    oneshot = pd.read_parquet(tmp_path / "oneshot" / full.output)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / full.output), oneshot)
    read_at = oneshot["question_id"].map(lambda q: closed.get(q, 3))
    pd.testing.assert_frame_equal(table, oneshot[oneshot["sample_idx"] < read_at].reset_index(drop=True))
