"""The simulated engine: planted surface, nesting, determinism, resume, and its config checks."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from bitbudget import memory
from bitbudget.backends.simulated import SimulatedCheckpoint, Surface, write_metadata_checkpoint
from bitbudget.config import ConfigError
from bitbudget.generate import run_generation
from bitbudget.grading import grade_samples
from bitbudget.study import build_study
from tests.harness import REPO

OVERLAYS = ("simulated.yaml", "simulated-contrary.yaml")


def paper_config(overlay: str = "simulated.yaml") -> dict:
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config" / overlay).read_text()))
    for model in config["models"].values():
        model["path"] = str(REPO / model["path"])
    return config


def small_simulated_config(samples: int = 6, budgets=(2000, 10000, 30000)) -> dict:
    config = paper_config()
    config["grids"] = {"main": {**config["grids"]["main"], "models": ["qwen3-0.6b"], "weight_formats": ["bf16"],
                                "datasets": ["aime2025"], "token_budgets": list(budgets), "parallel_samples": [1]}}
    config["sampling"]["samples_per_question"] = samples
    return config


def generate(config: dict, tmp_path: Path) -> pd.DataFrame:
    (generation,) = build_study(config).generations.values()
    spec = generation.engine_spec()
    spec["trace_dir"] = str(tmp_path / "trace")
    output = tmp_path / "samples.parquet"
    run_generation(spec, output, gpus=1)  # a GPU request does not stop it on a CPU machine
    return pd.read_parquet(output)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_paper_grid_plans_offline_with_the_papers_job_counts(overlay):
    study = build_study(paper_config(overlay))
    # the paper's 2416 scenarios and 86 generations, less the cells main and kv_cache share: on
    # the real grid two engines (vLLM, HF) measure them; here one engine whose settings in the
    # two grids differ only at runtime (batch_size), so each is one generation
    assert len(study.scenarios) == 2376
    assert len(study.generations) == 81
    assert sum(c.quantized for c in study.checkpoints.values()) == 12
    assert {g.engine_name for g in study.generations.values()} == {"simulated"}
    # the planted truth and the engine's version are part of every trace id
    trace = next(iter(study.generations.values())).key["trace_key"]
    assert trace["engine"]["version"] and trace["simulation"]["surface"]


def test_simulated_ids_differ_from_the_real_grid():
    real = build_study(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))
    simulated = build_study(paper_config())
    assert not set(real.checkpoints) & set(simulated.checkpoints)
    assert not set(real.generations) & set(simulated.generations)


def test_samples_table_matches_the_real_columns_and_grades(tmp_path):
    table = generate(small_simulated_config(), tmp_path)
    assert {"question_id", "sample_idx", "token_budget", "reference_answer", "prompt_tokens", "thinking_tokens",
            "answer_tokens", "forced", "text"} <= set(table.columns)
    assert len(table) == 30 * 6 * 3
    assert (table["thinking_tokens"] == table["token_budget"]).all()
    graded = grade_samples(table, kind="integer", end_of_thinking="</think>", timeout_s=5, workers=1)
    assert graded["extracted_answer"].notna().all()
    accuracy = graded.groupby("token_budget")["correct"].mean()
    assert 0 < accuracy.min() and accuracy.max() < 1


def test_nested_deterministic_and_extendable(tmp_path):
    config = small_simulated_config(samples=4)
    config["simulation"]["slip_probability"] = 0.0
    first = generate(config, tmp_path / "a")
    again = generate(copy.deepcopy(config), tmp_path / "b")
    pd.testing.assert_frame_equal(first, again)
    # nested: a sample right at budget T is right at every larger budget (no slips, full KV)
    right = first.assign(right=[text.endswith("{" + gold + "}") for text, gold in
                                zip(first["text"], first["reference_answer"])])
    per_sample = right.pivot_table(index=["question_id", "sample_idx"], columns="token_budget", values="right")
    assert (per_sample.diff(axis=1).fillna(0) >= 0).all().all()
    # more samples per question keep the first ones (draws depend on the sample index only)
    config["sampling"]["samples_per_question"] = 8
    extended = generate(config, tmp_path / "c")
    kept = extended[extended["sample_idx"] < 4].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[["question_id", "sample_idx", "token_budget", "text"]],
                                  first[["question_id", "sample_idx", "token_budget", "text"]])


def test_resume_and_new_budget_reuse_shards(tmp_path):
    config = small_simulated_config()
    full = generate(config, tmp_path)
    shards = tmp_path / "trace" / "shards"
    victim = sorted(shards.glob("*.json"))[3]
    victim.unlink()
    resumed = generate(config, tmp_path)
    pd.testing.assert_frame_equal(full, resumed)
    config["grids"]["main"]["token_budgets"].append(18000)
    before = {p.name: json.loads(p.read_text()) for p in shards.glob("*.json")}
    grown = generate(config, tmp_path)
    assert set(grown["token_budget"]) == {2000, 10000, 18000, 30000}
    shard = json.loads(next(shards.glob("*.json")).read_text())
    old = before[next(shards.glob("*.json")).name]
    for new_sample, old_sample in zip(shard["samples"], old["samples"]):
        assert {k: new_sample["forks"][k] for k in old_sample["forks"]} == old_sample["forks"]


def test_metadata_checkpoint_has_the_memory_models_weight_size(tmp_path):
    source = REPO / "resources" / "architectures" / "qwen3-4b.json"
    write_metadata_checkpoint(source, tmp_path / "ckpt", {"bits": 8, "group_size": 128, "method": "gptq"})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "quantization.json"]
    loaded = SimulatedCheckpoint.load(tmp_path / "ckpt")
    # the surface is placed as it was planted, with 16-bit zero points (its draws are those of its ids)
    expected = memory.to_gib(memory.weight_bytes(memory.load_architecture(source), 8, 128, zero_bits=16,
                                                 count_stored_lm_head=False))
    assert loaded.bits == 8 and loaded.weight_gib == pytest.approx(expected)
    assert loaded.weight_gib == pytest.approx(4.19, rel=0.02)  # the paper's 8-bit 4B


def test_surface_switches_from_weights_to_tokens_at_the_planted_size():
    simulation = build_study(paper_config()).generations
    key = next(g for g in simulation.values() if g.dataset == "aime2025").key["trace_key"]["simulation"]
    full = {"method": "full"}

    def token_gain(gib):
        surface = Surface(key, SimulatedCheckpoint(gib, 16), full)
        return surface.logit(30000) - surface.logit(2000)

    def weight_gain(gib):
        return (Surface(key, SimulatedCheckpoint(gib * 1.5, 16), full).logit(2000)
                - Surface(key, SimulatedCheckpoint(gib, 16), full).logit(2000))

    small, large = key["switch_gib"] / 3, key["switch_gib"] * 3
    assert weight_gain(small) > 5 * weight_gain(large)
    assert token_gain(large) > 5 * token_gain(small)
    quantized = [Surface(key, SimulatedCheckpoint(1.0, 16), {"method": "quantized", "bits": b}).logit(2000)
                 for b in (8, 4, 2)]
    assert quantized[0] > quantized[1] > quantized[2]


def test_a_dataset_without_a_planted_surface_is_named():
    config = paper_config()
    del config["simulation"]["datasets"]["gpqa_diamond"]
    with pytest.raises(ConfigError, match="simulation.datasets.gpqa_diamond"):
        build_study(config)


def test_an_architecture_file_serves_only_the_simulated_engine():
    config = paper_config()
    config["grids"]["kv_cache"]["engine"] = {"name": "hf"}
    with pytest.raises(ConfigError, match="models.qwen3-0.6b.path.*simulated"):
        build_study(config)
