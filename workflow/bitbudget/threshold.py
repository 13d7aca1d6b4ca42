"""The effective size at which the best use of extra memory changes.

Method (the same for every kind of threshold; the text below is shown in the report):
pairwise comparisons at equal memory give, at each weight size, the accuracy advantage of
one option over the other; the switch is the cut between two adjacent sizes that best
separates the sizes where the advantage is negative from those where it is positive, and
a question-level bootstrap gives its interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from .memory import format_memory

__all__ = ["KINDS", "METHOD_TEXT", "build_comparisons", "fit_threshold", "fit_thresholds"]

#: kind -> the option whose advantage is measured ("win"), the other option, the paper's value
KINDS = {
    "weights_vs_tokens": {
        "title": "Weights vs. generation length",
        "win": "tokens",
        "lose": "weights",
        "paper": "tokens win above ~4.2 GB (8-bit 4B)",
        "paper_gb": 4.19,
    },
    "samples_vs_tokens": {
        "title": "Parallel samples vs. generation length",
        "win": "samples",
        "lose": "single longer generation",
        "paper": "majority voting pays above ~4.2 GB (8-bit 4B)",
        "paper_gb": 4.19,
    },
    "eviction_vs_quantization": {
        "title": "KV eviction vs. KV quantization",
        "win": "eviction",
        "lose": "quantization",
        "paper": "eviction beats quantization below ~8.9 GB (8-bit 8B)",
        "paper_gb": 8.94,
    },
}

METHOD_TEXT = {
    "weights_vs_tokens": (
        "For every model configuration (model, weight format) and every step up its "
        "token-budget ladder (G = 1, full KV cache), two uses of the memory that the longer "
        "generation needs are compared: (a) the longer generation, and (b) moving to the "
        "next larger weight memory (another model or more bits) at the largest token "
        "budget that fits in the same total memory. The evidence at a weight size is the sum "
        "over its comparisons of accuracy(a) - accuracy(b). The switch is placed between the "
        "two adjacent observed sizes that maximise (evidence above the cut) - (evidence below "
        "it): the change-point of the sign of the advantage. The threshold is the geometric "
        "mean of those two sizes; the grid cannot place it more finely. The interval is a "
        "percentile bootstrap of the two sizes: questions are resampled with replacement "
        "(one draw shared by all scenarios of a dataset), accuracies recomputed from the "
        "per-question table and the switch found again. When no cut beats 'one option is "
        "better everywhere', there is no crossing."
    ),
    "samples_vs_tokens": (
        "Each majority-vote scenario (G > 1, full KV cache) is compared with the "
        "single-sample scenario (G = 1) of the same model configuration with the longest "
        "token budget that fits in the same total memory; samples win when maj@G is "
        "more accurate. Switch point and question bootstrap as for the weights/tokens "
        "threshold."
    ),
    "eviction_vs_quantization": (
        "Each KV-eviction scenario (StreamingLLM, R-KV) is compared with the quantized-KV "
        "scenario of the same configuration and G that uses the most memory up to 5% above "
        "its own, and each quantized-KV scenario likewise with an eviction scenario; the "
        "advantage is eviction's accuracy minus quantization's. Switch point and question bootstrap as above."
    ),
}

_MEM_TOL = 0.05
_SCORE_TIE = 1e-12
_SYNTHETIC_LOGIT_SPAN = 2.5
MIN_POINTS = 6


@dataclass
class _Comparisons:
    a: np.ndarray  # scenario row index of the "win" option
    b: list[np.ndarray]  # candidate row indices of the other option
    a_is_win: np.ndarray  # True when option a is the "win" side
    x: np.ndarray  # weight GB of the configuration


def _is_full(df: pd.DataFrame) -> pd.Series:
    return df["kv_method"].astype(str).eq("full")


def _closest_below(idx, tot: np.ndarray) -> np.ndarray:
    """The candidate(s) using the most memory among ``idx`` (one alternative per
    comparison: taking the best of many noisy candidates would bias labels to its side)."""
    idx = np.asarray(idx, dtype=int)
    if not idx.size:
        return idx
    return idx[tot[idx] >= tot[idx].max() * (1 - 1e-9)]


def build_comparisons(scenarios: pd.DataFrame, kind: str) -> _Comparisons:
    """The equal-memory comparisons that label one kind of threshold (see METHOD_TEXT)."""
    if kind not in KINDS:
        raise ValueError(f"unknown threshold kind {kind!r}; known: {sorted(KINDS)}")
    df = scenarios.reset_index(drop=True)
    a_list, b_list, side, xs = [], [], [], []
    tot = df["total_gib"].to_numpy(dtype=float)
    wgb = df["weight_gib"].to_numpy(dtype=float)
    if df.empty:
        return _Comparisons(np.array([], int), [], np.array([], bool), np.array([]))
    cfg = df["dataset"].astype(str) + "|" + df["model"].astype(str) + "|" + df["weights"].astype(str)
    full = _is_full(df)
    G = df["G"].to_numpy(dtype=int)
    if kind == "weights_vs_tokens":
        base = df[full & (df["G"] == 1)]
        for ds, dgrp in base.groupby("dataset", sort=True):
            for _, cgrp in dgrp.groupby(cfg[dgrp.index], sort=True):
                # one scenario per token budget (the most accurate if duplicated)
                ladder = cgrp.sort_values(["token_budget", "accuracy"]).groupby("token_budget").tail(1)
                ladder = ladder.sort_values("token_budget")
                idx = ladder.index.to_numpy()
                for i in range(len(idx) - 1):
                    a = idx[i + 1]
                    w = wgb[idx[i]]
                    fits = dgrp.index[(wgb[dgrp.index] > w * (1 + 1e-6)) & (tot[dgrp.index] <= tot[a] * (1 + 1e-9))]
                    if len(fits):
                        # the next larger weight memory that fits, at its largest total
                        w_next = wgb[fits].min()
                        fits = fits[np.isclose(wgb[fits], w_next, rtol=1e-9)]
                    cand = _closest_below(fits, tot)
                    if len(cand):
                        a_list.append(a); b_list.append(np.asarray(cand)); side.append(True); xs.append(w)
    elif kind == "samples_vs_tokens":
        for _, cgrp in df[full].groupby(cfg[full], sort=True):
            single = cgrp[cgrp["G"] == 1]
            for a in cgrp.index[cgrp["G"] > 1]:
                cand = _closest_below(single.index[tot[single.index] <= tot[a] * (1 + 1e-9)], tot)
                if len(cand):
                    a_list.append(a); b_list.append(np.asarray(cand)); side.append(True); xs.append(wgb[a])
    else:
        method = df["kv_method"].astype(str)
        evict = method.isin(["streaming_llm", "r_kv"])
        quant = method.eq("quantized")
        key = cfg + "|" + df["G"].astype(str)
        for _, grp in df[evict | quant].groupby(key[evict | quant], sort=True):
            e_idx = grp.index[evict[grp.index]]
            q_idx = grp.index[quant[grp.index]]
            if not len(e_idx) or not len(q_idx):
                continue
            for a in e_idx:
                cand = _closest_below(q_idx[tot[q_idx] <= tot[a] * (1 + _MEM_TOL)], tot)
                if len(cand):
                    a_list.append(a); b_list.append(np.asarray(cand)); side.append(True); xs.append(wgb[a])
            for a in q_idx:
                cand = _closest_below(e_idx[tot[e_idx] <= tot[a] * (1 + _MEM_TOL)], tot)
                if len(cand):
                    a_list.append(a); b_list.append(np.asarray(cand)); side.append(False); xs.append(wgb[a])
    return _Comparisons(np.array(a_list, dtype=int), b_list, np.array(side, dtype=bool), np.array(xs, dtype=float))


def _advantages(comp: _Comparisons, acc: np.ndarray) -> np.ndarray:
    """acc: (n_scenarios, B).  Returns (n_comparisons, B): accuracy of the "win" option
    minus that of the other option (0 for an exact tie)."""
    adv = np.zeros((len(comp.a), acc.shape[1]))
    for i, (a, cand) in enumerate(zip(comp.a, comp.b)):
        gap = acc[a] - acc[cand].max(axis=0)
        adv[i] = gap if comp.a_is_win[i] else -gap
    return adv


def _switch_scores(evidence_by_size: np.ndarray) -> np.ndarray:
    """Score of a switch between size k and k+1 with the "win" option better above it:
    its advantage summed above the cut minus summed below.  evidence_by_size is
    (n_sizes, B); returns (n_sizes - 1, B)."""
    below = np.cumsum(evidence_by_size, axis=0)[:-1]
    return evidence_by_size.sum(axis=0) - 2 * below


def _finds_switch(oriented_scores: np.ndarray, evidence_by_size: np.ndarray) -> np.ndarray:
    """Per column: the best cut beats "one option is better at every size" (the evidence
    summed over all sizes)."""
    return oriented_scores.max(axis=0) > np.abs(evidence_by_size.sum(axis=0)) + _SCORE_TIE


def _best_switch(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last cut of the best-scoring span per column: equal scores mean the
    data cannot tell those cuts apart, so the switch lies anywhere across them."""
    tied = scores >= scores.max(axis=0) - _SCORE_TIE
    first = tied.argmax(axis=0)
    last = scores.shape[0] - 1 - tied[::-1].argmax(axis=0)
    return first, last


