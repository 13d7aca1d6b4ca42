import copy

import pytest
import yaml
from snakemake.utils import update_config

from bitbudget.errors import ConfigError
from bitbudget.preflight import validate_study_config
from tests.harness import REPO

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def broken(mutate):
    config = copy.deepcopy(DEFAULT)
    mutate(config)
    with pytest.raises(ConfigError) as error:
        validate_study_config(config)
    return str(error.value)


def test_default_config_is_valid():
    validate_study_config(copy.deepcopy(DEFAULT))


def test_a_curtail_gamma_no_certification_could_get_under_is_rejected():
    """gamma is split over the deciding rounds (rounds 1, 2, ..., 8: seven); a share no
    certification of the most draws a round may draw could bound is refused, naming the field,
    the rounds and the least gamma that works."""
    from bitbudget.adaptive.closing import MAX_CERTIFICATION_DRAWS, certification_draws, least_gamma

    least = least_gamma(7, 0.95)
    assert 0.001 < least < 0.005
    assert certification_draws(least / 7, 0.95, 7) <= MAX_CERTIFICATION_DRAWS < certification_draws(0.002 / 7, 0.95, 7)
    message = broken(lambda c: c["sampling"].update(adaptive={"curtail_gamma": 0.002, "initial": 1, "step": 1}))
    assert message.startswith("config field 'sampling.adaptive.curtail_gamma'")
    assert "7 deciding rounds" in message and f"at least {least:.4f}" in message and "fix: " in message
    config = copy.deepcopy(DEFAULT)
    config["sampling"]["adaptive"] = {"curtail_gamma": 0.002}  # rounds 4, 8: one deciding round
    validate_study_config(config)


def test_an_unknown_predictive_is_named_with_the_ones_there_are():
    message = broken(lambda c: c["sampling"].update(adaptive={"predictive": "beta"}))
    assert "sampling.adaptive.predictive" in message and "rasch" in message and "jeffreys" in message


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
    validate_study_config(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))


def test_duplicate_key_is_named_with_its_line(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("models:\n  tiny-s: {path: a}\n  tiny-m: {path: b}\n  tiny-s: {path: c}\n")
    from bitbudget.config import read_config_file

    with pytest.raises(ConfigError) as error:
        read_config_file(path)
    message = str(error.value)
    assert "models.tiny-s" in message and "duplicate" in message and "line 4" in message


def test_yaml_anchors_and_merge_keys_are_not_duplicates(tmp_path):
    from bitbudget.config import read_config_file

    path = tmp_path / "study.yaml"
    path.write_text("a: &base {x: 1, y: 2}\nb:\n  <<: *base\n  x: 3\n")
    assert read_config_file(path) == {"a": {"x": 1, "y": 2}, "b": {"x": 3, "y": 2}}


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    from bitbudget.config import read_config_file

    path = tmp_path / "study.yaml"
    path.write_text("sampling:\n  temperature: 0.6\n  top_p: [0.95\n")
    with pytest.raises(ConfigError) as error:
        read_config_file(path)
    assert str(path) in str(error.value) and "line" in str(error.value)


@pytest.mark.parametrize("path", ["resources/no-such-model", "./nowhere", "/abs/missing/model", "a/b/c"])
def test_missing_local_model_path_is_named(path):
    def mutate(config):
        config["models"]["tiny-s"] = {"path": path}

    message = broken(mutate)
    assert "models.tiny-s.path" in message and path in message


def test_hub_model_id_stays_valid_offline():
    config = copy.deepcopy(DEFAULT)
    config["models"]["tiny-s"] = {"path": "Qwen/Qwen3-8B"}
    validate_study_config(config)


def test_empty_dataset_file_is_named(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")

    def mutate(config):
        config["datasets"]["arith"] = {"kind": "integer", "source": "file", "file": str(empty)}

    message = broken(mutate)
    assert "datasets.arith" in message and "no questions" in message


def test_streaming_budget_must_exceed_sink_tokens_in_config_and_cache():
    from bitbudget.kvspec import check_kv_strategy

    at_sinks = {"method": "streaming_llm", "budget": 4, "sink_tokens": 4}
    message = broken(lambda c: c["kv_strategies"].update(s4=at_sinks))
    assert "kv_strategies.s4.budget" in message
    with pytest.raises(ConfigError):
        check_kv_strategy(at_sinks)
    check_kv_strategy({**at_sinks, "budget": 5})


def test_a_study_pairing_simulated_with_real_scenarios_is_refused():
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    paper["grids"]["kv_cache"]["engine"] = {"name": "simulated"}  # main stays on vLLM, same dataset
    with pytest.raises(ConfigError) as error:
        validate_study_config(paper)
    message = str(error.value)
    assert "config field 'grids'" in message and "['kv_cache']" in message and "['main']" in message
    assert "aime2025" in message and "fix:" in message


def test_simulated_overlays_keep_every_grid_on_the_simulated_engine():
    for overlay in ("simulated.yaml", "simulated-contrary.yaml"):
        config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
        update_config(config, yaml.safe_load((REPO / "config" / overlay).read_text()))
        validate_study_config(config)


def test_a_verdict_level_at_or_below_a_coin_flip_is_named():
    message = broken(lambda c: c["analysis"].update(verdict_level=0.5))
    assert "analysis.verdict_level" in message and "fix:" in message
