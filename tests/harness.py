"""Real Snakemake runs for the tests: one harness for local and SLURM runs, and the small study.

Every run is in its own process group with a hard timeout: killed (TERM, then KILL) at its
timeout, and its SLURM jobs (named after the run id) cancelled, so a run whose status checks stop
answering cannot hang the suite. A run's executed jobs are read from Snakemake's own job summary
("Job stats:", printed before the jobs start), not from a separate dry run.
(A module, not a conftest, so test modules can import it.)
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import yaml

from bitbudget import rounds
from bitbudget.aggregate import aggregate
from bitbudget.artifacts import content_id, read_parquet_verified, write_directory_meta, write_meta, write_parquet
from bitbudget.backends.simulated import write_metadata_checkpoint
from bitbudget.config import check_config_files
from bitbudget.enginespec import ENGINE_RUNTIME_FIELDS, EngineRuntime, EngineSpec
from bitbudget.preflight import validate_study_config
from bitbudget.fit import fit_study
from bitbudget.generate import run_generation
from bitbudget.grading import grade as grade_stage
from bitbudget.provenance import config_summary
from bitbudget.schema import schema_defaults
from bitbudget.specs import GradeRuntime
from bitbudget.study import Study as BuiltStudy
from bitbudget.study import build_study, models_to_train, without_runtime

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
RUN_TIMEOUT_S = 900
#: what a study's working directory holds after a run (copied whole by Study.copy_to)
STUDY_STATE = ("results", ".snakemake", "report", "logs", "benchmarks", "config.yaml")


@dataclass
class SnakemakeRun:
    args: list[str]
    returncode: int | None  # None: killed at the timeout
    output: str  # stdout and stderr together
    seconds: float

    @property
    def jobs(self) -> dict[str, int]:
        """Jobs the run planned (and, when it succeeded, executed), per rule."""
        return parse_job_stats(self.output)

    @property
    def slurm_run_id(self) -> str | None:
        m = re.search(r"SLURM run ID: (\S+)", self.output)
        return m.group(1) if m else None

    @property
    def slurm_job_ids(self) -> list[str]:
        return re.findall(r"submitted with SLURM jobid (\d+)", self.output)

    @property
    def sbatch_calls(self) -> list[str]:
        """The sbatch command lines (logged with --verbose)."""
        return re.findall(r"sbatch call: (.*)", self.output)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def cancel_run_jobs(output: str) -> None:
    m = re.search(r"SLURM run ID: (\S+)", output)
    if m and shutil.which("scancel"):
        subprocess.run(["scancel", f"--name={m.group(1)}"], timeout=30, check=False)


class RunningSnakemake:
    """A Snakemake started in the background (own process group), output to a file."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None):
        self.args = [*SNAKEMAKE, *args]
        self._fh = tempfile.NamedTemporaryFile("w", prefix="snakemake-test-", suffix=".out", delete=False)
        self.log = Path(self._fh.name)
        self.final_output: str | None = None
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.args, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    @property
    def output(self) -> str:
        return self.final_output if self.final_output is not None else self.log.read_text(errors="replace")

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> SnakemakeRun:
        try:
            rc = self.proc.wait(timeout=max(0.0, timeout - (time.monotonic() - self.t0)))
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            rc = None
        finally:
            self._fh.close()
        out = self.final_output = self.output
        self.log.unlink(missing_ok=True)
        if rc is None:
            cancel_run_jobs(out)
            out += f"\n[test harness: killed after {timeout} s]"
        return SnakemakeRun(self.args, rc, out, time.monotonic() - self.t0)

    def stop(self) -> None:
        """End the run (and its SLURM jobs) if it is still going: a test that failed half-way."""
        if self.proc.poll() is None:
            _kill_group(self.proc)
            cancel_run_jobs(self.output)


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


def small_adaptive_config() -> dict:
    """:func:`small_config` with 8 samples per question drawn in rounds of 2, 3 and 3."""
    config = small_config()
    config["sampling"]["samples_per_question"] = 8
    config["sampling"]["adaptive"] = {"initial": 2, "step": 3}
    return config


