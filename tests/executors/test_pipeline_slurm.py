"""The real pipeline through `--profile slurm` on the test cluster, with a cancelled generate job."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bitbudget.study import build_study
from tests.conftest import REPO
from tests.pipeline.conftest import small_config

pytestmark = pytest.mark.slurm

GPU_TAGS = {"gpu": 1, "gpu_model": "testgpu", "cpus_per_gpu": 1, "mem_mb": 1500, "runtime": 15,
            "slurm_partition": "gpu"}


def slurm_config() -> dict:
    config = small_config()
    config["grids"]["small"]["weight_formats"] = ["bf16"]
    config["grids"]["small"]["parallel_samples"] = [1]
    config["datasets"]["arith"]["synthetic"]["n_questions"] = 24
    config["engine"]["batch_size"] = config["sampling"]["samples_per_question"]  # one question per batch
    config["resources"] = {"generate": GPU_TAGS}
    return config


def snakemake_args(cluster, workdir: Path) -> list[str]:
    return [*cluster.profile_args, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), "--verbose"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def running_jobs_with_comment(comment: str) -> list[str]:
    listing = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, timeout=30, check=True)
    return [line.split()[0] for line in listing.stdout.splitlines() if line.split()[1:] == [comment]]


def test_pipeline_on_slurm_survives_a_cancelled_generate_job(slurm_cluster, run_snakemake, tmp_path):
    config = slurm_config()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    study = build_study(config)
    (generation,) = study.generations.values()
    shards = tmp_path / generation.trace_dir / "shards"

    first = run_snakemake(snakemake_args(slurm_cluster, tmp_path), cwd=tmp_path, background=True)
    wait_for(lambda: shards.exists() and any(shards.glob("*.json")), 600, "the first shard")
    generate_jobs = running_jobs_with_comment("rule_generate")
    assert generate_jobs, first.output[-3000:]
    subprocess.run(["scancel", *generate_jobs], check=True, timeout=30)
    cancelled = first.wait(600)
    assert cancelled.returncode not in (0, None), cancelled.output[-3000:]
    kept = {p.name: p.read_bytes() for p in shards.glob("*.json")}
    assert 1 <= len(kept) < 24
    assert not (tmp_path / generation.output).exists()

    rerun = run_snakemake(snakemake_args(slurm_cluster, tmp_path), cwd=tmp_path, timeout=900)
    assert rerun.returncode == 0, rerun.output[-4000:]
    assert {p.name: p.read_bytes() for p in shards.glob("*.json") if p.name in kept} == kept
    log = (tmp_path / "logs" / "generate" / f"{generation.gen_id}.log").read_text()
    assert f"{24 - len(kept)} to generate" in log

    # the same artifacts a local run makes: ids follow from the config alone
    table = pd.read_parquet(tmp_path / "results" / "aggregate" / "scenarios.parquet")
    assert set(table["scenario_id"]) == {s["scenario_id"] for s in study.scenarios}
    assert (tmp_path / "report" / "index.html").exists()

    generate_calls = [c for c in rerun.sbatch_calls if "rule_generate" in c]
    assert generate_calls and all("--gpus=testgpu:1" in c and "--mem 1500" in c and "-t 15" in c for c in generate_calls)
    records = slurm_cluster.wait_for_sacct(rerun.slurm_job_ids, fields="Comment,ReqTRES,Timelimit")
    generate_records = [r for r in records.values() if r["Comment"] == "rule_generate"]
    assert generate_records and all("gres/gpu=1" in r["ReqTRES"] for r in generate_records)