def _accuracy_replicates(scen: pd.DataFrame, questions: pd.DataFrame | None, n_boot: int, seed: int):
    """(n_scenarios, n_boot) scenario accuracies under a question-level bootstrap shared
    by all scenarios of a dataset.  Scenarios without per-question rows keep their point
    accuracy."""
    point = scen["accuracy"].to_numpy(dtype=float)
    out = np.repeat(point[:, None], n_boot, axis=1)
    if questions is None or questions.empty or n_boot == 0:
        return out
    rng = np.random.default_rng(seed)
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
        nq = M.shape[1]
        counts = rng.multinomial(nq, np.full(nq, 1.0 / nq), size=n_boot).astype(float)  # B x Q
        num = M0 @ counts.T
        den = present @ counts.T
        with np.errstate(invalid="ignore", divide="ignore"):
            rep = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        rows = pos[mat.index.to_numpy()].to_numpy()
        fallback = out[rows]
        out[rows] = np.where(np.isnan(rep), fallback, rep)
    return out


def fit_threshold(
    scenarios_df: pd.DataFrame,
    questions_df: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    kind: str = "weights_vs_tokens",
    level: float = 0.95,
    dataset: str | None = None,
) -> dict:
    """Estimate one threshold (weight GB) with a bootstrap interval.

    Returns a dict: kind, title, estimate, bracket (the two observed sizes around the
    switch), ci_low, ci_high (GB, observed sizes; None when not estimable), status ("ok" |
    "no crossing" | "not enough data"), direction ("win above" or "win below": the side
    of the threshold where the ``win`` option is better), win, lose, n_points
    (comparisons without ties), n_win, share_win, x_range (min, max weight GB of the
    points), n_boot, n_boot_ok (replicates that also find a switch), method (text),
    points (list of dicts), message.
    """
    meta = KINDS[kind]
    scen = scenarios_df
    if dataset is not None:
        scen = scen[scen["dataset"].astype(str) == str(dataset)]
    scen = scen.reset_index(drop=True)
    comp = build_comparisons(scen, kind)
    result = {
        "kind": kind, "title": meta["title"], "win": meta["win"], "lose": meta["lose"],
        "paper": meta["paper"], "paper_gb": meta["paper_gb"], "dataset": dataset or "all",
        "estimate": None, "bracket": None, "ci_low": None, "ci_high": None, "direction": None,
        "status": "not enough data", "n_points": 0, "n_win": 0, "share_win": None,
        "x_range": None, "n_boot": int(n_boot), "n_boot_ok": 0, "level": level,
        "method": METHOD_TEXT[kind], "points": [], "message": "",
    }
    if len(comp.a) == 0:
        result["message"] = "no equal-memory comparisons of this kind in the data"
        return result
    advantage = _advantages(comp, scen["accuracy"].to_numpy(dtype=float)[:, None])[:, 0]
    informative = advantage != 0
    result.update(_describe_points(scen, comp, advantage))
    sizes, size_index = np.unique(comp.x, return_inverse=True)
    distinct = len(np.unique(comp.x[informative]))
    if informative.sum() < MIN_POINTS or distinct < 2:
        result["message"] = (
            f"{int(informative.sum())} informative comparisons over {distinct} weight size(s); "
            f"need >= {MIN_POINTS} over >= 2 sizes"
        )
        return result

    def evidence(adv: np.ndarray) -> np.ndarray:
        """(n_comparisons, B) advantages summed per weight size: (n_sizes, B)."""
        by_size = np.zeros((len(sizes), adv.shape[1]))
        np.add.at(by_size, size_index, adv)
        return by_size

    point_evidence = evidence(advantage[:, None])
    scores = _switch_scores(point_evidence)[:, 0]
    sign = 1 if scores.max() >= (-scores).max() else -1
    if not _finds_switch(sign * scores[:, None], point_evidence)[0]:
        who = meta["win"] if point_evidence.sum() > 0 else meta["lose"]
        result["status"] = "no crossing"
        result["message"] = (
            f"the better use of memory is {who}, on balance, at every size between "
            f"{format_memory(result['x_range'][0])} and {format_memory(result['x_range'][1])} of weights"
        )
        return result
    first, last = _best_switch(sign * scores[:, None])
    lower, upper = sizes[first[0]], sizes[last[0] + 1]
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
        boot_evidence = evidence(_advantages(comp, _accuracy_replicates(scen, questions_df, n_boot, seed)))
        result.update(_bootstrap_interval(sizes, sign * _switch_scores(boot_evidence), boot_evidence, level))
    return result


