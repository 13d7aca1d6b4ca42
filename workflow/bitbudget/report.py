"""The self-contained HTML report (jinja2, autoescaped; charts inlined as SVG).

Charts are Altair specs rendered to SVG by vl-convert at build time, so the page needs no
JavaScript libraries and makes no network requests.  The only script is a few lines of
vanilla JS (sortable tables, trace picker), allowed by hash in the page's
Content-Security-Policy; any other script, e.g. one smuggled into model output, would
not run even if it escaped the autoescaping.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import altair as alt
import jinja2
import numpy as np
import pandas as pd

from . import __version__
from . import frontier as _frontier
from . import threshold as _threshold
from .adaptive.closing import thinking_per_question
from .artifacts import read_meta, read_parquet_verified, write_text
from .memory import axis_unit, format_memory

__all__ = ["render_report", "frontier_chart", "threshold_chart", "DEFAULT_TEMPLATE_DIR"]

DEFAULT_TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "report" / "templates"
TRACES_PER_SCENARIO = 3  # samples shown per scenario in the trace viewer


def traces_by_scenario(scenarios: pd.DataFrame, grade_paths, per_scenario: int = TRACES_PER_SCENARIO) -> dict:
    """The first ``per_scenario`` graded samples of each scenario's grade at its token budget
    (shared by the scenarios of every G that read them); each grade is known by the id its
    metadata records, never by where its file lies."""
    heads = {}
    for path in grade_paths:
        grade_id = read_meta(path)["id"]
        graded = read_parquet_verified(path).groupby("token_budget", sort=False).head(per_scenario)
        heads.update({(grade_id, int(budget)): rows for budget, rows in graded.groupby("token_budget")})
    return {row.scenario_id: heads.get((row.grade_id, int(row.token_budget))) for row in scenarios.itertuples()}
MAX_TRACE_CHARS = 6000  # one trace text at most (head and tail kept)
MAX_TRACE_TOTAL_CHARS = 3_000_000  # all trace texts of the page together (the report stays under 10 MB)
FILTER_COLUMNS = (("dataset", "dataset"), ("model", "model"), ("weights", "weights"), ("KV", "kv"), ("G", "G"))
SIMULATED_ENGINE = "simulated"  # the engine name of data drawn from a planted accuracy surface
COUNT_COLUMNS = ("token_budget", "G", "n_questions", "n_samples")  # whole numbers, printed 2,000
MEMORY_COLUMNS = ("weight_gib", "total_gib")  # each cell in its own unit (KB, MB, GB)
SPEND_COLORS = {"start": "#6e7781", "weights": "#0969da", "tokens": "#1a7f37",
                "samples": "#bf3989", "kv compression": "#bc4c00", "other": "#8c959f"}


def _svg(chart: alt.TopLevelMixin) -> str:
    import vl_convert as vlc

    svg = vlc.vegalite_to_svg(chart.to_dict())
    # drop the XML prolog if any: the SVG is inlined in HTML
    if svg.startswith("<?xml"):
        svg = svg[svg.index("?>") + 2:]
    return svg


def _num(v, fmt="{:.3g}"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    try:
        if pd.isna(v):
            return "n/a"
    except (TypeError, ValueError):
        pass
    return fmt.format(v) if isinstance(v, (float, np.floating)) else str(v)


def _count(v) -> str:
    """A whole number as people read it: 2,000 and 14,000, not 2e+03."""
    return "n/a" if _num(v) == "n/a" else f"{int(v):,}"


def frontier_chart(df: pd.DataFrame, dataset: str) -> alt.LayerChart:
    """Accuracy vs total memory for one dataset: all scenarios, frontier and its spend labels."""
    full = df[df["dataset"].astype(str) == str(dataset)]
    fr = _frontier.pareto_frontier(full, by=None).sort_values("total_gib").reset_index(drop=True)
    fr["spend"] = [
        _frontier.classify_step(fr.loc[i - 1] if i else None, fr.loc[i])[0] for i in range(len(fr))
    ]
    cols = ["scenario_id", "model", "weights", "kv", "token_budget", "G", "total_gib", "accuracy",
            "ci_low", "ci_high"]
    d = full[[c for c in cols if c in full]]
    fr = fr[[c for c in cols + ["spend"] if c in fr]]
    fr["label"] = fr["model"].astype(str) + " " + fr["weights"].astype(str) + " T=" + \
        fr["token_budget"].astype(str) + " G=" + fr["G"].astype(str)
    unit, per_unit = axis_unit(full["total_gib"])
    d = d.assign(memory=d["total_gib"] / per_unit)
    fr = fr.assign(memory=fr["total_gib"] / per_unit)
    x = alt.X("memory:Q", scale=alt.Scale(type="log", nice=False), title=f"memory: weights + KV ({unit}, log)")
    y = alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy")
    base = alt.Chart(d).mark_circle(size=22, color="#afb8c1", opacity=0.6).encode(x=x, y=y)
    bars = alt.Chart(fr).mark_rule(color="#57606a").encode(x="memory:Q", y="ci_low:Q", y2="ci_high:Q")
    line = alt.Chart(fr).mark_line(color="#24292f", strokeWidth=1.5, interpolate="step-after").encode(x=x, y=y)
    pts = alt.Chart(fr).mark_point(filled=True, size=70, stroke="white", strokeWidth=0.8).encode(
        x=x, y=y,
        color=alt.Color("spend:N", title="step spends on",
                        scale=alt.Scale(domain=list(SPEND_COLORS), range=list(SPEND_COLORS.values()))),
    )
    return (base + bars + line + pts).properties(
        width=460, height=300, title=alt.TitleParams(f"{dataset}", anchor="start", fontSize=14)
    ).configure_view(strokeWidth=0).configure_axis(grid=True, gridColor="#eaeef2")


def threshold_chart(result: Mapping[str, Any]) -> alt.LayerChart | None:
    """Mean advantage of the "win" option per weight size, with the switch and its interval."""
    pts = pd.DataFrame(result.get("points") or [])
    if pts.empty:
        return None
    agg = pts.groupby("weight_gib").agg(advantage=("advantage", "mean"), n=("advantage", "size")).reset_index()
    unit, per_unit = axis_unit(agg["weight_gib"])
    agg["weight"] = agg["weight_gib"] / per_unit
    x = alt.X("weight:Q", scale=alt.Scale(type="log", nice=False), title=f"weight memory of the configuration ({unit}, log)")
    layers = []
    if result.get("ci_low") and result.get("ci_high"):
        band = pd.DataFrame([{"lo": result["ci_low"] / per_unit, "hi": result["ci_high"] / per_unit}])
        layers.append(alt.Chart(band).mark_rect(color="#0969da", opacity=0.12).encode(x="lo:Q", x2="hi:Q"))
    if result.get("estimate"):
        est = pd.DataFrame([{"est": result["estimate"] / per_unit}])
        layers.append(alt.Chart(est).mark_rule(color="#0969da", strokeWidth=2).encode(x="est:Q"))
    zero = pd.DataFrame([{"y": 0.0}])
    layers.append(alt.Chart(zero).mark_rule(color="#8c959f", strokeDash=[4, 3]).encode(y="y:Q"))
    layers.append(alt.Chart(agg).mark_circle(color="#24292f", opacity=0.85).encode(
        x=x, y=alt.Y("advantage:Q", title=f"accuracy advantage of {result.get('win')}",
                     scale=alt.Scale(zero=True, padding=12)),
        size=alt.Size("n:Q", title="comparisons", scale=alt.Scale(range=[30, 300])),
    ))
    return alt.layer(*layers).properties(width=620, height=220).configure_view(strokeWidth=0)


def _interval_text(result: Mapping[str, Any], missing: str = "n/a") -> str:
    if result.get("ci_low") and result.get("ci_high"):
        return f"{format_memory(result['ci_low'])} to {format_memory(result['ci_high'])}"
    return missing


def _headline(thr: Mapping[str, Any] | None) -> dict:
    if not thr:
        return {"text": "No threshold was fitted.", "sub": ""}
    lvl = int(round(100 * float(thr.get("level", 0.95))))
    if thr.get("status") == "ok" and thr.get("estimate"):
        est = thr["estimate"]
        ci = _interval_text(thr, missing="")
        ci = f"{lvl}% interval {ci}" if ci else "no bootstrap interval"
        if thr.get("direction") == "win below":
            text = f"Below {format_memory(est)} of weights, spend memory on tokens; above, on weights."
        else:
            text = f"Below {format_memory(est)} of weights, spend memory on weights; above, on tokens."
        return {"text": text, "sub": f"{ci}; {thr.get('n_points')} equal-memory comparisons. "
                                     f"Paper: {thr.get('paper')}."}
    return {"text": f"No weights/tokens threshold: {thr.get('message') or thr.get('status')}.",
            "sub": f"Status: {thr.get('status')}. Paper: {thr.get('paper')}."}


def _scenario_table(df: pd.DataFrame, front_ids: set[str]):
    spec = [
        ("scenario", "scenario_id", False), ("dataset", "dataset", False), ("model", "model", False),
        ("weights", "weights", False), ("KV", "kv", False), ("tokens", "token_budget", True),
        ("G", "G", True), ("metric", "metric", False), ("questions", "n_questions", True),
        ("samples/question", "n_samples", True), ("accuracy", "accuracy", True),
        ("CI low", "ci_low", True), ("CI high", "ci_high", True), ("weight memory", "weight_gib", True),
        ("total memory", "total_gib", True), ("frontier", None, False),
    ]
    spec = [s for s in spec if s[1] is None or s[1] in df]
    rows = []
    for rec in df.sort_values([c for c in ("dataset", "total_gib") if c in df]).to_dict("records"):
        row = []
        for _, col, numeric in spec:
            if col is None:
                on = str(rec.get("scenario_id")) in front_ids
                row.append({"text": "\u2605" if on else "", "v": 1 if on else 0, "num": False})
                continue
            v = rec.get(col)
            if col in MEMORY_COLUMNS:
                row.append({"text": format_memory(v), "v": v, "num": True})
            elif col in COUNT_COLUMNS:
                row.append({"text": _count(v), "v": None if _num(v) == "n/a" else v, "num": True})
            elif numeric:
                fmt = "{:.3f}" if col in ("accuracy", "ci_low", "ci_high") else "{:.3g}"
                row.append({"text": _num(v, fmt), "v": None if _num(v) == "n/a" else v, "num": True})
            else:
                row.append({"text": _num(v), "v": None, "num": False})
        rows.append({"cells": row, "f": {col: _num(rec.get(col)) for _, col in FILTER_COLUMNS if col in df}})
    return [s[0] for s in spec], rows


def _adaptive_view(adaptive: Mapping[str, Any] | None) -> dict | None:
    """The adaptive sampling section, from ``results/adaptive/samples.json``: per generation the
    samples per question each budget was read at, the rounds it took part in (samples and the
    horizon they thought to), and why it stopped."""
    if not adaptive:
        return None
    gens = sorted(adaptive["generations"].values(),
                  key=lambda e: (str(e["dataset"]), str(e["model"]), str(e["weights"]), str(e["kv"])))
    rows = []
    for e in gens:
        samples = {int(b): int(r["samples"]) for b, r in e["budgets"].items()}
        closed = e.get("closed_questions", {})
        rows.append({"model": e["model"], "weights": e["weights"], "kv": e["kv"], "dataset": e["dataset"],
                     "samples": _samples_by_budget(samples, e["maximum"]) + _closed_text(closed),
                     "history": " \u2192 ".join(f"{n} to {horizon}" for n, horizon in e["history"]),
                     "reason": e["reason"], "early": min(samples.values()) < e["maximum"] or bool(closed),
                     "thinking": _thinking(samples, closed, e.get("questions")), "full": max(samples) * e["maximum"]})
    drawn, full = sum(r["thinking"] for r in rows), sum(r["full"] for r in rows)
    return {"rule": adaptive.get("rule"), "rounds": adaptive.get("rounds"), "rows": rows,
            "stopped_early": sum(r["early"] for r in rows), "generations": len(rows),
            "share": f"{drawn / full:.2f}" if full else "n/a",
            "open_per_round": adaptive.get("open_per_round") or []}


def _closed_text(closed: dict[str, int]) -> str:
    """``"; 3 questions closed at 5"``: the questions closed early (sampling.adaptive.close_questions)."""
    counts = sorted(set(closed.values()))
    return f"; {len(closed)} questions closed at {', '.join(map(str, counts))}" if closed else ""


def _thinking(samples: dict[int, int], closed: dict[str, int], questions: int | None) -> float:
    """Thinking tokens per question of a generation read at ``samples`` per budget, its ``closed``
    questions (of ``questions``) at their fewer samples."""
    if not closed:
        return thinking_per_question(samples)
    held = [thinking_per_question({b: min(n, c) for b, n in samples.items()}) for c in closed.values()]
    return ((questions - len(closed)) * thinking_per_question(samples) + sum(held)) / questions


def _samples_by_budget(samples: dict[int, int], maximum: int) -> str:
    """``"8 / 8 at 2000-6000; 4 / 8 at 10000"``: runs of budgets read at the same samples."""
    runs: list[list] = []
    for budget in sorted(samples):
        if runs and runs[-1][0] == samples[budget]:
            runs[-1][2] = budget
        else:
            runs.append([samples[budget], budget, budget])
    return "; ".join(f"{n} / {maximum} at {lo}" + (f"-{hi}" if hi != lo else "") for n, lo, hi in runs)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def _memory_txt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (list, tuple)):
        return f"{format_memory(v[0])} to {format_memory(v[1])}"
    return format_memory(v)


def _numbers_txt(numbers: Mapping[str, Any]) -> str:
    """A finding's numbers as text: shares as percentages, memories in readable units."""
    parts = []
    for name, value in numbers.items():
        label = name.replace("_", " ")
        if name.endswith("_gib"):
            parts.append(f"{label.removesuffix(' gib')} {format_memory(value)}")
        elif isinstance(value, float) or value is None:
            parts.append(f"{label} {_pct(value)}")
        else:
            parts.append(f"{label} {value}")
    return ", ".join(parts)


