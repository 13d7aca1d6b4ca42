"""The paper's four findings, checked on a run's data as the paper states them.

Each finding is evaluated at the paper's own cut (``analysis.paper_cuts``: 4.19 GiB of
weights, 8-bit 4B, for findings 1-3; 8.94 GiB, 8-bit 8B, for finding 4), for each dataset
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

__all__ = ["evaluate_findings", "evaluate_check", "STATUSES"]

HOLDS, FAILS, NOT_TESTABLE, NOT_ENOUGH = "holds", "fails", "not testable at this scale", "not enough data"
STATUSES = (HOLDS, FAILS, NOT_TESTABLE, NOT_ENOUGH)
_ANALYSIS_KEYS = ("memory_tolerance", "min_comparisons", "switch_window", "paper_cuts", "paper_names", "paper_checks")

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


def _analysis(analysis: dict | None) -> dict:
    given = dict(analysis or {})
    return {k: given[k] if k in given else _threshold.analysis_default(k) for k in _ANALYSIS_KEYS}


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


def _testable(pop: pd.DataFrame, cut: float) -> str | None:
    """None when ``cut`` lies inside the population's weight range, else the reason."""
    if pop.empty:
        return NOT_ENOUGH
    lo, hi = float(pop["weight_gib"].min()), float(pop["weight_gib"].max())
    return None if lo < cut <= hi else NOT_TESTABLE


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


