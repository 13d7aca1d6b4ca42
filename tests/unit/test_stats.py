"""Tests for the accuracy estimators and the bootstrap."""

from collections import Counter
from fractions import Fraction
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from bitbudget import stats


def brute_force_maj(answers, reference, g):
    """Average maj@g credit over all size-g subsets (ties split uniformly)."""
    total = Fraction(0)
    n_sub = 0
    for subset in combinations(range(len(answers)), g):
        votes = Counter(answers[i] for i in subset if answers[i] is not None)
        n_sub += 1
        if not votes:
            continue
        top = max(votes.values())
        winners = [a for a, c in votes.items() if c == top]
        if reference in winners:
            total += Fraction(1, len(winners))
    return float(total / n_sub)


def test_maj_matches_brute_force_on_random_pools():
    rng = np.random.default_rng(123)
    alphabet = ["1", "2", "3", "4", None]
    for _ in range(300):
        n = int(rng.integers(1, 11))
        k = int(rng.integers(1, len(alphabet) + 1))
        probs = rng.dirichlet(np.ones(k))
        answers = [alphabet[i] for i in rng.choice(k, size=n, p=probs)]
        ref = alphabet[int(rng.integers(0, 4))]
        for g in range(1, n + 1):
            got = stats.maj_at_g_question(answers, ref, g)
            want = brute_force_maj(answers, ref, g)
            assert got == pytest.approx(want, abs=1e-12), (answers, ref, g)


def test_maj_at_1_is_pass_at_1_and_edge_cases():
    answers = ["7", "7", "3", None, "7", "5"]
    assert stats.maj_at_g_question(answers, "7", 1) == pytest.approx(3 / 6)
    assert stats.maj_at_g_question(answers, "9", 3) == 0.0
    assert stats.maj_at_g_question([None, None], "1", 2) == 0.0
    # a tie between two values in the only subset gives half credit
    assert stats.maj_at_g_question(["1", "2"], "1", 2) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        stats.maj_at_g_question(["1"], "1", 2)


def _subset_credit(answers, reference, subset):
    votes = Counter(answers[i] for i in subset if answers[i] is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    leaders = [a for a, c in votes.items() if c == top]
    return 1.0 / len(leaders) if reference in leaders else 0.0


def test_maj_of_large_pools_matches_random_subsets():
    """A pool of 64 has about 5e14 subsets of 16: the exact value must come from counts, and it
    must agree with the mean credit of many random subsets."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        answers = [str(x) if x < 12 else None for x in rng.integers(0, 14, size=64)]
        exact = stats.maj_at_g_question(answers, "3", 16)
        draws = [_subset_credit(answers, "3", rng.choice(64, size=16, replace=False)) for _ in range(4000)]
        assert exact == pytest.approx(np.mean(draws), abs=4 * np.std(draws) / np.sqrt(len(draws)) + 1e-9)


def test_majority_vote_at_g_averages_questions():
    answers = [["1", "1", "2"], ["3", "4", "4"]]
    got = stats.majority_vote_at_g(answers, ["1", "3"], 3)
    assert got == pytest.approx(0.5)


def test_pass_at_1_ragged_and_matrix():
    m = np.array([[1, 0, 1, 1], [0, 0, 0, 1]], dtype=bool)
    assert stats.pass_at_1(m) == pytest.approx((0.75 + 0.25) / 2)
    assert stats.pass_at_1([np.array([1, 1]), np.array([0, 1, 0, 0])]) == pytest.approx(0.625)


def test_bootstrap_ci_covers_and_is_reproducible():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.1, 0.9, size=40)
    data = [rng.random(16) < pi for pi in p]
    point = stats.pass_at_1(data)
    lo, hi = stats.bootstrap_ci(data, None, n_boot=2000, seed=1)
    assert lo < point < hi
    assert (lo, hi) == stats.bootstrap_ci(data, None, n_boot=2000, seed=1)
    # the generic path agrees with the fast binomial path
    lo2, hi2 = stats.bootstrap_ci(data, lambda arrs: float(np.mean([a.mean() for a in arrs])),
                                  n_boot=2000, seed=2)
    assert lo2 == pytest.approx(lo, abs=0.03) and hi2 == pytest.approx(hi, abs=0.03)
    lo90, hi90 = stats.bootstrap_ci(data, None, n_boot=2000, seed=1, level=0.5)
    assert lo <= lo90 and hi90 <= hi


def test_bootstrap_maj_statistic():
    rng = np.random.default_rng(9)
    per_q = []
    for _ in range(10):
        ans = [str(v) for v in rng.choice(3, size=8, p=[0.6, 0.3, 0.1])]
        per_q.append(stats.encode_answers(ans, "0"))
    stat = stats.maj_statistic(3)
    point = stat(per_q)
    lo, hi = stats.bootstrap_ci(per_q, stat, n_boot=200, seed=0)
    assert lo <= point <= hi


def test_summarize_scenario_pass_and_maj():
    rows = []
    for q in range(5):
        for s in range(6):
            ok = (q + s) % 3 == 0
            rows.append({"question_id": f"q{q}", "sample_idx": s, "token_budget": 100,
                         "correct": ok, "extracted_answer": "42" if ok else ("7" if s % 2 else None),
                         "reference_answer": "42"})
    df = pd.DataFrame(rows)
    summary, per_q = stats.summarize_scenario(df, "pass@1", n_boot=200, seed=0)
    assert summary["accuracy"] == pytest.approx(df.groupby("question_id")["correct"].mean().mean())
    assert summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"]
    assert list(per_q.columns) == ["question_id", "n_samples", "n_correct", "accuracy"]
    summary3, per_q3 = stats.summarize_scenario(df, "maj@G", g=3, n_boot=100, seed=0)
    ans = [[None if pd.isna(a) else a for a in g["extracted_answer"]]
           for _, g in df.groupby("question_id")]
    assert summary3["accuracy"] == pytest.approx(stats.majority_vote_at_g(ans, ["42"] * 5, 3))


def test_shared_draws_match_the_scenario_at_a_time_estimators():
    """summarize_cell (draws shared by a dataset's scenarios) gives summarize_scenario's
    accuracy and per-question values exactly, and its interval up to bootstrap noise."""
    rng = np.random.default_rng(3)
    n_q, n_s, n_boot = 20, 8, 2000
    p = rng.uniform(0.1, 0.9, n_q)
    correct = rng.random((n_q, n_s)) < p[:, None]
    wrong = rng.choice(np.array(["7", "8", "9", None], dtype=object), size=(n_q, n_s), p=[0.4, 0.3, 0.2, 0.1])
    answers = np.where(correct, "42", wrong)
    df = pd.DataFrame({"question_id": np.repeat([f"q{i:02d}" for i in range(n_q)], n_s),
                       "sample_idx": np.tile(np.arange(n_s), n_q), "token_budget": 100,
                       "correct": correct.ravel(), "extracted_answer": answers.ravel()})
    cell = stats.summarize_cell(correct, answers, [1, 3, 5], stats.Resampling(n_q, n_s, n_boot, seed=0))
    for g in (1, 3, 5):
        summary, per_q = stats.summarize_scenario(df, "pass@1" if g == 1 else "maj@G", g=g, n_boot=n_boot, seed=1)
        assert cell[g]["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-12)
        assert np.allclose(cell[g]["per_question"], per_q["accuracy"])
        width = summary["ci_high"] - summary["ci_low"]
        assert cell[g]["ci_low"] == pytest.approx(summary["ci_low"], abs=0.15 * width)
        assert cell[g]["ci_high"] == pytest.approx(summary["ci_high"], abs=0.15 * width)