def _describe_points(scen: pd.DataFrame, comp: _Comparisons, advantage: np.ndarray) -> dict:
    """The comparisons as report points, and their counts."""
    informative = advantage != 0
    n_points, n_win = int(informative.sum()), int((advantage > 0).sum())
    return {
        "points": [
            {"scenario_id": str(scen.loc[a, "scenario_id"]), "weight_gib": float(x),
             "advantage": float(adv), "win": bool(adv > 0), "tie": not bool(adv)}
            for a, x, adv in zip(comp.a, comp.x, advantage)
        ],
        "n_points": n_points,
        "n_win": n_win,
        "share_win": n_win / n_points if n_points else None,
        "x_range": (float(comp.x[informative].min()), float(comp.x[informative].max())) if n_points else None,
    }


def _bootstrap_interval(sizes: np.ndarray, scores: np.ndarray, evidence_by_size: np.ndarray, level: float) -> dict:
    """Percentile interval of the switch's lower and upper sizes over replicates
    (scores: (n_cuts, B) oriented to the point estimate's direction)."""
    first, last = _best_switch(scores)
    alpha = (1 - level) / 2
    return {
        "ci_low": float(np.quantile(sizes[first], alpha, method="lower")),
        "ci_high": float(np.quantile(sizes[last + 1], 1 - alpha, method="higher")),
        "n_boot_ok": int(_finds_switch(scores, evidence_by_size).sum()),
    }


def fit_thresholds(
    scenarios_df: pd.DataFrame,
    questions_df: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict]:
    """All kinds of :data:`KINDS`, pooled over datasets: {kind: fit_threshold(...)}; with
    more than one dataset each also holds ``by_dataset``, the same fit on each dataset
    alone (without its comparison points)."""
    datasets = sorted(scenarios_df["dataset"].astype(str).unique()) if len(scenarios_df) else []
    fits = {}
    for kind in KINDS:
        fits[kind] = fit_threshold(scenarios_df, questions_df, n_boot=n_boot, seed=seed, kind=kind, level=level)
        if len(datasets) > 1:
            fits[kind]["by_dataset"] = [
                {k: v for k, v in fit_threshold(scenarios_df, questions_df, n_boot=n_boot, seed=seed,
                                                kind=kind, level=level, dataset=ds).items()
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
                        z += (1.2 * s - 0.4) * np.log(G)
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