def _fit_txt(fit: Mapping[str, Any] | None) -> str:
    if not fit:
        return "no fit"
    if fit.get("status") != "ok":
        return f"fit: {fit.get('status')}"
    br = fit.get("bracket")
    text = f"switch between {format_memory(br[0])} and {format_memory(br[1])}" if br else "switch"
    if fit.get("ci_low") is not None and fit.get("ci_high") is not None:
        text += f"; interval {format_memory(fit['ci_low'])} to {format_memory(fit['ci_high'])}"
    held = fit.get("interval_contains_cut")
    held = fit.get("bracket_contains_cut") if held is None else held
    return text + ("; holds the paper's cut" if held else "; does not hold the paper's cut")


def _check_view(c: Mapping[str, Any]) -> dict:
    sides = [f"{s['label']}: {_memory_txt(s.get('memory_gib'))}"
             + (f", accuracy {s['accuracy']:.3f}" if s.get("accuracy") is not None else "")
             for s in c.get("sides", [])]
    return {"statement": c["statement"], "status": c["status"], "dataset": c.get("dataset", ""),
            "probability": _probability_txt(c), "sides": sides, "detail": c.get("detail", "")}


def _cut_txt(cut: Mapping[str, Any] | None) -> str:
    if not cut:
        return ""
    where = ("its weight memory in this study" if cut["placed_by"] == "study"
             else "the paper's value: this study has no such configuration")
    return f"{cut['configuration']}, {where}; {cut['configuration']} itself counts {cut['side']} the cut"


