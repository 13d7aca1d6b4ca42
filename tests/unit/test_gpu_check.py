"""The GPU check's CPU mode end to end: a toy Qwen3 with random weights through the HF engine's
decoder under every KV strategy checked, its throughput file, and the plan reading that file."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bitbudget import throughput
from bitbudget.plan import main as plan_main
from bitbudget.plan import make_plan
from bitbudget.preflight import load_study_config

REPO = Path(__file__).resolve().parents[2]
EXPECTED_LABELS = {"full", "hqq8", "hqq4", "streaming_llm-16", "streaming_llm-64", "r_kv-16", "r_kv-64"}
EXPECTED_BATCHES = {1, 8}  # the paper's KV grid: G = 1, one question's 8 samples per batch
SIZE = "0.6b"


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "workflow"), str(REPO)])}
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--device", "cpu", "--out", str(out),
                           "--skip-vllm"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "throughput.json"


@pytest.fixture(scope="module")
def paper():
    return load_study_config(REPO / "config" / "paper.yaml")


def test_the_file_has_every_strategy_and_batch(written):
    data = json.loads(written.read_text())
    assert set(data["throughput"]) == {SIZE}
    assert set(data["throughput"][SIZE]["hf"]) == EXPECTED_LABELS
    assert all(rate > 0 for rate in data["throughput"][SIZE]["hf"].values())
    assert {(run["kv"], run["batch"]) for run in data["runs"]} == {
        (label, batch) for label in EXPECTED_LABELS for batch in EXPECTED_BATCHES}
    for run in data["runs"]:
        assert run["tokens_per_s"] > 0 and run["decode_tokens"] > 0
        assert run["peak_allocated_bytes"] is None  # no allocator statistics on a CPU
        assert run["kv_cache_bytes"] > 0 and run["memory_model"]["kv_bytes"] > 0
    assert data["vllm_runs"] is None
    assert data["version"] == throughput.VERSION
    assert throughput.read(written)[SIZE]["hf"] == data["throughput"][SIZE]["hf"]
    # every strategy's batch curve (the plan's batch effect), its largest batch the table's figure
    curves = throughput.read(written)[SIZE]["batches"]["hf"]
    assert set(curves) == EXPECTED_LABELS and all(set(c) == EXPECTED_BATCHES for c in curves.values())
    assert all(curves[label][max(EXPECTED_BATCHES)] == rate for label, rate in data["throughput"][SIZE]["hf"].items())
    assert "load_seconds" not in data["throughput"][SIZE]  # random weights built on the device: no checkpoint load


def test_the_memory_model_matches_the_caches_it_describes(written):
    """Full and evicting caches hold what the memory model charges (the context, or at most the
    budget plus R-KV's compression interval); HQQ within its packing."""
    runs = json.loads(written.read_text())["runs"]
    exact = [run for run in runs if not run["kv"].startswith("hqq")]
    assert all(run["kv_over_memory_model"] <= 1.0 for run in exact)
    assert all(run["kv_over_memory_model"] == 1.0 for run in exact if run["kv"] == "full")
    assert all(0.5 < run["kv_over_memory_model"] < 2.0 for run in runs)


def hf_hours(plan) -> dict[str, float]:
    hours: dict[str, float] = {}
    for gen in plan.generations:
        if gen.engine == "hf" and gen.model == "qwen3-0.6b":
            hours[gen.kv] = hours.get(gen.kv, 0.0) + gen.gpu_hours
    return hours


def test_plan_reads_the_file_in_place_of_its_assumed_figures(written, paper):
    measured = throughput.read(written)
    assumed = make_plan(paper, workdir="/nonexistent")
    planned = make_plan(paper, workdir="/nonexistent", measured=measured)
    full_rate = measured[SIZE]["hf"]["full"]
    assumed_rate = assumed.assumptions["throughput_tokens_per_s"][SIZE] * assumed.assumptions["hf_factor"]
    before, after = hf_hours(assumed), hf_hours(planned)
    assert after["full"] == pytest.approx(before["full"] * assumed_rate / full_rate)
    # a KV strategy measured at another budget takes the nearest measured one of its method
    nearest = measured[SIZE]["hf"]["streaming_llm-64"]
    assert after["stream4k"] == pytest.approx(before["stream4k"] * assumed_rate / nearest)
    # other sizes and vLLM keep the assumed figures; a --throughput flag still wins for its size
    unchanged = [(a.gpu_hours, b.gpu_hours) for a, b in zip(assumed.generations, planned.generations)
                 if a.engine == "vllm" or a.model != "qwen3-0.6b"]
    assert unchanged and all(a == b for a, b in unchanged)
    flagged = make_plan(paper, throughput={SIZE: 12000}, workdir="/nonexistent", measured=measured)
    assert hf_hours(flagged)["full"] == pytest.approx(before["full"])


def test_cli_takes_the_file(written, capsys):
    assert plan_main(["--configfile", str(REPO / "config" / "paper.yaml"), "--directory", "/nonexistent",
                      "--throughput-file", str(written), "--json"]) == 0
    assert SIZE in json.loads(capsys.readouterr().out)["assumptions"]["hf_measured_tokens_per_s"]


def malformed(data: dict, path: Path, edit) -> Path:
    broken = copy.deepcopy(data)
    edit(broken)
    path.write_text(json.dumps(broken))
    return path


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.update(version=99), "'version'"),
    (lambda d: d.pop("format"), "'format'"),
    (lambda d: d["throughput"]["0.6b"]["hf"].update(full=0), "'throughput.0.6b.hf.full'"),
    (lambda d: d["throughput"]["0.6b"].update(tgi=10.0), "'throughput.0.6b.tgi'"),
    (lambda d: d.update(throughput=[]), "'throughput'"),
])
def test_a_malformed_file_names_the_field_and_the_fix(written, tmp_path, capsys, edit, field):
    path = malformed(json.loads(written.read_text()), tmp_path / "throughput.json", edit)
    with pytest.raises(throughput.ThroughputFileError, match=field) as error:
        throughput.read(path)
    assert "fix:" in str(error.value)
    with pytest.raises(SystemExit):
        plan_main(["--configfile", str(REPO / "config" / "paper.yaml"), "--throughput-file", str(path)])
    assert field in capsys.readouterr().err


def test_an_unreadable_file_says_so(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(throughput.ThroughputFileError, match="not valid JSON"):
        throughput.read(tmp_path / "bad.json")
    with pytest.raises(throughput.ThroughputFileError, match="cannot read it"):
        throughput.read(tmp_path / "missing.json")
