"""Aggregate: memory charged from the recorded checkpoint, with the paper's table convention."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.numpy import save_file

from bitbudget import aggregate, memory
from bitbudget.config import validate_config
from bitbudget.study import build_study
from tests.conftest import REPO

TABLE_TOLERANCE = 0.01  # every reported cell within 1%, scales and zero points as the checkpoints store them
BITS_COLUMNS = (4, 8, 16)  # the order of PAPER_WEIGHT_GIB's cells


def paper_config() -> dict:
    return validate_config(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))


def qwen3_size(model_path: str) -> str:
    return model_path.rsplit("Qwen3-", 1)[1].lower()


def spec_of(config: dict) -> dict:
    return {key: config[key] for key in ("weight_formats", "kv_strategies", "analysis")} | {
        "max_answer_tokens": config["sampling"]["max_answer_tokens"]}


def test_paper_grid_charges_the_memory_table():
    """Every scenario of the paper grid whose (model, bits) Table 1 reports is charged that weight
    memory within 1%: 16-bit 0.6B and 1.7B included (their files store the tied lm_head)."""
    config = paper_config()
    study = build_study(config)
    scenarios = pd.DataFrame(study.scenarios)
    # what the generate stage records for each model: its hub config and stored tensor names,
    # which the shipped architecture JSONs hold
    records = {gen_id: memory.checkpoint_record(memory.architecture_path(
        qwen3_size(config["models"][gen.checkpoint.model]["path"]))) for gen_id, gen in study.generations.items()}
    charged = aggregate.memory_columns(scenarios, records, spec_of(config))
    checked = set()
    for (model, weights), rows in scenarios.groupby(["model", "weights"]).groups.items():
        size = qwen3_size(config["models"][model]["path"])
        bits = config["weight_formats"][weights]["bits"]
        paper = dict(zip(BITS_COLUMNS, memory.PAPER_WEIGHT_GIB.get(size, (None,) * 3)))[bits]
        if paper is None:
            continue
        ours = charged.loc[rows, "weight_gib"].to_numpy()
        assert np.all(np.abs(ours - paper) / paper < TABLE_TOLERANCE), (model, weights, ours[0], paper)
        checked.add((size, bits))
    reported = {(size, bits) for size, cells in memory.PAPER_WEIGHT_GIB.items()
                for bits, ref in zip(BITS_COLUMNS, cells) if ref is not None}
    assert checked == reported
    assert (charged["total_gib"] == charged["weight_gib"] + charged["kv_gib"]).all()
    assert np.allclose(charged["kv_gib"], scenarios["G"] * charged["kv_gib_per_seq"])


def test_kv_tokens_follow_the_token_budget_unless_context_is_asked():
    config = paper_config()
    assert config["analysis"]["kv_tokens"] == "budget"  # the schema's default
    arch = memory.load_architecture(memory.architecture_path("8b"))
    records = {"g": {"architecture": arch, "param_counts": memory.param_counts(arch)}}
    kvs = {"full": {"method": "full"},
           "streaming": {"method": "streaming_llm", "budget": 2048, "sink_tokens": 4},
           "rkv": {"method": "r_kv", "budget": 2048, "compress_every": 128}}
    scenarios = pd.DataFrame([{"gen_id": "g", "weights": "int8", "kv": kv, "token_budget": 10000, "G": 4}
                              for kv in kvs])
    spec = {"weight_formats": {"int8": {"bits": 8, "group_size": 128}}, "kv_strategies": kvs,
            "max_answer_tokens": 32, "analysis": {"kv_tokens": "budget"}}
    per_token = memory.kv_bytes(arch, None, 1) / memory.GIB
    prompt = np.array([200, 200, 200])
    paper = aggregate.memory_columns(scenarios, records, spec, prompt).set_index(scenarios["kv"])
    assert paper.loc["full", "kv_gib_per_seq"] == pytest.approx(10000 * per_token)
    # both eviction methods are charged their KV budget, the same way
    assert paper.loc["streaming", "kv_gib_per_seq"] == paper.loc["rkv", "kv_gib_per_seq"] == pytest.approx(2048 * per_token)
    assert paper.loc["full", "kv_gib"] == pytest.approx(4 * paper.loc["full", "kv_gib_per_seq"])
    # beside it, R-KV's peak (budget + compression interval) for the verdicts' sensitivity
    weight = paper.loc["rkv", "weight_gib"]
    assert paper.loc["rkv", "peak_total_gib"] == pytest.approx(weight + 4 * (2048 + 128) * per_token)
    assert (paper.loc[["full", "streaming"], "peak_total_gib"] == paper.loc[["full", "streaming"], "total_gib"]).all()
    spec["analysis"] = {"kv_tokens": "context"}
    context = aggregate.memory_columns(scenarios, records, spec, prompt).set_index(scenarios["kv"])
    assert context.loc["full", "kv_gib_per_seq"] == pytest.approx((200 + 10000 + 32) * per_token)
    assert context.loc["streaming", "kv_gib_per_seq"] == pytest.approx(2048 * per_token)
    assert context.loc["rkv", "kv_gib_per_seq"] == pytest.approx((2048 + 128) * per_token)
    assert (context["weight_gib"] == paper["weight_gib"]).all()
    bad = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    bad["analysis"]["kv_tokens"] = "prompt"
    with pytest.raises(Exception, match="kv_tokens|prompt"):
        validate_config(bad)


def test_record_sees_a_stored_copy_of_a_tied_lm_head(tmp_path):
    """A tied checkpoint's files decide its 16-bit charge: a separate lm_head.weight is charged,
    at 16 bits only (the paper's table)."""
    src = REPO / "resources" / "tiny_models" / "tiny-s"
    plain = memory.checkpoint_record(src)
    assert plain["architecture"]["tie_word_embeddings"] and not plain["architecture"]["checkpoint_stores_lm_head"]
    stored = tmp_path / "stored"
    shutil.copytree(src, stored)
    arch = plain["architecture"]
    head = np.zeros((arch["vocab_size"], arch["hidden_size"]), dtype=np.float16)
    save_file({memory.LM_HEAD_TENSOR: head}, str(stored / "model-00002-of-00002.safetensors"))
    record = memory.checkpoint_record(stored)
    assert record["architecture"]["checkpoint_stores_lm_head"]
    extra = 2 * head.size
    assert memory.weight_bytes(record["architecture"], 16) == memory.weight_bytes(arch, 16) + extra
    assert memory.weight_bytes(record["architecture"], 8) == memory.weight_bytes(arch, 8)


def test_analysis_reads_the_record_the_generation_wrote(tmp_path):
    samples = tmp_path / "samples.parquet"
    samples.write_bytes(b"")
    meta = memory.checkpoint_record(REPO / "resources" / "tiny_models" / "tiny-s")
    (tmp_path / "samples.meta.json").write_text(json.dumps({"model": meta}))
    assert aggregate.model_records({"g": str(samples)}) == {"g": meta}
    (tmp_path / "samples.meta.json").write_text(json.dumps({"id": "g"}))
    with pytest.raises(aggregate.MissingModelRecord, match="forcerun"):
        aggregate.model_records({"g": str(samples)})


def test_the_scenario_table_names_the_engine_of_each_scenario():
    scenarios = pd.DataFrame(build_study(paper_config()).scenarios)
    engines = scenarios.groupby(scenarios["grids"].map(",".join))["engine"].unique().map(list).to_dict()
    assert engines == {"main": ["vllm"], "kv_cache": ["hf"]}