def _at_peak_txt(at_peak: Mapping[str, Any] | None) -> str:
    if not at_peak:
        return ""
    change = "the verdict changes" if at_peak["changes"] else "the verdict is the same"
    return (f"With eviction charged its peak (R-KV: KV budget plus compression interval) instead of its "
            f"budget: {at_peak['status']}; {change}.")


def _probability_txt(verdict: Mapping[str, Any]) -> str:
    """The probability of a verdict's status over the bootstrap replicates, as shown beside it."""
    p = verdict.get("probability")
    if p is None:
        return ""
    point = verdict.get("point_status", verdict["status"])
    return f"P({point}) = {p:.2f}" if verdict["status"] == "undecided" else f"P = {p:.2f}"


def _finding_view(f: Mapping[str, Any]) -> dict:
    """A findings.json entry for the template (older entries without per-dataset rows pass through)."""
    rows = []
    for r in f.get("per_dataset", []):
        ex = r.get("exploratory")
        rows.append({
            "dataset": r["dataset"], "status": r["status"], "probability": _probability_txt(r),
            "rule_status": r.get("rule_status", r.get("point_status", r["status"])),
            "rule_probability": "" if r.get("rule_probability") is None else f"(P = {r['rule_probability']:.2f})",
            "comparisons": r.get("comparisons", 0), "numbers": _numbers_txt(r.get("numbers", {})),
            "fit": _fit_txt(r.get("fit")),
            "exploratory": (f"exploratory, at the fitted switch {format_memory(ex['cut_gib'])}: {ex['status']} "
                            f"({_numbers_txt(ex['numbers'])})") if ex else "",
            "checks": [_check_view(c) for c in r.get("checks", [])],
        })
    pooled = f.get("pooled")
    return {"id": f["id"], "title": f["title"], "paper": f["paper"], "rule": f["rule"], "status": f["status"],
            "probability": _probability_txt(f), "engines": ", ".join(f.get("engines", [])),
            "at_peak": _at_peak_txt(f.get("eviction_at_peak")),
            "replicates": f.get("n_boot", 0), "level": f.get("verdict_level"),
            "cut": format_memory(f["cut_gib"]) if f.get("cut_gib") else "", "cut_note": _cut_txt(f.get("cut")),
            "comparisons": f.get("comparisons", 0),
            "rows": rows, "detail": f.get("detail", ""),
            "pooled": ({"status": pooled["status"], "comparisons": pooled.get("comparisons", 0),
                        "numbers": _numbers_txt(pooled.get("numbers", {})), "fit": _fit_txt(pooled.get("fit"))}
                       if pooled else None)}


