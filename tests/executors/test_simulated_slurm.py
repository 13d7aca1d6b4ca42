"""Rehearsal of the paper grid on the test SLURM cluster: the simulated overlay through
`--profile slurm` (+ slurm-test), generate jobs with their GPU tags on the fake GPUs."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from tests.harness import REPO, with_resources
from tests.pipeline.test_adaptive_rounds import BUDGETS, ROUNDS, adaptive_config

pytestmark = pytest.mark.slurm

LAYERS = (REPO / "config" / "simulated.yaml", REPO / "tests" / "pipeline" / "simulated-small.yaml",
          REPO / "tests" / "slurm" / "rehearsal.yaml")


# the smallest model (a 1-GPU job) and the largest (a 2-GPU job); the planted surface is
# checked on every model in-process (tests/pipeline/test_simulated_overlays.py)
REHEARSAL_MODELS = {"grids": {"main": {"models": ["qwen3-0.6b", "qwen3-32b"]}, "kv_cache": {"models": ["qwen3-0.6b"]}}}


def rehearsal_config() -> dict:
    """config/paper.yaml + simulated overlay + reduced grid + the test cluster's site overlay,
    on the models that cover a 1-GPU and a 2-GPU generate job."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for layer in LAYERS:
        update_config(config, yaml.safe_load(layer.read_text()))
    update_config(config, REHEARSAL_MODELS)
    for model in config["models"].values():
        model["path"] = str(REPO / model["path"])
    return config


def test_simulated_paper_grid_runs_on_slurm_with_gpu_tags(slurm_cluster, run_snakemake, tmp_path):
    config = rehearsal_config()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    args = [*slurm_cluster.profile_args, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(tmp_path / "config.yaml"), "--verbose"]
    run = run_snakemake(args, cwd=tmp_path, timeout=1800)
    assert run.returncode == 0, run.output[-4000:]

    generate_calls = [c for c in run.sbatch_calls if "rule_generate" in c]
    table = pd.read_parquet(tmp_path / "results" / "aggregate" / "scenarios.parquet")
    # one submission per generation, plus retries of any job cancelled under it (a shared cluster)
    assert len(generate_calls) >= table["gen_id"].nunique()
    # 32B asks for two GPUs, every other size for one; all on the fake testgpu gres
    assert all(re.search(r"--gpus=testgpu:[12]\b", c) for c in generate_calls), generate_calls[:3]
    assert any("--gpus=testgpu:2" in c for c in generate_calls)
    job_ids = re.findall(r"SLURM jobid (\d+) \(log: [^)]*/rule_generate/", run.output)
    records = slurm_cluster.wait_for_sacct(job_ids, fields="ReqTRES,Partition")
    assert all("gres/gpu" in r["ReqTRES"] and r["Partition"] == "gpu" for r in records.values()), records
    completed = [r for r in records.values() if r["State"].split()[0] == "COMPLETED"]
    assert len(completed) == table["gen_id"].nunique(), records
    assert (tmp_path / "report" / "index.html").exists()


def test_adaptive_rounds_run_on_slurm(slurm_cluster, run_snakemake, tmp_path):
    """Adaptive sampling's rounds are checkpoints: on the SLURM executor the rounds' generate
    jobs are submitted with their GPU tags, each round's decision runs as a job, and the study
    ends with every generation's samples and the report."""
    config = adaptive_config()
    update_config(config, yaml.safe_load((REPO / "tests" / "slurm" / "rehearsal.yaml").read_text()))
    with_resources(tmp_path)  # the config keeps the shipped relative model paths
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    args = [*slurm_cluster.profile_args, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(tmp_path / "config.yaml"), "--verbose"]
    run = run_snakemake(args, cwd=tmp_path, timeout=1800)
    assert run.returncode == 0, run.output[-4000:]

    samples = json.loads((tmp_path / "results" / "adaptive" / "samples.json").read_text())["generations"]
    rounds_run = {n for g in samples.values() for n, _ in g["history"]}  # [samples, horizon] per round
    assert rounds_run <= set(ROUNDS) and min(rounds_run) == ROUNDS[0]
    assert any(horizon < max(BUDGETS) for g in samples.values() for _, horizon in g["history"])  # a budget closed
    # one generate submission per (generation, round it took part in), each with its GPU tag
    generate_calls = [c for c in run.sbatch_calls if "rule_generate" in c]
    assert len(generate_calls) >= sum(len(g["history"]) for g in samples.values())
    assert all(re.search(r"--gpus=testgpu:[12]\b", c) for c in generate_calls), generate_calls[:3]
    decisions = [c for c in run.sbatch_calls if "rule_adaptive_round" in c]
    assert len(decisions) >= max(len(g["history"]) for g in samples.values())
    assert (tmp_path / "report" / "index.html").exists()
