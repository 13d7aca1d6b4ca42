"""The effective size at which the best use of extra memory changes.

Method (the same for every kind of threshold; the text below is shown in the report):
pairwise comparisons at equal memory give, at each weight size, the accuracy advantage of
one option over the other; the switch is the cut between two adjacent sizes that best
separates the sizes where the advantage is negative from those where it is positive, and
a question-level bootstrap gives its interval.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import expit

from .memory import format_memory
from .schema import load_schema

__all__ = ["KINDS", "METHOD_TEXT", "MIN_POINTS", "SCORE_TIE", "Comparisons", "Switches", "accuracy_replicates",
           "advantages", "analysis_default", "build_comparisons", "engines", "equal_memory",
           "evicting", "fit_threshold", "fit_thresholds", "half_accuracies", "question_halves", "size_evidence",
           "switch_decisions", "switch_scores"]

#: kind -> the option whose advantage is measured ("win") and the other option
KINDS = {
    "weights_vs_tokens": {
        "title": "Weights vs. generation length",
        "win": "tokens",
        "lose": "weights",
        "paper": "tokens win above ~4.2 GiB (8-bit 4B)",
    },
    "samples_vs_tokens": {
        "title": "Parallel samples vs. generation length",
        "win": "samples",
        "lose": "single longer generation",
        "paper": "majority voting pays above ~4.2 GiB (8-bit 4B)",
    },
    "eviction_vs_quantization": {
        "title": "KV eviction vs. KV quantization",
        "win": "eviction",
        "lose": "quantization",
        "paper": "eviction beats quantization below ~8.9 GiB (8-bit 8B)",
    },
}

METHOD_TEXT = {
    "weights_vs_tokens": (
        "Two single-sample scenarios (G = 1, full KV cache) of one dataset are compared when "
        "their total memory is equal within the memory tolerance and one spends it on a longer "
        "generation, the other on more weight memory (another model or more bits) at a shorter "
        "one. Each longer generation is paired with the next larger weight memory that has a "
        "scenario at equal memory (the closest in total memory). The evidence at a weight size "
        "is the sum over its comparisons of accuracy(longer generation) - accuracy(more weights). "
        "The switch is placed between the two adjacent observed sizes that maximise (evidence "
        "above the cut) - (evidence below it): the change-point of the sign of the advantage. "
        "The threshold is the geometric mean of those two sizes; the grid cannot place it more "
        "finely. The interval is a percentile bootstrap of the two sizes: questions are "
        "resampled with replacement (one draw shared by all scenarios of a dataset), "
        "accuracies recomputed from the per-question table and the switch found again. When no "
        "cut beats 'one option is better everywhere', there is no crossing."
    ),
    "samples_vs_tokens": (
        "Each majority-vote scenario (G > 1, full KV cache) is compared with the best "
        "single-sample scenario (G = 1, any model, weights and token budget of the dataset) "
        "using no more memory than it (within the memory tolerance): the single-sample "
        "frontier at its memory. A comparison is made only where some single-sample scenario "
        "lies within the tolerance of its memory. Samples win when maj@G is more accurate. "
        "The best single sample is cross-fitted, so that the maximum of many noisy estimates "
        "does not inflate it: the questions are split in two halves (alternate question ids), "
        "the single-sample scenario best on one half is scored on the other, and the advantage "
        "is the mean of the two half-advantages (without per-question data: the plain maximum). "
        "A comparison with a side not yet estimated (adaptive sampling) is left out. "
        "Switch point and question bootstrap as for the weights/tokens threshold."
    ),
    "eviction_vs_quantization": (
        "Each KV-eviction scenario (StreamingLLM, R-KV) whose token budget exceeds its KV "
        "budget (a cell within its KV budget never evicts and is not eviction) is paired with "
        "the quantized-KV scenario of the same model, weights, G and engine closest to it in "
        "total memory, when the two are equal within the memory tolerance, and each "
        "quantized-KV scenario likewise with an eviction scenario; each pair counts once. The "
        "advantage is eviction's accuracy minus quantization's. Switch point and question "
        "bootstrap as above."
    ),
}

#: switch scores closer than this are equal (the data cannot tell those cuts apart)
SCORE_TIE = 1e-12
_SAME_SIZE = 1e-6  # relative difference below which two weight memories are one size
_SYNTHETIC_LOGIT_SPAN = 2.5
_SYNTHETIC_SAMPLES_GAIN = 2.0  # above the threshold, maj@G beats the single-sample frontier at equal memory
MIN_POINTS = 6


@lru_cache(maxsize=None)
def _analysis_schema() -> dict:
    return load_schema()["properties"]["analysis"]["properties"]


def analysis_default(name: str):
    """The schema's default of ``analysis.<name>`` (defined once, in the config schema)."""
    return copy.deepcopy(_analysis_schema()[name]["default"])


