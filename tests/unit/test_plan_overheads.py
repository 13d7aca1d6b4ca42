"""The plan's overheads: a model load per generate job, the batch effect and the barrier of each
round, checked against hand computations; a throughput file of version 2 replaces the assumed
figures, version 1 still reads, and a malformed new field is named with its fix."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from bitbudget import throughput
from bitbudget.plan import (DECIDE_SECONDS, DEFAULT_STUDY_GPUS, JobModel, RoundCost, RoundDraw, decided_draw, draw_jobs,
                            main, make_plan, pack, round_cost)
from bitbudget.preflight import validate_study_config
from tests.harness import REPO, small_adaptive_config

HOUR = 3600.0


@pytest.fixture(scope="module")
def tiny():
    """Two HF generations of a model with no size in its name, 4 questions, budgets 16 and 48,
    8 samples drawn in rounds of 2, 3 and 3."""
    return validate_study_config(small_adaptive_config())


def test_one_round_by_hand():
    vllm = JobModel(gpus=1, rate=100.0, curve={8: 1.0}, load_seconds=36.0, batch_size=8, questions=10,
                    per_question=False)
    hf = JobModel(gpus=2, rate=50.0, curve={8: 1.0}, load_seconds=18.0, batch_size=8, questions=10,
                  per_question=True)
    assert vllm.sequences(2) == 8 and hf.sequences(4) == 4  # vLLM: 10 questions x 2, capped; HF: one question's
    assert vllm.hours(36000, 2) == pytest.approx((0.1, 0.0, 0.01))
    assert hf.hours(9000, 4) == pytest.approx((0.05, 0.05, 0.005))  # half the saturation: half the tokens/s
    # packed on 2 GPUs: vllm (0.11 h) first on one GPU; hf (0.105 h) needs both, so it starts at 0.11
    cost = round_cost([(vllm, 36000, 2), (hf, 9000, 4)], pool=2, decide_seconds=36.0)
    assert cost.wall_hours == pytest.approx(0.11 + 0.105 + 0.01)
    assert cost.decode_gpu_hours == pytest.approx(0.1 + 2 * 0.05)
    assert cost.batch_gpu_hours == pytest.approx(2 * 0.05)
    assert cost.load_gpu_hours == pytest.approx(0.01 + 2 * 0.005)
    assert cost.barrier_gpu_hours == pytest.approx(2 * 0.225 - 0.32)
    assert cost.gpu_hours == pytest.approx(2 * 0.225)
    assert round_cost([]) == RoundCost()


def test_questions_closed_earlier_leave_a_smaller_job():
    """A decided round draws only the questions still drawing: fewer tokens and, on vLLM, fewer
    sequences batched together (so a larger batch effect)."""
    entry = {"samples": 4, "open_budgets": [16, 48], "questions": 10, "closed_questions": {"q1": 4, "q7": 2}}
    draw = decided_draw(entry, [2, 4, 8])
    assert draw == RoundDraw(4, 8, 48, 2, 8)
    assert decided_draw({k: v for k, v in entry.items() if k != "closed_questions"}, [2, 4, 8]).questions is None
    vllm = JobModel(gpus=1, rate=100.0, curve={8: 1.0, 64: 2.0}, load_seconds=0.0, batch_size=64, questions=10,
                    per_question=False)
    answer = 5
    (closed_model, tokens, new), = draw_jobs({"g": vllm}, {"g": draw}, 1.0, answer).values()
    (all_model, all_tokens, _), = draw_jobs({"g": vllm}, {"g": draw._replace(questions=None)}, 1.0, answer).values()
    assert (new, tokens, all_tokens) == (4, 8 * 4 * (48 + 2 * answer), 10 * 4 * (48 + 2 * answer))
    assert (closed_model.sequences(new), all_model.sequences(new)) == (32, 40)
    assert closed_model.hours(tokens, new)[1] / tokens > all_model.hours(all_tokens, new)[1] / all_tokens


def test_packing_fills_the_gpus_longest_first():
    assert pack([(1, 3.0), (1, 2.0), (1, 2.0), (1, 1.0)], pool=2) == 4.0
    assert pack([(2, 1.0)], pool=1) == 1.0  # a job needing more GPUs than the pool takes them


def test_a_tiny_adaptive_plan_by_hand(tiny):
    plan = make_plan(tiny, workdir="/nonexistent")
    answer = tiny["sampling"]["max_answer_tokens"]
    rate = 1000 * 0.1  # no size in the name: the unknown-size figure, HF at 0.1 of it
    load = throughput.UNKNOWN_SIZE_LOAD_SECONDS
    saturation = throughput.ASSUMED_SATURATION_SEQUENCES["hf"]
    assert [r.samples for r in plan.rounds] == [(2,), (5,), (8,)]
    for r, new in zip(plan.rounds, (2, 3, 3)):
        decode = 4 * new * (48 + 2 * answer) / rate  # seconds of one job: 4 questions, thinking to 48
        job = load + decode * saturation / new  # one question's `new` samples per batch
        assert r.cost.jobs == 2
        assert r.cost.decode_gpu_hours == pytest.approx(2 * decode / HOUR)
        assert r.cost.batch_gpu_hours == pytest.approx(2 * decode * (saturation / new - 1) / HOUR)
        assert r.cost.load_gpu_hours == pytest.approx(2 * load / HOUR)
        assert r.cost.wall_hours == pytest.approx((job + DECIDE_SECONDS) / HOUR)  # the two jobs side by side
        assert r.cost.gpu_hours == pytest.approx(DEFAULT_STUDY_GPUS * (job + DECIDE_SECONDS) / HOUR)
    full_job = load + 4 * 8 * (48 + 2 * answer) / rate * saturation / tiny["engine"]["batch_size"]
    assert plan.full_design.gpu_hours == pytest.approx(DEFAULT_STUDY_GPUS * full_job / HOUR)
    cost = plan.to_dict()["adaptive_cost"]
    assert cost["upper_bound"]["gpu_hours"] == pytest.approx(sum(r.cost.gpu_hours for r in plan.rounds))
    assert cost["upper_bound_over_full"] == pytest.approx(cost["upper_bound"]["gpu_hours"] / plan.full_design.gpu_hours)
    assert cost["full_design"] == plan.to_dict()["full_design_cost"]


def test_the_estimate_stops_a_share_of_the_open_generations(tiny):
    none = make_plan(tiny, workdir="/nonexistent", stop_share=0.0, pool=1)
    half = make_plan(tiny, workdir="/nonexistent", stop_share=0.5, pool=1)
    assert [r.estimated_generations for r in none.rounds] == [2, 2, 2]
    assert [r.estimated_generations for r in half.rounds] == [2, 1, 1]
    assert none.adaptive_cost()["estimate"] == none.adaptive_cost()["upper_bound"]
    # one GPU: the jobs run one after the other, so a generation that stops saves its hours
    assert half.adaptive_cost()["estimate_over_full"] < half.adaptive_cost()["upper_bound_over_full"]
    # eight GPUs: the two jobs run side by side, and the pool waits for the one left either way
    wide = make_plan(tiny, workdir="/nonexistent", stop_share=0.5)
    assert wide.adaptive_cost()["estimate"]["gpu_hours"] == pytest.approx(wide.adaptive_cost()["upper_bound"]["gpu_hours"])


def test_a_plan_without_adaptive_sampling_keeps_its_decode_hours(tiny):
    config = copy.deepcopy(tiny)
    del config["sampling"]["adaptive"]
    plan = make_plan(config, workdir="/nonexistent")
    assert plan.full_design.decode_gpu_hours == pytest.approx(sum(g.gpu_hours for g in plan.generations))
    assert plan.full_design.load_gpu_hours > 0 and "adaptive_cost" not in plan.to_dict()


# --------------------------------------------------------------------------- the throughput file
def v2_file(tmp_path: Path, **entry) -> Path:
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps({"format": throughput.FORMAT, "version": 2, "device": "test",
                                "throughput": {"0.6b": {"hf": {"full": 400.0}, **entry}}}))
    return path


@pytest.fixture(scope="module")
def paper():
    """config/paper.yaml with adaptive sampling at the schema's defaults."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["sampling"]["adaptive"] = {}
    return validate_study_config(config)


