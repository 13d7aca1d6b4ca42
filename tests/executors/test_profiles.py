"""The profiles resolve as documented and carry the settings the executors rely on."""

from __future__ import annotations

from pathlib import Path

import yaml
from snakemake.cli import get_profile_dir

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "profiles"


def test_profile_names_resolve_from_repo_root(monkeypatch):
    """`snakemake --profile slurm` from the repo root: Snakemake looks in ./<name>, not ./profiles/."""
    monkeypatch.chdir(REPO)
    for name in ("slurm", "local-gpu"):
        profile_dir, config = get_profile_dir(name)
        assert config.resolve() == (PROFILES / name / "config.yaml").resolve()


def _load(name):
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def test_slurm_profile_settings():
    cfg = _load("slurm")
    assert cfg["executor"] == "slurm"
    assert cfg["retries"] >= 1 and cfg["rerun-incomplete"] is True and cfg["latency-wait"] >= 30
    assert cfg["slurm-status-command"] == "squeue"
    # a default cpus_per_task would override every GPU job's cpus_per_gpu in the plugin
    assert "cpus_per_task" not in cfg["default-resources"]
    test = _load("slurm-test")
    assert "executor" not in test  # layered on top of profiles/slurm
    assert 3 * test["slurm-init-seconds-before-status-checks"] <= 300  # MinJobAge of the test cluster
    assert "cpus_per_task" not in test["default-resources"]


def test_local_gpu_profile_limits_gpu():
    cfg = _load("local-gpu")
    assert cfg["resources"]["gpu"] >= 1
    assert cfg["default-resources"]["gpu"] == 0
    assert "executor" not in cfg  # local execution
