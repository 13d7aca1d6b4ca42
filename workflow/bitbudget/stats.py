"""Accuracy estimators and confidence intervals.

pass@1
    Mean over questions of the per-question fraction of correct samples.

maj@G (majority vote over G parallel samples)
    Estimated from a pool of n >= G samples already drawn per question, exactly like the
    combinatorial pass@k estimator: the expected maj@G accuracy over all C(n, G) subsets
    of size G of the pool, each subset equally likely.  In a subset, the answer value
    with the most votes wins.  Rules:

    * answers are compared as exact strings (the grader canonicalises them first);
    * ``None`` (no extractable answer) never wins: it takes a slot in the subset but
      casts no vote; a subset of only ``None`` answers scores 0;
    * ties are broken uniformly at random, so a subset where the reference answer ties
      with t other values for the most votes scores 1 / (t + 1).

    The expectation is computed exactly by counting: for each number k of correct votes
    in the subset, a dynamic programme over the other answer groups counts the subsets in
    which every other value has at most k votes, tracking how many reach exactly k.  With
    g = 1 it reduces to pass@1.

Bootstrap
    ``bootstrap_ci`` resamples questions with replacement, then samples within each
    drawn question with replacement (two-level bootstrap), recomputes the statistic and
    returns the percentile interval.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from math import comb
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "pass_at_1",
    "maj_at_g_question",
    "majority_vote_at_g",
    "encode_answers",
    "maj_statistic",
    "bootstrap_ci",
    "summarize_scenario",
    "signature_counts",
    "maj_of_counts",
]


# --------------------------------------------------------------------------- pass@1


def _as_question_arrays(correct) -> list[np.ndarray]:
    if isinstance(correct, np.ndarray) and correct.ndim == 2:
        return [np.asarray(row, dtype=float) for row in correct]
    return [np.asarray(row, dtype=float).ravel() for row in correct]


def pass_at_1(correct_matrix) -> float:
    """Mean over questions of the fraction of correct samples.

    ``correct_matrix``: 2-D array (questions x samples) or a list of 1-D arrays (ragged
    sample counts allowed).  Questions without samples are ignored.
    """
    rows = [r for r in _as_question_arrays(correct_matrix) if r.size]
    if not rows:
        return float("nan")
    return float(np.mean([r.mean() for r in rows]))


# --------------------------------------------------------------------------- maj@G


@lru_cache(maxsize=200_000)
def _maj_from_counts(c_ref: int, others: tuple[int, ...], c_none: int, g: int) -> float:
    """Expected maj@g credit of the reference value.

    c_ref: pool count of the reference value; others: pool counts of the other (non-None)
    values; c_none: pool count of None answers; g: subset size.
    """
    n = c_ref + sum(others) + c_none
    if g < 1 or g > n:
        raise ValueError(f"need 1 <= g <= n, got g={g}, n={n}")
    if c_ref == 0:
        return 0.0
    total = comb(n, g)
    credit_num = 0.0  # sum over subsets of credit (fractions of ties) * count
    for k in range(1, min(c_ref, g) + 1):
        rest = g - k
        # dp[(s, t)] = number of ways to pick s items from the groups seen so far with
        # every other value at most k votes and t of them at exactly k votes.
        dp: dict[tuple[int, int], int] = {(0, 0): 1}
        for c in others:
            new: dict[tuple[int, int], int] = {}
            top = min(c, k)
            for (s, t), ways in dp.items():
                for x in range(0, min(top, rest - s) + 1):
                    key = (s + x, t + (x == k))
                    new[key] = new.get(key, 0) + ways * comb(c, x)
            dp = new
        ways_ref = comb(c_ref, k)
        for (s, t), ways in dp.items():
            need_none = rest - s
            if need_none > c_none:
                continue
            credit_num += ways_ref * ways * comb(c_none, need_none) / (t + 1)
    return float(credit_num / total)


def maj_at_g_question(answers: Sequence[str | None], reference: str, g: int) -> float:
    """Exact expected maj@g accuracy of one question from a pool of ``len(answers)``
    samples (see the module docstring for ties and ``None``)."""
    counts = Counter(a for a in answers if a is not None)
    c_none = sum(1 for a in answers if a is None)
    c_ref = counts.pop(reference, 0) if reference is not None else 0
    others = tuple(sorted(counts.values(), reverse=True))
    return _maj_from_counts(c_ref, others, c_none, int(g))


def majority_vote_at_g(
    answers: Sequence[Sequence[str | None]], reference: Sequence[str], g: int
) -> float:
    """Mean over questions of :func:`maj_at_g_question`."""
    if len(answers) != len(reference):
        raise ValueError("answers and reference must have one entry per question")
    if not answers:
        return float("nan")
    return float(
        np.mean([maj_at_g_question(a, r, g) for a, r in zip(answers, reference)])
    )


def encode_answers(answers: Sequence[str | None], reference: str) -> np.ndarray:
    """Integer codes for one question's answers: 0 = the reference value, -1 = None,
    1, 2, ... = other values.  Lets :func:`bootstrap_ci` resample answers as arrays."""
    codes: dict[str, int] = {reference: 0} if reference is not None else {}
    out = np.empty(len(answers), dtype=np.int64)
    for i, a in enumerate(answers):
        if a is None:
            out[i] = -1
        else:
            out[i] = codes.setdefault(a, len(codes) + (0 if reference is not None else 1))
    return out


def _maj_codes(codes: np.ndarray, g: int) -> float:
    codes = np.asarray(codes)
    c_none = int((codes < 0).sum())
    vals, cnt = np.unique(codes[codes >= 0], return_counts=True)
    c_ref = int(cnt[vals == 0].sum())
    others = tuple(sorted((int(c) for v, c in zip(vals, cnt) if v != 0), reverse=True))
    return _maj_from_counts(c_ref, others, c_none, g)


def maj_statistic(g: int) -> Callable[[list[np.ndarray]], float]:
    """Statistic for :func:`bootstrap_ci` over per-question arrays from
    :func:`encode_answers`."""

    def stat(per_question: list[np.ndarray]) -> float:
        return float(np.mean([_maj_codes(c, g) for c in per_question]))

    stat.__name__ = f"maj@{g}"
    return stat


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    per_question_correct: list[np.ndarray],
    statistic: Callable[[list[np.ndarray]], float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Two-level percentile bootstrap interval.

    Each replicate draws questions with replacement, then, for every drawn question,
    draws its samples with replacement, and applies ``statistic`` to the list of
    resampled per-question arrays.  ``statistic=None`` (or :func:`pass_at_1`) uses a fast
    exact path for 0/1 arrays: a resampled question's mean is Binomial(n_i, p_i) / n_i.
    """
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    arrays = [np.asarray(a) for a in per_question_correct if np.asarray(a).size]
    if not arrays or n_boot < 1:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    q = len(arrays)
    alpha = (1 - level) / 2
    if statistic is None or statistic is pass_at_1:
        n_i = np.array([a.size for a in arrays])
        p_i = np.array([float(np.mean(a.astype(float))) for a in arrays])
        idx = rng.integers(0, q, size=(n_boot, q))
        reps = (rng.binomial(n_i[idx], p_i[idx]) / n_i[idx]).mean(axis=1)
    else:
        reps = np.empty(n_boot)
        for b in range(n_boot):
            idx = rng.integers(0, q, size=q)
            sample = [arrays[i][rng.integers(0, arrays[i].size, arrays[i].size)] for i in idx]
            reps[b] = statistic(sample)
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return (float(lo), float(hi))


