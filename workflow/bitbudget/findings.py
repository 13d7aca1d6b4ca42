"""The paper's four findings, checked on a run's data as the paper states them.

Each finding is evaluated at the paper's own cut (``analysis.paper_cuts``: the weight memory
of 8-bit 4B for findings 1-3, of 8-bit 8B for finding 4, as this study charges them, with the
configuration itself on a stated side; :func:`placed_cuts`), for each dataset
separately, on the equal-memory comparisons of :mod:`bitbudget.threshold` (its ``points``),
together with the paper's named statements (``analysis.paper_checks``). The pooled row is
extra and never decides a verdict.

Verdicts: "holds" / "fails"; "not testable at this scale" when the cut lies outside the
dataset's weight range (then the same relation at the fitted switch is shown, marked
exploratory); "not enough data" when a side of the cut has fewer than
``analysis.min_comparisons`` comparisons. A finding holds when it holds on at least one
dataset and fails on none. The fitted switch never replaces the paper's cut: the fitted
bracket is reported beside it, with whether it contains the cut.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import frontier as _frontier
from . import threshold as _threshold
from .memory import format_memory

__all__ = ["evaluate_findings", "evaluate_check", "check_statuses", "rule_counts", "rule_statuses", "rule_outcomes",
           "rule_testable", "testable_rules", "analysis_settings", "placed_cuts", "place_cut", "FINDINGS", "STATUSES"]

HOLDS, FAILS, NOT_TESTABLE, NOT_ENOUGH = "holds", "fails", "not testable at this scale", "not enough data"
UNDECIDED = "undecided"
STATUSES = (HOLDS, FAILS, UNDECIDED, NOT_TESTABLE, NOT_ENOUGH)
_ANALYSIS_KEYS = ("memory_tolerance", "min_comparisons", "switch_window", "paper_cuts", "paper_names", "paper_checks",
                  "verdict_level")

#: id -> what the finding says and which comparisons test it
FINDINGS = {
    1: {"title": "Below the threshold, weights win", "kind": "weights_vs_tokens",
        "paper": "Below ~8-bit 4B, memory is best spent on weights: 1.7B-8bit at 6k tokens beats 0.6B-8bit at 18k; "
                 "4B-4bit at 10k beats 1.7B-8bit at 18k, at similar total memory.",
        "rule": "Below {cut} of weights, more weight memory beats a longer generation at equal memory in most "
                "comparisons, and from {cut} to {window} a longer generation beats it (the switch is at the cut)."},
    2: {"title": "Above the threshold, tokens win", "kind": "weights_vs_tokens",
        "paper": "AIME: 8B-8bit beats 14B-4bit; 32B-4bit is dominated. GPQA: 4-bit weights broadly memory-optimal.",
        "rule": "At or above {cut} of weights, a longer generation beats more weight memory at equal memory in "
                "most comparisons."},
    3: {"title": "Parallel scaling pays only above the threshold", "kind": "samples_vs_tokens",
        "paper": "Majority voting helps above ~8-bit 4B: 4 <= G < 8 at 16.4-28.9 GB, G >= 8 beyond.",
        "rule": "Majority vote (G > 1) beats the best single sample at no more memory in under half of the "
                "comparisons below {cut} of weights, and in most of them at or above it."},
    4: {"title": "For smaller models, KV eviction beats KV quantization", "kind": "eviction_vs_quantization",
        "paper": "Below ~8-bit 8B, eviction beats quantization at equal memory; 4-bit KV drops sharply, 2-bit is worse.",
        "rule": "Below {cut} of weights, KV eviction beats quantized KV at equal memory in most comparisons, and "
                "at or above it in at most half (the relation depends on scale). A KV-eviction cell whose token "
                "budget is within its KV budget never evicts and is not counted as eviction."},
}


def analysis_settings(analysis: dict | None) -> dict:
    """The analysis settings the findings read: ``analysis``'s own, the schema's defaults for
    what it lacks."""
    given = dict(analysis or {})
    return {k: given[k] if k in given else _threshold.analysis_default(k) for k in _ANALYSIS_KEYS}


# a weight memory within this relative distance of a cut's configuration is that configuration
_SAME_CONFIGURATION = 1e-6


def place_cut(cut: dict, scen: pd.DataFrame, models: dict) -> dict:
    """One paper cut (``analysis.paper_cuts`` entry) placed in a study: gib (the configuration's
    weight memory in the study's scenarios, else the paper's ``gib``), side, configuration
    (its label), placed_by ("study" or "paper"), and split: comparisons below it are below the
    cut, so that the configuration's own comparisons fall on its ``side``."""
    model = models.get(str(cut["model"]))
    rows = scen[(scen["model"].astype(str) == model) & (scen["weight_bits"] == cut["bits"])] if model else scen[:0]
    above = cut["side"] == "above"
    if len(rows):
        weights = rows["weight_gib"].astype(float)
        gib, placed_by = float(weights.min() if above else weights.max()), "study"
    else:
        gib, placed_by = float(cut["gib"]), "paper"
    return {"gib": gib, "side": cut["side"], "configuration": f"{cut['model']}-{cut['bits']}bit",
            "placed_by": placed_by, "split": gib * (1 - _SAME_CONFIGURATION if above else 1 + _SAME_CONFIGURATION)}