@dataclass
class Comparisons:
    """The equal-memory comparisons of one kind (:func:`build_comparisons`); they depend on
    memory and configuration only, so one set serves every column of accuracies."""

    a: np.ndarray  # scenario row index of option a
    b: list[np.ndarray]  # candidate row indices of the other option (the best one counts)
    a_is_win: np.ndarray  # True when option a is the "win" side
    x: np.ndarray  # weight GiB of the configuration

    def subset(self, keep: np.ndarray) -> "Comparisons":
        """The comparisons ``keep`` (a bool mask) selects, in order."""
        return Comparisons(self.a[keep], [self.b[i] for i in np.flatnonzero(keep)], self.a_is_win[keep],
                           self.x[keep])

    def in_group(self, group_of_rows: np.ndarray, value) -> np.ndarray:
        """[comparisons] bool: option a's scenario row is in ``value``'s group (e.g. a dataset)."""
        return group_of_rows[self.a] == value if len(self.a) else np.zeros(0, dtype=bool)


def _is_full(df: pd.DataFrame) -> pd.Series:
    return df["kv_method"].astype(str).eq("full")


def equal_memory(tot_a, tot_b, tolerance: float):
    """True where two total memories differ by at most ``tolerance`` of the larger one."""
    tot_a, tot_b = np.asarray(tot_a, dtype=float), np.asarray(tot_b, dtype=float)
    return np.abs(tot_a - tot_b) <= tolerance * np.maximum(tot_a, tot_b) * (1 + 1e-12)


def _one_per_cell(df: pd.DataFrame, mask: pd.Series) -> pd.Index:
    """Row labels of ``mask``, one per (dataset, model, weights, KV, T, G): a cell run by
    two grids (e.g. under two engines) counts once, the one with most samples."""
    sub = df[mask]
    if sub.empty:
        return sub.index
    order = sub.sort_values(["n_samples", "scenario_id"] if "n_samples" in sub else ["scenario_id"],
                            ascending=[False, True] if "n_samples" in sub else [True], kind="mergesort")
    keys = ["dataset", "model", "weights", "kv", "token_budget", "G"]
    return order.drop_duplicates([k for k in keys if k in order]).index.sort_values()


def engines(scenarios: pd.DataFrame) -> list[str]:
    """The engines that made the scenarios' data (``simulated`` for a rehearsal), sorted."""
    return sorted(scenarios["engine"].astype(str).unique()) if "engine" in scenarios else []


def evicting(df: pd.DataFrame) -> pd.Series:
    """KV-eviction scenarios whose token budget exceeds their KV budget: a cell with T at or
    below the KV budget never evicts (it is a full-KV run) and does not count as eviction."""
    method = df["kv_method"].astype(str).isin(["streaming_llm", "r_kv"])
    kv_budget = pd.to_numeric(df["kv_budget"], errors="coerce") if "kv_budget" in df else pd.Series(np.nan, df.index)
    return method & ~(df["token_budget"].astype(float) <= kv_budget)


def _closest_pairs(e_idx: np.ndarray, q_idx: np.ndarray, tot: np.ndarray, tol: float) -> list[tuple[int, int]]:
    """Each eviction scenario with the quantized one closest in memory, and each quantized one
    with the closest eviction scenario, when equal within ``tol``: every unordered pair once."""
    pairs = set()
    for own, other, flip in ((e_idx, q_idx, False), (q_idx, e_idx, True)):
        if not len(other):
            continue
        for a in own:
            cand = other[equal_memory(tot[a], tot[other], tol)]
            if len(cand):
                b = int(cand[np.argmin(np.abs(tot[cand] - tot[a]))])
                pairs.add((b, int(a)) if flip else (int(a), b))
    return sorted(pairs)


