"""The simulated overlays end to end on a reduced paper grid, in-process through the library
(simulated engine -> grade -> aggregate -> fit): the fit recovers what is planted. The same grid
runs through Snakemake on the SLURM test cluster (tests/executors/test_simulated_slurm.py)."""

from __future__ import annotations

import pytest
import yaml
from snakemake.utils import update_config

from tests.harness import REPO, run_in_process, with_resources

pytestmark = pytest.mark.pipeline

SMALL = REPO / "tests" / "pipeline" / "simulated-small.yaml"
PAPER_SWITCH_GIB = 4.19  # 8-bit 4B (PAPER.md)
CONTRARY_SWITCH_GIB = 15.0  # ~8-bit 14B, what config/simulated-contrary.yaml plants


def simulated_config(overlay: str) -> dict:
    """config/paper.yaml + the overlay + the reduced grid, its model paths relative to the
    repository as a user's run has them (artifact ids, and so the simulated draws, hold the path)."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for path in (REPO / "config" / overlay, SMALL):
        update_config(config, yaml.safe_load(path.read_text()))
    return config


@pytest.mark.parametrize("overlay, planted, other", [
    ("simulated.yaml", PAPER_SWITCH_GIB, CONTRARY_SWITCH_GIB),
    ("simulated-contrary.yaml", CONTRARY_SWITCH_GIB, PAPER_SWITCH_GIB),
])
def test_the_fit_recovers_the_planted_switch(tmp_path, overlay, planted, other):
    outputs = run_in_process(simulated_config(overlay), with_resources(tmp_path))
    fit = outputs["thresholds"]["weights_vs_tokens"]
    assert fit["status"] == "ok" and fit["direction"] == "win above", fit
    assert fit["ci_low"] <= planted <= fit["ci_high"], fit
    assert not fit["ci_low"] <= other <= fit["ci_high"], fit
    assert set(outputs["scenarios"]["engine"]) == {"simulated"}
