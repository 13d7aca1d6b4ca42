import copy

import pytest
import yaml

from bitbudget.config import ConfigError, validate_config
from tests.conftest import REPO

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def broken(mutate):
    config = copy.deepcopy(DEFAULT)
    mutate(config)
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    return str(error.value)


def test_default_config_is_valid():
    validate_config(copy.deepcopy(DEFAULT))


def test_unknown_field_is_named():
    message = broken(lambda c: c["sampling"].update(temprature=0.6))
    assert "sampling" in message and "temprature" in message


def test_wrong_type_is_named():
    message = broken(lambda c: c["sampling"].update(top_k="twenty"))
    assert "sampling.top_k" in message


def test_unknown_kv_method_is_named():
    message = broken(lambda c: c["kv_strategies"]["full"].update(method="paged"))
    assert "kv_strategies.full.method" in message


def test_unsupported_kv_bits_are_rejected():
    message = broken(lambda c: c["kv_strategies"]["hqq4"].update(bits=3))
    assert "kv_strategies.hqq4.bits" in message


def test_kv_budget_below_sinks_is_rejected():
    message = broken(lambda c: c["kv_strategies"]["stream64"].update(budget=4, sink_tokens=4))
    assert "kv_strategies.stream64.budget" in message


def test_parallel_samples_above_pool_are_rejected():
    message = broken(lambda c: c["grids"]["weights_vs_tokens"].update(parallel_samples=[1, 64]))
    assert "grids.weights_vs_tokens.parallel_samples" in message and "64" in message


def test_undefined_grid_reference_is_named():
    message = broken(lambda c: c["grids"]["kv_cache"]["models"].append("tiny-xl"))
    assert "grids.kv_cache.models" in message and "tiny-xl" in message


def test_unsupported_weight_bits_are_rejected():
    message = broken(lambda c: c["weight_formats"]["int4"].update(bits=5))
    assert "weight_formats.int4.bits" in message


def test_missing_calibration_file_is_named_before_any_work():
    message = broken(lambda c: c["weight_formats"]["int4"].update(
        method="gptq", scheme="W4A16", calibration={"source": "file", "file": "no/such/calibration.jsonl"}))
    assert "weight_formats.int4.calibration.file" in message and "no/such/calibration.jsonl" in message


def test_hub_calibration_needs_its_hub_section():
    message = broken(lambda c: c["weight_formats"]["int4"].update(
        method="gptq", scheme="W4A16", calibration={"source": "hub"}))
    assert "weight_formats.int4.calibration.hub" in message


def test_missing_dataset_file_is_named():
    message = broken(lambda c: c["datasets"].update(
        extra={"kind": "integer", "source": "file", "file": "no/such/questions.jsonl"}))
    assert "datasets.extra.file" in message


def test_paper_config_is_valid():
    validate_config(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))