def build_comparisons(scenarios: pd.DataFrame, kind: str, memory_tolerance: float | None = None) -> Comparisons:
    """The equal-memory comparisons that label one kind of threshold (see METHOD_TEXT):
    the two options' total memories differ by at most ``memory_tolerance`` (a fraction;
    default ``analysis.memory_tolerance`` of the config schema)."""
    if kind not in KINDS:
        raise ValueError(f"unknown threshold kind {kind!r}; known: {sorted(KINDS)}")
    tol = analysis_default("memory_tolerance") if memory_tolerance is None else float(memory_tolerance)
    df = scenarios.reset_index(drop=True)
    a_list, b_list, side, xs = [], [], [], []
    if df.empty:
        return Comparisons(np.array([], int), [], np.array([], bool), np.array([]))
    tot = df["total_gib"].to_numpy(dtype=float)
    wgb = df["weight_gib"].to_numpy(dtype=float)
    T = df["token_budget"].to_numpy(dtype=float)
    full = _is_full(df)
    dataset = df["dataset"].astype(str)
    if kind == "weights_vs_tokens":
        base = _one_per_cell(df, full & (df["G"] == 1))
        for _, rows in pd.Series(base, index=base).groupby(dataset[base].to_numpy(), sort=True):
            idx = rows.to_numpy()
            for a in idx:
                more_weights = (wgb[idx] > wgb[a] * (1 + _SAME_SIZE)) & (T[idx] < T[a])
                cand = idx[more_weights & equal_memory(tot[a], tot[idx], tol)]
                if not len(cand):
                    continue
                # the next larger weight memory at equal memory, its scenario closest in memory
                cand = cand[wgb[cand] <= wgb[cand].min() * (1 + _SAME_SIZE)]
                b = cand[np.argmin(np.abs(tot[cand] - tot[a]))]
                a_list.append(a); b_list.append(np.array([b])); side.append(True); xs.append(wgb[a])
    elif kind == "samples_vs_tokens":
        single = _one_per_cell(df, full & (df["G"] == 1))
        many = _one_per_cell(df, full & (df["G"] > 1))
        for ds in sorted(dataset[many].unique()):
            pool = single[dataset[single].to_numpy() == ds].to_numpy()
            for a in many[dataset[many].to_numpy() == ds]:
                if not equal_memory(tot[a], tot[pool], tol).any():
                    continue  # no single-sample scenario near its memory: no comparison
                cand = pool[(tot[pool] <= tot[a] * (1 + tol)) | equal_memory(tot[a], tot[pool], tol)]
                a_list.append(a); b_list.append(cand); side.append(True); xs.append(wgb[a])
    else:
        evict, quant = evicting(df), df["kv_method"].astype(str).eq("quantized")
        key = dataset + "|" + df["model"].astype(str) + "|" + df["weights"].astype(str) + "|" + df["G"].astype(str)
        if "engine" in df:
            key = key + "|" + df["engine"].astype(str)
        for _, grp in df[evict | quant].groupby(key[evict | quant], sort=True):
            e_idx = grp.index[evict[grp.index]].to_numpy()
            q_idx = grp.index[quant[grp.index]].to_numpy()
            for e, q in _closest_pairs(e_idx, q_idx, tot, tol):
                a_list.append(e); b_list.append(np.array([q])); side.append(True); xs.append(wgb[e])
    return Comparisons(np.array(a_list, dtype=int), b_list, np.array(side, dtype=bool), np.array(xs, dtype=float))


