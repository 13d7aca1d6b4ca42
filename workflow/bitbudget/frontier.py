"""Accuracy-vs-memory Pareto frontiers and what the best configuration spends memory on.

A scenario is on the frontier of its dataset when no other scenario of that dataset uses
no more memory and reaches strictly higher accuracy (ties in memory keep the most
accurate point; ties in both keep the first in scenario_id order).

One implementation decides membership for one column of accuracies or many
(:func:`frontier_columns`): the fit stage's frontier, the named checks' bootstrap replicates
and adaptive sampling's predictive draws.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .memory import format_memory

__all__ = ["pareto_frontier", "frontier_order", "frontier_columns", "on_frontier", "best_at_budget", "classify_step",
           "SPEND_ORDER"]

#: Classification labels, in the order of precedence used by :func:`classify_step`.
SPEND_ORDER = ("weights", "samples", "tokens", "kv compression")

_REL_TOL = 0.01


def _frontier_one(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """One group's frontier rows, by ``x``: its rows ordered by (x, most ``y`` first,
    scenario_id) form one :func:`frontier_columns` order."""
    sort_cols = [x, y] + (["scenario_id"] if "scenario_id" in df else [])
    ordered = df.dropna(subset=[x, y]).sort_values(
        sort_cols, ascending=[True, False] + [True] * (len(sort_cols) - 2), kind="mergesort"
    )
    if ordered.empty:
        return ordered
    memory = ordered[x].to_numpy(dtype=float)
    order = [(np.arange(len(ordered)), np.flatnonzero(np.r_[True, np.diff(memory) != 0]))]
    return ordered[frontier_columns(order, ordered[y].to_numpy(dtype=float)[:, None])[:, 0]]


def pareto_frontier(
    df: pd.DataFrame, x: str = "total_gib", y: str = "accuracy", by: str | None = "dataset"
) -> pd.DataFrame:
    """Non-dominated scenarios (less ``x`` and more ``y``), per ``by`` group.

    Returns the frontier rows sorted by group then ``x``, with the original columns.
    """
    if df.empty:
        return df.copy()
    if by is None or by not in df:
        return _frontier_one(df, x, y)
    parts = [_frontier_one(g, x, y) for _, g in df.groupby(by, sort=True)]
    return pd.concat(parts) if parts else df.iloc[0:0].copy()


def frontier_order(scenarios: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per dataset: its rows by (memory, scenario_id), and the starts of equal-memory runs
    (what :func:`frontier_columns` needs; it depends on memory only)."""
    dataset = scenarios["dataset"].astype(str).to_numpy()
    memory = scenarios["total_gib"].to_numpy(dtype=float)
    ids = scenarios["scenario_id"].astype(str).to_numpy()
    order = []
    for ds in sorted(set(dataset)):
        rows = np.flatnonzero(dataset == ds)
        rows = rows[np.lexsort((ids[rows], memory[rows]))]
        order.append((rows, np.flatnonzero(np.r_[True, np.diff(memory[rows]) != 0])))
    return order


def frontier_columns(order: list[tuple[np.ndarray, np.ndarray]], acc: np.ndarray) -> np.ndarray:
    """[n, B] bool: on its dataset's frontier for each column of accuracies ``acc`` [n, B]
    (as :func:`pareto_frontier` decides, ties included; NaN is never on it)."""
    on = np.zeros(acc.shape, dtype=bool)
    for rows, starts in order:
        a = np.where(np.isnan(acc[rows]), -np.inf, acc[rows])
        top = np.maximum.reduceat(a, starts, axis=0)
        before = np.maximum.accumulate(np.vstack([np.full((1, a.shape[1]), -np.inf), top[:-1]]), axis=0)
        run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(rows)]))
        is_top = a == top[run]
        seen = np.cumsum(is_top, axis=0)
        first = is_top & (seen - np.vstack([np.zeros((1, a.shape[1])), seen])[starts][run] == 1)
        on[rows] = first & (top[run] > before[run])
    return on


def on_frontier(scenarios: pd.DataFrame, acc: np.ndarray) -> np.ndarray:
    """[n, B] bool: each scenario on its dataset's frontier for each column of accuracies
    ``acc`` [n, B] (rows as ``scenarios``'); callers deciding many times over the same
    scenarios keep :func:`frontier_order` and call :func:`frontier_columns`."""
    return frontier_columns(frontier_order(scenarios), acc)


