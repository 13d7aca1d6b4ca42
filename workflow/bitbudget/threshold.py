"""The effective size at which the best use of extra memory changes.

Method (the same for every kind of threshold; the text below is shown in the report):
pairwise comparisons at equal memory are labelled by which option is more accurate, a
logistic regression of the label on log(weight GB) gives the size where p = 0.5, and a
question-level bootstrap gives its interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["KINDS", "METHOD_TEXT", "build_comparisons", "fit_threshold", "fit_thresholds"]

#: kind -> (what "win" means, option A, option B, expected sign of the slope in the paper)
KINDS = {
    "weights_vs_tokens": {
        "title": "Weights vs. generation length",
        "win": "tokens",
        "lose": "weights",
        "paper": "tokens win above ~4.2 GB (8-bit 4B)",
        "paper_gb": 4.19,
        "expected_sign": +1,
    },
    "samples_vs_tokens": {
        "title": "Parallel samples vs. generation length",
        "win": "samples",
        "lose": "single longer generation",
        "paper": "majority voting pays above ~4.2 GB (8-bit 4B)",
        "paper_gb": 4.19,
        "expected_sign": +1,
    },
    "eviction_vs_quantization": {
        "title": "KV eviction vs. KV quantization",
        "win": "eviction",
        "lose": "quantization",
        "paper": "eviction beats quantization below ~8.9 GB (8-bit 8B)",
        "paper_gb": 8.94,
        "expected_sign": -1,
    },
}

METHOD_TEXT = {
    "weights_vs_tokens": (
        "For every model configuration (model, weight format) and every step up its "
        "token-budget ladder (G = 1, full KV cache), two uses of the memory that the longer "
        "generation needs are compared: (a) the longer generation, and (b) moving to the "
        "next larger weight memory (another model or more bits) at the largest token "
        "budget that fits in the same total memory. Tokens win when (a) is strictly more accurate; exact ties are "
        "dropped. A logistic regression (lightly L2-penalised, so separable data stay "
        "finite) of 'tokens win' on log(weight GB) of the starting configuration gives the "
        "threshold where p = 0.5. The interval is a percentile bootstrap: questions are "
        "resampled with replacement (one draw shared by all scenarios of a dataset), "
        "accuracies recomputed from the per-question table, comparisons relabelled and the "
        "regression refitted."
    ),
    "samples_vs_tokens": (
        "Each majority-vote scenario (G > 1, full KV cache) is compared with the "
        "single-sample scenario (G = 1) of the same model configuration with the longest "
        "token budget that fits in the same total memory; samples win when maj@G is "
        "strictly more accurate. Logistic fit on log(weight GB) and question bootstrap as "
        "for the weights/tokens threshold."
    ),
    "eviction_vs_quantization": (
        "Each KV-eviction scenario (StreamingLLM, R-KV) is compared with the quantized-KV "
        "scenario of the same configuration and G that uses the most memory up to 5% above "
        "its own, and each quantized-KV scenario likewise with an eviction scenario; eviction wins when it is strictly more accurate. Logistic fit on "
        "log(weight GB) and question bootstrap as above."
    ),
}

_MEM_TOL = 0.05
_RIDGE = 0.1
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
    tot = df["total_gb"].to_numpy(dtype=float)
    wgb = df["weight_gb"].to_numpy(dtype=float)
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


def _labels(comp: _Comparisons, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """acc: (n_scenarios, B).  Returns (y, w) each (n_comparisons, B): y = 1 when the
    "win" option is strictly better; w = the accuracy gap (0 for exact ties), so that
    near-coin-flip comparisons carry little weight."""
    n, B = len(comp.a), acc.shape[1]
    y = np.zeros((n, B))
    w = np.ones((n, B))
    for i, (a, cand) in enumerate(zip(comp.a, comp.b)):
        acc_a = acc[a]
        acc_b = acc[cand].max(axis=0)
        better = acc_a > acc_b
        y[i] = better if comp.a_is_win[i] else ~better
        gap = np.abs(acc_a - acc_b)
        w[i] = np.where(gap > 1e-12, gap, 0.0)
    return y, w


def _logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: float = _RIDGE):
    """Weighted logistic regression y ~ b0 + b1 * x with an L2 penalty on b1 (IRLS).
    Returns (b0, b1) or None when it cannot be fitted."""
    keep = w > 0
    if keep.sum() < 2 or len(np.unique(x[keep])) < 2:
        return None
    beta = np.zeros(2)
    X = np.column_stack([np.ones_like(x), x])
    P = np.diag([0.0, ridge])
    for _ in range(100):
        eta = X @ beta
        p = 1 / (1 + np.exp(-eta))
        grad = X.T @ (w * (y - p)) - P @ beta
        H = (X * (w * p * (1 - p))[:, None]).T @ X + P + 1e-9 * np.eye(2)
        step = np.linalg.solve(H, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    if not np.all(np.isfinite(beta)):
        return None
    return float(beta[0]), float(beta[1])


def _crossing(x_std, y, w, mu, sd):
    fit = _logistic(x_std, y, w)
    if fit is None:
        return None, None
    b0, b1 = fit
    if abs(b1) < 1e-6:
        return None, b1
    return float(np.exp(np.clip(mu + sd * (-b0 / b1), -50, 50))), b1


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

    Returns a dict: kind, title, estimate, ci_low, ci_high (GB, None when not
    estimable), status ("ok" | "no crossing" | "not enough data"), direction ("win above"
    or "win below": the side of the threshold where the ``win`` option is better), win,
    lose, n_points (comparisons without ties), n_win, share_win, x_range (min, max weight
    GB of the points), n_boot, n_boot_ok, method (text), points (list of dicts), message.
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
        "estimate": None, "ci_low": None, "ci_high": None, "direction": None,
        "status": "not enough data", "n_points": 0, "n_win": 0, "share_win": None,
        "x_range": None, "n_boot": int(n_boot), "n_boot_ok": 0, "level": level,
        "method": METHOD_TEXT[kind], "points": [], "message": "",
    }
    if len(comp.a) == 0:
        result["message"] = "no equal-memory comparisons of this kind in the data"
        return result
    point_acc = scen["accuracy"].to_numpy(dtype=float)[:, None]
    y0, w0 = _labels(comp, point_acc)
    y0, w0 = y0[:, 0], w0[:, 0]
    keep = w0 > 0
    x = comp.x
    result["points"] = [
        {"scenario_id": str(scen.loc[a, "scenario_id"]), "weight_gb": float(xx),
         "win": bool(yy), "tie": not bool(ww)}
        for a, xx, yy, ww in zip(comp.a, x, y0, w0)
    ]
    result["n_points"] = int(keep.sum())
    result["n_win"] = int(y0[keep].sum())
    result["share_win"] = float(y0[keep].mean()) if keep.any() else None
    if keep.any():
        result["x_range"] = (float(x[keep].min()), float(x[keep].max()))
    lx = np.log(x)
    distinct = len(np.unique(np.round(lx[keep], 9)))
    if keep.sum() < MIN_POINTS or distinct < 2:
        result["message"] = (
            f"{int(keep.sum())} informative comparisons over {distinct} weight size(s); "
            f"need >= {MIN_POINTS} over >= 2 sizes"
        )
        return result
    if y0[keep].min() == y0[keep].max():
        who = meta["win"] if y0[keep][0] else meta["lose"]
        result["status"] = "no crossing"
        result["message"] = (
            f"{who} won all {int(keep.sum())} comparisons between "
            f"{x[keep].min():.3g} and {x[keep].max():.3g} GB of weights"
        )
        return result
    mu, sd = float(lx[keep].mean()), float(lx[keep].std()) or 1.0
    xs = (lx - mu) / sd
    est, b1 = _crossing(xs, y0, w0, mu, sd)
    if est is None:
        result["status"] = "no crossing"
        result["message"] = "the win rate does not change with weight size"
        return result
    result["estimate"] = est
    result["direction"] = "win above" if b1 > 0 else "win below"
    lo_x, hi_x = result["x_range"]
    # bootstrap
    acc_b = _accuracy_replicates(scen, questions_df, n_boot, seed)
    yb, wb = _labels(comp, acc_b)
    reps = []
    for b in range(acc_b.shape[1]):
        e, s = _crossing(xs, yb[:, b], wb[:, b], mu, sd)
        if e is not None and np.sign(s) == np.sign(b1):
            reps.append(np.log(e))
    result["n_boot_ok"] = len(reps)
    if len(reps) >= max(10, n_boot // 2):
        alpha = (1 - level) / 2
        lo, hi = np.quantile(reps, [alpha, 1 - alpha])
        result["ci_low"], result["ci_high"] = float(np.exp(lo)), float(np.exp(hi))
    if lo_x <= est <= hi_x:
        result["status"] = "ok"
        result["message"] = (
            f"{meta['win']} win {result['n_win']} of {result['n_points']} comparisons; "
            f"{'above' if b1 > 0 else 'below'} {est:.3g} GB of weights they are the better use"
        )
    else:
        result["status"] = "no crossing"
        result["message"] = (
            f"the fitted crossing ({est:.3g} GB) lies outside the observed weight sizes "
            f"({lo_x:.3g}-{hi_x:.3g} GB)"
        )
    return result


def fit_thresholds(
    scenarios_df: pd.DataFrame,
    questions_df: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict]:
    """All kinds of :data:`KINDS`, pooled over datasets: {kind: fit_threshold(...)}."""
    return {
        kind: fit_threshold(scenarios_df, questions_df, n_boot=n_boot, seed=seed, kind=kind, level=level)
        for kind in KINDS
    }


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
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    models = {"m0.6B": (0.6e9, 28), "m1.7B": (1.7e9, 28), "m4B": (4e9, 36),
              "m8B": (8.2e9, 36), "m14B": (14.8e9, 40), "m32B": (32.8e9, 64)}
    lw0 = np.log(threshold_gb)
    budgets = [2000, 6000, 10000, 14000, 18000, 22000, 26000, 30000]
    scen_rows, q_rows = [], []
    for ds in datasets:
        difficulty = rng.normal(0, 1.0, n_questions)
        for model, (n_params, layers) in models.items():
            for bits in bits_list:
                w = n_params * bits / 8 / 2**30 * 1.05
                kv_tok = layers * 8 * 128 * 2 * 2 / 2**30  # GiB per token, 16-bit KV
                lw = np.log(w)
                s = sig((lw - lw0) * sharpness)  # 0 below the threshold, 1 above
                base = -1.0 + 1.6 * (min(lw, lw0) - lw0)
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
                    p_q = sig(z - difficulty)
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
                        "weight_gb": w, "kv_gb": kv_seq, "total_gb": w + G * kv_seq,
                        "gen_id": f"gen-{model}-{bits}-{kv}", "grade_id": "grade-v1",
                    })
    return pd.DataFrame(scen_rows), pd.DataFrame(q_rows)