def advantages(comp: Comparisons, acc: np.ndarray, halves: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """acc: (n_scenarios, B).  Returns (n_comparisons, B): accuracy of the "win" option
    minus that of the other option (0 for an exact tie; NaN where a side has no estimate:
    such a comparison is left out, never counted as a loss).

    Among several candidates of the other option the best one counts. Chosen on the same
    accuracies it is scored on, that best is the maximum of noisy estimates, biased upward;
    given ``halves`` (the same columns' accuracies over each half of the questions) the choice
    is cross-fitted: the candidate best on one half is scored on the other, and the
    advantage is the mean of the two half-advantages."""
    adv = np.zeros((len(comp.a), acc.shape[1]))
    for i, (a, cand) in enumerate(zip(comp.a, comp.b)):
        if halves is None or len(cand) == 1:
            gap = acc[a] - np.fmax.reduce(acc[cand], axis=0)
        else:
            gap = (_half_gap(a, cand, halves[1], halves[0]) + _half_gap(a, cand, halves[0], halves[1])) / 2
        adv[i] = gap if comp.a_is_win[i] else -gap
    return adv


def _half_gap(a: int, cand: np.ndarray, scored: np.ndarray, chosen_on: np.ndarray) -> np.ndarray:
    """Per column: ``a``'s accuracy minus that of the candidate most accurate on ``chosen_on``,
    both on ``scored``."""
    pick = cand[np.argmax(np.where(np.isfinite(chosen_on[cand]), chosen_on[cand], -np.inf), axis=0)]
    return scored[a] - scored[pick, np.arange(scored.shape[1])]


def size_evidence(adv: np.ndarray, size_index: np.ndarray, n_sizes: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_comparisons, B) advantages summed per weight size, comparisons left out (NaN)
    adding nothing: ((n_sizes, B) evidence, (n_sizes, B) informative comparisons)."""
    informative = np.isfinite(adv) & (adv != 0)
    by_size = np.zeros((n_sizes, adv.shape[1]))
    np.add.at(by_size, size_index, np.where(informative, adv, 0.0))
    counts = np.zeros((n_sizes, adv.shape[1]))
    np.add.at(counts, size_index, informative)
    return by_size, counts


def switch_scores(evidence_by_size: np.ndarray) -> np.ndarray:
    """Score of a switch between size k and k+1 with the "win" option better above it:
    its advantage summed above the cut minus summed below.  evidence_by_size is
    (n_sizes, B); returns (n_sizes - 1, B)."""
    below = np.cumsum(evidence_by_size, axis=0)[:-1]
    return evidence_by_size.sum(axis=0) - 2 * below


def _finds_switch(oriented_scores: np.ndarray, evidence_by_size: np.ndarray) -> np.ndarray:
    """Per column: the best cut beats "one option is better at every size" (the evidence
    summed over all sizes)."""
    return oriented_scores.max(axis=0) > np.abs(evidence_by_size.sum(axis=0)) + SCORE_TIE


def _best_switch(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last cut of the best-scoring span per column: equal scores mean the
    data cannot tell those cuts apart, so the switch lies anywhere across them."""
    tied = scores >= scores.max(axis=0) - SCORE_TIE
    first = tied.argmax(axis=0)
    last = scores.shape[0] - 1 - tied[::-1].argmax(axis=0)
    return first, last


@dataclass(frozen=True)
class Switches:
    """The switch of one kind of comparison for each of B columns of accuracies
    (:func:`switch_decisions`)."""

    enough: np.ndarray  # [B] bool: >= MIN_POINTS informative comparisons over >= 2 sizes
    sign: np.ndarray  # [B] +1: the "win" option is better above the switch; -1: below
    found: np.ndarray  # [B] bool: the best cut beats "one option is better at every size"
    first: np.ndarray  # [B] first cut (between sizes k and k + 1) of the best-scoring span
    last: np.ndarray  # [B] its last cut

    def statuses(self, sizes: np.ndarray) -> list[tuple[str, tuple[float, float] | None]]:
        """Per column (status, bracket) as :func:`fit_threshold` reports them: "not enough
        data", "no crossing" or "ok" with the two observed sizes around the switch."""
        return [("not enough data", None) if not e else ("no crossing", None) if not f else
                ("ok", (float(sizes[i]), float(sizes[j + 1])))
                for e, f, i, j in zip(self.enough, self.found, self.first, self.last)]


def switch_decisions(evidence_by_size: np.ndarray, informative: np.ndarray, sign=None) -> Switches:
    """The switch for every column of per-size evidence (:func:`size_evidence`: evidence and
    informative comparisons, each (n_sizes, B)): whether there are enough comparisons, the
    direction, whether a cut beats "one option everywhere", and the best-scoring span of cuts.
    The direction is each column's own (the better-scoring orientation) unless ``sign`` (+1
    or -1, one or per column) fixes it, as the bootstrap fixes it to the point estimate's."""
    n_sizes, n_cols = evidence_by_size.shape
    if n_sizes < 2:
        none = np.zeros(n_cols, dtype=bool)
        return Switches(none, np.ones(n_cols, dtype=int), none, np.zeros(n_cols, dtype=int),
                        np.zeros(n_cols, dtype=int))
    enough = (informative.sum(axis=0) >= MIN_POINTS) & ((informative > 0).sum(axis=0) >= 2)
    scores = switch_scores(evidence_by_size)
    if sign is None:
        sign = np.where(scores.max(axis=0) >= (-scores).max(axis=0), 1, -1)
    oriented = sign * scores
    first, last = _best_switch(oriented)
    return Switches(enough, np.broadcast_to(sign, (n_cols,)), _finds_switch(oriented, evidence_by_size), first, last)


def _weighted_accuracies(scen: pd.DataFrame, questions: pd.DataFrame | None, n_cols: int, n_out: int,
                         weightings) -> list[np.ndarray]:
    """``n_out`` arrays (n_scenarios, n_cols) of scenario accuracies as weighted means of their
    per-question accuracies; ``weightings(nq)`` gives, per dataset (in sorted order), ``n_out``
    (n_cols, nq) weights over its questions in question_id order. Scenarios without
    per-question rows (or no weight on any of theirs) keep their point accuracy."""
    point = scen["accuracy"].to_numpy(dtype=float)
    outs = [np.repeat(point[:, None], n_cols, axis=1) for _ in range(n_out)]
    if questions is None or questions.empty or n_cols == 0:
        return outs
    pos = pd.Series(np.arange(len(scen)), index=scen["scenario_id"].astype(str).to_numpy())
    q = questions.copy()
    q["scenario_id"] = q["scenario_id"].astype(str)
    q = q[q["scenario_id"].isin(pos.index)]
    ds_of = dict(zip(scen["scenario_id"].astype(str), scen["dataset"].astype(str)))
    q["dataset"] = q["scenario_id"].map(ds_of)
    for ds, qd in q.groupby("dataset", sort=True):
        mat = qd.pivot_table(index="scenario_id", columns="question_id", values="accuracy", aggfunc="mean")
        M = mat.to_numpy(dtype=float)
        present = np.isfinite(M).astype(float)
        M0 = np.nan_to_num(M)
        rows = pos[mat.index.to_numpy()].to_numpy()
        for out, w in zip(outs, weightings(M.shape[1])):
            num, den = M0 @ w.T, present @ w.T
            with np.errstate(invalid="ignore", divide="ignore"):
                rep = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
            out[rows] = np.where(np.isnan(rep), out[rows], rep)
    return outs


def question_halves(nq: int) -> np.ndarray:
    """(2, nq) 0/1 masks of the two halves of a dataset's questions: alternate questions in
    question_id order."""
    second = np.arange(nq) % 2 == 1
    return np.stack([~second, second]).astype(float)


def accuracy_replicates(scen: pd.DataFrame, questions: pd.DataFrame | None, n_boot: int, seed: int,
                        halves: bool = False):
    """(n_scenarios, n_boot) scenario accuracies under a question-level bootstrap shared
    by all scenarios of a dataset.  Scenarios without per-question rows keep their point
    accuracy. With ``halves``: (that, (half 0, half 1)), the same replicates' accuracies over
    each half of the questions (:func:`question_halves`)."""
    rng = np.random.default_rng(seed)

    def weightings(nq: int) -> list[np.ndarray]:
        counts = rng.multinomial(nq, np.full(nq, 1.0 / nq), size=n_boot).astype(float)  # B x Q
        return [counts] + ([counts * m for m in question_halves(nq)] if halves else [])

    outs = _weighted_accuracies(scen, questions, n_boot, 3 if halves else 1, weightings)
    return (outs[0], tuple(outs[1:])) if halves else outs[0]


def half_accuracies(scen: pd.DataFrame, questions: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """(n_scenarios, 1) accuracies over each half of the questions (:func:`question_halves`)."""
    h0, h1 = _weighted_accuracies(scen, questions, 1, 2, lambda nq: [m[None, :] for m in question_halves(nq)])
    return h0, h1


def _cut_gib(cut) -> float | None:
    """A paper cut's GiB: a number, or an ``analysis.paper_cuts`` entry (its paper value)."""
    return cut["gib"] if isinstance(cut, dict) else cut


def fit_threshold(
    scenarios_df: pd.DataFrame,
    questions_df: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    kind: str = "weights_vs_tokens",
    level: float = 0.95,
    dataset: str | None = None,
    memory_tolerance: float | None = None,
    paper_cuts: dict | None = None,
) -> dict:
    """Estimate one threshold (weight GiB) with a bootstrap interval, from the comparisons of
    :func:`build_comparisons` at ``memory_tolerance``; ``paper_cuts`` (GiB per kind, or the
    config schema's ``analysis.paper_cuts`` entries, their default) gives the paper's value
    shown beside it.

    Returns a dict: kind, title, estimate, bracket (the two observed sizes around the
    switch), ci_low, ci_high (GB, observed sizes; None when not estimable), status ("ok" |
    "no crossing" | "not enough data"), direction ("win above" or "win below": the side
    of the threshold where the ``win`` option is better), win, lose, n_points
    (comparisons without ties), n_left_out (comparisons with a side not estimated), n_win,
    share_win, x_range (min, max weight GB of the points), engines (that made the data), n_boot, n_boot_ok (replicates that also find a switch), method (text),
    points (list of dicts), message.
    """
    meta = KINDS[kind]
    scen = scenarios_df
    if dataset is not None:
        scen = scen[scen["dataset"].astype(str) == str(dataset)]
    scen = scen.reset_index(drop=True)
    tol = analysis_default("memory_tolerance") if memory_tolerance is None else float(memory_tolerance)
    cuts = analysis_default("paper_cuts") if paper_cuts is None else paper_cuts
    comp = build_comparisons(scen, kind, tol)
    result = {
        "kind": kind, "title": meta["title"], "win": meta["win"], "lose": meta["lose"],
        "paper": meta["paper"], "paper_gib": _cut_gib(cuts.get(kind)), "memory_tolerance": tol,
        "dataset": dataset or "all", "engines": engines(scen),
        "estimate": None, "bracket": None, "ci_low": None, "ci_high": None, "direction": None,
        "status": "not enough data", "n_points": 0, "n_left_out": 0, "n_win": 0, "share_win": None,
        "x_range": None, "n_boot": int(n_boot), "n_boot_ok": 0, "level": level,
        "method": METHOD_TEXT[kind], "points": [], "message": "",
    }
    if len(comp.a) == 0:
        result["message"] = "no equal-memory comparisons of this kind in the data"
        return result
    halves = half_accuracies(scen, questions_df) if questions_df is not None else None
    advantage = advantages(comp, scen["accuracy"].to_numpy(dtype=float)[:, None], halves)[:, 0]
    informative = np.isfinite(advantage) & (advantage != 0)
    result.update(_describe_points(scen, comp, advantage))
    sizes, size_index = np.unique(comp.x, return_inverse=True)
    point_evidence, point_informative = size_evidence(advantage[:, None], size_index, len(sizes))
    point = switch_decisions(point_evidence, point_informative)
    if not point.enough[0]:
        distinct = len(np.unique(comp.x[informative]))
        result["message"] = (
            f"{int(informative.sum())} informative comparisons over {distinct} weight size(s); "
            f"need >= {MIN_POINTS} over >= 2 sizes"
        )
        return result
    sign = int(point.sign[0])
    if not point.found[0]:
        who = meta["win"] if point_evidence.sum() > 0 else meta["lose"]
        result["status"] = "no crossing"
        result["message"] = (
            f"the better use of memory is {who}, on balance, at every size between "
            f"{format_memory(result['x_range'][0])} and {format_memory(result['x_range'][1])} of weights"
        )
        return result
    lower, upper = sizes[point.first[0]], sizes[point.last[0] + 1]
    result["bracket"] = (float(lower), float(upper))
    result["estimate"] = float(np.sqrt(lower * upper))
    result["direction"] = "win above" if sign > 0 else "win below"
    result["status"] = "ok"
    result["message"] = (
        f"the better use of memory is {meta['win']} {'above' if sign > 0 else 'below'} a switch between "
        f"{format_memory(lower)} and {format_memory(upper)} of weights ({result['n_win']} of {result['n_points']} "
        f"comparisons won by {meta['win']})"
    )
    if n_boot > 0:
        boot_acc, boot_halves = accuracy_replicates(scen, questions_df, n_boot, seed, halves=True)
        boot_adv = advantages(comp, boot_acc, boot_halves if questions_df is not None else None)
        replicates = switch_decisions(*size_evidence(boot_adv, size_index, len(sizes)), sign=sign)
        result.update(_bootstrap_interval(sizes, replicates, level))
    return result


def _describe_points(scen: pd.DataFrame, comp: Comparisons, advantage: np.ndarray) -> dict:
    """The comparisons as report points, and their counts."""
    estimated = np.isfinite(advantage)
    informative = estimated & (advantage != 0)
    n_points, n_win = int(informative.sum()), int((advantage > 0).sum())
    acc = scen["accuracy"].to_numpy(dtype=float)
    tot = scen["total_gib"].to_numpy(dtype=float)
    ids = scen["scenario_id"].astype(str).to_numpy()
    datasets = scen["dataset"].astype(str).to_numpy()
    ranked = [np.where(np.isfinite(acc[cand]), acc[cand], -np.inf) for cand in comp.b]
    partners = [int(cand[np.argmax(r)]) for cand, r in zip(comp.b, ranked)]  # the alternative that counted
    return {
        "points": [
            {"scenario_id": ids[a], "partner_id": ids[b], "dataset": datasets[a], "a_is_win": bool(a_win),
             "weight_gib": float(x), "total_gib": float(tot[a]), "partner_total_gib": float(tot[b]),
             "advantage": float(adv) if ok else None, "win": bool(adv > 0), "tie": bool(ok and adv == 0),
             "estimated": bool(ok)}
            for a, b, a_win, x, adv, ok in zip(comp.a, partners, comp.a_is_win, comp.x, advantage, estimated)
        ],
        "n_points": n_points,
        "n_left_out": int((~estimated).sum()),
        "n_win": n_win,
        "share_win": n_win / n_points if n_points else None,
        "x_range": (float(comp.x[informative].min()), float(comp.x[informative].max())) if n_points else None,
    }


def _bootstrap_interval(sizes: np.ndarray, replicates: Switches, level: float) -> dict:
    """Percentile interval of the switch's lower and upper sizes over the bootstrap
    ``replicates`` (oriented to the point estimate's direction)."""
    alpha = (1 - level) / 2
    return {
        "ci_low": float(np.quantile(sizes[replicates.first], alpha, method="lower")),
        "ci_high": float(np.quantile(sizes[replicates.last + 1], 1 - alpha, method="higher")),
        "n_boot_ok": int(replicates.found.sum()),
    }


def fit_thresholds(
    scenarios_df: pd.DataFrame,
    questions_df: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    memory_tolerance: float | None = None,
    paper_cuts: dict | None = None,
) -> dict[str, dict]:
    """All kinds of :data:`KINDS`, pooled over datasets: {kind: fit_threshold(...)}; with
    more than one dataset each also holds ``by_dataset``, the same fit on each dataset
    alone (without its comparison points)."""
    datasets = sorted(scenarios_df["dataset"].astype(str).unique()) if len(scenarios_df) else []
    fits = {}
    for kind in KINDS:
        opts = {"n_boot": n_boot, "seed": seed, "kind": kind, "level": level,
                "memory_tolerance": memory_tolerance, "paper_cuts": paper_cuts}
        fits[kind] = fit_threshold(scenarios_df, questions_df, **opts)
        if len(datasets) > 1:
            fits[kind]["by_dataset"] = [
                {k: v for k, v in fit_threshold(scenarios_df, questions_df, dataset=ds, **opts).items()
                 if k != "points"}
                for ds in datasets
            ]
    return fits


# --------------------------------------------------------------------------- synthetic data


def synthetic_study(
    threshold_gb: float = 4.2,
    n_questions: int = 40,
    n_samples: int = 8,
    seed: int = 0,
    datasets: tuple[str, ...] = ("aime-like",),
    with_variants: bool = True,
    sharpness: float = 4.0,
    bits: tuple[int, ...] = (4, 8, 16),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic (scenarios, questions) pair in the aggregate contract whose
    weights/tokens threshold is ``threshold_gb`` by construction: below it, accuracy
    grows with weight memory and barely with tokens; above it, the reverse (a step when
    ``sharpness`` is large, a smooth change otherwise).  For tests
    and for previewing the report without a run."""
    rng = np.random.default_rng(seed)
    bits_list = bits
    models = {"m0.6B": (0.6e9, 28), "m1.7B": (1.7e9, 28), "m4B": (4e9, 36),
              "m8B": (8.2e9, 36), "m14B": (14.8e9, 40), "m32B": (32.8e9, 64)}
    lw0 = np.log(threshold_gb)
    smallest = min(n for n, _ in models.values()) * min(bits_list) / 8 / 2**30 * 1.05
    # below the threshold, logit grows with log weight GB steeply enough to matter but
    # never pins the smallest model at the floor (floored accuracies are all ties)
    weight_slope = float(np.clip(_SYNTHETIC_LOGIT_SPAN / max(lw0 - np.log(smallest), 1e-9), 0.6, 1.6))
    budgets = [2000, 6000, 10000, 14000, 18000, 22000, 26000, 30000]
    scen_rows, q_rows = [], []
    for ds in datasets:
        difficulty = rng.normal(0, 1.0, n_questions)
        for model, (n_params, layers) in models.items():
            for bits in bits_list:
                w = n_params * bits / 8 / 2**30 * 1.05
                kv_tok = layers * 8 * 128 * 2 * 2 / 2**30  # GiB per token, 16-bit KV
                lw = np.log(w)
                s = expit((lw - lw0) * sharpness)  # 0 below the threshold, 1 above
                base = -1.0 + weight_slope * (min(lw, lw0) - lw0)
                variants = [("full", "full", None, None, 1, T) for T in budgets]
                if with_variants:
                    for G in (4, 8):
                        variants += [("full", "full", None, None, G, T) for T in (6000, 14000)]
                    for kb in (2, 4, 8):
                        variants.append((f"hqq{kb}", "quantized", kb, None, 1, 14000))
                    for kvb in (2000, 4000):
                        variants.append((f"streaming{kvb}", "streaming_llm", None, kvb, 1, 14000))
                        variants.append((f"rkv{kvb}", "r_kv", None, kvb, 1, 14000))
                for kv, kv_method, kv_bits, kv_budget, G, T in variants:
                    lt = np.log(T / 2000)
                    z = base + 1.2 * s * lt
                    tokens_held = T if kv_budget is None else min(T, kv_budget)
                    kv_seq = kv_tok * tokens_held * ((kv_bits + 1) / 16 if kv_bits else 1)
                    if G > 1:
                        z += (_SYNTHETIC_SAMPLES_GAIN * s - 0.4) * np.log(G)
                    if kv_method == "quantized":
                        z -= {2: 1.2, 4: 0.5, 8: 0.05}[kv_bits]
                    if kv_budget is not None:
                        z -= (0.2 + 0.8 * s) * np.log(T / kv_budget) * (0.6 if kv_method == "r_kv" else 1)
                    p_q = expit(z - difficulty)
                    correct = rng.binomial(n_samples, p_q)
                    acc_q = correct / n_samples
                    sid = f"{ds}-{model}-int{bits}-{kv}-T{T}-G{G}"
                    for qi in range(n_questions):
                        q_rows.append({"scenario_id": sid, "question_id": f"{ds}-q{qi:03d}",
                                       "n_samples": n_samples, "n_correct": int(correct[qi]),
                                       "accuracy": float(acc_q[qi])})
                    acc = float(acc_q.mean())
                    half = 1.96 * np.sqrt(max(acc * (1 - acc), 1e-4) / n_questions)
                    scen_rows.append({
                        "scenario_id": sid, "dataset": ds, "dataset_kind": "integer",
                        "model": model, "n_params": int(n_params), "weights": f"int{bits}" if bits < 16 else "bf16",
                        "weight_bits": bits, "kv": kv, "kv_method": kv_method, "kv_bits": kv_bits,
                        "kv_budget": kv_budget, "token_budget": T, "G": G, "n_samples": n_samples,
                        "n_questions": n_questions, "metric": "pass@1" if G == 1 else "maj@G",
                        "accuracy": acc, "ci_low": max(0.0, acc - half), "ci_high": min(1.0, acc + half),
                        "weight_gib": w, "kv_gib_per_seq": kv_seq, "kv_gib": G * kv_seq, "total_gib": w + G * kv_seq,
                        "gen_id": f"gen-{model}-{bits}-{kv}", "grade_id": "grade-v1",
                    })
    return pd.DataFrame(scen_rows), pd.DataFrame(q_rows)