# --------------------------------------------------------------------------- scenarios


def summarize_scenario(
    graded: "pd.DataFrame",  # noqa: F821
    metric: str = "pass@1",
    g: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    token_budget: int | None = None,
    n_samples: int | None = None,
):
    """Accuracy, bootstrap interval and per-question table for one scenario.

    ``graded`` follows the graded-samples contract (question_id, sample_idx,
    token_budget, correct, extracted_answer, reference_answer, ...).  ``token_budget``
    selects one budget when the table holds several; ``n_samples`` keeps the first
    ``n_samples`` samples (by sample_idx) of each question.  ``metric`` is "pass@1" or
    "maj@G" (with ``g``).  For maj@G, a sample counts for the reference value when it
    was graded correct (so grader equivalences carry over), else by its extracted answer.

    Questions may hold different numbers of samples (a question closed early); maj@G has no
    estimate (NaN) where some question holds fewer than G, as a pool of fewer than G has none.

    Returns ``(summary: dict, per_question: DataFrame)``; summary has accuracy, ci_low,
    ci_high, n_questions, n_samples (smallest pool size).
    """
    import pandas as pd

    df = graded
    if token_budget is not None:
        df = df[df["token_budget"] == token_budget]
    df = df.sort_values(["question_id", "sample_idx"])
    if n_samples is not None:
        df = df.groupby("question_id", sort=False).head(n_samples)
    per_q_arrays: list[np.ndarray] = []
    rows = []
    is_maj = metric.startswith("maj")
    for qid, grp in df.groupby("question_id", sort=True):
        correct = grp["correct"].to_numpy(dtype=bool)
        if is_maj:
            ref = "\x00reference"
            answers = [
                ref if c else (None if pd.isna(a) else str(a))
                for c, a in zip(correct, grp["extracted_answer"].tolist())
            ]
            codes = encode_answers(answers, ref)
            per_q_arrays.append(codes)
            acc = _maj_codes(codes, g) if codes.size >= g else float("nan")
        else:
            per_q_arrays.append(correct.astype(float))
            acc = float(correct.mean())
        rows.append(
            {"question_id": str(qid), "n_samples": int(len(grp)),
             "n_correct": int(correct.sum()), "accuracy": acc}
        )
    per_question = pd.DataFrame(rows, columns=["question_id", "n_samples", "n_correct", "accuracy"])
    if per_question.empty:
        summary = {"accuracy": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                   "n_questions": 0, "n_samples": 0}
        return summary, per_question
    if per_question["accuracy"].isna().any():  # a question holds fewer than G samples: no estimate
        accuracy, lo, hi = float("nan"), float("nan"), float("nan")
    else:
        accuracy = float(per_question["accuracy"].mean())
        stat = maj_statistic(g) if is_maj else None
        lo, hi = bootstrap_ci(per_q_arrays, stat, n_boot=n_boot, seed=seed, level=level)
    summary = {
        "accuracy": accuracy,
        "ci_low": lo,
        "ci_high": hi,
        "n_questions": int(len(per_question)),
        "n_samples": int(per_question["n_samples"].min()),
    }
    return summary, per_question