def _kv_key(row) -> tuple:
    def norm(v):
        return None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else v

    return tuple(norm(row.get(k)) for k in ("kv_method", "kv_bits", "kv_budget"))


def classify_step(prev, cur) -> tuple[str, str]:
    """What moving from frontier point ``prev`` to the larger point ``cur`` spends memory on.

    Precedence: more weight memory (or another model/bit split of the same weight
    memory) -> "weights"; else more parallel samples G ->
    "samples"; else a longer token budget -> "tokens"; else a different KV strategy ->
    "kv compression"; else "other".  Returns (label, human-readable list of changes).
    """
    if prev is None:
        return "start", "smallest frontier point"
    changes = []
    dw = float(cur["weight_gib"]) - float(prev["weight_gib"])
    if abs(dw) > _REL_TOL * max(float(prev["weight_gib"]), 1e-9):
        what = []
        if cur.get("model") != prev.get("model"):
            what.append(f"{prev.get('model')} -> {cur.get('model')}")
        if cur.get("weights") != prev.get("weights"):
            what.append(f"{prev.get('weights')} -> {cur.get('weights')}")
        changes.append(f"weights {'+' if dw > 0 else '-'}{format_memory(abs(dw))} ({', '.join(what) or 'weights'})")
    if int(cur["G"]) != int(prev["G"]):
        changes.append(f"G {int(prev['G'])} -> {int(cur['G'])}")
    if int(cur["token_budget"]) != int(prev["token_budget"]):
        changes.append(f"tokens {int(prev['token_budget']):,} -> {int(cur['token_budget']):,}")
    if _kv_key(cur) != _kv_key(prev):
        changes.append(f"KV {prev.get('kv')} -> {cur.get('kv')}")
    if dw > _REL_TOL * max(float(prev["weight_gib"]), 1e-9):
        label = "weights"
    elif int(cur["G"]) > int(prev["G"]):
        label = "samples"
    elif int(cur["token_budget"]) > int(prev["token_budget"]):
        label = "tokens"
    elif _kv_key(cur) != _kv_key(prev):
        label = "kv compression"
    elif cur.get("model") != prev.get("model") or cur.get("weights") != prev.get("weights"):
        label = "weights"  # same weight memory, other parameters/bits split
        changes.append(f"{prev.get('model')} {prev.get('weights')} -> {cur.get('model')} {cur.get('weights')}")
    else:
        label = "other"
    return label, "; ".join(changes) or "no change"


def best_at_budget(
    df: pd.DataFrame,
    budgets_gib: Iterable[float],
    x: str = "total_gib",
    y: str = "accuracy",
    by: str = "dataset",
) -> pd.DataFrame:
    """Best configuration within each memory budget, per dataset, and where it spends.

    For every dataset and budget, picks the most accurate scenario with ``x <= budget``
    (necessarily a frontier point) and classifies it against the next-smaller frontier
    point with :func:`classify_step`.  Columns: dataset, budget_gib, scenario_id, model,
    weights, token_budget, G, kv, total_gib, weight_gib, accuracy, ci_low, ci_high,
    spend (label), change (text).  Budgets that fit nothing give a row with spend "none".
    """
    budgets = sorted(float(b) for b in budgets_gib)
    front = pareto_frontier(df, x=x, y=y, by=by if by in df else None)
    groups = front.groupby(by, sort=True) if by in front else [(None, front)]
    cols = ["scenario_id", "model", "weights", "token_budget", "G", "kv", x, "weight_gib",
            y, "ci_low", "ci_high"]
    rows = []
    for key, fr in groups:
        fr = fr.sort_values(x).reset_index(drop=True)
        for b in budgets:
            fit = fr[fr[x] <= b + 1e-12]
            row = {"dataset": key, "budget_gib": b}
            if fit.empty:
                row.update({c: None for c in cols})
                row.update(spend="none", change="nothing fits")
            else:
                i = int(fit.index[-1])
                cur = fr.loc[i]
                prev = fr.loc[i - 1] if i > 0 else None
                label, change = classify_step(prev, cur)
                row.update({c: cur.get(c) for c in cols})
                row.update(spend=label, change=change)
            rows.append(row)
    return pd.DataFrame(rows)