def evaluate_check(check: dict, scen: pd.DataFrame, analysis: dict) -> dict:
    """One named statement on one dataset's scenarios: statement, kind, status, sides (each
    with its label, memory in GiB (one value or a range) and accuracy), detail."""
    cfg = _analysis(analysis)
    names = cfg["paper_names"].get("models", {})
    tol, min_n = cfg["memory_tolerance"], int(cfg["min_comparisons"])
    kind = check["kind"]
    out = {"statement": check["statement"], "kind": kind, "finding": check["finding"], "status": NOT_TESTABLE,
           "sides": [], "detail": ""}
    front = _frontier.pareto_frontier(scen, by=None) if not scen.empty else scen
    if kind in ("beats", "beats_at_matched_memory"):
        (la, a), (lb, b) = (_resolve(check[s], scen, names, any_g=False) for s in ("a", "b"))
        out["sides"] = [_side_view(la, a), _side_view(lb, b)]
        if a is None or b is None:
            out["detail"] = "a side is not in this study"
            return out
        if kind == "beats":
            acc_a, acc_b = float(a["accuracy"].iloc[0]), float(b["accuracy"].iloc[0])
            ta, tb = float(a["total_gib"].iloc[0]), float(b["total_gib"].iloc[0])
            same = bool(_threshold.equal_memory(ta, tb, tol))
            out["status"] = (HOLDS if acc_a > acc_b else FAILS) if same else NOT_TESTABLE
            out["detail"] = (f"{la}: {acc_a:.3f} at {format_memory(ta)}; {lb}: {acc_b:.3f} at {format_memory(tb)}"
                             f" ({'equal memory' if same else f'memory differs by more than {tol:.0%}: not a comparison at equal memory'})")
            return out
        wins, pairs = 0, []
        ta, acc_a = a["total_gib"].to_numpy(float), a["accuracy"].to_numpy(float)
        for tb, acc_b in zip(b["total_gib"].to_numpy(float), b["accuracy"].to_numpy(float)):
            near = np.flatnonzero(_threshold.equal_memory(ta, tb, tol))
            if near.size:
                i = near[np.argmin(np.abs(ta[near] - tb))]
                pairs.append((ta[i], tb))
                wins += int(acc_a[i] > acc_b)
        if not pairs:
            out["status"], out["detail"] = NOT_ENOUGH, "no pair of the two within the memory tolerance"
            return out
        out["status"] = HOLDS if wins > len(pairs) / 2 else FAILS
        out["detail"] = f"{la} more accurate in {wins} of {len(pairs)} pairs at equal memory"
        return out
    if kind == "never_on_frontier":
        la, a = _resolve(check["a"], scen, names, any_g=True)
        out["sides"] = [_side_view(la, a)]
        if a is None:
            out["detail"] = "not in this study"
            return out
        on = int(a["scenario_id"].astype(str).isin(front["scenario_id"].astype(str)).sum())
        out["status"] = HOLDS if on == 0 else FAILS
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
        out["status"] = NOT_ENOUGH if len(front) < min_n else HOLDS if share > check["min_share"] else FAILS
        out["detail"] = f"{len(mine)} of {len(front)} frontier points ({share:.0%}; needs > {check['min_share']:.0%})"
        return out
    if kind == "majority_on_frontier":
        cut = cfg["paper_cuts"][check["weight_cut"]]
        if _testable(_population(scen, "samples_vs_tokens"), cut) or not (scen["G"] > 1).any():
            out["detail"] = f"{format_memory(cut)} is outside this study's weight range, or no G > 1"
            return out
        maj = front[front["G"] > 1]
        out["sides"] = [_side_view("majority vote on the frontier", maj), _side_view("the whole frontier", front)]
        # The paper names the typical optimal G of a memory range; a frontier holds many points
        # there, so each relation must hold for more than `min_share` of them.
        problems, thin = [], []
        low = maj[maj["weight_gib"] < cut]
        if len(maj) < min_n:
            thin.append(f"{len(maj)} majority-vote point(s) on the frontier")
        elif 1 - len(low) / len(maj) <= check["min_share"]:
            problems.append(f"{len(low)} of {len(maj)} below {format_memory(cut)} of weights")
        for band in check.get("bands", []):
            lo, hi = band["total_gib_min"], band.get("total_gib_max", np.inf)
            in_band = maj[(maj["total_gib"] >= lo) & (maj["total_gib"] < hi)]
            bad = in_band[(in_band["G"] < band["G_min"]) | (in_band["G"] > band.get("G_max", np.inf))]
            if len(in_band) < min_n:
                thin.append(f"{len(in_band)} in the band from {format_memory(lo)} total")
            elif 1 - len(bad) / len(in_band) <= check["min_share"]:
                problems.append(f"G={sorted(set(bad['G'].astype(int)))} in {len(bad)} of {len(in_band)} "
                                f"at {format_memory(lo)}+ total")
        out["status"] = FAILS if problems else NOT_ENOUGH if thin else HOLDS
        if thin:
            problems.append(f"too few to judge (needs {min_n}): " + ", ".join(thin))
        gs = ", ".join(f"G={int(r.G)} at {format_memory(r.total_gib)}" for r in maj.itertuples())
        out["detail"] = ("; ".join(problems) + ". " if problems else "") + (f"on the frontier: {gs}" if gs else "")
        return out
    # kv_order: mean accuracy along full KV, then each listed bit width, on matched scenarios
    # of one engine (a full-KV cell of another engine is another measurement)
    method = scen["kv_method"].astype(str)
    keys = ["model", "weights", "token_budget", "G"] + (["engine"] if "engine" in scen else [])
    levels = [("full KV", scen[method.eq("full")])] + [
        (f"{b}-bit KV", scen[method.eq("quantized") & (scen["kv_bits"] == b)]) for b in check["kv_bits"]]
    if any(rows.empty for _, rows in levels):
        out["detail"] = "a KV setting of the statement is not in this study"
        return out
    common = levels[0][1][keys].drop_duplicates()
    for _, rows in levels[1:]:
        common = common.merge(rows[keys].drop_duplicates(), on=keys)
    if common.empty:
        out["status"], out["detail"] = NOT_ENOUGH, "no scenario run under every KV setting"
        return out
    views, means = [], []
    for label, rows in levels:
        matched = rows.merge(common, on=keys).drop_duplicates(keys)
        views.append(_side_view(label, matched))
        means.append(float(matched["accuracy"].mean()))
    out["sides"] = views
    out["status"] = HOLDS if all(x > y for x, y in zip(means, means[1:])) else FAILS
    out["detail"] = ", ".join(f"{v['label']} {m:.3f}" for v, m in zip(views, means)) + f" (mean over {len(common)} matched cells)"
    return out


# ----------------------------------------------------------------------------- findings


def _counted(points: list[dict]) -> int:
    """Comparisons that count: estimated on both sides and not tied."""
    return sum(1 for p in points if p.get("advantage") is not None and not p["tie"])


def _left_out_text(numbers: dict) -> str:
    n = numbers.get("left_out", 0)
    return f"; {n} left out: a side without an estimate" if n else ""


def _combine(rule_status: str, checks: list[dict]) -> str:
    if rule_status == NOT_TESTABLE:
        return NOT_TESTABLE
    if rule_status == FAILS or any(c["status"] == FAILS for c in checks):
        return FAILS
    return NOT_ENOUGH if rule_status == NOT_ENOUGH else HOLDS


