"""bench/adaptive.py's planted predictive: the samples to come drawn as the simulated engine draws them."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest

from bitbudget.adaptive.closing import thinking_per_question
from bitbudget.adaptive.predictive import answer_pool
from bitbudget.config import validate_config
from bitbudget.stats import summarize_scenario
from bitbudget.study import build_study
from tests.harness import REPO
from tests.unit.test_simulated import small_simulated_config

_spec = importlib.util.spec_from_file_location("bench_adaptive", REPO / "bench" / "adaptive.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # its dataclasses look their module up there
_spec.loader.exec_module(bench)

DRAWN, MAXIMUM, PREDICTIVE_DRAWS = 8, 32, 4000


def test_planted_pools_keep_the_samples_drawn_and_complete_them_at_the_planted_rates(tmp_path):
    study = build_study(small_simulated_config(samples=MAXIMUM, budgets=(2000, 30000)))
    draws = bench.Draws(study, tmp_path)
    (gen_id,) = draws.generations
    correct, _, budgets, _ = draws.generations[gen_id]
    truth = draws.planted[gen_id]
    assert ((truth.value_index == 0) == correct).all()  # value 0 is the gold answer
    rate = truth.solve * (1 - truth.slip)  # [Q, budgets]: P(right) per sample
    # the engine's own samples are drawn at these rates (30 questions x 32 samples per budget)
    assert np.abs(correct.mean(axis=(0, 1)) - rate.mean(axis=0)).max() < 0.06
    samples = {gen_id: {b: answer_pool(correct[:, :DRAWN, i], np.full(correct[:, :DRAWN, i].shape, None, dtype=object))
                        for i, b in enumerate(budgets)}}
    pools = bench.PlantedPredictive(draws)(samples, {gen_id: "aime"})(gen_id, MAXIMUM, PREDICTIVE_DRAWS,
                                                                        np.random.default_rng(0))
    assert sorted(pools) == budgets
    for i, budget in enumerate(budgets):
        pool, seen_right = pools[budget], correct[:, :DRAWN, i].sum(axis=1)
        assert (pool.sum(axis=-1) == MAXIMUM).all()
        assert (pool[..., 0] >= seen_right).all()
        new_right = (pool[..., 0] - seen_right).mean(axis=0) / (MAXIMUM - DRAWN)
        assert np.abs(new_right - rate[:, i]).max() < 0.02  # 4000 x 24 draws per question: SE <= 0.0016
    # one solve draw per sample for every budget: a sample right at the small budget is right
    # at the large one unless it slips: per question, the two counts move together over draws
    small, large = (pools[b][..., 0].astype(float) for b in budgets)
    varied = (small.std(axis=0) > 0) & (large.std(axis=0) > 0)
    within = [np.corrcoef(small[:, q], large[:, q])[0, 1] for q in np.flatnonzero(varied)]
    assert len(within) >= 5 and np.mean(within) > 0.5  # independent budgets: about 0


def test_the_bench_counts_each_sample_to_the_largest_budget_that_reads_it():
    """Decode tokens of a generation whose budgets were read at different samples: samples 0-3
    think to 30, samples 4-7 to 20 (the largest budget still open), samples 8-11 to 10."""
    analysis = bench.Analysis.__new__(bench.Analysis)
    analysis.questions = {"g": 5}
    assert analysis.generation_tokens("g", {10: 12, 20: 8, 30: 4}) == 5 * (4 * 30 + 4 * 20 + 4 * 10)
    assert analysis.generation_tokens("g", {10: 8, 20: 8, 30: 8}) == 5 * 8 * 30
    analysis.questions["h"] = 3
    assert analysis.tokens({"g": {10: 4, 30: 4}, "h": {10: 4}}) == 5 * 4 * 30 + 3 * 4 * 10


def closing_study() -> dict:
    """2 models x 2 weight formats on AIME, 16 samples drawn 4 at a time, questions closing; a
    lenient gamma (for this test only) so that the few rounds close some."""
    config = small_simulated_config(samples=16)
    config["grids"]["main"].update(models=["qwen3-0.6b", "qwen3-4b"], weight_formats=["bf16", "gptq8"],
                                   parallel_samples=[1, 4])
    config["sampling"]["adaptive"] = {"initial": 4, "step": 4, "close_questions": True, "curtail_gamma": 0.5}
    return validate_config(config)


def ragged_accuracy(correct, answers, held, g):
    """maj@g (pass@1 at 1) of one budget's samples as the aggregate reads a graded table
    (:func:`bitbudget.stats.summarize_scenario`), question q from its first ``held[q]`` samples."""
    rows = [{"question_id": f"q{q:03d}", "sample_idx": i, "correct": bool(correct[q, i]), "extracted_answer": answers[q, i]}
            for q, k in enumerate(held) for i in range(k)]
    summary, _ = summarize_scenario(pd.DataFrame(rows), "maj@G" if g > 1 else "pass@1", g=g, n_boot=0)
    return summary["accuracy"]


def test_the_bench_reads_questions_closed_early_at_their_own_counts(tmp_path):
    study = build_study(closing_study())
    analysis = bench.Analysis(study, bench.Draws(study, tmp_path))
    drawn, closed, log, jobs = bench.adaptive_run(analysis)
    assert any(closed.values())
    # each round's job draws the questions not closed before it; a closed question holds what it had drawn
    for gen_id, by_question in closed.items():
        n_questions = analysis.questions[gen_id]
        for draws in jobs[1:]:
            if gen_id in draws:
                closed_before = [q for q, count in by_question.items() if count <= draws[gen_id].before]
                assert draws[gen_id].questions == (n_questions - len(closed_before) if closed_before else None)
        # tokens by hand: each question's samples per budget, each sample to the largest budget reading it
        per_question = [{b: min(n, by_question.get(q, n)) for b, n in drawn[gen_id].items()} for q in range(n_questions)]
        assert analysis.generation_tokens(gen_id, drawn[gen_id], by_question) == sum(map(thinking_per_question, per_question))
    assert log[-1]["tokens"] == analysis.tokens(drawn, closed) < analysis.tokens(drawn)
    # each scenario's accuracy as the aggregate would read the ragged samples (a second implementation)
    table = analysis.table(drawn, closed)
    assert table["accuracy"].notna().all()
    checked = 0
    for row in table[table["gen_id"].isin([g for g, c in closed.items() if c])].itertuples():
        correct, answers, budgets, _ = analysis.draws.generations[row.gen_id]
        i = budgets.index(row.token_budget)
        held = analysis.held(row.gen_id, drawn[row.gen_id][row.token_budget], closed[row.gen_id])
        assert row.n_samples == held.min()
        assert row.accuracy == pytest.approx(ragged_accuracy(correct[..., i], answers[..., i], held, row.G), abs=1e-12)
        checked += held.min() < held.max()
    assert checked >= 6  # ragged cells among them


def test_the_planted_predictive_does_not_take_closed_questions(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--tune", "--predictive", "planted", "--close-questions"])
    assert "--close-questions" in capsys.readouterr().err
    assert bench.parse_args(["--tune", "--close-questions"]).close_questions


def test_tuning_and_evaluation_sets_share_no_surface_and_no_seed():
    bench.check_disjoint(bench.TUNE, bench.EVAL)
    leaky = bench.CaseSet(("qwen3",), (7, 0), (1003,))
    with pytest.raises(ValueError, match=r"simulation.seed.*\[0\]"):
        bench.check_disjoint(bench.TUNE, leaky)
    held_out = bench.EVAL.cases()
    assert not {(c.surface, c.seed) for c in held_out} & {(c.surface, c.seed) for c in bench.TUNE.cases()}
    for kind in bench.KINDS:  # every overlay kind on at least 2 surfaces x 5 seeds
        assert len({(c.surface, c.seed) for c in held_out if c.kind == kind}) >= 10


def test_a_case_sets_the_surface_and_the_seeds_and_the_qwen3_kind_plants_interactions():
    config = bench.load_config(bench.Case("qwen3", 101, 1003), {})
    assert config["simulation"]["seed"] == 101 and config["sampling"]["seed"] == 1003
    surfaces = config["simulation"]["datasets"]
    assert all(surface["interaction_sd"] > 0 for surface in surfaces.values())
    paper = bench.load_config(bench.Case("paper", 101, 1003), {})
    assert all(surface["interaction_sd"] == 0 for surface in paper["simulation"]["datasets"].values())


def test_the_evaluation_refuses_settings_chosen_on_the_command_line(capsys):
    with pytest.raises(SystemExit) as stop:
        bench.parse_args(["--eval", "--gamma", "0.05"])
    assert stop.value.code == 2 and "--gamma" in capsys.readouterr().err
    assert bench.parse_args(["--eval", "--predictive", "planted"]).eval  # a yardstick, not a setting
    assert bench.parse_args(["--tune", "--gamma", "0.05"]).gamma == 0.05
    with pytest.raises(SystemExit):
        bench.parse_args(["--eval", "--close-questions"])
    assert "--close-questions" in capsys.readouterr().err


def test_a_results_file_keeps_finished_cases_for_the_same_settings_only(tmp_path, capsys):
    """A case measured on the small closing study, kept in a results file: read back equal, taken
    only for the same case, settings and predictive; a file that is not one is named with the fix."""
    study = build_study(closing_study())
    analysis = bench.Analysis(study, bench.Draws(study, tmp_path))
    drawn, closed, log, jobs = bench.adaptive_run(analysis)
    case, settings = bench.Case("paper", 0, 0), {"close_questions": True}
    result = {"case": case, "tokens_full": analysis.tokens(analysis.full_design()),
              "tokens_adaptive": analysis.tokens(drawn, closed), "rounds": log,
              "gpu_hours_full": bench.cost_plan.RoundCost(1, 2.0), "gpu_hours_adaptive": bench.cost_plan.RoundCost(3, 1.5),
              "frontier_identical": True, "bracket_verdicts_identical": False, "differs": ["finding 3"],
              "closed_questions": sum(map(len, closed.values())), "stopped_early": 1, "generations": len(drawn),
              "seconds": 1.0, "draw_s": 0.5}
    path = tmp_path / "results.json"
    key = bench.result_key(case, settings, None)
    bench.save_results(path, {key: result})
    assert bench.load_results(path) == {key: result}
    assert key != bench.result_key(case, {}, None) != bench.result_key(bench.Case("paper", 0, 1), settings, None)
    assert bench.result_key(case, settings, "planted") != key
    # the bench takes a case its file holds instead of running it (a paper-grid case takes hours)
    assert bench.main(["--tune", "--kinds", "paper", "--surfaces", "1", "--seeds", "1", "--close-questions",
                       "--results", str(path)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].endswith(f"(from {path})")
    assert printed[-1] == (f"tokens adaptive/full {result['tokens_adaptive'] / result['tokens_full']:.2f}, "
                           "frontier identical 1.00, bracket and verdicts identical 0.00")
    path.write_text('{"truncated": ')
    with pytest.raises(SystemExit, match="results.json.*fix: give another path or delete it"):
        bench.load_results(path)