def with_resources(workdir: Path) -> Path:
    """``workdir`` reading the repository's resources/ as its own, for configs whose model paths
    are relative as the shipped ones are (artifact ids hold the path, so the simulated draws then
    do not depend on where the repository was cloned). Not for a study that trains its models
    under resources/: it would write into the repository."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "resources").symlink_to(REPO / "resources")
    return workdir


class Study:
    """A study in its own working directory, run by the plain `snakemake -c2` of its config."""

    def __init__(self, workdir: Path, config: dict):
        self.workdir = Path(workdir)
        self.config = config

    def write_config(self) -> Path:
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return path

    def command(self, *args: str) -> list[str]:
        return ["-s", str(REPO / "Snakefile"), "--directory", str(self.workdir),
                "--configfile", str(self.write_config()), "-c2", *args]

    def start(self, *args: str, env: dict[str, str] | None = None) -> RunningSnakemake:
        return RunningSnakemake(self.command(*args), REPO, env)

    def snakemake(self, *args: str, timeout: float = RUN_TIMEOUT_S, check: bool = True,
                  env: dict[str, str] | None = None) -> SnakemakeRun:
        run = self.start(*args, env=env).wait(timeout)
        if check and run.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed:\n{run.output[-6000:]}")
        return run

    def planned_jobs(self, *targets: str) -> dict[str, int]:
        """Jobs a dry run would execute, per rule (empty when nothing is to be done)."""
        return self.snakemake("-n", *targets).jobs

    def copy_to(self, workdir: Path) -> "Study":
        """This study's results and Snakemake state in another working directory, with its own
        copy of the config: a test changes that copy, never the study others read."""
        workdir.mkdir(parents=True, exist_ok=True)
        for name in STUDY_STATE:
            source = self.workdir / name
            if source.is_dir():
                shutil.copytree(source, workdir / name, symlinks=True)
            elif source.exists():
                shutil.copy2(source, workdir / name)
        return Study(workdir, copy.deepcopy(self.config))


def plan_as_the_snakefile(config: dict, config_files=()) -> "BuiltStudy":
    """What the Snakefile does before any job: read the config files (syntax, duplicate keys),
    validate and fill the config, plan the study and the models to train. Raises what a
    `snakemake -n` would stop with."""
    check_config_files(list(config_files))
    config = validate_study_config(copy.deepcopy(config))
    models_to_train(config)
    return build_study(config)


def with_calibrated_gptq(config: dict) -> dict:
    """``config`` with a GPTQ format (scheme, dampening and a calibration set other than the
    default one: every field of a weight format set) in its first grid."""
    config = copy.deepcopy(config)
    config["weight_formats"]["gptq4"] = {"bits": 4, "method": "gptq", "scheme": "W4A16", "dampening_frac": 0.05,
                                         "calibration": {"n_samples": 7}}
    next(iter(config["grids"].values()))["weight_formats"].append("gptq4")
    return config


def hand_engine_spec(trace_key: dict, budgets, model_dir, trace_dir="trace", samples: int | None = None,
                     **engine) -> EngineSpec:
    """The spec of a trace key written by hand, for engine tests that plan no study: the engine
    settings are the schema's defaults updated with ``engine`` (the HF engine unless it names
    another), ``samples`` per question read default to the trace key's full design."""
    settings = {"name": "hf", **schema_defaults("engine"), **engine}
    key_settings = {k: v for k, v in settings.items() if k not in ENGINE_RUNTIME_FIELDS}
    maximum = trace_key["sampling"]["samples_per_question"]
    return EngineSpec({**trace_key, "engine": key_settings}, tuple(sorted(budgets)), samples or maximum,
                      EngineRuntime.from_config(settings), str(model_dir), str(trace_dir), None)


def job_keys(config: dict) -> dict:
    """Every job's `params:` (its key) as the Snakefile passes them, by rule and artifact id:
    Snakemake reruns a job whose params change, so two configs with equal keys rerun nothing."""
    study = plan_as_the_snakefile(config)
    return {
        "quantize": {i: c.key for i, c in study.checkpoints.items()},
        "generate": {i: g.key for i, g in study.all_generations.items()},
        "grade": {i: g.key for i, g in study.all_grades.items()},
        "expand_scenarios": content_id(study.scenarios),
        "aggregate": rounds.study_aggregate_spec(study),
        "fit": study.config["analysis"],
        "report": config_summary(without_runtime(study.config)),
    }


def run_grades(study: "BuiltStudy", grades) -> None:
    """``grades`` (of ``study``: the full design's, or a round's) made through the library in the
    working directory, as their rules make them (simulated engine: metadata-only checkpoints)."""
    for checkpoint in study.checkpoints.values():
        if checkpoint.quantized and not Path(checkpoint.path).exists():
            summary = write_metadata_checkpoint(checkpoint.spec.source, checkpoint.path, checkpoint.spec.format)
            write_directory_meta(checkpoint.path, checkpoint.key, quantization=summary)
    for grade in grades:
        run_generation(grade.generation.engine_spec(), grade.generation.output)
        spec = replace(grade.spec, runtime=GradeRuntime(workers=1))
        graded = grade_stage(read_parquet_verified(grade.generation.output), spec)
        write_parquet(grade.output, graded)
        write_meta(grade.output, grade.key)


def run_in_process(config: dict, workdir: Path) -> dict:
    """A study's stages through the library, in this process, as its rules run them (for the
    simulated engine: metadata-only checkpoints, generations, grades, scenarios, aggregate, fit),
    with `workdir` as the working directory (relative paths in `config` are read from there).
    Returns the aggregate tables and the fit's outputs."""
    with contextlib.chdir(workdir):
        study = plan_as_the_snakefile(config)
        run_grades(study, study.grades.values())
        scenarios, questions = aggregate(pd.DataFrame.from_records(study.scenarios), rounds.study_aggregate_spec(study))
        frontier, thresholds, findings = fit_study(scenarios, questions, study.config["analysis"])
    return {"scenarios": scenarios, "questions": questions, "frontier": frontier, "thresholds": thresholds,
            "findings": findings}