# --------------------------------------------------------------------------- many scenarios at once
#
# The aggregate stage summarizes every scenario of a study. The scenarios of one grades table
# at one token budget (a "cell") differ only in G, and every cell of a dataset has the same
# questions and pool size, so the two-level bootstrap draws are made once per dataset
# (:class:`Resampling`) and shared: replicate b draws the questions ``question_idx[b]`` and,
# for its j-th drawn question, takes each pool sample ``weights[b, j, s]`` times (n draws with
# replacement), exactly as :func:`bootstrap_ci` does one scenario at a time. A replicate's
# pool is reduced to its answer counts (reference, each other value, None); maj@G of a pool
# depends on those counts only, so it is computed once per distinct count signature.


class Resampling:
    """Two-level bootstrap draws shared by every scenario of a dataset (see above)."""

    def __init__(self, n_questions: int, n_samples: int, n_boot: int, seed: int):
        rng = np.random.default_rng(seed)
        self.n_questions, self.n_samples, self.n_boot = n_questions, n_samples, n_boot
        self.question_idx = rng.integers(0, n_questions, size=(n_boot, n_questions))
        picks = rng.integers(0, n_samples, size=(n_boot * n_questions, n_samples))
        rows = np.arange(n_boot * n_questions)[:, None] * n_samples
        weights = np.bincount((rows + picks).ravel(), minlength=n_boot * n_questions * n_samples)
        flat_q = self.question_idx.ravel()
        self.order = np.argsort(flat_q, kind="stable")  # draws grouped by question
        self.bounds = np.concatenate([[0], np.cumsum(np.bincount(flat_q, minlength=n_questions))])
        self.weights = weights.reshape(-1, n_samples)[self.order].astype(np.float32)

    def counts(self, onehot: np.ndarray) -> np.ndarray:
        """Resampled counts ``[n_boot, n_questions, K]`` of ``onehot`` ``[Q, n, K]`` (0/1)."""
        out = np.empty((self.weights.shape[0], onehot.shape[-1]), dtype=np.float32)
        for q in range(self.n_questions):
            lo, hi = self.bounds[q], self.bounds[q + 1]
            if hi > lo:
                np.matmul(self.weights[lo:hi], onehot[q], out=out[lo:hi])
        counts = np.empty_like(out)
        counts[self.order] = out
        return np.rint(counts).astype(np.int16).reshape(self.n_boot, self.n_questions, -1)


