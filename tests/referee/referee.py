"""A second implementation of the analysis, written from docs/paper.md ("How the findings are
judged") and issue 27's corrected definitions.

Plain loops over scenario dicts; nothing here comes from ``bitbudget``. The property tests
compare it with the library on random small studies: a disagreement is a bug in one of them.

A scenario is a dict with the aggregate table's fields: scenario_id, dataset, model, weights,
weight_bits, kv, kv_method, kv_bits, kv_budget, engine, token_budget, G, n_samples, accuracy,
weight_gib, total_gib.
"""

from __future__ import annotations

import math

HOLDS, FAILS = "holds", "fails"
NOT_TESTABLE, NOT_ENOUGH = "not testable at this scale", "not enough data"
EVICTING = ("streaming_llm", "r_kv")
SAME_SIZE = 1e-6  # relative difference below which two weight memories are one size
SCORE_TIE = 1e-12
MIN_POINTS = 6


def finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: r["scenario_id"])


def datasets_of(rows: list[dict]) -> list[str]:
    return sorted({str(r["dataset"]) for r in rows})


# ----------------------------------------------------------------------------- the frontier


def frontier(rows: list[dict]) -> list[dict]:
    """Scenarios of one dataset more accurate than every scenario using less memory, and the
    most accurate of their own memory (the first scenario_id among equals)."""
    points = [r for r in rows if finite(r["accuracy"]) and finite(r["total_gib"])]
    kept = []
    for r in points:
        dominated = False
        for o in points:
            if o is r:
                continue
            if o["total_gib"] < r["total_gib"] and o["accuracy"] >= r["accuracy"]:
                dominated = True
            if o["total_gib"] == r["total_gib"] and (
                    o["accuracy"] > r["accuracy"]
                    or (o["accuracy"] == r["accuracy"] and o["scenario_id"] < r["scenario_id"])):
                dominated = True
        if not dominated:
            kept.append(r)
    return kept


def frontier_ids(rows: list[dict]) -> set[str]:
    ids = set()
    for ds in datasets_of(rows):
        ids |= {r["scenario_id"] for r in frontier([r for r in rows if str(r["dataset"]) == ds])}
    return ids


# ----------------------------------------------------------------------------- equal memory


