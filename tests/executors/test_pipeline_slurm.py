"""The real pipeline through `--profile slurm` on the test cluster, with a cancelled generate job."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bitbudget.shards import HOLD_AFTER_SHARD
from bitbudget.study import build_study
from tests.harness import REPO
from tests.harness import small_config

pytestmark = pytest.mark.slurm

N_QUESTIONS = 8  # one-question batches; the job is cancelled while it holds after the first
GPU_TAGS = {"gpu": 1, "gpu_model": "testgpu", "cpus_per_gpu": 1, "mem_mb": 1500, "runtime": 15,
            "slurm_partition": "gpu"}


def slurm_config() -> dict:
    config = small_config()
    config["grids"]["small"]["weight_formats"] = ["bf16"]
    config["grids"]["small"]["parallel_samples"] = [1]
    config["datasets"]["arith"]["synthetic"]["n_questions"] = N_QUESTIONS
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
    return [line.split()[0] for line in listing.stdout.splitlines() if line.split()[1:2] and line.split()[1].startswith(comment)]


def test_pipeline_on_slurm_survives_a_cancelled_generate_job(slurm_cluster, run_snakemake, tmp_path):
    config = slurm_config()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    study = build_study(config)
    (generation,) = study.generations.values()
    shards = tmp_path / generation.trace_dir / "shards"
    gate = tmp_path / "gate"  # the generate job holds after its first shard until the test opens it

    first = run_snakemake(snakemake_args(slurm_cluster, tmp_path), cwd=tmp_path, background=True,
                          env={HOLD_AFTER_SHARD: str(gate)})
    wait_for(lambda: first.proc.poll() is not None or (shards.exists() and any(shards.glob("*.json"))),
             600, "the first shard")
    assert first.proc.poll() is None, first.output[-3000:]
    kept = {p.name: p.read_bytes() for p in shards.glob("*.json")}
    assert len(kept) == 1  # half-way: one question of N_QUESTIONS written, the job held after it
    generate_jobs = running_jobs_with_comment("rule_generate")
    assert generate_jobs, first.output[-3000:]
    subprocess.run(["scancel", *generate_jobs], check=True, timeout=30)
    wait_for(lambda: not set(generate_jobs) & set(running_jobs_with_comment("rule_generate")), 60,
             "the cancelled job to end")
    gate.touch()  # a retry of the job (the profile's retries) now runs through

    # Snakemake either retries the cancelled job (the profile's retries) or fails; then we rerun.
    first_run = first.wait(900)
    if first_run.returncode != 0:
        rerun = run_snakemake(snakemake_args(slurm_cluster, tmp_path), cwd=tmp_path, timeout=900)
        assert rerun.returncode == 0, rerun.output[-4000:]
    else:
        rerun = first_run
    assert {p.name: p.read_bytes() for p in shards.glob("*.json") if p.name in kept} == kept
    assert len(list(shards.glob("*.json"))) == N_QUESTIONS
    log = (tmp_path / "logs" / "generate" / f"{generation.gen_id}.log").read_text()
    resumed_from = int(re.findall(r"(\d+) cached", log)[-1])
    assert resumed_from >= len(kept)

    # the same artifacts a local run makes: ids follow from the config alone
    table = pd.read_parquet(tmp_path / "results" / "aggregate" / "scenarios.parquet")
    assert set(table["scenario_id"]) == {s["scenario_id"] for s in study.scenarios}
    assert (tmp_path / "report" / "index.html").exists()

    generate_calls = [c for c in rerun.sbatch_calls if "rule_generate" in c]
    assert generate_calls and all("--gpus=testgpu:1" in c and "--mem 1500" in c and "-t 15" in c for c in generate_calls)
    generate_job_ids = re.findall(r"SLURM jobid (\d+) \(log: [^)]*/rule_generate/", rerun.output)
    records = slurm_cluster.wait_for_sacct(generate_job_ids, fields="ReqTRES,Timelimit,ReqMem,Partition")
    assert generate_job_ids and all(
        "gres/gpu=1" in r["ReqTRES"] and r["Partition"] == "gpu" for r in records.values()
    ), records