def placed_cuts(analysis: dict | None, scen: pd.DataFrame) -> dict[str, dict]:
    """Every kind's paper cut placed in the study (:func:`place_cut`)."""
    cfg = analysis_settings(analysis)
    models = cfg["paper_names"].get("models", {})
    return {kind: place_cut(cut, scen, models) for kind, cut in cfg["paper_cuts"].items()}


def _advantage_column(points: list[dict]) -> np.ndarray:
    """[m, 1] advantages of the comparison points (NaN: left out, no estimate)."""
    return np.array([np.nan if p.get("advantage") is None else p["advantage"] for p in points],
                    dtype=float).reshape(-1, 1)


def _rule(fid: int, points: list[dict], cut: float, min_n: int, window: float) -> tuple[str, dict]:
    """The comparison rule of finding ``fid`` at ``cut``: (status, numbers); finding 1 looks
    above the cut only up to ``cut * window``."""
    x = np.array([p["weight_gib"] for p in points], dtype=float)
    counts = rule_counts(fid, x, _advantage_column(points), cut, window)
    status = rule_statuses(fid, counts, min_n)[0]
    n_below, n_above, win_below, win_above, left_out = (v[0] for v in counts)
    share_below = float(win_below / n_below) if n_below else None
    share_above = float(win_above / n_above) if n_above else None
    numbers = {"cut_gib": cut, "comparisons_below": int(n_below), "comparisons_above": int(n_above),
               "left_out": int(left_out)}
    if fid == 1:
        numbers["above_up_to_gib"] = cut * window
    if fid in (1, 2):  # win option: tokens
        numbers |= {"weights_win_below": None if share_below is None else 1 - share_below,
                    "tokens_win_above": share_above}
    elif fid == 3:
        numbers |= {"samples_win_below": share_below, "samples_win_above": share_above}
    else:
        numbers |= {"eviction_win_below": share_below, "eviction_win_above": share_above}
    return str(status), numbers


def rule_counts(fid: int, weight_gib: np.ndarray, advantage: np.ndarray, cut: float, window: float) -> tuple:
    """The counts finding ``fid``'s rule reads, for many outcomes of the same comparisons at
    once: ``weight_gib`` [m] per comparison, ``advantage`` [m, B] of the "win" option per
    comparison and column (0: a tie, not counted; NaN: no estimate, left out). Returns [B]
    arrays (comparisons below, above, won below, won above, left out); finding 1 looks
    above the cut only up to ``cut * window``."""
    used = weight_gib < cut * window if fid == 1 else np.ones(len(weight_gib), dtype=bool)
    estimated = np.isfinite(advantage)
    counted = estimated & (advantage != 0)
    below = (used & (weight_gib < cut))[:, None] & counted
    above = (used & (weight_gib >= cut))[:, None] & counted
    win = counted & (np.nan_to_num(advantage) > 0)
    left_out = (used[:, None] & ~estimated).sum(axis=0)
    return below.sum(axis=0), above.sum(axis=0), (win & below).sum(axis=0), (win & above).sum(axis=0), left_out


def rule_statuses(fid: int, counts: tuple, min_n: int) -> np.ndarray:
    """The rule status of finding ``fid`` per column from :func:`rule_counts`: [B] statuses.
    Finding 4 is tested on both sides of its cut: eviction wins most comparisons below it,
    and at most half above it (quantization at least as good there)."""
    n_below, n_above, won_below, won_above, _ = counts
    with np.errstate(invalid="ignore", divide="ignore"):
        win_below, win_above = won_below / n_below, won_above / n_above
    enough = (n_below >= min_n) & (n_above >= min_n)
    if fid == 1:  # win option: tokens
        holds = (1 - win_below > 0.5) & (win_above > 0.5)
    elif fid == 2:
        enough, holds = n_above >= min_n, win_above > 0.5
    elif fid == 3:
        holds = (win_below < 0.5) & (win_above > 0.5)
    else:
        holds = (win_below > 0.5) & (win_above <= 0.5)
    return np.where(~enough, NOT_ENOUGH, np.where(holds, HOLDS, FAILS))


