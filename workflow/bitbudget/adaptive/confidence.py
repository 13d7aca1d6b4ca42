"""The confidence rule (`rule: confidence`): a scenario is decided when its place on the frontier
and in every comparison of the fit is the same for all accuracies inside the intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bitbudget import findings, threshold
from bitbudget.adaptive.bounds import intervals
from bitbudget.adaptive.schedule import DOMINATED, FRONTIER, MAXIMUM, OPEN

__all__ = ["frontier_decided", "comparisons_settled", "decided_scenarios", "stopping_generations"]


def frontier_decided(group, memory, lo, hi, epsilon: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(dominated by a margin, on the frontier with no competitor within reach) per scenario;
    scenarios compete only within their ``group`` (the dataset). Accuracies within
    ``epsilon`` of each other count as tied (the indifference zone of epsilon-good arm
    identification): a scenario is dominated when something at no more memory is surely above
    ``its upper bound - epsilon``, and a competitor is within reach when it could beat it, or
    be beaten by it, by more than ``epsilon``."""
    group, memory = np.asarray(group), np.asarray(memory, dtype=float)
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    dominated = np.zeros(len(memory), dtype=bool)
    clear = np.zeros(len(memory), dtype=bool)
    for value in np.unique(group):
        idx = np.flatnonzero(group == value)
        m, l, h = memory[idx], lo[idx], hi[idx]
        # best lower bound at no more memory, excluding the scenario itself
        best = np.full(len(idx), -np.inf)
        cheaper_or_equal = m[None, :] <= m[:, None]
        np.fill_diagonal(cheaper_or_equal, False)
        best = np.where(cheaper_or_equal, l[None, :], -np.inf).max(axis=1) if len(idx) > 1 else best
        dom = best > h - epsilon
        competitors = ~dom
        overlap = (l[None, :] <= h[:, None] - epsilon) & (h[None, :] >= l[:, None] + epsilon)
        # at no more memory, a competitor must sit below (by more than epsilon it must not exceed)
        below_needed = cheaper_or_equal & (h[None, :] >= l[:, None] + epsilon)
        blocked = ((overlap | below_needed) & competitors[None, :])
        np.fill_diagonal(blocked, False)
        dominated[idx] = dom
        clear[idx] = ~dom & ~blocked.any(axis=1)
    return dominated, clear


def _evidence_box(comp: threshold.Comparisons, lo, hi, sizes_index, n_sizes):
    """Per comparison and per size, the interval [low, high] of the advantage of the "win"
    option (summed per size) when every accuracy lies in its interval."""
    adv_lo, adv_hi = threshold.advantage_bounds(comp, lo, hi)
    e_lo, e_hi = np.zeros(n_sizes), np.zeros(n_sizes)
    np.add.at(e_lo, sizes_index, adv_lo)
    np.add.at(e_hi, sizes_index, adv_hi)
    return adv_lo, adv_hi, e_lo, e_hi


def _linear_forms(n_sizes: int) -> dict:
    """Every quantity the fit compares, as a coefficient vector on the per-size evidence
    (:func:`bitbudget.threshold.switch_score_weights`): the cut scores with each orientation,
    and the total (``no crossing`` test)."""
    forms = {}
    for c, w in enumerate(threshold.switch_score_weights(n_sizes)):
        forms["+", c] = w
        forms["-", c] = -w
    forms["total", "+"] = np.ones(n_sizes)
    forms["total", "-"] = -np.ones(n_sizes)
    return forms


def _bracket_contested(e_point, e_lo, e_hi) -> np.ndarray:
    """Sizes whose evidence could, within its interval, change the best cut, its orientation
    or whether a switch is found: those weighted differently by the point winner and a rival
    that is not beaten for every evidence inside the box."""
    n = len(e_point)
    contested = np.zeros(n, dtype=bool)
    if n < 2:
        return contested
    forms = _linear_forms(n)
    cuts = {k: w for k, w in forms.items() if k[0] in "+-"}
    winner = max(cuts, key=lambda k: (float(cuts[k] @ e_point), -k[1]))
    w_best = cuts[winner]
    for key, w in forms.items():
        if key == winner:
            continue
        d = w_best - w
        low = np.minimum(d * e_lo, d * e_hi).sum()
        if not low > threshold.SCORE_TIE:
            contested |= d != 0
    return contested