def _clip_text(text: Any, limit: int) -> str:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    text = str(text)
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3
    return f"{text[:head]}\n\n[... {len(text) - head - tail} characters omitted ...]\n\n{text[-tail:]}"


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (e.g. a missing extracted answer) as None: JSON has no NaN,
    and a page's JSON.parse stops at one."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_for_html(value: Any) -> str:
    """JSON safe inside a <script type="application/json"> element (no '<', '>', '&'; no NaN)."""
    text = json.dumps(_finite(value), default=str, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _traces(samples_by_scenario: Mapping[str, pd.DataFrame], scen: pd.DataFrame, per_scenario: int,
            max_chars: int, max_total_chars: int) -> dict:
    """The trace viewer's data: a few samples per generation cell, each stored once.

    Scenarios that read the same samples (the same grades at the same token budget, e.g.
    every G of a configuration) share one entry; each text is clipped to ``max_chars`` and
    to an equal share of ``max_total_chars``, so the page stays small on any grid.
    Returns {"options": [(scenario_id, label, key)], "samples": {key: [sample dicts]}}."""
    info = scen.set_index(scen["scenario_id"].astype(str)) if "scenario_id" in scen else pd.DataFrame()
    info = info[~info.index.duplicated()]
    keys, picked = {}, {}
    for sid, sdf in samples_by_scenario.items():
        if sdf is None or len(sdf) == 0:
            continue
        sid = str(sid)
        r = info.loc[sid] if sid in info.index else None
        key = sid if r is None or "grade_id" not in r else f"{r['grade_id']}@{r.get('token_budget')}"
        keys[sid] = key
        if key not in picked:
            picked[key] = sdf.head(per_scenario)
    n_texts = sum(len(d) for d in picked.values())
    limit = max(1, min(max_chars, max_total_chars // max(n_texts, 1)))
    samples = {}
    for key, sdf in picked.items():
        samples[key] = [
            {k: ("" if rec.get(k) is None else rec.get(k)) for k in (
                "question_id", "sample_idx", "token_budget", "extracted_answer", "reference_answer",
                "thinking_tokens", "answer_tokens")}
            | {"correct": bool(rec.get("correct")), "forced": bool(rec.get("forced")),
               "text": _clip_text(rec.get("text"), limit)}
            for rec in sdf.to_dict("records")]
    options = []
    for sid, key in keys.items():
        label = sid
        if sid in info.index:
            r = info.loc[sid]
            label = (f"{r.get('dataset')} | {r.get('model')} {r.get('weights')} | KV {r.get('kv')} | "
                     f"T={r.get('token_budget')} G={r.get('G')}")
        options.append({"scenario_id": sid, "label": label, "key": key})
    options.sort(key=lambda o: o["label"])
    return {"options": options, "samples": samples, "chars_per_text": limit}


def _stringify(v: Any) -> str:
    if isinstance(v, float):
        return _num(v, "{:.6g}")
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str, sort_keys=True)
    return str(v)


def _provenance_blocks(provenance: Mapping[str, Any] | None):
    blocks = []
    scalars = []
    for key, val in (provenance or {}).items():
        if isinstance(val, pd.DataFrame):
            val = val.to_dict("records")
        if isinstance(val, Mapping):
            blocks.append({"name": str(key), "kind": "kv", "rows": [(str(k), _stringify(v)) for k, v in val.items()]})
        elif isinstance(val, (list, tuple)) and val and all(isinstance(r, Mapping) for r in val):
            cols: list[str] = []
            for r in val:
                cols += [str(c) for c in r if str(c) not in cols]
            rows = [[_stringify(r.get(c, "")) for c in cols] for r in val]
            blocks.append({"name": str(key), "kind": "records", "columns": cols, "rows": rows})
        else:
            scalars.append((str(key), _stringify(val)))
    if scalars:
        blocks.insert(0, {"name": "run", "kind": "kv", "rows": scalars})
    return blocks


def _normalise_thresholds(threshold: Mapping[str, Any] | None) -> dict[str, dict]:
    if not threshold:
        return {}
    if "status" in threshold and "kind" in threshold:
        return {threshold["kind"]: dict(threshold)}
    order = {kind: i for i, kind in enumerate(_threshold.KINDS)}
    kinds = sorted((k for k, v in threshold.items() if isinstance(v, Mapping)), key=lambda k: order.get(k, len(order)))
    return {k: dict(threshold[k]) for k in kinds}


def _recommend_view(data: Mapping[str, Any] | None) -> dict | None:
    """The memory input's datasets, a starting budget (the middle of the first dataset's range)
    and the embedded steps."""
    if not data or not data.get("datasets"):
        return None
    datasets = sorted(data["datasets"])
    low, high = data["datasets"][datasets[0]]["range_gib"]
    return {"datasets": datasets, "start": float(f"{math.sqrt(low * high):.2g}"),
            "level_pct": int(round(100 * data["interval_level"])), "json": _json_for_html(data)}


def render_report(
    scenarios_df: pd.DataFrame,
    questions_df: pd.DataFrame | None,
    samples_by_scenario: Mapping[str, pd.DataFrame] | None,
    threshold: Mapping[str, Any] | None,
    findings: list[dict] | None,
    provenance: Mapping[str, Any] | None,
    out_path: str | os.PathLike,
    *,
    title: str = "Where should the memory go? Weights, bits, tokens, samples, KV cache",
    budgets_gib: list[float] | None = None,
    traces_per_scenario: int = TRACES_PER_SCENARIO,
    trace_chars: int = MAX_TRACE_CHARS,
    trace_total_chars: int = MAX_TRACE_TOTAL_CHARS,
    template_dir: str | os.PathLike | None = None,
    adaptive: Mapping[str, Any] | None = None,
    recommendations: Mapping[str, Any] | None = None,
) -> Path:
    """Write the single-file HTML report to ``out_path`` and return its path.

    ``threshold``: one :func:`bitbudget.threshold.fit_threshold` result or the dict of
    :func:`~bitbudget.threshold.fit_thresholds` (the weights/tokens one drives the
    headline).  ``provenance``: any mapping; nested mappings become key/value tables,
    lists of mappings (or DataFrames) become tables, scalars go to a "run" table.
    ``questions_df`` is accepted for symmetry with the pipeline; per-question numbers are
    already folded into the threshold results. ``adaptive``: ``results/adaptive/samples.json``
    under adaptive sampling (a section lists where each generation stopped and why).
    ``recommendations``: :func:`bitbudget.recommend.page_data` of the study's results; the page
    then answers "my GPU has ... GB" with what ``bitbudget recommend`` prints.
    """
    scen = scenarios_df.copy()
    tdir = Path(template_dir) if template_dir else DEFAULT_TEMPLATE_DIR
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(tdir)),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                             undefined=jinja2.StrictUndefined)
    css = (tdir / "report.css").read_text(encoding="utf-8")
    script = (tdir / "report.js").read_text(encoding="utf-8")
    script_hash = "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()

    thresholds = _normalise_thresholds(threshold)
    main = thresholds.get("weights_vs_tokens") or (next(iter(thresholds.values())) if thresholds else None)
    level = float((main or {}).get("level", 0.95))

    datasets = sorted(scen["dataset"].astype(str).unique()) if not scen.empty else []
    charts = [{"dataset": ds, "svg": _svg(frontier_chart(scen, ds))} for ds in datasets]
    front = _frontier.pareto_frontier(scen) if not scen.empty else scen
    front_ids = set(front["scenario_id"].astype(str)) if not scen.empty else set()

    best_rows = []
    if not scen.empty:
        if budgets_gib is None:
            lo, hi = float(scen["total_gib"].min()), float(scen["total_gib"].max())
            budgets_gib = sorted({float(f"{b:.2g}") for b in np.geomspace(lo, hi, 8)})
            if budgets_gib[-1] < hi:
                budgets_gib[-1] = float(f"{hi * 1.05:.2g}")
        for r in _frontier.best_at_budget(scen, budgets_gib).to_dict("records"):
            best_rows.append({k: (_num(v, "{:.3f}") if k == "accuracy" else _count(v) if k in COUNT_COLUMNS
                                  else _num(v)) for k, v in r.items()}
                             | {k: format_memory(r[k]) for k in ("budget_gib", "total_gib")})

    thr_view = []
    for kind, t in thresholds.items():
        chart = threshold_chart(t)
        thr_view.append(t | {
            "paper_txt": format_memory(t["paper_gib"]) if t.get("paper_gib") else "n/a",
            "estimate_txt": format_memory(t["estimate"]) if t.get("estimate") else "n/a",
            "bracket_txt": (f"switch between {format_memory(t['bracket'][0])} and {format_memory(t['bracket'][1])}"
                            if t.get("bracket") else "threshold (weight memory)"),
            "ci_txt": _interval_text(t),
            "svg": _svg(chart) if chart is not None else "",
            "n_boot_ok": t.get("n_boot_ok", 0), "n_boot": t.get("n_boot", 0),
            "message": t.get("message", ""), "method": t.get("method", ""),
            "by_dataset": [{"dataset": d["dataset"], "status": d["status"],
                            "estimate": format_memory(d["estimate"]) if d.get("estimate") else "n/a",
                            "interval": _interval_text(d),
                            "comparisons": d.get("n_points", 0), "message": d.get("message", "")}
                           for d in t.get("by_dataset") or []],
        })

    cols, rows = _scenario_table(scen, front_ids) if not scen.empty else ([], [])
    filters = [{"name": name, "column": col,
                "options": sorted({r["f"][col] for r in rows}, key=lambda v: (len(v), v) if col == "G" else v)}
               for name, col in FILTER_COLUMNS if rows and col in rows[0]["f"]]
    engines = sorted(scen["engine"].astype(str).unique()) if "engine" in scen and not scen.empty else []
    simulated = SIMULATED_ENGINE in engines
    traces = _traces(samples_by_scenario or {}, scen, traces_per_scenario, trace_chars, trace_total_chars)
    html = env.get_template("index.html.j2").render(
        title=title,
        n_scenarios=len(scen),
        datasets=datasets,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        headline=_headline(main),
        level_pct=int(round(100 * level)),
        frontier_charts=charts,
        best_rows=best_rows,
        thresholds=thr_view,
        findings=[_finding_view(f) for f in findings or []],
        scenario_cols=cols,
        scenario_rows=rows,
        filters=filters,
        simulated=simulated,
        engines=engines,
        traces=traces,
        trace_json=_json_for_html(traces["samples"]),
        provenance=_provenance_blocks(provenance),
        adaptive=_adaptive_view(adaptive),
        recommend=_recommend_view(recommendations),
        css=css,
        script=script,
        script_hash=script_hash,
        version=__version__,
    )
    out = Path(out_path)
    write_text(out, html)  # atomic, with the process umask (group-readable by default)
    return out