def hf_full_06b(plan) -> str:
    return next(g.gen_id for g in plan.generations if g.model == "qwen3-0.6b" and g.engine == "hf" and g.kv == "full")


def test_version_2_replaces_load_seconds_and_batch_curve(paper, tmp_path):
    path = v2_file(tmp_path, load_seconds={"hf": 7.0, "vllm": 11.0},
                   batches={"hf": {"full": {"1": 100.0, "4": 300.0, "8": 400.0}}, "vllm": {"16": 5000.0}})
    measured = throughput.read(path)
    assumed, planned = make_plan(paper, workdir="/nonexistent"), make_plan(paper, workdir="/nonexistent",
                                                                          measured=measured)
    gen = hf_full_06b(planned)
    job, before = planned.job_models[gen], assumed.job_models[gen]
    assert (job.load_seconds, before.load_seconds) == (7.0, throughput.ASSUMED_LOAD_SECONDS["hf"]["0.6b"])
    assert job.curve == {1: 100.0, 4: 300.0, 8: 400.0} and before.curve == throughput.assumed_curve("hf")
    assert throughput.batch_factor(job.curve, job.sequences(4)) == pytest.approx(0.75)  # a round of 4 samples
    assert throughput.batch_factor(before.curve, before.sequences(4)) == pytest.approx(0.5)
    vllm = next(g.gen_id for g in planned.generations if g.model == "qwen3-0.6b" and g.engine == "vllm")
    assert planned.job_models[vllm].load_seconds == 11.0 and planned.job_models[vllm].curve == {16: 5000.0}
    other = next(g.gen_id for g in planned.generations if g.model == "qwen3-8b" and g.engine == "hf")
    assert planned.job_models[other] == assumed.job_models[other]  # sizes the file lacks keep the assumed figures
    assert planned.assumptions["load_seconds_measured"] == {"0.6b": {"hf": 7.0, "vllm": 11.0}}
    # an HF strategy the curves lack takes the label the rates table would give it (here full)
    rkv = next(g.gen_id for g in planned.generations if g.model == "qwen3-0.6b" and g.kv.startswith("rkv"))
    assert planned.job_models[rkv].curve == job.curve


