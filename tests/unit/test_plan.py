"""The cost plan and the paper grid's configuration (no model, no dataset, no GPU)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bitbudget import memory
from bitbudget.preflight import load_study_config
from bitbudget.plan import main, make_plan, model_architecture, model_size, suggest_resources
from bitbudget.study import build_study

REPO = Path(__file__).resolve().parents[2]
BUDGETS = [2000, 6000, 10000, 14000, 18000, 22000, 26000, 30000]


@pytest.fixture(scope="module")
def paper():
    return load_study_config(REPO / "config" / "paper.yaml")


@pytest.fixture(scope="module")
def paper_plan(paper):
    return make_plan(paper, workdir="/nonexistent")


def test_paper_grid_matches_the_protocol(paper):
    main_grid = paper["grids"]["main"]
    assert [paper["models"][m]["path"] for m in main_grid["models"]] == [
        f"Qwen/Qwen3-{s}" for s in ("0.6B", "1.7B", "4B", "8B", "14B", "32B")]
    assert main_grid["token_budgets"] == BUDGETS
    assert main_grid["parallel_samples"] == [1, 3, 4, 6, 8, 12, 16]
    formats = {f["bits"]: (f.get("method"), f.get("group_size")) for f in paper["weight_formats"].values()}
    assert sorted(formats) == [4, 8, 16] and formats[8] == formats[4] == ("gptq", 128)
    assert paper["sampling"]["samples_per_question"] == 32
    assert paper["grids"]["kv_cache"]["samples_per_question"] == 8
    assert (paper["sampling"]["temperature"], paper["sampling"]["top_p"], paper["sampling"]["top_k"]) == (0.6, 0.95, 20)
    assert paper["prompts"]["chat_template_kwargs"] == {"enable_thinking": True}
    assert paper["forcing"]["wait_extension"] is True
    assert paper["forcing"]["forced_answer_suffix"]["integer"].endswith("</think>\n\n**Final Answer**\n\\boxed{")
    kv = paper["kv_strategies"]
    assert sorted(s["bits"] for s in kv.values() if s["method"] == "quantized") == [2, 4, 8]
    assert all(s["group_size"] == 64 and s["residual_length"] == 128 for s in kv.values() if s["method"] == "quantized")
    for method in ("streaming_llm", "r_kv"):
        assert sorted(s["budget"] for s in kv.values() if s["method"] == method) == [2000, 4000, 8000]


def test_grid_engines(paper):
    study = build_study(paper)
    engines = {(g.kv, g.engine_name) for g in study.generations.values()}
    assert {e for kv, e in engines if kv != "full"} == {"hf"}  # KV strategies only under HF
    assert ("full", "vllm") in engines and ("full", "hf") in engines
    assert {row["engine"] for row in study.scenarios} == {"hf", "vllm"}
    hf = next(g for g in study.generations.values() if g.engine_name == "hf")
    assert hf.runtime.engine.batch_size == 8 and hf.key["trace_key"]["engine"]["dtype"] == "bfloat16"
    assert hf.key["trace_key"]["engine"]["package"] == "transformers"


def test_same_cell_under_two_engines_is_two_generations():
    config = load_study_config(REPO / "config" / "config.yaml")
    grid = copy.deepcopy(config["grids"]["kv_cache"])
    before = len(build_study(config).generations)
    config["grids"]["kv_vllm"] = {**grid, "engine": {"name": "vllm"}}
    cells = len(grid["models"]) * len(grid["weight_formats"]) * len(grid["kv_strategies"]) * len(grid["datasets"])
    assert len(build_study(config).generations) == before + cells


def test_paper_plan_counts_and_ratio(paper_plan):
    # main: 6 models x 3 formats x 2 datasets x 8 budgets x 7 G; KV: 5 models x 10 strategies x 8 budgets
    assert paper_plan.scenarios == 6 * 3 * 2 * 8 * 7 + 5 * 10 * 8
    assert paper_plan.jobs["generate"] == 6 * 3 * 2 + 5 * 10 == paper_plan.jobs["grade"]
    assert paper_plan.jobs["quantize"] == 12
    assert paper_plan.ratio <= 0.15
    # upper-bound tokens: 32 samples x 30k per question for a main-grid generation
    gen = next(g for g in paper_plan.generations if g.dataset == "aime2025" and g.engine == "vllm")
    assert gen.nested_tokens == 30 * 32 * (30000 + 32 * 8)
    assert sum(g.gpu_hours for g in paper_plan.generations) > 0


def test_think_fraction_scales_tokens(paper):
    full, half = make_plan(paper, 1.0), make_plan(paper, 0.5)
    assert half.nested_tokens < full.nested_tokens
    assert half.ratio == pytest.approx(full.ratio, rel=0.1)


def test_paper_resources_cover_the_memory_model(paper, paper_plan):
    """Every model's GPUs hold its 16-bit weights + 8 full-KV sequences at 30k (A100-80GB, 90%)."""
    derived = suggest_resources(paper, paper_plan)
    for name, model in paper["models"].items():
        resources = model["resources"]
        assert resources["gpu"] >= derived[name]["gpu"], name
        assert resources["mem_mb"] >= derived[name]["mem_mb"] * 0.95, name
        assert resources["runtime"] >= derived[name]["runtime"] * 0.9, name
        need = memory.weight_bytes(model_architecture(model), 16) + 8 * memory.kv_bytes(model_architecture(model), None, 30000)
        assert need <= resources["gpu"] * 80 * 0.9 * memory.GIB


def test_model_size_and_architecture():
    assert model_size({"path": "Qwen/Qwen3-0.6B"}) == "0.6b"
    assert model_size({"path": "resources/tiny_models/tiny-s"}) is None
    assert model_architecture({"path": "Qwen/Qwen3-32B"})["num_hidden_layers"] == 64


def test_cached_outputs_and_shards_are_reported(tmp_path):
    config = load_study_config(REPO / "config" / "config.yaml")
    study = build_study(config)
    gen = next(iter(study.generations.values()))
    Path(tmp_path / gen.output).parent.mkdir(parents=True)
    Path(tmp_path / gen.output).write_bytes(b"")
    shards = tmp_path / gen.trace_dir / "shards"
    shards.mkdir(parents=True)
    for i in range(3):
        (shards / f"q{i}.json").write_text("{}")
    plan = make_plan(config, workdir=tmp_path)
    assert plan.to_dict()["cached_generations"] == 1
    assert plan.to_dict()["shards_present"] == 3


def test_cli_prints_plan(capsys):
    assert main(["--configfile", str(REPO / "config" / "paper.yaml"), "--directory", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    assert "scenarios: 2416" in out and "generate 86" in out
    assert out.strip().splitlines()[-1].startswith("ratio (nested / per scenario): 0.0")
    assert main(["--configfile", str(REPO / "config" / "paper.yaml"), "--json", "--throughput", "8b=5000"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["assumptions"]["throughput_tokens_per_s"]["8b"] == 5000