def _population(scen: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The scenarios a kind of comparison draws on (their weight range decides testability)."""
    method = scen["kv_method"].astype(str)
    if kind == "eviction_vs_quantization":
        return scen[_threshold.evicting(scen) | method.eq("quantized")]
    if kind == "weights_vs_tokens":
        return scen[method.eq("full") & (scen["G"] == 1)]
    return scen[method.eq("full")]


def rule_testable(scen: pd.DataFrame, kind: str, cut: float) -> str | None:
    """None when ``cut`` lies inside the weight range of the scenarios ``kind`` of comparison
    draws on, else the reason the rule is not tested (a status). It depends on memory and
    configuration only, never on accuracies."""
    pop = _population(scen, kind)
    if pop.empty:
        return NOT_ENOUGH
    lo, hi = float(pop["weight_gib"].min()), float(pop["weight_gib"].max())
    return None if lo < cut <= hi else NOT_TESTABLE


def testable_rules(scen: pd.DataFrame, cuts: dict) -> list[tuple[int, str]]:
    """(finding id, dataset) of every rule tested per dataset at the placed paper cuts
    (:func:`placed_cuts`), in finding then dataset order."""
    dataset = scen["dataset"].astype(str)
    datasets = sorted(dataset.unique()) if len(scen) else []
    return [(fid, ds) for fid, spec in FINDINGS.items() for ds in datasets
            if rule_testable(scen[dataset == ds], spec["kind"], cuts[spec["kind"]]["split"]) is None]


def rule_outcomes(fid: int, weight_gib: np.ndarray, advantage: np.ndarray, cut: float, min_n: int,
                  window: float) -> np.ndarray:
    """[B] statuses of finding ``fid``'s rule at ``cut`` for each column of ``advantage``
    [m, B] of the comparisons at ``weight_gib`` [m] (:func:`rule_counts`,
    :func:`rule_statuses`): what the verdict's point estimate, its bootstrap replicates and
    adaptive sampling's decisions all evaluate."""
    return rule_statuses(fid, rule_counts(fid, weight_gib, advantage, cut, window), min_n)


def _fit_beside(fit: dict | None, cut: float) -> dict | None:
    if not fit:
        return None
    out = {k: fit.get(k) for k in ("status", "estimate", "bracket", "ci_low", "ci_high", "direction", "n_points")}
    br = fit.get("bracket")
    out["bracket_contains_cut"] = bool(br[0] <= cut <= br[1]) if br else None
    out["interval_contains_cut"] = (bool(fit["ci_low"] <= cut <= fit["ci_high"])
                                    if fit.get("ci_low") is not None and fit.get("ci_high") is not None else None)
    return out


def _dataset_fit(thr: dict, dataset: str, n_datasets: int) -> dict | None:
    for d in thr.get("by_dataset") or []:
        if str(d.get("dataset")) == dataset:
            return d
    return thr if n_datasets == 1 and thr else None


# ----------------------------------------------------------------------------- named checks


def _resolve(side: dict, scen: pd.DataFrame, names: dict, any_g: bool) -> tuple[str, pd.DataFrame | None]:
    """(label, the side's scenarios) or (label, None) when the study has no such model."""
    label = f"{side['model']}-{side['bits']}bit" + (f" at {side['tokens'] // 1000}k" if side.get("tokens") else "")
    model = names.get(str(side["model"]))
    if model is None:
        return label, None
    rows = scen[(scen["model"].astype(str) == model) & (scen["weight_bits"] == side["bits"])]
    if not any_g or "G" in side:
        rows = rows[(rows["G"] == side.get("G", 1)) & (rows["kv_method"].astype(str) == "full")]
    if side.get("tokens"):
        rows = rows[rows["token_budget"] == side["tokens"]]
    if rows.empty:
        return label, None
    order = rows.sort_values(["n_samples", "scenario_id"] if "n_samples" in rows else ["scenario_id"],
                             ascending=[False, True] if "n_samples" in rows else [True], kind="mergesort")
    return label, order.drop_duplicates(["model", "weights", "kv", "token_budget", "G"])


def _side_view(label: str, rows: pd.DataFrame | None) -> dict:
    if rows is None or rows.empty:
        return {"label": label, "n": 0, "memory_gib": None, "accuracy": None}
    tot = rows["total_gib"].astype(float)
    return {"label": label, "n": int(len(rows)),
            "memory_gib": float(tot.iloc[0]) if len(rows) == 1 else [float(tot.min()), float(tot.max())],
            "accuracy": float(rows["accuracy"].astype(float).mean())}


def _matched_pairs(a: pd.DataFrame, b: pd.DataFrame, tol: float) -> list[tuple[int, int]]:
    """(row of a, row of b): each b scenario with the a scenario closest in memory, within ``tol``."""
    ta = a["total_gib"].to_numpy(float)
    pairs = []
    for ib, tb in zip(b.index, b["total_gib"].to_numpy(float)):
        near = np.flatnonzero(_threshold.equal_memory(ta, tb, tol))
        if near.size:
            pairs.append((int(a.index[near[np.argmin(np.abs(ta[near] - tb))]]), int(ib)))
    return pairs


def _kv_levels(check: dict, scen: pd.DataFrame) -> list[tuple[str, pd.DataFrame]] | str:
    """kv_order: (label, matched scenarios) for full KV then each listed bit width, on the cells
    run under every KV setting by one engine (a full-KV cell of another engine is another
    measurement); or why there are none."""
    method = scen["kv_method"].astype(str)
    keys = ["model", "weights", "token_budget", "G"] + (["engine"] if "engine" in scen else [])
    levels = [("full KV", scen[method.eq("full")])] + [
        (f"{b}-bit KV", scen[method.eq("quantized") & (scen["kv_bits"] == b)]) for b in check["kv_bits"]]
    if any(rows.empty for _, rows in levels):
        return "a KV setting of the statement is not in this study"
    common = levels[0][1][keys].drop_duplicates()
    for _, rows in levels[1:]:
        common = common.merge(rows[keys].drop_duplicates(), on=keys)
    if common.empty:
        return "no scenario run under every KV setting"
    return [(label, rows.reset_index().merge(common, on=keys).drop_duplicates(keys).set_index("index"))
            for label, rows in levels]


def _majority_verdict(g: np.ndarray, weight: np.ndarray, total: np.ndarray, check: dict, cut: float,
                      min_n: int) -> tuple[str, list[str]]:
    """majority_on_frontier on the majority-vote frontier points (G, weight and total GiB):
    (status, problems). Each relation must hold for more than ``min_share`` of its points; a
    frontier or G band with fewer than ``min_n`` points is too thin to judge."""
    problems, thin = [], []
    if len(g) < min_n:
        thin.append(f"{len(g)} majority-vote point(s) on the frontier")
    elif 1 - (weight < cut).sum() / len(g) <= check["min_share"]:
        problems.append(f"{int((weight < cut).sum())} of {len(g)} below {format_memory(cut)} of weights")
    for band in check.get("bands", []):
        lo, hi = band["total_gib_min"], band.get("total_gib_max", np.inf)
        in_band = (total >= lo) & (total < hi)
        bad = in_band & ((g < band["G_min"]) | (g > band.get("G_max", np.inf)))
        if in_band.sum() < min_n:
            thin.append(f"{int(in_band.sum())} in the band from {format_memory(lo)} total")
        elif 1 - bad.sum() / in_band.sum() <= check["min_share"]:
            problems.append(f"G={sorted(set(g[bad].astype(int).tolist()))} in {int(bad.sum())} of {int(in_band.sum())} "
                            f"at {format_memory(lo)}+ total")
    status = FAILS if problems else NOT_ENOUGH if thin else HOLDS
    if thin:
        problems.append(f"too few to judge (needs {min_n}): " + ", ".join(thin))
    return status, problems


def check_statuses(check: dict, scen: pd.DataFrame, analysis: dict, acc: np.ndarray,
                   cuts: dict | None = None) -> np.ndarray:
    """The status of one named statement on one dataset's scenarios for each column of
    scenario accuracies ``acc`` [n, B] (rows as ``scen``'s): [B] statuses. Which scenarios a
    check reads depends on memory and configuration only; accuracies decide. ``cuts``: the
    placed paper cuts (:func:`placed_cuts`; placed in ``scen`` when None)."""
    cfg = analysis_settings(analysis)
    names = cfg["paper_names"].get("models", {})
    tol, min_n = cfg["memory_tolerance"], int(cfg["min_comparisons"])
    scen = scen.reset_index(drop=True)
    acc = np.asarray(acc, dtype=float)
    every = np.full(acc.shape[1], NOT_TESTABLE, dtype=object)
    kind = check["kind"]
    if kind in ("beats", "beats_at_matched_memory"):
        (_, a), (_, b) = (_resolve(check[s], scen, names, any_g=False) for s in ("a", "b"))
        if a is None or b is None:
            return every
        if kind == "beats":
            ia, ib = a.index[0], b.index[0]
            if not _threshold.equal_memory(scen["total_gib"][ia], scen["total_gib"][ib], tol):
                return every
            # a side without an estimate (NaN) leaves nothing to compare, as in the rules
            unestimated = ~(np.isfinite(acc[ia]) & np.isfinite(acc[ib]))
            return np.where(unestimated, NOT_ENOUGH, np.where(acc[ia] > acc[ib], HOLDS, FAILS)).astype(object)
        pairs = _matched_pairs(a, b, tol)
        if not pairs:
            return np.full(acc.shape[1], NOT_ENOUGH, dtype=object)
        first, second = acc[[i for i, _ in pairs]], acc[[j for _, j in pairs]]
        counted = np.isfinite(first) & np.isfinite(second)
        n_pairs, wins = counted.sum(axis=0), ((first > second) & counted).sum(axis=0)
        return np.where(n_pairs == 0, NOT_ENOUGH, np.where(wins > n_pairs / 2, HOLDS, FAILS)).astype(object)
    if kind == "kv_order":
        levels = _kv_levels(check, scen)
        if isinstance(levels, str):
            return every if levels.startswith("a KV") else np.full(acc.shape[1], NOT_ENOUGH, dtype=object)
        level_acc = [acc[rows.index.to_numpy()] for _, rows in levels]
        estimated = np.stack([np.isfinite(a).sum(axis=0) for a in level_acc])
        means = np.stack([np.nansum(a, axis=0) for a in level_acc]) / np.maximum(estimated, 1)
        ordered = (means[:-1] > means[1:]).all(axis=0)
        return np.where((estimated == 0).any(axis=0), NOT_ENOUGH, np.where(ordered, HOLDS, FAILS)).astype(object)
    on = _frontier.on_frontier(scen.assign(dataset="one"), acc) if len(scen) else acc > 0
    if kind == "never_on_frontier":
        _, a = _resolve(check["a"], scen, names, any_g=True)
        if a is None:
            return every
        return np.where(on[a.index.to_numpy()].any(axis=0), FAILS, HOLDS).astype(object)
    if kind == "frontier_share":
        bits = (scen["weight_bits"] == check["bits"]).to_numpy() if len(scen) else np.zeros(0, bool)
        if not bits.any():
            return every
        n_front = on.sum(axis=0)
        share = (on & bits[:, None]).sum(axis=0) / np.maximum(n_front, 1)
        return np.where(n_front < min_n, NOT_ENOUGH, np.where(share > check["min_share"], HOLDS, FAILS)).astype(object)
    # majority_on_frontier
    cut = (cuts or placed_cuts(cfg, scen))[check["weight_cut"]]["split"]
    if rule_testable(scen, "samples_vs_tokens", cut) or not (scen["G"] > 1).any():
        return every
    g, weight, total = (scen[c].to_numpy(float) for c in ("G", "weight_gib", "total_gib"))
    maj = on & (g > 1)[:, None]
    return np.array([_majority_verdict(g[m], weight[m], total[m], check, cut, min_n)[0] for m in maj.T], dtype=object)


def evaluate_check(check: dict, scen: pd.DataFrame, analysis: dict, cuts: dict | None = None) -> dict:
    """One named statement on one dataset's scenarios: statement, kind, status
    (:func:`check_statuses` at the point accuracies), sides (each with its label, memory in
    GiB (one value or a range) and accuracy), detail. ``cuts``: as :func:`check_statuses`."""
    cfg = analysis_settings(analysis)
    names = cfg["paper_names"].get("models", {})
    tol, min_n = cfg["memory_tolerance"], int(cfg["min_comparisons"])
    kind = check["kind"]
    scen = scen.reset_index(drop=True)
    cuts = cuts or placed_cuts(cfg, scen)
    status = str(check_statuses(check, scen, cfg, scen["accuracy"].to_numpy(float)[:, None], cuts)[0])
    out = {"statement": check["statement"], "kind": kind, "finding": check["finding"], "status": status,
           "sides": [], "detail": ""}
    front = _frontier.pareto_frontier(scen, by=None) if not scen.empty else scen
    if kind in ("beats", "beats_at_matched_memory"):
        (la, a), (lb, b) = (_resolve(check[s], scen, names, any_g=False) for s in ("a", "b"))
        out["sides"] = [_side_view(la, a), _side_view(lb, b)]
        if a is None or b is None:
            out["detail"] = "a side is not in this study"
        elif kind == "beats":
            acc_a, acc_b = float(a["accuracy"].iloc[0]), float(b["accuracy"].iloc[0])
            ta, tb = float(a["total_gib"].iloc[0]), float(b["total_gib"].iloc[0])
            same = bool(_threshold.equal_memory(ta, tb, tol))
            out["detail"] = (f"{la}: {acc_a:.3f} at {format_memory(ta)}; {lb}: {acc_b:.3f} at {format_memory(tb)}"
                             f" ({'equal memory' if same else f'memory differs by more than {tol:.0%}: not a comparison at equal memory'})")
        else:
            accuracy = scen["accuracy"].to_numpy(float)
            pairs = [(i, j) for i, j in _matched_pairs(a, b, tol) if np.isfinite(accuracy[[i, j]]).all()]
            wins = sum(int(accuracy[i] > accuracy[j]) for i, j in pairs)
            out["detail"] = (f"{la} more accurate in {wins} of {len(pairs)} pairs at equal memory" if pairs
                             else "no estimated pair of the two within the memory tolerance")
        return out
    if kind == "never_on_frontier":
        la, a = _resolve(check["a"], scen, names, any_g=True)
        out["sides"] = [_side_view(la, a)]
        if a is None:
            out["detail"] = "not in this study"
        else:
            on = int(a["scenario_id"].astype(str).isin(front["scenario_id"].astype(str)).sum())
            out["detail"] = f"{on} of its {len(a)} scenarios on the frontier"
        return out
    if kind == "frontier_share":
        if scen.empty or not (scen["weight_bits"] == check["bits"]).any():
            out["detail"] = f"no {check['bits']}-bit weights in this study"
            return out
        share = float((front["weight_bits"] == check["bits"]).mean())
        mine = front[front["weight_bits"] == check["bits"]]
        out["sides"] = [_side_view(f"{check['bits']}-bit weights on the frontier", mine),
                        _side_view("the whole frontier", front)]
        out["detail"] = (f"{len(mine)} of {len(front)} frontier points ({share:.0%}; needs > {check['min_share']:.0%}"
                         + (f" of at least {min_n} points)" if len(front) < min_n else ")"))
        return out
    if kind == "majority_on_frontier":
        cut = cuts[check["weight_cut"]]["split"]
        if status == NOT_TESTABLE:
            out["detail"] = f"{format_memory(cut)} is outside this study's weight range, or no G > 1"
            return out
        maj = front[front["G"] > 1]
        out["sides"] = [_side_view("majority vote on the frontier", maj), _side_view("the whole frontier", front)]
        _, problems = _majority_verdict(*(maj[c].to_numpy(float) for c in ("G", "weight_gib", "total_gib")),
                                        check, cut, min_n)
        gs = ", ".join(f"G={int(r.G)} at {format_memory(r.total_gib)}" for r in maj.itertuples())
        out["detail"] = ("; ".join(problems) + ". " if problems else "") + (f"on the frontier: {gs}" if gs else "")
        return out
    levels = _kv_levels(check, scen)
    if isinstance(levels, str):
        out["detail"] = levels
        return out
    out["sides"] = [_side_view(label, rows) for label, rows in levels]
    out["detail"] = (", ".join(f"{v['label']} {v['accuracy']:.3f}" for v in out["sides"])
                     + f" (mean over {len(levels[0][1])} matched cells)")
    return out


# ----------------------------------------------------------------------------- findings


def _counted(points: list[dict]) -> int:
    """Comparisons that count: estimated on both sides and not tied."""
    return sum(1 for p in points if p.get("advantage") is not None and not p["tie"])


def _left_out_text(numbers: dict) -> str:
    n = numbers.get("left_out", 0)
    return f"; {n} left out: a side without an estimate" if n else ""


def _combine(rule: np.ndarray, checks: list[np.ndarray]) -> np.ndarray:
    """A dataset's verdict per column from its rule status and its named checks' statuses."""
    failed = (rule == FAILS) | np.any([c == FAILS for c in checks], axis=0) if checks else rule == FAILS
    return np.where(rule == NOT_TESTABLE, NOT_TESTABLE,
                    np.where(failed, FAILS, np.where(rule == NOT_ENOUGH, NOT_ENOUGH, HOLDS))).astype(object)


def _overall(per_dataset: list[np.ndarray], n: int) -> np.ndarray:
    """A finding's verdict per column: fails on any dataset, else holds on one, else not testable
    when no dataset could test it, else not enough data."""
    if not per_dataset:
        return np.full(n, NOT_ENOUGH, dtype=object)
    stacked = np.stack(per_dataset)
    return np.where((stacked == FAILS).any(axis=0), FAILS, np.where(
        (stacked == HOLDS).any(axis=0), HOLDS,
        np.where((stacked == NOT_TESTABLE).all(axis=0), NOT_TESTABLE, NOT_ENOUGH))).astype(object)


def _decide(point: str, replicates: np.ndarray, level: float) -> dict:
    """A verdict with its probability: the share of bootstrap replicates that reach the point
    estimate's verdict (None without replicates); "holds" or "fails" below ``level`` is undecided."""
    probability = float(np.mean(replicates == point)) if replicates.size else None
    undecided = point in (HOLDS, FAILS) and probability is not None and probability < level
    return {"status": UNDECIDED if undecided else point, "probability": probability, "point_status": point}


class _Replicates:
    """Scenario accuracies under the question bootstrap the threshold fit draws, and each kind's
    comparisons on them (built once per kind)."""

    def __init__(self, scen: pd.DataFrame, questions: pd.DataFrame | None, n_boot: int, seed: int, tol: float):
        self.scen, self.tol = scen, tol
        if questions is not None and n_boot:
            self.acc, self.halves = _threshold.accuracy_replicates(scen, questions, n_boot, seed, halves=True)
        else:
            self.acc, self.halves = np.zeros((len(scen), 0)), None
        self._kinds = {}

    def comparisons(self, kind: str) -> tuple:
        """(comparisons, their advantages [m, B]) of ``kind`` over the whole table."""
        if kind not in self._kinds:
            comp = _threshold.build_comparisons(self.scen, kind, self.tol)
            self._kinds[kind] = comp, _threshold.advantages(comp, self.acc, self.halves)
        return self._kinds[kind]

    def rule(self, fid: int, kind: str, dataset: str, cut: float, min_n: int, window: float) -> np.ndarray:
        """[B] statuses of finding ``fid``'s rule on ``dataset``'s comparisons per replicate."""
        comp, adv = self.comparisons(kind)
        mine = comp.in_group(self.scen["dataset"].astype(str).to_numpy(), dataset)
        return rule_outcomes(fid, comp.x[mine], adv[mine], cut, min_n, window)


def _dataset_verdict(fid: int, kind: str, ds: str, scen: pd.DataFrame, points: list[dict], thr: dict,
                     checks_spec: list[dict], cfg: dict, reps: _Replicates, n_datasets: int, cuts: dict) -> dict:
    """One finding on one dataset: its rule at the paper's cut, its named checks, the verdict
    and its probability over the bootstrap replicates."""
    min_n, window, cut = int(cfg["min_comparisons"]), float(cfg["switch_window"]), cuts[kind]["split"]
    mask = (scen["dataset"].astype(str) == ds).to_numpy()
    sd = scen[mask]
    pts = [p for p in points if str(p.get("dataset")) == ds]
    reason = rule_testable(sd, kind, cut)
    n_boot = reps.acc.shape[1]
    if reason is None:
        rule_status, numbers = _rule(fid, pts, cut, min_n, window)
        rule_reps = reps.rule(fid, kind, ds, cut, min_n, window)
    else:
        rule_status, numbers, rule_reps = reason, {}, np.full(n_boot, reason, dtype=object)
    numbers["cut_gib"] = cuts[kind]["gib"]
    fit = _dataset_fit(thr, ds, n_datasets)
    exploratory = None
    if reason == NOT_TESTABLE and fit and fit.get("status") == "ok":
        ex_status, ex_numbers = _rule(fid, pts, float(fit["estimate"]), min_n, window)
        exploratory = {"cut_gib": float(fit["estimate"]), "status": ex_status, "numbers": ex_numbers}
    checks, check_reps = [], []
    for c in checks_spec:
        if "dataset" in c and cfg["paper_names"].get("datasets", {}).get(c["dataset"]) != ds:
            continue
        check = evaluate_check(c, sd, cfg, cuts) | {"dataset": ds}
        check_reps.append(check_statuses(c, sd, cfg, reps.acc[mask], cuts))
        checks.append(check | _decide(check["status"], check_reps[-1], cfg["verdict_level"]))
    point = str(_combine(np.array([rule_status], dtype=object), [np.array([c["point_status"]]) for c in checks])[0])
    replicates = _combine(rule_reps, check_reps)
    rule_probability = float(np.mean(rule_reps == rule_status)) if n_boot else None
    return {"dataset": ds, **_decide(point, replicates, cfg["verdict_level"]), "rule_status": rule_status,
            "rule_probability": rule_probability,
            "numbers": numbers, "comparisons": _counted(pts), "fit": _fit_beside(fit, cuts[kind]["gib"]),
            "exploratory": exploratory, "checks": checks, "replicates": replicates}


def evaluate_findings(scenarios_df: pd.DataFrame, thresholds: dict | None = None, analysis: dict | None = None,
                      questions: pd.DataFrame | None = None, n_boot: int = 0, seed: int = 0) -> list[dict]:
    """Findings 1-4 as a list of dicts: id, title, paper, rule, status, probability,
    point_status, cut_gib, engines, eviction_at_peak (finding 4: its point verdict with
    eviction charged its peak, ``peak_total_gib``, and whether that changes it), per_dataset (dataset, status, probability, point_status,
    rule_status and rule_probability (the comparison rule alone), numbers, comparisons, fit
    (the fitted bracket beside the cut), exploratory (the rule at the fitted switch, when the
    cut is not testable), checks), pooled (the rule on all datasets' comparisons together),
    comparisons, detail.

    ``thresholds``: :func:`bitbudget.threshold.fit_thresholds` (fitted here without a
    bootstrap when None). ``analysis``: the config's analysis section (schema defaults for
    what it lacks). ``questions`` (the per-question table), ``n_boot`` and ``seed``: the
    question bootstrap of the threshold fit, on whose replicates each verdict's probability
    is the share that reaches it; "holds" or "fails" with a probability below
    ``analysis.verdict_level`` becomes "undecided". Without replicates, probability is None."""
    cfg = analysis_settings(analysis)
    min_n, window = int(cfg["min_comparisons"]), float(cfg["switch_window"])
    scen = scenarios_df.reset_index(drop=True)
    cuts = placed_cuts(cfg, scen)
    if thresholds is None:
        thresholds = _threshold.fit_thresholds(scen, questions, n_boot=0, memory_tolerance=cfg["memory_tolerance"],
                                               paper_cuts={kind: c["gib"] for kind, c in cuts.items()})
    reps = _Replicates(scen, questions, n_boot, seed, cfg["memory_tolerance"])
    at_peak = _findings_at_eviction_peak(scen, cfg, questions)
    datasets = sorted(scen["dataset"].astype(str).unique()) if len(scen) else []
    paper_ds = {v: k for k, v in cfg["paper_names"].get("datasets", {}).items()}
    out = []
    for fid, spec in FINDINGS.items():
        kind = spec["kind"]
        cut, gib = cuts[kind]["split"], cuts[kind]["gib"]
        thr = thresholds.get(kind) or {}
        points = thr.get("points") or []
        checks_spec = [c for c in cfg["paper_checks"] if c["finding"] == fid]
        rows = [_dataset_verdict(fid, kind, ds, scen, points, thr, checks_spec, cfg, reps, len(datasets), cuts)
                | {"paper_dataset": paper_ds.get(ds)} for ds in datasets]
        point = str(_overall([np.array([r["point_status"]], dtype=object) for r in rows], 1)[0])
        verdict = _decide(point, _overall([r.pop("replicates") for r in rows], reps.acc.shape[1]), cfg["verdict_level"])
        reason = rule_testable(scen, kind, cut) if len(scen) else NOT_ENOUGH
        pooled_status, pooled_numbers = _rule(fid, points, cut, min_n, window) if reason is None else (reason, {})
        pooled_numbers["cut_gib"] = gib
        pooled = {"dataset": "pooled", "status": pooled_status, "numbers": pooled_numbers,
                  "comparisons": _counted(points), "fit": _fit_beside(thr, gib)}
        finding = {
            "id": fid, "title": spec["title"], "paper": spec["paper"], "kind": kind,
            "rule": spec["rule"].format(cut=format_memory(gib), window=format_memory(gib * window)) + " At equal memory: total memory within "
                    f"{cfg['memory_tolerance']:.0%}. Named statements of the paper count in the verdict.",
            **verdict, "verdict_level": cfg["verdict_level"], "n_boot": int(reps.acc.shape[1]), "cut_gib": gib,
            "cut": {k: v for k, v in cuts[kind].items() if k != "split"},
            "engines": _threshold.engines(scen), "per_dataset": rows, "pooled": pooled,
            "comparisons": pooled["comparisons"],
        }
        if kind == "eviction_vs_quantization":
            finding["eviction_at_peak"] = _at_peak(finding, at_peak)
        finding["detail"] = "; ".join(f"{r['dataset']}: {r['status']}{_probability_text(r['probability'])} "
                                      f"({r['comparisons']} comparisons" + _left_out_text(r["numbers"]) + ")"
                                      for r in rows)
        out.append(finding)
    return out


def _findings_at_eviction_peak(scen: pd.DataFrame, cfg: dict, questions: pd.DataFrame | None) -> dict | None:
    """Finding id -> the finding's point verdicts with eviction charged its peak
    (``peak_total_gib``) instead of the configured charge; None when that changes no memory."""
    if "peak_total_gib" not in scen or np.allclose(scen["peak_total_gib"], scen["total_gib"], rtol=0, atol=0):
        return None
    peak = scen.assign(total_gib=scen["peak_total_gib"]).drop(columns="peak_total_gib")
    return {f["id"]: f for f in evaluate_findings(peak, None, cfg, questions)}


def _at_peak(finding: dict, at_peak: dict | None) -> dict | None:
    """Whether an eviction verdict changes when eviction is charged its peak."""
    if at_peak is None:
        return None
    peak = at_peak[finding["id"]]
    return {"status": peak["point_status"], "changes": peak["point_status"] != finding["point_status"],
            "per_dataset": {r["dataset"]: r["point_status"] for r in peak["per_dataset"]}}


def _probability_text(probability: float | None) -> str:
    return "" if probability is None else f" (probability {probability:.2f})"
