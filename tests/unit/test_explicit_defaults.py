"""A default written out and one left out are one study: every job keeps its key, so Snakemake
reruns nothing and every artifact id stays."""

import copy

import pytest
import yaml

from bitbudget.preflight import validate_study_config
from bitbudget.schema import schema_defaults
from tests.harness import REPO, job_keys, plan_as_the_snakefile


def shipped(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def spelled_out(config: dict) -> dict:
    """The config with every default the schema fills written into it."""
    return validate_study_config(copy.deepcopy(config))


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_every_default_written_out_keeps_every_job_key(name, monkeypatch):
    monkeypatch.chdir(REPO)
    config = shipped(name)
    assert spelled_out(config) != config  # the shipped config leaves defaults out
    assert job_keys(spelled_out(config)) == job_keys(config)


def test_a_calibration_is_in_the_id_of_a_format_that_reads_one(monkeypatch):
    """GPTQ reads its calibration set (the default one when none is given); round to nearest reads none."""
    monkeypatch.chdir(REPO)
    config = shipped("config.yaml")
    config["weight_formats"]["gptq4"] = {"bits": 4, "method": "gptq", "scheme": "W4A16"}
    config["weight_formats"]["rtn4"] = {"bits": 4, "method": "rtn"}
    next(iter(config["grids"].values()))["weight_formats"] += ["gptq4", "rtn4"]
    default = schema_defaults("weight_formats", "*", "calibration")

    def checkpoint_ids(calibration: dict | None) -> dict:
        edited = copy.deepcopy(config)
        for name in ("gptq4", "rtn4"):
            if calibration is not None:
                edited["weight_formats"][name]["calibration"] = calibration
        study = plan_as_the_snakefile(edited)
        return {c.weights: i for i, c in study.checkpoints.items() if c.weights in ("gptq4", "rtn4")}

    left_out, written_out, other = checkpoint_ids(None), checkpoint_ids(default), checkpoint_ids({"n_samples": 7})
    assert written_out == left_out
    assert other["gptq4"] != left_out["gptq4"]
    assert other["rtn4"] == left_out["rtn4"]
