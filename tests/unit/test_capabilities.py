"""Engine/format/KV combinations the machine cannot run are refused when the config is parsed."""
import copy
import subprocess
import sys

import pytest
import yaml

from bitbudget import capabilities
from bitbudget.errors import ConfigError
from bitbudget.preflight import validate_study_config
from tests.harness import REPO

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512 = AVX2_ONLY | set(capabilities.AVX512_FLAGS)
AMX_NO_AVX512 = AVX2_ONLY | set(capabilities.AMX_FLAGS)


def vllm_cpu(formats: dict, kv_cache_dtype: str = "auto") -> dict:
    """The default (CPU) study with the vLLM engine and the given weight formats."""
    config = copy.deepcopy(DEFAULT)
    config["weight_formats"] = formats
    for grid in config["grids"].values():
        grid["weight_formats"] = list(formats)
    config["engine"].update(name="vllm", kv_cache_dtype=kv_cache_dtype)
    return config


W4A16 = {"w4": {"bits": 4, "method": "gptq", "scheme": "W4A16", "group_size": 64}}
W8A16 = {"w8": {"bits": 8, "method": "rtn", "scheme": "W8A16", "group_size": 64}}
W8A8 = {"w8a8": {"bits": 8, "method": "rtn", "scheme": "W8A8", "group_size": 64}}


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512f\n")
    assert capabilities.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512f"}
    assert capabilities.cpu_flags(tmp_path / "absent") == frozenset()


def test_w8a16_is_refused_on_any_vllm_cpu():
    for flags in (AVX2_ONLY, AVX512, AMX_NO_AVX512):
        (message,) = capabilities.refusals(vllm_cpu(W8A16), flags)
        assert "'weight_formats.w8.scheme'" in message and "W8A16" in message and "fix:" in message


def test_w8a16_stops_config_validation_on_this_machine():
    with pytest.raises(ConfigError, match=r"weight_formats\.w8\.scheme.*int4 only"):
        validate_study_config(vllm_cpu(W8A16))


def test_w4a16_needs_avx512_on_a_vllm_cpu():
    (message,) = capabilities.refusals(vllm_cpu(W4A16), AVX2_ONLY)
    assert "'weight_formats.w4.scheme'" in message and "AVX-512" in message
    assert "avx512f" in message  # names what this CPU lacks
    assert capabilities.refusals(vllm_cpu(W4A16), AVX512) == []


def test_gptq_without_a_scheme_is_checked_under_its_implied_scheme():
    gptq8 = {"g8": {"bits": 8, "method": "gptq", "group_size": 64}}
    (message,) = capabilities.refusals(vllm_cpu(gptq8), AVX512)
    assert "'weight_formats.g8.bits'" in message and "W8A16" in message


def test_fp8_kv_needs_avx512_or_amx_on_a_vllm_cpu():
    (message,) = capabilities.refusals(vllm_cpu(W8A8, kv_cache_dtype="fp8"), AVX2_ONLY)
    assert "'engine.kv_cache_dtype'" in message and "kv_cache_dtype: auto" in message
    assert capabilities.refusals(vllm_cpu(W8A8, kv_cache_dtype="fp8"), AVX512) == []
    on_amx = vllm_cpu(W8A8, kv_cache_dtype="fp8")
    on_amx["engine"]["dtype"] = "bfloat16"  # AMX's int8 kernel takes no float32 activations
    assert capabilities.refusals(on_amx, AMX_NO_AVX512) == []


def test_w8a8_with_float32_activations_is_refused_on_an_amx_vllm_cpu():
    config = vllm_cpu(W8A8)
    config["engine"]["dtype"] = "float32"
    (message,) = capabilities.refusals(config, AMX_NO_AVX512)
    assert "'engine.dtype'" in message and "engine.dtype: bfloat16" in message and "W8A8" in message
    assert capabilities.refusals(config, AVX512) == []  # no AMX: vLLM's oneDNN int8 path takes float32
    config["engine"]["dtype"] = "bfloat16"
    assert capabilities.refusals(config, AMX_NO_AVX512) == []


def test_a_grid_override_is_named_as_the_field():
    config = vllm_cpu(W8A8)
    config["engine"]["name"] = "hf"
    config["grids"]["kv_cache"]["engine"] = {"name": "vllm", "kv_cache_dtype": "fp8"}
    (message,) = capabilities.refusals(config, AVX2_ONLY)
    assert "'grids.kv_cache.engine.kv_cache_dtype'" in message


def test_every_problem_is_listed_at_once():
    config = vllm_cpu({**W4A16, **W8A16}, kv_cache_dtype="fp8")
    fields = [m.split("'")[1] for m in capabilities.refusals(config, AVX2_ONLY)]
    assert sorted(fields) == ["engine.kv_cache_dtype", "weight_formats.w4.scheme", "weight_formats.w8.scheme"]


def test_hf_engine_and_plain_weights_are_not_checked():
    config = vllm_cpu({**W8A16, "int4": DEFAULT["weight_formats"]["int4"]})
    config["engine"]["name"] = "hf"
    assert capabilities.refusals(config, AVX2_ONLY) == []
    assert capabilities.refusals(vllm_cpu({"int4": DEFAULT["weight_formats"]["int4"]}), AVX2_ONLY) == []


def test_gpu_jobs_are_not_checked_against_this_cpu():
    """The paper grid runs vLLM on GPUs: parsing it on a login node without AVX-512 is fine."""
    paper = validate_study_config(copy.deepcopy(PAPER))
    assert capabilities.refusals(paper, AVX2_ONLY) == []
    on_cpu = copy.deepcopy(paper)
    on_cpu["resources"]["generate"]["gpu"] = 0
    for model in on_cpu["models"].values():
        model.get("resources", {}).pop("gpu", None)
    fields = {m.split("'")[1] for m in capabilities.refusals(on_cpu, AVX2_ONLY)}
    assert fields == {"weight_formats.gptq8.scheme", "weight_formats.gptq4.scheme"}


def test_unknown_flags_refuse_only_what_never_runs():
    assert capabilities.refusals(vllm_cpu(W4A16, kv_cache_dtype="fp8"), frozenset()) == []
    assert len(capabilities.refusals(vllm_cpu(W8A16), frozenset())) == 1


def test_dry_run_stops_before_any_job_naming_the_field(tmp_path):
    config_file = tmp_path / "w8a16.yaml"
    config = vllm_cpu(W8A16)
    for model in config["models"].values():
        model["path"] = str(REPO / model["path"])
    config_file.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(config_file), "-d", str(tmp_path),
         "-s", str(REPO / "Snakefile")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "weight_formats.w8.scheme" in result.stdout + result.stderr
    assert "Job stats" not in result.stdout
