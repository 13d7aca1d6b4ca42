"""bitbudget recommend: the choice, its alternatives, the paired bootstrap, the bad inputs, the command."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitbudget import artifacts, cli, recommend

REPO = Path(__file__).resolve().parents[2]
N_QUESTIONS = 10
ANSWER_TOKENS = 32
PROMPT_TOKENS = 50
ANALYSIS = {"bootstrap_samples": 400, "seed": 3}

# id, model, n_params, weights, bits, kv, kv_method, T, G, total GiB, correct questions of 10
ROWS = [
    ("small", "m1", 1e9, "int4", 4, "full", "full", 2000, 1, 1.0, 3),
    ("long", "m1", 1e9, "int4", 4, "full", "full", 6000, 1, 2.0, 5),
    ("g4", "m1", 1e9, "int4", 4, "full", "full", 2000, 4, 3.0, 4),  # 4 x 2,032 tokens per question
    ("wide", "m1", 1e9, "bf16", 16, "full", "full", 2000, 1, 2.5, 4),
    ("big", "m4", 4e9, "int4", 4, "full", "full", 2000, 1, 3.5, 6),
    ("hqq", "m1", 1e9, "int4", 4, "hqq4", "quantized", 6000, 1, 1.5, 3),
]


def _tables(dataset: str = "d1", prefix: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    scen, ques = [], []
    for sid, model, n_params, weights, bits, kv, method, budget, g, total, correct in ROWS:
        scen.append({
            "scenario_id": prefix + sid, "dataset": dataset, "model": model, "n_params": int(n_params),
            "weights": weights, "weight_bits": bits, "kv": kv, "kv_method": method,
            "kv_bits": 4.0 if method == "quantized" else None, "kv_budget": None,
            "engine": "hf" if method != "full" else "vllm", "token_budget": budget, "G": g, "n_samples": 8,
            "metric": "pass@1" if g == 1 else "maj@G", "accuracy": correct / N_QUESTIONS,
            "ci_low": max(0.0, correct / N_QUESTIONS - 0.2), "ci_high": min(1.0, correct / N_QUESTIONS + 0.2),
            "mean_thinking_tokens": float(budget), "prompt_tokens": float(PROMPT_TOKENS),
            "context_tokens": PROMPT_TOKENS + budget + ANSWER_TOKENS,
            "weight_gib": total / 2, "kv_gib": total / 2, "total_gib": total,
            "ckpt_id": f"ckpt-{model}-{weights}", "gen_id": f"gen-{model}-{weights}-{kv}", "grade_id": "g"})
        # the first `correct` questions right: a scenario right on more questions is right on these too
        ques += [{"scenario_id": prefix + sid, "question_id": f"q{i}", "n_samples": 8, "n_correct": 8 * (i < correct),
                  "accuracy": float(i < correct)} for i in range(N_QUESTIONS)]
    return pd.DataFrame(scen), pd.DataFrame(ques)


def write_results(root: Path, scen: pd.DataFrame, ques: pd.DataFrame, generations: dict | None = None) -> Path:
    results = root / "results"
    for name, table in (("scenarios", scen), ("questions", ques)):
        path = results / "aggregate" / f"{name}.parquet"
        artifacts.write_parquet(path, table)
        artifacts.write_meta(path, {"analysis": ANALYSIS, "grades": ["g"]})
    for gen_id, trace_key in (generations or {}).items():
        artifacts.write_json(results / "generations" / gen_id / "samples.meta.json", {"key": {"trace_key": trace_key}})
    return results


VLLM_KEY = {"engine": {"name": "vllm", "dtype": "bfloat16", "kv_cache_dtype": "auto"},
            "sampling": {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "max_answer_tokens": ANSWER_TOKENS},
            "forcing": {"forced_answer_suffix": "</think>\\boxed{", "wait_extension": True}, "kv": {"method": "full"}}


@pytest.fixture
def results_dir(tmp_path):
    scen, ques = _tables()
    return write_results(tmp_path, scen, ques, {"gen-m4-int4-full": VLLM_KEY})


def _picked(found: dict) -> dict:
    out = {"recommendation": found["recommendation"]["scenario_id"]}
    return out | {a["way"]: (a["configuration"] or {}).get("scenario_id") for a in found["alternatives"]}


def test_memory_is_read_in_binary_units():
    assert recommend.parse_memory("24GiB") == recommend.parse_memory("24 GB") == recommend.parse_memory("24") == 24
    assert recommend.parse_memory("512MiB") == 0.5
    assert recommend.parse_memory("300KB") == pytest.approx(300 / 2**20)
    for bad in ("24XB", "GB", "-3GB", "0GB", ""):
        with pytest.raises(recommend.RecommendError, match="--memory"):
            recommend.parse_memory(bad)


def test_recommendation_and_each_other_way_of_spending(results_dir):
    found = recommend.recommend(recommend.read_results(results_dir), 3.0)["datasets"][0]
    # big (3.5 GiB) does not fit; long is the most accurate of the rest
    assert _picked(found) == {"recommendation": "long", "more parameters": None, "more bits": "wide",
                              "longer thinking": None, "more samples": "g4", "compressed KV": "hqq"}
    assert found["fitting"] == 5
    rec = found["recommendation"]
    assert rec["memory"] == {"weights_gib": 1.0, "kv_gib": 1.0, "total_gib": 2.0}
    assert (rec["accuracy"], rec["ci_low"], rec["ci_high"]) == (0.5, 0.3, 0.7)
    wide = found["alternatives"][1]
    assert wide["difference"] == pytest.approx(-0.1)
    low, high = wide["difference_ci"]
    assert low <= -0.1 <= high <= 0.0  # wide is right on a subset of long's questions: never ahead

    found = recommend.recommend(recommend.read_results(results_dir), 3.5)["datasets"][0]
    assert _picked(found) == {"recommendation": "big", "more parameters": None, "more bits": "wide",
                              "longer thinking": "long", "more samples": "g4", "compressed KV": "hqq"}


def test_paired_bootstrap_is_seeded_and_paired(results_dir):
    results = recommend.read_results(results_dir)
    boot = recommend.PairedBootstrap(results.questions, ["long", "small", "hqq"], "d1", results.n_boot, results.seed)
    again = recommend.PairedBootstrap(results.questions, ["long", "small", "hqq"], "d1", results.n_boot, results.seed)
    assert boot.difference("small", "long") == again.difference("small", "long")
    # small and hqq are right on the same questions: the paired difference is exactly 0
    assert boot.difference("hqq", "small") == (0.0, 0.0, 0.0)
    # two questions apart out of ten: an unpaired bootstrap of the same draws would be far wider
    diff, low, high = boot.difference("small", "long")
    assert diff == pytest.approx(-0.2) and -0.7 < low < diff and high <= 0.0


def test_budget_outside_the_study_dataset_and_unfinished_results_are_refused(results_dir, tmp_path):
    results = recommend.read_results(results_dir)
    with pytest.raises(recommend.RecommendError, match="below the smallest configuration.*at least 1 GB"):
        recommend.recommend(results, 0.5, "d1")
    with pytest.raises(recommend.RecommendError, match="above the largest configuration.*at most 3.5 GB"):
        recommend.recommend(results, 10.0)
    with pytest.raises(recommend.RecommendError, match=r"--dataset: 'aime' .* \['d1'\]"):
        recommend.recommend(results, 3.0, "aime")
    with pytest.raises(recommend.RecommendError, match="no finished aggregate"):
        recommend.read_results(tmp_path / "empty")
    (results_dir / "aggregate" / "questions.meta.json").unlink()  # aggregate killed before it finished
    with pytest.raises(recommend.RecommendError, match="questions.parquet"):
        recommend.read_results(results_dir)


def test_every_dataset_the_budget_is_inside_of(tmp_path):
    s1, q1 = _tables("d1")
    s2, q2 = _tables("d2", prefix="x-")
    s2["total_gib"] += 10
    results = recommend.read_results(write_results(tmp_path, pd.concat([s1, s2]), pd.concat([q1, q2])))
    assert [d["dataset"] for d in recommend.recommend(results, 3.0)["datasets"]] == ["d1"]
    assert [d["dataset"] for d in recommend.recommend(results, 12.6)["datasets"]] == ["d2"]
    assert recommend.recommend(results, 12.6, "d2")["datasets"][0]["recommendation"]["scenario_id"] == "x-long"


def test_max_seconds_ranks_only_what_fits_the_time(results_dir):
    results = recommend.read_results(results_dir)
    # m1 names no size: the plan's unknown-size throughput; long thinks 6,000 tokens, g4 decodes 4 x 2,032
    rate = recommend.plan.UNKNOWN_SIZE_THROUGHPUT
    found = recommend.recommend(results, 3.0, max_seconds=(2000 + ANSWER_TOKENS) / rate * 1.5)["datasets"][0]
    assert found["recommendation"]["scenario_id"] == "wide"
    assert found["recommendation"]["seconds_per_question"] == pytest.approx((2000 + ANSWER_TOKENS) / rate)
    assert all(a["configuration"] is None or a["configuration"]["scenario_id"] == "small"
               for a in found["alternatives"])
    with pytest.raises(recommend.RecommendError, match="--max-seconds"):
        recommend.recommend(results, 3.0, max_seconds=0.1)


def test_engine_settings_for_vllm_and_for_a_kv_cache(results_dir):
    found = recommend.recommend(recommend.read_results(results_dir), 3.5)["datasets"][0]
    vllm = found["recommendation"]["engine_settings"]
    assert vllm["engine"] == "vllm"
    assert vllm["server_args"] == {"--max-model-len": PROMPT_TOKENS + 2000 + ANSWER_TOKENS,
                                   "--dtype": "bfloat16", "--kv-cache-dtype": "auto"}
    assert vllm["sampling_params"] == {"n": 1, "temperature": 0.6, "top_p": 0.95, "top_k": 20,
                                       "max_tokens": 2000 + ANSWER_TOKENS}
    assert vllm["command"].startswith("vllm serve m4 --max-model-len 2082")
    assert vllm["budget_forcing"]["wait_extension"] is True
    hf = found["alternatives"][4]["configuration"]["engine_settings"]
    assert hf["engine"] == "hf" and hf["kv_cache"] == {"method": "quantized", "bits": 4}
    assert hf["generate"]["num_return_sequences"] == 1 and hf["generate"]["max_new_tokens"] == 6000 + ANSWER_TOKENS


def test_page_steps_give_what_the_command_gives(results_dir):
    results = recommend.read_results(results_dir)
    data = recommend.page_data(results)
    steps = data["datasets"]["d1"]["steps"]
    assert [s["from_gib"] for s in steps] == sorted(s["from_gib"] for s in steps)
    for budget in np.linspace(1.0, 3.5, 11):
        step = [s for s in steps if s["from_gib"] <= budget][-1]
        found = recommend.recommend(results, float(budget), "d1")["datasets"][0]
        assert step["recommendation"] == found["recommendation"]["scenario_id"]
        assert data["configurations"][step["recommendation"]] == found["recommendation"]
        for alt, expected in zip(step["alternatives"], found["alternatives"]):
            if expected["configuration"] is None:
                assert alt is None
            else:
                assert alt == {"scenario_id": expected["configuration"]["scenario_id"],
                               "difference": expected["difference"], "difference_ci": expected["difference_ci"]}


def test_check_config_lists_every_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  a: {path: x}\n  b: [1,\n")
    assert cli.main(["check-config", str(bad)]) == cli.EXIT_CONFIG_ERRORS
    assert f"{bad}, line 4" in capsys.readouterr().err
    text = (REPO / "config" / "config.yaml").read_text()
    typo = tmp_path / "typo.yaml"
    typo.write_text(text.replace("temperature: 0.6", "temperature: hot") + "\nmodelz: {}\n")
    assert "temperature: 0.6" in text
    assert cli.main(["check-config", str(typo)]) == cli.EXIT_CONFIG_ERRORS
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "'modelz' was unexpected" in err[0] and "'sampling.temperature'" in err[1]
    assert cli.main(["check-config", str(REPO / "config" / "config.yaml")]) == 0
    assert "no errors" in capsys.readouterr().out


def _command() -> list[str]:
    """The installed entry point where pip installed it, else the module."""
    installed = shutil.which("bitbudget", path=str(Path(sys.executable).parent))
    return [installed] if installed else [sys.executable, "-m", "bitbudget"]


def _env() -> dict:
    paths = [str(REPO / "workflow"), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def test_the_command(results_dir):
    run = subprocess.run([*_command(), "recommend", "--memory", "3GiB", "--results", str(results_dir), "--json"],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert _picked(json.loads(run.stdout)["datasets"][0])["recommendation"] == "long"
    run = subprocess.run([*_command(), "recommend", "--memory", "3GiB", "--results", str(results_dir)],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert "recommended: m1 int4 (4-bit), KV full, T=6,000, G=1" in run.stdout
    run = subprocess.run([*_command(), "recommend", "--memory", "100GB", "--results", str(results_dir)],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert run.returncode == 2 and "above the largest configuration" in run.stderr
    for old in ("bitbudget.memory", "bitbudget.plan"):
        run = subprocess.run([sys.executable, "-m", old, "--help"], capture_output=True, text=True, env=_env(),
                             timeout=120)
        assert run.returncode == 0 and "usage: python -m " + old in run.stdout
