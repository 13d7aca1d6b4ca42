"""Fixtures for executor tests: the SLURM test cluster and Snakemake runs under a hard timeout.

A Snakemake run whose SLURM status checks stop answering waits forever and ignores SIGTERM, so
every run here is in its own process group, killed (TERM, then KILL) at its timeout, and its
SLURM jobs (named after the run id) are cancelled.

For a pipeline test on SLURM::

    @pytest.mark.slurm
    def test_pipeline_on_slurm(slurm_cluster, run_snakemake, tmp_path):
        res = run_snakemake([*slurm_cluster.profile_args, "--configfile", "config/test.yaml"], cwd=REPO, timeout=900)
        assert res.returncode == 0, res.output
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "profiles"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


@dataclass
class SnakemakeRun:
    args: list[str]
    returncode: int | None  # None: killed at the timeout
    output: str  # stdout and stderr together
    seconds: float

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
        self.log = Path(cwd) / f".snakemake-test-{time.monotonic_ns()}.out"
        self._fh = open(self.log, "w")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.args, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})},
        )

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float) -> SnakemakeRun:
        try:
            rc = self.proc.wait(timeout=max(0.0, timeout - (time.monotonic() - self.t0)))
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            rc = None
        finally:
            self._fh.close()
        out = self.output
        if rc is None:
            cancel_run_jobs(out)
            out += f"\n[test harness: killed after {timeout} s]"
        return SnakemakeRun(self.args, rc, out, time.monotonic() - self.t0)


@pytest.fixture
def run_snakemake():
    """run_snakemake(args, cwd, timeout=300, env=None) -> SnakemakeRun; never hangs."""
    started: list[RunningSnakemake] = []

    def run(args, cwd, timeout=300, env=None, background=False):
        r = RunningSnakemake(list(args), Path(cwd), env)
        started.append(r)
        return r if background else r.wait(timeout)

    yield run
    for r in started:  # a test that failed half-way leaves nothing running
        if r.proc.poll() is None:
            _kill_group(r.proc)
            cancel_run_jobs(r.output)


@dataclass
class SlurmCluster:
    partitions: list[str]
    gpu_type: str = "testgpu"
    account: str = "bitbudget"
    # the real profile, then the test cluster's overrides (later profiles replace top-level keys)
    profile_args: list[str] = field(
        default_factory=lambda: ["--profile", str(PROFILES / "slurm"), "--profile", str(PROFILES / "slurm-test")]
    )

    def sacct(self, *selector: str, fields: str) -> list[dict[str, str]]:
        """Job allocation records (no steps) as dicts, e.g. sacct("-j", "12", fields="JobID,State")."""
        out = subprocess.run(
            ["sacct", "-X", "-P", "-n", f"--format={fields}", *selector],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        names = fields.split(",")
        return [dict(zip(names, line.split("|"))) for line in out.splitlines() if line.strip()]

    def wait_for_sacct(self, job_ids, fields: str, done=("COMPLETED", "FAILED", "CANCELLED"), timeout=60):
        """sacct records of job_ids once all are in a final state (slurmdbd lags a little)."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.sacct("-j", ",".join(job_ids), fields=f"JobID,State,{fields}")
            if len(recs) == len(job_ids) and all(r["State"].split()[0] in done for r in recs):
                return {r["JobID"]: r for r in recs}
            if time.monotonic() > deadline:
                raise AssertionError(f"sacct records incomplete: {recs}")
            time.sleep(1)


def _answers(cmd: list[str]) -> tuple[bool, str]:
    if shutil.which(cmd[0]) is None:
        return False, f"`{cmd[0]}` is not installed"
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return False, f"`{' '.join(cmd)}` did not answer within 15 s"
    if res.returncode != 0:
        return False, f"`{' '.join(cmd)}` failed: {res.stderr.strip()[:200]}"
    return True, res.stdout


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The test cluster of tests/slurm/start.sh; skips the test when it is not running."""
    hint = "start it with `tests/slurm/start.sh` (as root)"
    ok, out = _answers(["sinfo", "-h", "-o", "%P %T"])
    if not ok:
        pytest.skip(f"SLURM test cluster not available: {out}; {hint}")
    partitions = [line.split()[0].rstrip("*") for line in out.splitlines() if line.strip()]
    if not any(line.split()[1] in ("idle", "mixed", "allocated") for line in out.splitlines() if line.strip()):
        pytest.skip(f"SLURM test cluster has no usable node ({out.strip()}); {hint}")
    ok, err = _answers(["sacct", "-n", "-X", "-S", "now"])
    if not ok:
        pytest.skip(f"SLURM accounting (sacct) not available, the executor plugin needs it: {err}; {hint}")
    return SlurmCluster(partitions=partitions)
