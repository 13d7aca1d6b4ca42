"""The SLURM profile against the real one-node test cluster (tests/slurm/start.sh)."""

from __future__ import annotations

import re
import subprocess
import textwrap
import time

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]

GPU_SNAKEFILE = textwrap.dedent(
    """
    rule all:
        input: expand("gpu/{i}.txt", i=[1, 2]), "gres.txt", "cpu.txt"

    # the resources rule `generate` declares, set from the config there
    rule gpu_job:
        output: "gpu/{i}.txt"
        resources:
            gpu=1, gpu_model="testgpu", cpus_per_gpu=1, mem_mb=321, runtime=7,
            slurm_partition="gpu", slurm_account="bitbudget", slurm_extra="--nice=5",
        shell: "echo $SLURM_JOB_ID $SLURM_JOB_PARTITION gpus=$CUDA_VISIBLE_DEVICES > {output}"

    rule gres_job:
        output: "gres.txt"
        resources: gres="gpu:1", mem_mb=222, runtime=3, slurm_partition="gpu"
        shell: "echo $SLURM_JOB_ID gpus=$CUDA_VISIBLE_DEVICES > {output}"

    rule cpu_job:
        output: "cpu.txt"
        resources: mem_mb=111, runtime=2
        shell: "echo $SLURM_JOB_ID gpus=${{CUDA_VISIBLE_DEVICES:-none}} > {output}"
    """
)

RETRY_SNAKEFILE = textwrap.dedent(
    """
    # fails on the first attempt, succeeds on the second; memory grows with the attempt
    rule flaky:
        output: "flaky.txt"
        resources: mem_mb=lambda wc, attempt: 100 + 100 * attempt, runtime=2
        shell: "if [ ! -e first-attempt-done ]; then touch first-attempt-done; exit 3; fi; echo ok > {output}"
    """
)

SLEEP_SNAKEFILE = textwrap.dedent(
    """
    rule sleeper:
        output: "slept.txt"
        resources: gpu=1, mem_mb=100, runtime=5
        shell: "echo partial > {output}; sleep $(cat duration); echo done >> {output}"
    """
)


def _workdir(tmp_path, snakefile):
    (tmp_path / "Snakefile").write_text(snakefile)
    return tmp_path


def test_gpu_jobs_run_via_slurm_with_requested_resources(slurm_cluster, run_snakemake, tmp_path):
    wd = _workdir(tmp_path, GPU_SNAKEFILE)
    res = run_snakemake([*slurm_cluster.profile_args, "--verbose"], cwd=wd, timeout=240)
    assert res.returncode == 0, res.output[-4000:]
    assert len(res.slurm_job_ids) == 4, res.output[-4000:]

    outputs = {p: (wd / p).read_text().split() for p in ["gpu/1.txt", "gpu/2.txt", "gres.txt", "cpu.txt"]}
    assert {o[0] for o in outputs.values()} == set(res.slurm_job_ids)  # each ran inside its SLURM job
    assert outputs["gpu/1.txt"][1] == "gpu" and outputs["gpu/1.txt"][2] in ("gpus=0", "gpus=1")
    assert outputs["gres.txt"][1] in ("gpus=0", "gpus=1")
    assert outputs["cpu.txt"][1] == "gpus=none"

    # the sbatch command lines, as the plugin built them
    calls = res.sbatch_calls
    gpu_calls = [c for c in calls if "--gpus=testgpu:1" in c]
    assert len(gpu_calls) == 2, calls
    for c in gpu_calls:
        for flag in ("-p gpu", "-A bitbudget", "--mem 321", "-t 7", "--cpus-per-gpu=1", "--nice=5"):
            assert flag in c, (flag, c)
    assert any("--gres=gpu:1" in c and "--mem 222" in c for c in calls), calls
    assert any("--mem 111" in c and "--gpus" not in c and "--gres" not in c for c in calls), calls

    # what SLURM recorded
    recs = slurm_cluster.wait_for_sacct(
        res.slurm_job_ids, fields="Partition,Account,ReqTRES,AllocTRES,Timelimit,ReqMem"
    )
    by_output = {name: recs[o[0]] for name, o in outputs.items()}
    for name in ("gpu/1.txt", "gpu/2.txt"):
        r = by_output[name]
        assert r["State"] == "COMPLETED"
        assert r["Partition"] == "gpu" and r["Account"] == "bitbudget"
        assert "gres/gpu=1" in r["ReqTRES"] and "gres/gpu:testgpu=1" in r["AllocTRES"], r
        assert r["Timelimit"] == "00:07:00" and r["ReqMem"] == "321M", r
    assert "gres/gpu=1" in by_output["gres.txt"]["AllocTRES"]
    assert by_output["gres.txt"]["Timelimit"] == "00:03:00" and by_output["gres.txt"]["ReqMem"] == "222M"
    cpu = by_output["cpu.txt"]
    assert "gres/gpu" not in cpu["AllocTRES"] and cpu["Partition"] == "main" and cpu["ReqMem"] == "111M"


def test_failed_job_is_retried_with_more_memory(slurm_cluster, run_snakemake, tmp_path):
    wd = _workdir(tmp_path, RETRY_SNAKEFILE)
    res = run_snakemake([*slurm_cluster.profile_args, "--verbose"], cwd=wd, timeout=240)
    assert res.returncode == 0, res.output[-4000:]
    assert (wd / "flaky.txt").read_text().strip() == "ok"
    ids = res.slurm_job_ids
    assert len(ids) == 2, res.output[-4000:]  # profile slurm-test: retries: 1
    recs = slurm_cluster.wait_for_sacct(ids, fields="ExitCode,ReqMem")
    assert [recs[i]["State"] for i in ids] == ["FAILED", "COMPLETED"]
    assert recs[ids[0]]["ExitCode"] != "0:0"  # the inner snakemake reports the failure as 1
    assert [recs[i]["ReqMem"] for i in ids] == ["200M", "300M"]


def test_cancelled_job_then_rerun_finishes(slurm_cluster, run_snakemake, tmp_path):
    wd = _workdir(tmp_path, SLEEP_SNAKEFILE)
    (wd / "duration").write_text("300\n")
    bg = run_snakemake([*slurm_cluster.profile_args, "--retries", "0"], cwd=wd, background=True)
    job_id = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job_id is None:
        ids = re.findall(r"submitted with SLURM jobid (\d+)", bg.output)
        if ids:
            state = subprocess.run(["squeue", "-h", "-j", ids[0], "-o", "%T"], capture_output=True, text=True).stdout
            if state.strip() == "RUNNING" and (wd / "slept.txt").exists():
                job_id = ids[0]
        time.sleep(0.5)
    assert job_id, bg.output[-3000:]
    subprocess.run(["scancel", job_id], check=True, timeout=30)
    first = bg.wait(timeout=180)
    assert first.returncode not in (0, None), first.output[-3000:]
    assert slurm_cluster.wait_for_sacct([job_id], fields="ExitCode")[job_id]["State"].startswith("CANCELLED")

    # the rerun redoes the incomplete output (rerun-incomplete in the profile)
    (wd / "duration").write_text("1\n")
    second = run_snakemake(slurm_cluster.profile_args, cwd=wd, timeout=180)
    assert second.returncode == 0, second.output[-3000:]
    assert (wd / "slept.txt").read_text().split() == ["partial", "done"]
