"""llm-compressor checkpoints (compressed-tensors): made in .venv-llmc, loaded in
transformers (there) and in vLLM (.venv-vllm)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bitbudget.forcing import forcing_tokens, sample_at_budget
from bitbudget.quantize import quantize_checkpoint
from bitbudget.specs import WeightFormat

from engine_support import (LLMC_PYTHON, cpu_refuses, generation_jobs, needs_llmc, needs_vllm, on_gpu,
                            study_config)

pytestmark = [pytest.mark.vllm, needs_llmc]

CALIBRATION_CHATS = Path(__file__).resolve().parents[1] / "fixtures" / "calibration_chat.jsonl"
QUANTIZE_FORMATS = Path(__file__).with_name("quantize_formats.py")
QUANTIZE_TIMEOUT_S = 900

FORMATS = {
    "w8a8": {"bits": 8, "scheme": "W8A8", "method": "rtn"},
    "w4a16_gptq": {"bits": 4, "scheme": "W4A16", "method": "gptq", "group_size": 64,
                   "calibration": {"n_samples": 16, "max_seq_length": 256}},
    # the paper grid's calibration path: chats through `datasets`, here from a local copy
    "w4a16_gptq_chats": {"bits": 4, "scheme": "W4A16", "method": "gptq", "group_size": 64,
                         "calibration": {"source": "hub", "n_samples": 16, "max_seq_length": 256,
                                         "hub": {"path": "json", "split": "train",
                                                 "data_files": str(CALIBRATION_CHATS)}}},
    "w8a16_rtn": {"bits": 8, "scheme": "W8A16", "method": "rtn", "group_size": 64},
}


@pytest.fixture(scope="module")
def checkpoints(tiny_model, tmp_path_factory):
    """Every format quantized through bitbudget.quantize in one llm-compressor venv process
    (the re-execution into that venv is tested in test_keys.py)."""
    out = tmp_path_factory.mktemp("llmc")
    jobs = {name: {"fmt": fmt, "out": str(out / name)} for name, fmt in FORMATS.items()}
    (out / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([str(LLMC_PYTHON), str(QUANTIZE_FORMATS), str(tiny_model), str(out / "jobs.json"),
                           str(out / "results.json")], capture_output=True, text=True, timeout=QUANTIZE_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-6000:]
    metas = json.loads((out / "results.json").read_text())
    return {name: (out / name, metas[name]) for name in FORMATS}


def test_quantize_reexecutes_in_the_llmcompressor_interpreter(checkpoints, tiny_model, tmp_path):
    """From the workflow's interpreter (no llm-compressor), bitbudget.quantize runs the job in
    .venv-llmc and writes the same checkpoint the llm-compressor process made."""
    fmt = FORMATS["w8a8"]
    meta = quantize_checkpoint(tiny_model, tmp_path / "w8a8", WeightFormat.from_config(fmt), python=str(LLMC_PYTHON))
    path, made = checkpoints["w8a8"]
    assert meta == made
    assert (tmp_path / "w8a8" / "model.safetensors").read_bytes() == (path / "model.safetensors").read_bytes()


def test_quantization_json(checkpoints, tiny_model):
    from bitbudget.tinymodels import count_parameters

    counts = count_parameters(tiny_model)
    for name, (path, meta) in checkpoints.items():
        assert json.loads((path / "quantization.json").read_text()) == meta
        assert meta["scheme"] == FORMATS[name]["scheme"] and meta["format"] == "compressed-tensors"
        assert meta["n_quantized_params"] == counts["n_quantized"]
        assert meta["n_unquantized_params"] == counts["n_unquantized"]
        assert (meta["calibration"] is not None) == (FORMATS[name]["method"] == "gptq")
        config = json.loads((path / "config.json").read_text())
        assert config["quantization_config"]["quant_method"] == "compressed-tensors"
        assert (path / "tokenizer.json").exists() and (path / "chat_template.jinja").exists()


LOAD_IN_TRANSFORMERS = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
out = {}
for path in sys.argv[1:]:
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok.apply_chat_template([{"role": "user", "content": "a=3 b=4 n=5"}], add_generation_prompt=True,
                                  tokenize=True, return_dict=False, return_tensors="pt")
    with torch.no_grad():
        logits = model(ids).logits
    q = model.model.layers[0].self_attn.q_proj
    out[path] = {"finite": bool(torch.isfinite(logits).all()), "scheme": str(getattr(q, "quantization_scheme", None))}
print(json.dumps(out))
"""


def test_checkpoints_load_in_transformers(checkpoints, tmp_path):
    paths = [str(path) for path, _ in checkpoints.values()]
    proc = subprocess.run([str(LLMC_PYTHON), "-c", LOAD_IN_TRANSFORMERS, *paths], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    for path in paths:
        assert loaded[path]["finite"]
        assert loaded[path]["scheme"] != "None", "linear layers carry their compressed-tensors scheme"


@needs_vllm
def test_w8a8_checkpoint_generates_in_vllm(vllm_server, checkpoints, tmp_path):
    path, _ = checkpoints["w8a8"]
    # bfloat16: vLLM's AMX int8 kernel takes no float32 activations (capabilities refuses that)
    job = generation_jobs(study_config(path, [8, 16], samples=2, n_questions=2, engine={"dtype": "bfloat16"}))[0]
    results = vllm_server.generations([{"name": "w8a8", **job}], tmp_path)
    assert results["w8a8"]["meta"]["counters"]["decode_tokens"] > 0
    _check_shards(tmp_path, job["spec"], [8, 16])


@needs_vllm
def test_w4a16_gptq_checkpoint_generates_in_vllm(vllm_server, checkpoints, tmp_path):
    """W4A16 where vLLM's kernel runs (a GPU, or a CPU with AVX-512); else refused before the
    checkpoint loads, naming the weight format's field."""
    path, _ = checkpoints["w4a16_gptq"]
    job = {"name": "w4a16", **generation_jobs(study_config(path, [8, 16], samples=2, n_questions=2,
                                                           engine={"dtype": "bfloat16"}))[0]}
    if cpu_refuses("W4A16"):
        job["expect_error"] = "W4A16"
    results = vllm_server.generations([job], tmp_path)
    if cpu_refuses("W4A16"):
        assert "weight_formats" in results["w4a16"]["error"] and "AVX-512" in results["w4a16"]["error"]
        return
    assert results["w4a16"]["meta"]["counters"]["decode_tokens"] > 0
    _check_shards(tmp_path, job["spec"], [8, 16])


@needs_vllm
def test_w8a16_checkpoint_refused_on_cpu(vllm_server, checkpoints, tmp_path):
    """vLLM's CPU backend has no weight-only int8 kernel: refused before loading, naming the field."""
    if on_gpu():
        pytest.skip("a GPU runs W8A16: see bench/gpu_check.sh")
    job = generation_jobs(study_config(checkpoints["w8a16_rtn"][0], [8]))[0]
    results = vllm_server.generations([{"name": "w8", **job, "expect_error": "W8A16"}], tmp_path)
    assert "weight_formats" in results["w8"]["error"]


def _check_shards(workdir, spec, budgets):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.checkpoint_path)
    key = spec.trace_key
    tokens = forcing_tokens(tokenizer, key["forcing"], key["sampling"]["max_answer_tokens"])
    shards = list((workdir / spec.trace_dir / "shards").glob("*.json"))
    assert shards
    for path in shards:
        for sample in json.loads(path.read_text())["samples"]:
            for budget in budgets:
                assert sample_at_budget(sample, budget, tokens)["answer_tokens"] >= 1