def answer_codes(correct: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Codes ``[Q, n]``: 0 = counts for the reference (graded correct), -1 = no answer,
    1, 2, ... = the other values of that question (as :func:`summarize_scenario` votes)."""
    codes = np.empty(correct.shape, dtype=np.int64)
    for q in range(correct.shape[0]):
        values: dict = {}
        for s, (ok, a) in enumerate(zip(correct[q], answers[q])):
            codes[q, s] = 0 if ok else (-1 if a is None else values.setdefault(a, len(values) + 1))
    return codes


def signature_columns(codes: np.ndarray) -> np.ndarray:
    """The pool column of each answer code: 0 the reference, 1 no answer, 2, 3, ... the others."""
    return np.where(codes < 0, 1, np.where(codes == 0, 0, codes + 1))


def signature_counts(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """One-hot ``[Q, n, K]`` of codes with columns (reference, None, others...)."""
    k_other = int(codes.max(initial=0))
    return np.eye(k_other + 2, dtype=np.float32)[signature_columns(codes)], k_other


_MAJ_BY_SIGNATURE: dict[tuple[int, int, int, int], float] = {}  # (g, bits, K, packed) -> maj@g


def maj_of_counts(counts: np.ndarray, gs: Sequence[int]) -> dict[int, np.ndarray]:
    """maj@g of every pool given as counts ``[..., K]`` (reference, None, others...); NaN for a
    pool of fewer than g samples (it has no maj@g).

    A pool's signature (reference, None, other counts in decreasing order) is packed into one
    integer, so distinct pools are found with a 1-D ``np.unique``; maj@g is computed once per
    distinct signature and g, and remembered across cells."""
    flat = counts.reshape(-1, counts.shape[-1]).astype(np.int64)
    sig = np.concatenate([flat[:, :2], -np.sort(-flat[:, 2:], axis=1)], axis=1)
    bits = max(int(sig.max(initial=0)).bit_length(), 1)
    k = sig.shape[1]
    if bits * k <= 62:
        packed = sig @ (1 << (bits * np.arange(k, dtype=np.int64)))
        uniq_keys, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
        uniq = sig[first]
    else:  # many distinct answers: signatures as rows
        uniq, inverse = np.unique(sig, axis=0, return_inverse=True)
        uniq_keys = np.arange(len(uniq)) - len(uniq)  # not remembered across cells
    out = {}
    for g in gs:
        values = np.empty(len(uniq))
        for u, (key, row) in enumerate(zip(uniq_keys.tolist(), uniq)):
            memo = (int(g), bits, k, key)
            value = _MAJ_BY_SIGNATURE.get(memo) if key >= 0 else None
            if value is None and row.sum() < g:
                value = float("nan")
            elif value is None:
                value = _maj_from_counts(int(row[0]), tuple(int(c) for c in row[2:] if c), int(row[1]), int(g))
                if key >= 0:
                    _MAJ_BY_SIGNATURE[memo] = value
            values[u] = value
        out[g] = values[inverse.ravel()].reshape(counts.shape[:-1])
    return out


def summarize_cell(correct: np.ndarray, answers: np.ndarray, gs: Sequence[int],
                   resampling: Resampling | None, level: float = 0.95) -> dict[int, dict]:
    """Accuracy, interval and per-question accuracy of the scenarios of one cell.

    ``correct`` ``[Q, n]`` bool and ``answers`` ``[Q, n]`` (extracted answer or None), the
    questions in the order the ``resampling`` draws them; ``gs`` the G of each scenario
    (1 = pass@1). Returns ``{g: {"accuracy", "ci_low", "ci_high", "per_question"}}``; the
    same estimators as :func:`summarize_scenario`, the bootstrap draws shared across cells.
    """
    alpha = (1 - level) / 2
    codes = answer_codes(correct, answers)
    onehot, _ = signature_counts(codes)
    pool = onehot.sum(axis=1)
    majs = [g for g in gs if g > 1]
    per_question = {1: correct.mean(axis=1)} | maj_of_counts(pool, majs)
    replicates: dict[int, np.ndarray] = {}
    if resampling is not None:
        counts = resampling.counts(onehot)
        replicates[1] = counts[..., 0].mean(axis=1) / correct.shape[1]
        replicates.update({g: v.mean(axis=1) for g, v in maj_of_counts(counts, majs).items()})
    out = {}
    for g in gs:
        acc = per_question[g]
        lo, hi = (np.quantile(replicates[g], [alpha, 1 - alpha]) if replicates
                  else (float("nan"), float("nan")))
        out[g] = {"accuracy": float(acc.mean()), "ci_low": float(lo), "ci_high": float(hi),
                  "per_question": acc}
    return out