def _verdict_contested(kind: str, points_x, adv_lo, adv_hi, analysis: dict, cut: float) -> np.ndarray:
    """Comparisons whose outcome (win, loss or tie) is open and could change a finding's
    rule verdict at the paper's cut (its split, :func:`bitbudget.findings.place_cut`): the
    verdict is evaluated with every open comparison of a side turned to a win, a loss and a tie."""
    cfg = findings.analysis_settings(analysis)
    min_n, window = int(cfg["min_comparisons"]), float(cfg["switch_window"])
    x = np.asarray(points_x, dtype=float)
    decided_win, decided_loss = adv_lo > 0, adv_hi < 0
    open_ = ~(decided_win | decided_loss)
    contested = np.zeros(len(x), dtype=bool)
    if not open_.any():
        return contested
    below = x < cut
    outcome = {"win": 1.0, "loss": -1.0, "tie": 0.0}
    # one column per assignment of the open comparisons below and above the cut
    columns = [(ob, oa) for ob in outcome for oa in outcome]
    decided = np.where(decided_win, 1.0, -1.0)
    adv = np.column_stack([np.where(open_, np.where(below, outcome[ob], outcome[oa]), decided) for ob, oa in columns])
    for fid, spec in findings.FINDINGS.items():
        if spec["kind"] != kind:
            continue
        if len(set(findings.rule_outcomes(fid, x, adv, cut, min_n, window))) > 1:
            contested |= open_
    return contested


def comparisons_settled(scenarios: pd.DataFrame, lo, hi, analysis: dict) -> np.ndarray:
    """Per scenario: False when it feeds a comparison that could still move a switch bracket
    (per dataset or pooled) or a finding's verdict (per dataset) within the intervals."""
    scen = scenarios.reset_index(drop=True)
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    point = scen["accuracy"].to_numpy(dtype=float)
    point = np.where(np.isfinite(point), point, (lo + hi) / 2)
    settled = np.ones(len(scen), dtype=bool)
    tol = analysis["memory_tolerance"]
    datasets = sorted(scen["dataset"].astype(str).unique())
    cuts = findings.placed_cuts(analysis, scen)
    groups = [(None, np.arange(len(scen)))] + [
        (ds, np.flatnonzero(scen["dataset"].astype(str).to_numpy() == ds)) for ds in datasets]
    for kind in threshold.KINDS:
        for ds, rows in groups:
            sub = scen.iloc[rows].reset_index(drop=True)
            comp = threshold.build_comparisons(sub, kind, tol)
            if not len(comp.a):
                continue
            s_lo, s_hi, s_pt = lo[rows], hi[rows], point[rows]
            sizes, size_index = np.unique(comp.x, return_inverse=True)
            adv_lo, adv_hi, e_lo, e_hi = _evidence_box(comp, s_lo, s_hi, size_index, len(sizes))
            e_point = np.zeros(len(sizes))
            np.add.at(e_point, size_index, threshold.advantages(comp, s_pt[:, None])[:, 0])
            open_cmp = _bracket_contested(e_point, e_lo, e_hi)[size_index]
            if ds is not None:
                open_cmp |= _verdict_contested(kind, comp.x, adv_lo, adv_hi, analysis, cuts[kind]["split"])
            for i in np.flatnonzero(open_cmp):
                settled[rows[comp.a[i]]] = False
                settled[rows[comp.b[i]]] = False
    return settled


def decided_scenarios(scenarios: pd.DataFrame, delta: float, analysis: dict, epsilon: float = 0.0) -> pd.DataFrame:
    """Per scenario: its interval and whether (and why) it is decided.

    ``scenarios`` holds dataset, total_gib, accuracy (NaN when not estimable yet), G,
    n_questions, n_samples (per question, so far) and the columns the comparisons read."""
    scen = scenarios.reset_index(drop=True)
    lo, hi = intervals(scen["accuracy"], scen["n_questions"], scen["n_samples"], scen["G"], delta)
    dominated, clear = frontier_decided(scen["dataset"].astype(str).to_numpy(), scen["total_gib"], lo, hi, epsilon)
    settled = comparisons_settled(scen, lo, hi, analysis)
    reason = np.where(dominated, DOMINATED, np.where(clear, FRONTIER, OPEN))
    decided = (dominated | clear) & settled
    return pd.DataFrame({"scenario_id": scen["scenario_id"], "lower": lo, "upper": hi, "dominated": dominated,
                         "frontier_clear": clear, "comparisons_settled": settled, "decided": decided,
                         "reason": np.where(decided, reason, OPEN)})


def stopping_generations(scenarios: pd.DataFrame, decisions: pd.DataFrame, drawn: dict[str, int],
                         maximum: dict[str, int]) -> dict[str, str]:
    """gen_id -> why it stops (a reason) or OPEN: a generation stops when every scenario it
    feeds is decided, or when it has drawn its maximum."""
    decided = dict(zip(decisions["scenario_id"], decisions["decided"]))
    reasons = dict(zip(decisions["scenario_id"], decisions["reason"]))
    out = {}
    for gen_id, rows in scenarios.groupby("gen_id", sort=True)["scenario_id"]:
        if drawn[gen_id] >= maximum[gen_id]:
            out[gen_id] = MAXIMUM
        elif all(decided[s] for s in rows):
            kinds = {reasons[s] for s in rows}
            out[gen_id] = DOMINATED if kinds == {DOMINATED} else FRONTIER if kinds == {FRONTIER} else \
                f"{DOMINATED} or {FRONTIER}"
        else:
            out[gen_id] = OPEN
    return out
