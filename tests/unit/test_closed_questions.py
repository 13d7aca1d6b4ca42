"""Questions closed inside a round: a generation reads some questions at fewer samples than the
round's (``closed_questions``). A closed question draws nothing, keeps its stored samples byte for
byte, and is read at its own count; the others draw as they would; reopened later, its samples
are those of a one-shot run (history-free draws). The aggregate and a round's answer counts read
ragged counts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from bitbudget import rounds
from bitbudget.adaptive import schedule
from bitbudget.adaptive.closing import Completion, certify_questions, decide_round, open_questions
from bitbudget.adaptive.predictive import (PREDICTIVES, answer_pool, completion_targets, predicted_rows,
                                           question_pools)
from bitbudget.aggregate import cell_arrays
from bitbudget.stats import maj_at_g_question, maj_of_counts, summarize_scenario
from tests.unit.test_adaptive import ANALYSIS, Q, _rule, _scenarios
from tests.unit.test_sample_extension import (BUDGETS, hf_round, hf_spec, read_shards, run_round,
                                               simulated_generation)


def sample_counts(table: pd.DataFrame) -> dict[str, int]:
    return table.groupby("question_id")["sample_idx"].nunique().to_dict()


# --------------------------------------------------------------------------- keys


def test_closed_questions_enter_the_key_only_where_some_question_is_closed():
    full = simulated_generation(samples=4)
    assert full.with_samples(4, closed_questions={}).gen_id == full.gen_id
    assert full.with_samples(3, closed_questions=None).gen_id == full.with_samples(3).gen_id
    closed = full.with_samples(4, closed_questions={"q1": 2, "q0": 1})
    assert closed.gen_id != full.gen_id and closed.trace_id == full.trace_id
    assert list(closed.key["closed_questions"]) == ["q0", "q1"]  # sorted: the order given never moves the id
    assert closed.gen_id == full.with_samples(4, closed_questions={"q0": 1, "q1": 2}).gen_id
    spec = closed.engine_spec()
    assert spec.generation_key() == {k: v for k, v in closed.key.items() if k != "trace_key"}
    assert spec.samples_of("q1") == 2 and spec.samples_of("q7") == 4
    assert type(spec).from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("count", [0, 4, 5])
def test_a_closed_question_must_hold_fewer_samples_than_the_round(count):
    full = simulated_generation(samples=4)
    with pytest.raises(ValueError, match=r"closed_questions must hold between 1 and 3 samples"):
        full.with_samples(4, closed_questions={"q0": count}).engine_spec()


def test_a_closed_question_the_dataset_does_not_hold_stops_before_any_sample_is_drawn(tmp_path):
    full = simulated_generation(samples=4)
    trace = tmp_path / "traces" / full.trace_id
    with pytest.raises(ValueError, match=r"closed_questions names questions its dataset does not hold: \['nope'\]"):
        run_round(full.with_samples(4, closed_questions={"nope": 2}), trace, tmp_path / "out.parquet")
    assert not (trace / "shards").exists() or not list((trace / "shards").glob("*.json"))


# --------------------------------------------------------------------------- simulated engine


def test_simulated_closed_question_draws_nothing_and_reopened_equals_a_one_shot_run(tmp_path):
    full = simulated_generation(samples=4)
    trace = tmp_path / "traces" / full.trace_id
    run_round(full.with_samples(2), trace, tmp_path / "r2.parquet")
    after_first = read_shards(trace)
    question_ids = sorted(after_first)
    closed = {question_ids[0]: 2, question_ids[1]: 1}  # one at its stored count, one below it
    ragged, meta = run_round(full.with_samples(4, closed_questions=closed), trace, tmp_path / "ragged.parquet")
    assert meta["id"] == full.with_samples(4, closed_questions=closed).gen_id
    counts = sample_counts(ragged)
    assert {q: counts[q] for q in closed} == closed
    assert all(counts[q] == 4 for q in question_ids[2:])
    open_questions = len(question_ids) - len(closed)
    assert meta["generated"] == open_questions
    assert meta["counters"]["decode_tokens"] == open_questions * 2 * max(BUDGETS)  # samples 2 and 3, open ones only
    after_second = read_shards(trace)
    for question_id in closed:  # nothing drawn, nothing rewritten
        assert after_second[question_id] == after_first[question_id]

    oneshot_trace = tmp_path / "oneshot" / full.trace_id
    oneshot, _ = run_round(full, oneshot_trace, tmp_path / "oneshot.parquet")
    read_at = oneshot["question_id"].map(lambda q: closed.get(q, 4))
    pd.testing.assert_frame_equal(ragged, oneshot[oneshot["sample_idx"] < read_at].reset_index(drop=True))

    reopened, meta = run_round(full, trace, tmp_path / "full.parquet")
    assert meta["generated"] == len(closed)
    pd.testing.assert_frame_equal(reopened, oneshot)
    assert read_shards(trace) == read_shards(oneshot_trace)


# --------------------------------------------------------------------------- HF engine


def test_hf_closed_question_draws_nothing_and_reopened_equals_a_one_shot_run(random_tiny_model, tmp_path):
    trace, oneshot_trace = tmp_path / "stepped" / "trace", tmp_path / "oneshot" / "trace"  # the draws name the trace
    hf_round(random_tiny_model, trace, hf_spec(random_tiny_model, 1), tmp_path / "r1.parquet")
    after_first = read_shards(trace)
    closed_id = sorted(after_first)[0]
    spec = dataclasses.replace(hf_spec(random_tiny_model, 3), closed_questions={closed_id: 1})
    ragged, meta, _ = hf_round(random_tiny_model, trace, spec, tmp_path / "ragged.parquet")
    assert sample_counts(ragged) == {q: 1 if q == closed_id else 3 for q in after_first}
    assert meta["generated"] == len(after_first) - 1
    assert read_shards(trace)[closed_id] == after_first[closed_id]

    full = hf_spec(random_tiny_model, 3)
    reopened, meta, _ = hf_round(random_tiny_model, trace, full, tmp_path / "full.parquet")
    assert meta["generated"] == 1
    reference, _, _ = hf_round(random_tiny_model, oneshot_trace, full, tmp_path / "oneshot.parquet")
    assert read_shards(trace) == read_shards(oneshot_trace)
    pd.testing.assert_frame_equal(reopened, reference)
    assert len({tuple(s["think_ids"]) for s in read_shards(oneshot_trace)[closed_id]["samples"]}) > 1


# --------------------------------------------------------------------------- ragged aggregates


def ragged_grades(seed: int, counts: dict[str, int]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for question_id, n in counts.items():
        for i in range(n):
            answer = rng.choice(["7", "8", "9", None])
            rows.append({"question_id": question_id, "sample_idx": i, "token_budget": 100,
                         "correct": answer == "7", "extracted_answer": answer, "reference_answer": "7"})
    return pd.DataFrame(rows)


def test_ragged_counts_estimate_each_question_from_its_own_samples():
    counts = {"a": 2, "b": 5, "c": 3, "d": 4}
    graded = ragged_grades(3, counts)
    by_question = {q: g.sort_values("sample_idx") for q, g in graded.groupby("question_id")}
    summary, per_question = summarize_scenario(graded, "pass@1", n_boot=50)
    assert per_question.set_index("question_id")["n_samples"].to_dict() == counts
    assert summary["accuracy"] == pytest.approx(np.mean([g["correct"].mean() for g in by_question.values()]))
    assert summary["n_samples"] == 2 and summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"]

    summary, _ = summarize_scenario(graded, "maj@G", g=2, n_boot=50)
    votes = [maj_at_g_question(["7" if ok else (None if pd.isna(a) else a)
                                for ok, a in zip(g["correct"], g["extracted_answer"])], "7", 2)
             for g in by_question.values()]
    assert summary["accuracy"] == pytest.approx(np.mean(votes))

    summary, per_question = summarize_scenario(graded, "maj@G", g=3, n_boot=50)  # question a holds 2
    assert np.isnan(summary["accuracy"]) and np.isnan(summary["ci_low"]) and np.isnan(summary["ci_high"])
    assert per_question.set_index("question_id")["accuracy"].isna().to_dict() == {q: n < 3 for q, n in counts.items()}


def test_a_rounds_answer_counts_read_each_question_at_its_own_samples():
    counts = {"q2": 3, "q0": 5, "q1": 1}
    graded = ragged_grades(4, counts)
    pools = rounds.answer_counts(graded)
    assert list(pools.sum(axis=1)) == [5, 1, 3]  # questions by id
    by_id = {q: g.sort_values("sample_idx") for q, g in graded.groupby("question_id")}
    expected = question_pools([by_id[q]["correct"].to_numpy() for q in sorted(by_id)],
                              [np.array([None if pd.isna(a) else a for a in by_id[q]["extracted_answer"]], dtype=object)
                               for q in sorted(by_id)])
    assert np.array_equal(pools, expected)
    square = ragged_grades(5, dict.fromkeys(["a", "b", "c"], 4))
    _, correct, answers = cell_arrays(square)
    assert np.array_equal(rounds.answer_counts(square.sample(frac=1, random_state=0)), answer_pool(correct, answers))


# --------------------------------------------------------------------------- completions


def labelled(correct: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(correct, "right", rng.choice(["a", "b", None], correct.shape)).astype(object)


def test_a_round_completes_only_the_questions_still_drawing():
    """A generation at 8 samples per question whose first 10 questions were closed at 4: every
    completion holds the full design's 32 samples of the others and exactly the stored 4 of the
    closed ones; pass@1 weighs each question by its own samples, and maj@8 has no estimate."""
    rng = np.random.default_rng(8)
    n_questions, closed = 30, 10
    correct = rng.random((n_questions, 8)) < 0.6
    answers = labelled(correct, rng)
    held = np.where(np.arange(n_questions) < closed, 4, 8)
    pools = {1000: question_pools([c[:n] for c, n in zip(correct, held)], [a[:n] for a, n in zip(answers, held)])}
    assert completion_targets({1000: answer_pool(correct, answers)}, 8, 32) == 32  # none closed: one count
    targets = completion_targets(pools, 8, 32)
    assert list(targets) == [4] * closed + [32] * (n_questions - closed)
    assert open_questions(pools, 8) == n_questions - closed
    for name, predictive in PREDICTIVES.items():
        completed = predictive({"g": pools}, {"g": "d"})("g", targets, 40, np.random.default_rng(1))
        pool = completed[1000]
        assert (pool.sum(axis=-1) == targets).all(), name
        stored = pools[1000][:closed]
        assert (pool[:, :closed, : stored.shape[1]] == stored).all() and (pool[:, :closed, stored.shape[1]:] == 0).all()
        rows = predicted_rows(completed, np.array([1000, 1000]), np.array([1, 8]))
        assert np.allclose(rows[0], (pool[..., 0] / targets).mean(axis=1))
        assert np.isnan(rows[1]).all()


def test_maj_of_a_pool_smaller_than_g_has_no_estimate():
    pools = np.array([[2, 0, 1], [5, 1, 2], [0, 4, 1]])
    votes = maj_of_counts(pools, [4])[4]
    assert np.isnan(votes[0]) and votes[1] == maj_at_g_question(["r"] * 5 + [None] + ["x", "x"], "r", 4)
    assert votes[2] == 0.0  # four or more samples, none right


def test_decide_round_reads_questions_closed_earlier_at_their_counts():
    """Two generations on one budget, one with a third of its questions closed at 4 of 8: the
    round asks its predictive for completions that keep the closed questions at 4 and the
    others at the maximum, and decides (the two lie far apart: both settle)."""
    rng = np.random.default_rng(9)
    n_questions = 30
    gens = ["a", "b"]
    correct = {g: rng.random((n_questions, 8)) < p for g, p in zip(gens, (0.3, 0.8))}
    answers = {g: labelled(correct[g], rng) for g in gens}
    held = np.where(np.arange(n_questions) < 10, 4, 8)
    pools = {"a": {1000: question_pools([c[:n] for c, n in zip(correct["a"], held)],
                                        [x[:n] for x, n in zip(answers["a"], held)])},
             "b": {1000: answer_pool(correct["b"], answers["b"])}}
    asked = {}

    def recording(pools_of, datasets):
        draw = PREDICTIVES["rasch"](pools_of, datasets)

        def recorded(gen_id, maximum, draws, rng):
            asked.setdefault(gen_id, []).append(np.broadcast_to(maximum, (n_questions,)).tolist())
            return draw(gen_id, maximum, draws, rng)
        return recorded

    accuracy = [np.mean([c[:n].mean() for c, n in zip(correct["a"], held)]), correct["b"].mean()]
    outcomes = decide_round(_scenarios(accuracy, [1.0, 3.0], 8, gen=gens), pools, dict.fromkeys(gens, 8),
                            dict.fromkeys(gens, 32), _rule(8, 32, gamma=0.05), ANALYSIS, seed=0, round_index=1,
                            predictive=recording)
    assert {g: o.reason for g, o in outcomes.items()} == dict.fromkeys(gens, schedule.CURTAILED)
    assert asked["a"] and all(m == [4] * 10 + [32] * 20 for m in asked["a"])
    assert asked["b"] and all(m == [32] * n_questions for m in asked["b"])


# --------------------------------------------------------------------------- the rule


def contested_round(close_questions: bool) -> tuple[dict, dict]:
    """A round after 8 of 32 samples: two generations with the same solve probabilities at nearly
    the same memory (a coin toss for the frontier: both stay open) and a far one."""
    rng = np.random.default_rng(3)
    solve = {g: rng.beta(0.4, 0.4, Q) for g in ("close_a", "close_b", "far")}  # many questions near 0 or 1
    solve["close_b"] = solve["close_a"]
    draws = {g: rng.random((Q, 32)) < p[:, None] for g, p in solve.items()}
    draws["far"] = rng.random((Q, 32)) < 0.2
    gens = list(draws)
    now = _scenarios([draws[g][:, :8].mean() for g in gens], [1.0, 1.05, 1.5], 8, gen=gens)
    pools = {g: {1000: answer_pool(draws[g][:, :8], np.where(draws[g][:, :8], "right", "wrong").astype(object))}
             for g in gens}
    rule = dataclasses.replace(_rule(8, 32, gamma=0.1), close_questions=close_questions)
    return decide_round(now, pools, dict.fromkeys(gens, 8), dict.fromkeys(gens, 32), rule, ANALYSIS, seed=0,
                        round_index=1), draws


def test_questions_whose_samples_agree_close_in_the_generations_left_open():
    without, _ = contested_round(False)
    outcomes, draws = contested_round(True)
    assert {g: (o.reason, o.open_budgets) for g, o in outcomes.items()} == {
        g: (o.reason, o.open_budgets) for g, o in without.items()}  # the budget closings as without
    assert all(not o.closed_questions for o in without.values())
    assert outcomes["far"].reason == schedule.CURTAILED and not outcomes["far"].closed_questions
    for gen_id in ("close_a", "close_b"):
        closed = np.array(outcomes[gen_id].closed_questions)
        assert outcomes[gen_id].reason == schedule.OPEN and 0 < len(closed) < Q
        shares = draws[gen_id][closed, :8].mean(axis=1)
        assert set(np.unique(shares)) <= {0.0, 1.0}  # every closed question's samples agree


def test_question_closings_fresh_draws_refuse_are_not_taken():
    found = {"g": np.array([1, 4])}

    class Refusing:
        def passes(self, closing, arms):
            assert closing == {"g": 1} and list(arms) == ["g"] and len(arms["g"]) == 1  # the budget left open
            return False

    class Passing(Refusing):
        def passes(self, closing, arms):
            return True

    fresh_of = {"g": {1000: Completion(np.array([0]), np.zeros((1, 5)), np.zeros((1, 5))),
                      2000: Completion(np.array([1]), np.zeros((1, 5)), np.zeros((1, 5)))}}
    assert certify_questions({"g": 1}, found, lambda n, arms: (Refusing(), fresh_of), 5) == {}
    assert certify_questions({"g": 1}, found, lambda n, arms: (Passing(), fresh_of), 5) is found
    assert certify_questions({"g": 1}, {}, lambda n, arms: pytest.fail("nothing to certify"), 5) == {}


def test_the_report_lists_every_rounds_jobs_from_the_decisions():
    """Round 0 reads generation a at both budgets; round 1 reads a at 10 and, with questions
    closed, b at 20: the decisions name two generate jobs, two grade jobs and two round jobs."""
    read_a, read_b = {"gen_id": "a", "grade_id": "x"}, {"gen_id": "b", "grade_id": "y"}
    decisions = [{"plan_id": "p", "round": 0, "generations": {"g": {"budgets": {"10": read_a, "20": read_a}}}},
                 {"plan_id": "p", "round": 1, "generations": {"g": {"budgets": {"10": read_a, "20": read_b}}}}]
    assert rounds.round_benchmarks(decisions) == [
        "benchmarks/adaptive_round/p/0.tsv", "benchmarks/adaptive_round/p/1.tsv", "benchmarks/generate/a.tsv",
        "benchmarks/generate/b.tsv", "benchmarks/grade/x.tsv", "benchmarks/grade/y.tsv"]