def test_version_1_still_reads(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"format": throughput.FORMAT, "version": 1, "device": "test",
                                "throughput": {"8b": {"hf": {"full": 300.0}, "vllm": 2000.0}}}))
    assert throughput.read(path) == {"8b": {"hf": {"full": 300.0}, "vllm": 2000.0}}
    assert throughput.load_seconds(throughput.read(path), "8b", "vllm") == throughput.ASSUMED_LOAD_SECONDS["vllm"]["8b"]


@pytest.mark.parametrize("entry, field, fix", [
    ({"load_seconds": {"hf": -1}}, "'throughput.0.6b.load_seconds.hf'", "must be a number of seconds"),
    ({"load_seconds": {"tgi": 5}}, "'throughput.0.6b.load_seconds.tgi'", "is not an engine"),
    ({"load_seconds": 5}, "'throughput.0.6b.load_seconds'", "must map engines"),
    ({"batches": {"hf": {"full": {"0": 10.0}}}}, "'throughput.0.6b.batches.hf.full.0'", "positive integer"),
    ({"batches": {"hf": {"full": {"4": "fast"}}}}, "'throughput.0.6b.batches.hf.full.4'", "positive number"),
    ({"batches": {"vllm": []}}, "'throughput.0.6b.batches.vllm'", "concurrent sequences"),
    ({"batch": {}}, "'throughput.0.6b.batch'", "load_seconds, batches"),
])
def test_a_malformed_new_field_is_named_with_the_fix(tmp_path, entry, field, fix):
    with pytest.raises(throughput.ThroughputFileError, match=field) as error:
        throughput.read(v2_file(tmp_path, **entry))
    assert fix in str(error.value) and "fix:" in str(error.value)


def test_a_new_field_in_a_version_1_file_asks_for_version_2(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"format": throughput.FORMAT, "version": 1,
                                "throughput": {"8b": {"hf": {"full": 300.0}, "load_seconds": {"hf": 30.0}}}}))
    with pytest.raises(throughput.ThroughputFileError, match="'throughput.8b.load_seconds'.*\"version\": 2"):
        throughput.read(path)


def test_batch_factor_interpolates():
    curve = {1: 100.0, 8: 400.0}
    assert throughput.batch_factor(curve, 1) == pytest.approx(0.25)
    assert throughput.batch_factor(curve, 4.5) == pytest.approx(0.625)
    assert throughput.batch_factor(curve, 64) == 1.0
    assert throughput.batch_factor(throughput.assumed_curve("vllm"), 8) == pytest.approx(
        8 / throughput.ASSUMED_SATURATION_SEQUENCES["vllm"])


def test_cli_prints_the_adaptive_cost(tmp_path, capsys, paper):
    path = tmp_path / "paper-adaptive.yaml"
    path.write_text(yaml.safe_dump(paper))
    assert main(["--configfile", str(path), "--directory", "/nonexistent", "--gpus", "4"]) == 0
    out = capsys.readouterr().out
    assert "GPU-hours with overheads: full design" in out and "adaptive, upper bound" in out
    assert main(["--configfile", str(path), "--directory", "/nonexistent", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["adaptive_cost"]) >= {"full_design", "upper_bound", "estimate", "upper_bound_over_full",
                                          "estimate_over_full"}
    with pytest.raises(SystemExit):
        main(["--configfile", str(path), "--stop-share", "1.5"])
