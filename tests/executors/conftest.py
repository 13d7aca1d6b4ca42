"""Fixtures for executor tests: the SLURM test cluster and Snakemake runs under a hard timeout
(tests/harness.py: a run whose SLURM status checks stop answering waits forever and ignores
SIGTERM, so every run is in its own process group, killed at its timeout, its SLURM jobs cancelled).

For a pipeline test on SLURM::

    @pytest.mark.slurm
    def test_pipeline_on_slurm(slurm_cluster, run_snakemake, tmp_path):
        res = run_snakemake([*slurm_cluster.profile_args, "--configfile", "config/test.yaml"], cwd=REPO, timeout=900)
        assert res.returncode == 0, res.output
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness import RunningSnakemake

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "profiles"
USABLE_NODE_STATES = ("idle", "mixed", "allocated")
NODE_SETTLE_S = 60


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
        r.stop()


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


def has_usable_node(sinfo: str) -> bool:
    """Whether `sinfo -h -o "%P %T"` lists a node in a state that takes jobs."""
    return any(len(fields) > 1 and fields[1] in USABLE_NODE_STATES for fields in map(str.split, sinfo.splitlines()))


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The test cluster of tests/slurm/start.sh; skips the test when it is not running."""
    hint = "start it with `tests/slurm/start.sh` (as root)"
    ok, out = _answers(["sinfo", "-h", "-o", "%P %T"])
    if not ok:
        pytest.skip(f"SLURM test cluster not available: {out}; {hint}")
    partitions = [line.split()[0].rstrip("*") for line in out.splitlines() if line.strip()]
    deadline = time.monotonic() + NODE_SETTLE_S  # a node still "completing" the last job settles
    while not has_usable_node(out):
        if time.monotonic() > deadline:
            pytest.skip(f"SLURM test cluster has no usable node ({out.strip()}); {hint}")
        time.sleep(1)
        _, out = _answers(["sinfo", "-h", "-o", "%P %T"])
    ok, err = _answers(["sacct", "-n", "-X", "-S", "now"])
    if not ok:
        pytest.skip(f"SLURM accounting (sacct) not available, the executor plugin needs it: {err}; {hint}")
    return SlurmCluster(partitions=partitions)
