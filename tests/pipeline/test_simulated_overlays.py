"""The simulated overlays end to end on a reduced paper grid: the fit recovers what is planted."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config

from tests.conftest import REPO
from tests.pipeline.conftest import Study

pytestmark = pytest.mark.pipeline

SMALL = REPO / "tests" / "pipeline" / "simulated-small.yaml"
PAPER_SWITCH_GIB = 4.19  # 8-bit 4B (PAPER.md)
CONTRARY_SWITCH_GIB = 15.0  # ~8-bit 14B, what config/simulated-contrary.yaml plants


def simulated_config(overlay: str) -> dict:
    """config/paper.yaml + the overlay + the reduced grid, with absolute model paths."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for path in (REPO / "config" / overlay, SMALL):
        update_config(config, yaml.safe_load(path.read_text()))
    for model in config["models"].values():
        model["path"] = str(REPO / model["path"])
    return config


def weights_vs_tokens(workdir) -> dict:
    return json.loads((workdir / "results" / "fit" / "threshold.json").read_text())["weights_vs_tokens"]


@pytest.mark.parametrize("overlay, planted, other", [
    ("simulated.yaml", PAPER_SWITCH_GIB, CONTRARY_SWITCH_GIB),
    ("simulated-contrary.yaml", CONTRARY_SWITCH_GIB, PAPER_SWITCH_GIB),
])
def test_the_fit_recovers_the_planted_switch(tmp_path, overlay, planted, other):
    study = Study(tmp_path, simulated_config(overlay))
    study.snakemake()
    fit = weights_vs_tokens(tmp_path)
    assert fit["status"] == "ok" and fit["direction"] == "win above", fit
    assert fit["ci_low"] <= planted <= fit["ci_high"], fit
    assert not fit["ci_low"] <= other <= fit["ci_high"], fit
    table = pd.read_parquet(tmp_path / "results" / "aggregate" / "scenarios.parquet")
    assert set(table["engine"]) == {"simulated"}
    assert (tmp_path / "report" / "index.html").exists()
