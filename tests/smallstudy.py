"""A very small study run with real Snakemake in a temporary working directory.

Shared by the pipeline and reliability tests (a module, not a conftest, so it can be imported).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
RUN_TIMEOUT_S = 900


def small_config() -> dict:
    """The default study cut down to seconds: one tiny model, few questions and budgets."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for model in config["models"].values():
        model["path"] = str(REPO / model["path"])
        model.pop("train", None)
    config["models"] = {"tiny-s": config["models"]["tiny-s"], "tiny-m": config["models"]["tiny-m"]}
    config["weight_formats"] = {"bf16": {"bits": 16}, "int4": config["weight_formats"]["int4"]}
    config["kv_strategies"] = {"full": {"method": "full"}}
    arith = config["datasets"]["arith"]
    arith["synthetic"]["n_questions"] = 4
    config["datasets"] = {"arith": arith}
    config["grids"] = {
        "small": {
            "models": ["tiny-s"],
            "weight_formats": ["bf16", "int4"],
            "kv_strategies": ["full"],
            "datasets": ["arith"],
            "token_budgets": [16, 48],
            "parallel_samples": [1, 2],
        }
    }
    config["sampling"]["samples_per_question"] = 2
    config["engine"]["batch_size"] = 4
    config["grading"]["workers"] = 1
    config["analysis"]["bootstrap_samples"] = 20
    return config


class Study:
    def __init__(self, workdir: Path, config: dict):
        self.workdir = workdir
        self.config = config

    def write_config(self) -> Path:
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return path

    def command(self, *args: str) -> list[str]:
        """The plain `snakemake -c2` of this study (its config, its working directory)."""
        return [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(self.workdir),
                "--configfile", str(self.write_config()), "-c2", *args]

    def snakemake(self, *args: str, timeout: float = RUN_TIMEOUT_S, check: bool = True,
                  preexec_fn=None) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=preexec_fn)
        if check and result.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def planned_jobs(self, *targets: str) -> dict[str, int]:
        """Jobs a dry run would execute, per rule (empty when nothing is to be done)."""
        out = self.snakemake("-n", *targets)
        return parse_job_stats(out.stdout + out.stderr)


def parse_job_stats(text: str) -> dict[str, int]:
    if "Job stats:" not in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        jobs[match.group(1)] = int(match.group(2))
    jobs.pop("total", None)
    jobs.pop("all", None)  # the target rule, not work
    return jobs