def equal_memory(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance * max(a, b) * (1 + 1e-12)


def is_full(row: dict) -> bool:
    return str(row["kv_method"]) == "full"


def is_evicting(row: dict) -> bool:
    """An eviction cache that evicts: its token budget exceeds its KV budget."""
    return str(row["kv_method"]) in EVICTING and row["token_budget"] > row["kv_budget"]


def one_per_cell(rows: list[dict]) -> list[dict]:
    """One scenario per (dataset, model, weights, KV, T, G): most samples, then first id."""
    best = {}
    for r in by_id(rows):
        key = (r["dataset"], r["model"], r["weights"], r["kv"], r["token_budget"], r["G"])
        if key not in best or r["n_samples"] > best[key]["n_samples"]:
            best[key] = r
    return by_id(best.values())


def closest(row: dict, candidates: list[dict]) -> dict:
    """The candidate closest to ``row`` in total memory, the first scenario_id among equals."""
    best = None
    for c in by_id(candidates):
        if best is None or abs(c["total_gib"] - row["total_gib"]) < abs(best["total_gib"] - row["total_gib"]):
            best = c
    return best


def comparison(win: dict, lose: dict, x: float) -> dict:
    """Advantage of the "win" option; non-finite when either accuracy is."""
    return {"win_id": win["scenario_id"], "lose_id": lose["scenario_id"], "dataset": str(win["dataset"]),
            "x": x, "advantage": win["accuracy"] - lose["accuracy"]}


def weights_vs_tokens(rows: list[dict], tol: float) -> list[dict]:
    """Each G = 1, full-KV scenario against the scenario of the next larger weight memory with
    a shorter budget at equal memory (the closest in memory)."""
    out = []
    base = one_per_cell([r for r in rows if is_full(r) and r["G"] == 1])
    for a in base:
        mates = [b for b in base if b["dataset"] == a["dataset"]
                 and b["weight_gib"] > a["weight_gib"] * (1 + SAME_SIZE)
                 and b["token_budget"] < a["token_budget"]
                 and equal_memory(a["total_gib"], b["total_gib"], tol)]
        if not mates:
            continue
        smallest = min(b["weight_gib"] for b in mates)
        mates = [b for b in mates if b["weight_gib"] <= smallest * (1 + SAME_SIZE)]
        out.append(comparison(a, closest(a, mates), a["weight_gib"]))
    return out


def half_accuracies(rows: list[dict], questions: dict[str, dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Each scenario's accuracy over the two halves of its dataset's questions (alternate
    question ids in sorted order); its own accuracy for a half it has no estimate on."""
    out = {}
    for ds in datasets_of(rows):
        mine = [r for r in rows if str(r["dataset"]) == ds]
        ids = sorted({q for r in mine for q in questions.get(r["scenario_id"], {})})
        halves = (ids[0::2], ids[1::2])
        for r in mine:
            per = questions.get(r["scenario_id"], {})
            means = []
            for half in halves:
                values = [per[q] for q in half if q in per and finite(per[q])]
                means.append(sum(values) / len(values) if values else r["accuracy"])
            out[r["scenario_id"]] = tuple(means)
    return out


def best_on(candidates: list[dict], half: int, halves: dict) -> dict | None:
    """The candidate most accurate on one half (first scenario_id among equals)."""
    best = None
    for c in candidates:
        value = halves[c["scenario_id"]][half]
        if finite(value) and (best is None or value > halves[best["scenario_id"]][half]):
            best = c
    return best


def cross_fitted(a: dict, cheaper: list[dict], halves: dict) -> float:
    """a's advantage over the best cheaper single sample, chosen on one half of the questions
    and scored on the other, averaged over both ways."""
    gaps = []
    for chosen_on, scored in ((0, 1), (1, 0)):
        pick = best_on(cheaper, chosen_on, halves) or cheaper[0]
        gaps.append(halves[a["scenario_id"]][scored] - halves[pick["scenario_id"]][scored])
    return (gaps[0] + gaps[1]) / 2


def samples_vs_tokens(rows: list[dict], tol: float, questions: dict | None = None) -> list[dict]:
    """Each G > 1 full-KV scenario against the best estimated G = 1 scenario at no more memory
    (within the tolerance), when some G = 1 scenario is at equal memory. With per-question
    accuracies and several candidates, the best is cross-fitted (:func:`cross_fitted`)."""
    out = []
    halves = half_accuracies(rows, questions) if questions else None
    cells = one_per_cell([r for r in rows if is_full(r)])
    for a in [r for r in cells if r["G"] > 1]:
        singles = [s for s in cells if s["G"] == 1 and s["dataset"] == a["dataset"]]
        if not any(equal_memory(a["total_gib"], s["total_gib"], tol) for s in singles):
            continue
        cheaper = [s for s in singles if s["total_gib"] <= a["total_gib"] * (1 + tol)
                   or equal_memory(a["total_gib"], s["total_gib"], tol)]
        estimated = [s for s in cheaper if finite(s["accuracy"])]
        best = estimated[0] if estimated else {**cheaper[0], "accuracy": math.nan}
        for s in estimated:
            if s["accuracy"] > best["accuracy"]:
                best = s
        made = comparison(a, best, a["weight_gib"])
        if halves is not None and len(cheaper) > 1:
            made["advantage"] = cross_fitted(a, cheaper, halves)
        out.append(made)
    return out


def eviction_vs_quantization(rows: list[dict], tol: float) -> list[dict]:
    """Each evicting scenario with the quantized-KV scenario of the same dataset, model, weights,
    G and engine closest in memory, and each quantized one likewise; each unordered pair once."""
    evict = [r for r in rows if is_evicting(r)]
    quant = [r for r in rows if str(r["kv_method"]) == "quantized"]
    pairs = {}

    def same_group(a, b):
        return all(a[k] == b[k] for k in ("dataset", "model", "weights", "G", "engine"))

    for own, other, own_evicts in ((evict, quant, True), (quant, evict, False)):
        for a in by_id(own):
            mates = [b for b in other if same_group(a, b) and equal_memory(a["total_gib"], b["total_gib"], tol)]
            if mates:
                b = closest(a, mates)
                e, q = (a, b) if own_evicts else (b, a)
                pairs[e["scenario_id"], q["scenario_id"]] = comparison(e, q, e["weight_gib"])
    return [pairs[k] for k in sorted(pairs)]


COMPARISONS = {"weights_vs_tokens": weights_vs_tokens, "samples_vs_tokens": samples_vs_tokens,
               "eviction_vs_quantization": eviction_vs_quantization}


def comparisons(rows: list[dict], kind: str, tol: float, questions: dict | None = None) -> tuple[list[dict], int]:
    """(the comparisons with a finite advantage, how many were left out as non-finite);
    ``questions``: scenario_id -> {question_id: accuracy}, for the cross-fitted baseline."""
    made = samples_vs_tokens(rows, tol, questions) if kind == "samples_vs_tokens" else COMPARISONS[kind](rows, tol)
    kept = [c for c in made if finite(c["advantage"])]
    return kept, len(made) - len(kept)


# ----------------------------------------------------------------------------- the switch


def switch(comps: list[dict]) -> dict:
    """The cut between adjacent weight sizes that best separates negative from positive
    advantages: status, bracket, direction."""
    informative = [c for c in comps if c["advantage"] != 0]
    if not comps or len(informative) < MIN_POINTS or len({c["x"] for c in informative}) < 2:
        return {"status": NOT_ENOUGH, "bracket": None, "direction": None}
    sizes = sorted({c["x"] for c in comps})
    evidence = [0.0] * len(sizes)
    for c in comps:
        evidence[sizes.index(c["x"])] += c["advantage"]
    total = sum(evidence)
    scores = []
    for k in range(len(sizes) - 1):
        below = sum(evidence[: k + 1])
        scores.append((total - below) - below)
    sign = 1 if max(scores) >= max(-s for s in scores) else -1
    oriented = [sign * s for s in scores]
    top = max(oriented)
    if not top > abs(total) + SCORE_TIE:
        return {"status": "no crossing", "bracket": None, "direction": None}
    tied = [k for k, s in enumerate(oriented) if s >= top - SCORE_TIE]
    return {"status": "ok", "bracket": (sizes[tied[0]], sizes[tied[-1] + 1]),
            "direction": "win above" if sign > 0 else "win below"}


# ----------------------------------------------------------------------------- findings

FINDING_KIND = {1: "weights_vs_tokens", 2: "weights_vs_tokens", 3: "samples_vs_tokens", 4: "eviction_vs_quantization"}


def population(rows: list[dict], kind: str) -> list[dict]:
    """The scenarios a kind of comparison draws on (their weight range decides testability)."""
    if kind == "eviction_vs_quantization":
        return [r for r in rows if is_evicting(r) or str(r["kv_method"]) == "quantized"]
    if kind == "weights_vs_tokens":
        return [r for r in rows if is_full(r) and r["G"] == 1]
    return [r for r in rows if is_full(r)]


def testable(rows: list[dict], cut: float) -> str | None:
    if not rows:
        return NOT_ENOUGH
    weights = [r["weight_gib"] for r in rows]
    return None if min(weights) < cut <= max(weights) else NOT_TESTABLE


def share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


def rule(fid: int, comps: list[dict], cut: float, min_n: int, window: float) -> str:
    """The comparison rule of finding ``fid`` at ``cut`` (ties left out)."""
    if fid == 1:
        comps = [c for c in comps if c["x"] < cut * window]
    below = [c["advantage"] > 0 for c in comps if c["advantage"] != 0 and c["x"] < cut]
    above = [c["advantage"] > 0 for c in comps if c["advantage"] != 0 and c["x"] >= cut]
    win_below, win_above = share(below), share(above)
    if fid == 2:
        enough, holds = len(above) >= min_n, win_above > 0.5
    else:
        enough = len(below) >= min_n and len(above) >= min_n
        if fid == 1:
            holds = 1 - win_below > 0.5 and win_above > 0.5
        elif fid == 3:
            holds = win_below < 0.5 and win_above > 0.5
        else:  # eviction better below the cut, quantization at least as good above it
            holds = win_below > 0.5 and win_above <= 0.5
    if not enough:
        return NOT_ENOUGH
    return HOLDS if holds else FAILS


def combine(rule_status: str, check_statuses: list[str]) -> str:
    if rule_status == NOT_TESTABLE:
        return NOT_TESTABLE
    if rule_status == FAILS or FAILS in check_statuses:
        return FAILS
    return NOT_ENOUGH if rule_status == NOT_ENOUGH else HOLDS


def overall(statuses: list[str]) -> str:
    if FAILS in statuses:
        return FAILS
    if HOLDS in statuses:
        return HOLDS
    if statuses and all(s == NOT_TESTABLE for s in statuses):
        return NOT_TESTABLE
    return NOT_ENOUGH


SAME_CONFIGURATION = 1e-6  # a weight memory this close (relative) to a cut's configuration is it


def cut_split(spec: dict, rows: list[dict], analysis: dict) -> float:
    """Where a paper cut splits weight memories: at its configuration's weight memory in the
    study (its smallest when the configuration belongs above the cut, its largest when below;
    the paper's GiB when the study lacks it), nudged so that the configuration falls on its side."""
    model = analysis["paper_names"]["models"].get(str(spec["model"]))
    weights = [r["weight_gib"] for r in rows if model is not None and str(r["model"]) == model
               and r["weight_bits"] == spec["bits"]]
    above = spec["side"] == "above"
    gib = (min(weights) if above else max(weights)) if weights else spec["gib"]
    return gib * (1 - SAME_CONFIGURATION) if above else gib * (1 + SAME_CONFIGURATION)


def findings(rows: list[dict], analysis: dict, questions: dict | None = None) -> dict[int, dict]:
    """{finding id: {"status": overall, "per_dataset": {dataset: status}}} at the point
    accuracies (the verdicts before their bootstrap probability)."""
    tol, min_n = analysis["memory_tolerance"], analysis["min_comparisons"]
    window = analysis["switch_window"]
    splits = {kind: cut_split(spec, rows, analysis) for kind, spec in analysis["paper_cuts"].items()}
    analysis = analysis | {"splits": splits}
    out = {}
    for fid, kind in FINDING_KIND.items():
        cut = splits[kind]
        per = {}
        for ds in datasets_of(rows):
            mine = [r for r in rows if str(r["dataset"]) == ds]
            reason = testable(population(mine, kind), cut)
            status = reason or rule(fid, comparisons(mine, kind, tol, questions)[0], cut, min_n, window)
            checks = [check(c, mine, analysis) for c in analysis["paper_checks"]
                      if c["finding"] == fid and applies(c, ds, analysis)]
            per[ds] = combine(status, checks)
        out[fid] = {"status": overall(list(per.values())), "per_dataset": per}
    return out


# ----------------------------------------------------------------------------- named checks


def applies(spec: dict, dataset: str, analysis: dict) -> bool:
    return "dataset" not in spec or analysis["paper_names"]["datasets"].get(spec["dataset"]) == dataset


def side_rows(side: dict, rows: list[dict], analysis: dict, any_g: bool) -> list[dict]:
    """The scenarios a named side stands for, one per cell (most samples, then first id)."""
    model = analysis["paper_names"]["models"].get(str(side["model"]))
    if model is None:
        return []
    picked = [r for r in rows if str(r["model"]) == model and r["weight_bits"] == side["bits"]]
    if not any_g or "G" in side:
        picked = [r for r in picked if r["G"] == side.get("G", 1) and is_full(r)]
    if side.get("tokens"):
        picked = [r for r in picked if r["token_budget"] == side["tokens"]]
    best = {}
    for r in by_id(picked):
        key = (r["model"], r["weights"], r["kv"], r["token_budget"], r["G"])
        if key not in best or r["n_samples"] > best[key]["n_samples"]:
            best[key] = r
    return list(best.values())


def check(spec: dict, rows: list[dict], analysis: dict) -> str:
    return CHECKS[spec["kind"]](spec, rows, analysis)


def check_beats(spec, rows, analysis) -> str:
    a, b = (side_rows(spec[s], rows, analysis, any_g=False) for s in ("a", "b"))
    if not a or not b:
        return NOT_TESTABLE
    a, b = first_cell(a), first_cell(b)
    if not equal_memory(a["total_gib"], b["total_gib"], analysis["memory_tolerance"]):
        return NOT_TESTABLE
    if not (finite(a["accuracy"]) and finite(b["accuracy"])):
        return NOT_ENOUGH
    return HOLDS if a["accuracy"] > b["accuracy"] else FAILS


def first_cell(cells: list[dict]) -> dict:
    """The cell a single-scenario side stands for: most samples, then first id."""
    return sorted(cells, key=lambda r: (-r["n_samples"], r["scenario_id"]))[0]


def check_beats_at_matched_memory(spec, rows, analysis) -> str:
    a, b = (side_rows(spec[s], rows, analysis, any_g=False) for s in ("a", "b"))
    if not a or not b:
        return NOT_TESTABLE
    a = sorted(a, key=lambda r: (-r["n_samples"], r["scenario_id"]))
    b = sorted(b, key=lambda r: (-r["n_samples"], r["scenario_id"]))
    wins = pairs = 0
    for rb in b:
        near = [ra for ra in a if equal_memory(ra["total_gib"], rb["total_gib"], analysis["memory_tolerance"])]
        if near:
            ra = min(near, key=lambda r: abs(r["total_gib"] - rb["total_gib"]))
            if finite(ra["accuracy"]) and finite(rb["accuracy"]):
                pairs += 1
                wins += ra["accuracy"] > rb["accuracy"]
    if not pairs:
        return NOT_ENOUGH
    return HOLDS if wins > pairs / 2 else FAILS


def check_never_on_frontier(spec, rows, analysis) -> str:
    a = side_rows(spec["a"], rows, analysis, any_g=True)
    if not a:
        return NOT_TESTABLE
    on = {r["scenario_id"] for r in frontier(rows)}
    return HOLDS if not any(r["scenario_id"] in on for r in a) else FAILS


def check_frontier_share(spec, rows, analysis) -> str:
    if not any(r["weight_bits"] == spec["bits"] for r in rows):
        return NOT_TESTABLE
    front = frontier(rows)
    if len(front) < analysis["min_comparisons"]:
        return NOT_ENOUGH
    mine = [r for r in front if r["weight_bits"] == spec["bits"]]
    return HOLDS if len(mine) / len(front) > spec["min_share"] else FAILS


def check_majority_on_frontier(spec, rows, analysis) -> str:
    cut = analysis["splits"][spec["weight_cut"]]
    if testable(population(rows, "samples_vs_tokens"), cut) or not any(r["G"] > 1 for r in rows):
        return NOT_TESTABLE
    votes = [r for r in frontier(rows) if r["G"] > 1]
    min_n = analysis["min_comparisons"]
    problems = thin = False
    if len(votes) < min_n:
        thin = True
    elif 1 - len([r for r in votes if r["weight_gib"] < cut]) / len(votes) <= spec["min_share"]:
        problems = True
    for band in spec.get("bands", []):
        hi = band.get("total_gib_max", math.inf)
        inside = [r for r in votes if band["total_gib_min"] <= r["total_gib"] < hi]
        bad = [r for r in inside if r["G"] < band["G_min"] or r["G"] > band.get("G_max", math.inf)]
        if len(inside) < min_n:
            thin = True
        elif 1 - len(bad) / len(inside) <= spec["min_share"]:
            problems = True
    return FAILS if problems else NOT_ENOUGH if thin else HOLDS


def check_kv_order(spec, rows, analysis) -> str:
    """Mean accuracy falls from full KV through each listed KV bit width, on the cells run
    under every setting by one engine."""
    levels = [[r for r in rows if is_full(r)]] + [
        [r for r in rows if str(r["kv_method"]) == "quantized" and r["kv_bits"] == b] for b in spec["kv_bits"]]
    if any(not level for level in levels):
        return NOT_TESTABLE

    def key(r):
        return (r["engine"], r["model"], r["weights"], r["token_budget"], r["G"])

    common = set(key(r) for r in levels[0])
    for level in levels[1:]:
        common &= set(key(r) for r in level)
    if not common:
        return NOT_ENOUGH
    means = []
    for level in levels:
        first = {}
        for r in by_id(level):
            if key(r) in common and key(r) not in first:
                first[key(r)] = r
        values = [r["accuracy"] for r in first.values() if finite(r["accuracy"])]
        if not values:
            return NOT_ENOUGH  # a KV setting without an estimate on the matched cells
        means.append(sum(values) / len(values))
    return HOLDS if all(x > y for x, y in zip(means, means[1:])) else FAILS


CHECKS = {"beats": check_beats, "beats_at_matched_memory": check_beats_at_matched_memory,
          "never_on_frontier": check_never_on_frontier, "frontier_share": check_frontier_share,
          "majority_on_frontier": check_majority_on_frontier, "kv_order": check_kv_order}
