"""The paper's four findings, restated as generic relations and checked on a run's data.

Each finding uses the equal-memory comparisons of :mod:`bitbudget.threshold` (its
``points``) split at a size threshold: the fitted weights/tokens threshold when its status
is "ok", else the paper's value (4.19 GB, 8-bit 4B; 8.94 GB, 8-bit 8B, for the KV finding).
A side "holds" when the stated option wins a strict majority of its comparisons there;
"not enough data" when a side has fewer than ``min_points`` comparisons.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import frontier as _frontier
from . import threshold as _threshold
from .memory import format_memory

__all__ = ["evaluate_findings"]


def _split(points: list[dict], cut: float):
    pts = [p for p in points if not p["tie"]]
    below = [p["win"] for p in pts if p["weight_gib"] < cut]
    above = [p["win"] for p in pts if p["weight_gib"] >= cut]
    return below, above


def _share(xs):
    return float(np.mean(xs)) if xs else None


def _cut(thr: dict | None, default: float) -> tuple[float, str]:
    if thr and thr.get("status") == "ok" and thr.get("estimate"):
        return float(thr["estimate"]), "fitted"
    return default, "paper"


def _verdict(conds: list[bool | None]) -> str:
    if any(c is None for c in conds):
        return "not enough data"
    return "holds" if all(conds) else "fails"


def evaluate_findings(
    scenarios_df: pd.DataFrame,
    thresholds: dict | None = None,
    min_points: int = 3,
) -> list[dict]:
    """Evaluate findings 1-4.  ``thresholds`` is the output of
    :func:`bitbudget.threshold.fit_thresholds` (fitted here with a small bootstrap when
    None).  Returns a list of dicts: id, title, paper, rule, status, numbers (dict), detail.
    """
    if thresholds is None:
        thresholds = _threshold.fit_thresholds(scenarios_df, None, n_boot=0)
    wt = thresholds.get("weights_vs_tokens") or {}
    st = thresholds.get("samples_vs_tokens") or {}
    ev = thresholds.get("eviction_vs_quantization") or {}
    cut, cut_src = _cut(wt, 4.19)
    out = []

    def enough(xs):
        return len(xs) >= min_points

    # 1 + 2: weights below, tokens above
    below, above = _split(wt.get("points", []), cut)
    w_below = _share([not b for b in below])
    t_above = _share(above)
    out.append({
        "id": 1,
        "title": "Below the threshold, weights win",
        "paper": "1.7B-8bit at 6k tokens beats 0.6B-8bit at 18k; 4B-4bit at 10k beats 1.7B-8bit at 18k.",
        "rule": (f"Below {format_memory(cut)} of weights ({cut_src} threshold), moving to more weight memory "
                 "beats a longer generation at equal memory in most comparisons."),
        "status": _verdict([w_below > 0.5 if enough(below) else None]),
        "numbers": {"threshold_gb": cut, "comparisons": len(below), "weights_win_share": w_below},
    })
    # frontier share of 4-bit weights per dataset (GPQA remark of finding 2)
    front = _frontier.pareto_frontier(scenarios_df) if not scenarios_df.empty else scenarios_df
    four_bit = {}
    if not front.empty and "weight_bits" in front:
        for ds, g in front.groupby("dataset"):
            four_bit[str(ds)] = float((g["weight_bits"] == 4).mean())
    out.append({
        "id": 2,
        "title": "Above the threshold, tokens win",
        "paper": "AIME: 8B-8bit beats 14B-4bit; 32B-4bit is dominated. GPQA: 4-bit weights broadly memory-optimal.",
        "rule": (f"At or above {format_memory(cut)} of weights, a longer generation beats moving to more weight "
                 "memory at equal memory in most comparisons."),
        "status": _verdict([t_above > 0.5 if enough(above) else None]),
        "numbers": {"threshold_gb": cut, "comparisons": len(above), "tokens_win_share": t_above,
                    **{f"4bit_share_of_frontier[{k}]": v for k, v in four_bit.items()}},
    })
    # 3: parallel scaling pays only above the threshold
    sb, sa = _split(st.get("points", []), cut)
    s_below, s_above = _share(sb), _share(sa)
    conds = [None, None] if not (enough(sb) and enough(sa)) else [s_below < 0.5, s_above > s_below]
    out.append({
        "id": 3,
        "title": "Parallel scaling pays only above the threshold",
        "paper": "Majority voting helps above ~8-bit 4B: 4 <= G < 8 at 16.4-28.9 GB, G >= 8 beyond.",
        "rule": (f"Majority vote (G > 1) beats a single longer generation at equal memory in under half "
                 f"of the comparisons below {format_memory(cut)} of weights, and more often above it."),
        "status": _verdict(conds),
        "numbers": {"threshold_gb": cut, "comparisons_below": len(sb), "samples_win_below": s_below,
                    "comparisons_above": len(sa), "samples_win_above": s_above},
    })
    # 4: eviction beats KV quantization for smaller models; low-bit KV degrades
    kv_cut, kv_src = _cut(ev, 8.94)
    if kv_src == "fitted" and ev.get("direction") != "win below":
        kv_cut, kv_src = 8.94, "paper"
    eb, _ = _split(ev.get("points", []), kv_cut)
    e_below = _share(eb)
    bits_acc = {}
    q = scenarios_df[scenarios_df.get("kv_method", pd.Series(dtype=str)).astype(str) == "quantized"] \
        if "kv_method" in scenarios_df else scenarios_df.iloc[0:0]
    if not q.empty:
        bits_acc = {int(b): float(g["accuracy"].mean()) for b, g in q.groupby("kv_bits")}
    order_ok = None
    if len(bits_acc) >= 2:
        ks = sorted(bits_acc)
        order_ok = all(bits_acc[a] <= bits_acc[b] for a, b in zip(ks, ks[1:]))
    conds = [e_below > 0.5 if enough(eb) else None]
    if order_ok is not None:
        conds.append(order_ok)
    out.append({
        "id": 4,
        "title": "For smaller models, KV eviction beats KV quantization",
        "paper": "Below ~8-bit 8B, eviction beats quantization at equal memory; 4-bit KV drops sharply, 2-bit is worse.",
        "rule": (f"Below {format_memory(kv_cut)} of weights ({kv_src}), eviction beats quantized KV at equal memory "
                 "(within 5%) in most comparisons, and mean accuracy does not rise as KV bits fall."),
        "status": _verdict(conds),
        "numbers": {"threshold_gb": kv_cut, "comparisons": len(eb), "eviction_win_share": e_below,
                    **{f"mean_acc_kv{b}bit": v for b, v in bits_acc.items()}},
    })
    for f in out:
        f["detail"] = ", ".join(_detail_item(k, v) for k, v in f["numbers"].items())
    return out


def _detail_item(name: str, value) -> str:
    if value is None:
        return f"{name}=n/a"
    if name.endswith("_gb"):
        return f"{name.removesuffix('_gb')}={format_memory(value)}"
    return f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