def _overall(statuses: list[str]) -> str:
    if FAILS in statuses:
        return FAILS
    if HOLDS in statuses:
        return HOLDS
    return NOT_TESTABLE if statuses and all(s == NOT_TESTABLE for s in statuses) else NOT_ENOUGH


def evaluate_findings(scenarios_df: pd.DataFrame, thresholds: dict | None = None, analysis: dict | None = None) -> list[dict]:
    """Findings 1-4 as a list of dicts: id, title, paper, rule, status, cut_gib, per_dataset
    (dataset, status, rule_status, numbers, comparisons, fit (the fitted bracket beside the
    cut), exploratory (the rule at the fitted switch, when the cut is not testable), checks),
    pooled (the rule on all datasets' comparisons together), comparisons, detail.

    ``thresholds``: :func:`bitbudget.threshold.fit_thresholds` (fitted here without a
    bootstrap when None). ``analysis``: the config's analysis section (schema defaults for
    what it lacks)."""
    cfg = _analysis(analysis)
    min_n, window = int(cfg["min_comparisons"]), float(cfg["switch_window"])
    scen = scenarios_df.reset_index(drop=True)
    if thresholds is None:
        thresholds = _threshold.fit_thresholds(scen, None, n_boot=0, memory_tolerance=cfg["memory_tolerance"],
                                               paper_cuts=cfg["paper_cuts"])
    datasets = sorted(scen["dataset"].astype(str).unique()) if len(scen) else []
    paper_ds = {v: k for k, v in cfg["paper_names"].get("datasets", {}).items()}
    out = []
    for fid, spec in FINDINGS.items():
        kind = spec["kind"]
        cut = float(cfg["paper_cuts"][kind])
        thr = thresholds.get(kind) or {}
        points = thr.get("points") or []
        checks_spec = [c for c in cfg["paper_checks"] if c["finding"] == fid]
        rows = []
        for ds in datasets:
            sd = scen[scen["dataset"].astype(str) == ds]
            pts = [p for p in points if str(p.get("dataset")) == ds]
            reason = _testable(_population(sd, kind), cut)
            rule_status, numbers = _rule(fid, pts, cut, min_n, window) if reason is None else (reason, {"cut_gib": cut})
            fit = _dataset_fit(thr, ds, len(datasets))
            exploratory = None
            if reason == NOT_TESTABLE and fit and fit.get("status") == "ok":
                ex_status, ex_numbers = _rule(fid, pts, float(fit["estimate"]), min_n, window)
                exploratory = {"cut_gib": float(fit["estimate"]), "status": ex_status, "numbers": ex_numbers}
            checks = []
            for c in checks_spec:
                if "dataset" in c and cfg["paper_names"].get("datasets", {}).get(c["dataset"]) != ds:
                    continue
                checks.append(evaluate_check(c, sd, cfg) | {"dataset": ds})
            rows.append({"dataset": ds, "paper_dataset": paper_ds.get(ds), "status": _combine(rule_status, checks),
                         "rule_status": rule_status, "numbers": numbers, "comparisons": _counted(pts),
                         "fit": _fit_beside(fit, cut), "exploratory": exploratory, "checks": checks})
        reason = _testable(_population(scen, kind), cut) if len(scen) else NOT_ENOUGH
        pooled_status, pooled_numbers = _rule(fid, points, cut, min_n, window) if reason is None else (reason, {"cut_gib": cut})
        pooled = {"dataset": "pooled", "status": pooled_status, "numbers": pooled_numbers,
                  "comparisons": _counted(points), "fit": _fit_beside(thr, cut)}
        finding = {
            "id": fid, "title": spec["title"], "paper": spec["paper"], "kind": kind,
            "rule": spec["rule"].format(cut=format_memory(cut), window=format_memory(cut * window)) + " At equal memory: total memory within "
                    f"{cfg['memory_tolerance']:.0%}. Named statements of the paper count in the verdict.",
            "status": _overall([r["status"] for r in rows]), "cut_gib": cut, "engines": _threshold.engines(scen),
            "per_dataset": rows, "pooled": pooled,
            "comparisons": pooled["comparisons"],
        }
        finding["detail"] = "; ".join(f"{r['dataset']}: {r['status']} ({r['comparisons']} comparisons"
                                      + _left_out_text(r["numbers"]) + ")" for r in rows)
        out.append(finding)
    return out
