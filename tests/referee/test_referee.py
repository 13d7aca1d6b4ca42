"""The library and the referee (a second implementation from docs/paper.md) agree exactly on
random small studies: frontier, equal-memory comparisons, switch bracket and verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitbudget import findings as lib_findings
from bitbudget import frontier as lib_frontier
from bitbudget import threshold as lib_threshold

from . import referee
from .studies import studies

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
KINDS = ("weights_vs_tokens", "samples_vs_tokens", "eviction_vs_quantization")
EXAMPLES = 500
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
THOROUGH = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def analysis_defaults() -> dict:
    props = yaml.safe_load(SCHEMA.read_text())["properties"]["analysis"]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def analysis_for(names: dict, checks: bool) -> dict:
    return analysis_defaults() | {"paper_names": names, "paper_checks": analysis_defaults()["paper_checks"] if checks else []}


def records(df) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) and k in ("kv_bits", "kv_budget") else v)
             for k, v in r.items()} for r in df.to_dict("records")]


def library_fits(df, tol: float, questions=None) -> dict:
    """{kind: {dataset: the library's fit on that dataset alone}}, from one fit_thresholds call
    (its pooled points carry each comparison's dataset)."""
    fits = lib_threshold.fit_thresholds(df, questions, n_boot=0, memory_tolerance=tol)
    datasets = sorted(df["dataset"].astype(str).unique())
    out = {}
    for kind, fit in fits.items():
        per = {d["dataset"]: d for d in fit.get("by_dataset", [])} or {datasets[0]: fit}
        out[kind] = {ds: per[ds] | {"points": [p for p in fit["points"] if p["dataset"] == ds]} for ds in datasets}
    return out, fits


def library_points(fit: dict) -> tuple[list, int]:
    """The library's comparisons as (win option's id, other id, weight GiB, advantage), and how
    many were left out (no finite advantage)."""
    points = []
    for p in fit["points"]:
        if p["advantage"] is None or not math.isfinite(p["advantage"]):
            continue
        win, lose = (p["scenario_id"], p["partner_id"]) if p["a_is_win"] else (p["partner_id"], p["scenario_id"])
        points.append((win, lose, p["weight_gib"], p["advantage"]))
    return sorted(points), len(fit["points"]) - len(points)


def library_switch(fit: dict) -> dict:
    bracket = tuple(fit["bracket"]) if fit["bracket"] else None
    return {"status": fit["status"], "bracket": bracket, "direction": fit["direction"]}


def per_question(questions) -> dict | None:
    """scenario_id -> {question_id: accuracy} (None without a per-question table)."""
    if questions is None:
        return None
    out: dict = {}
    for r in questions.to_dict("records"):
        out.setdefault(r["scenario_id"], {})[r["question_id"]] = r["accuracy"]
    return out


def referee_points(rows: list[dict], kind: str, tol: float, questions: dict | None = None) -> tuple[list, int]:
    comps, left_out = referee.comparisons(rows, kind, tol, questions)
    return sorted((c["win_id"], c["lose_id"], c["x"], c["advantage"]) for c in comps), left_out


def assert_comparisons_agree(df, rows: list[dict], kinds, tol: float, questions=None) -> dict:
    """Every kind's comparisons and switch, per dataset; returns the library's fits."""
    per_dataset, fits = library_fits(df, tol, questions)
    by_question = per_question(questions)
    for kind in kinds:
        for ds in referee.datasets_of(rows):
            mine = [r for r in rows if r["dataset"] == ds]
            lib = per_dataset[kind][ds]
            assert library_points(lib) == referee_points(mine, kind, tol, by_question), (kind, ds)
            made = referee.comparisons(mine, kind, tol, by_question)[0]
            assert library_switch(lib) == referee.switch(made), (kind, ds)
    return fits


def assert_verdicts_agree(df, rows: list[dict], fits: dict, analysis: dict, ids=(1, 2, 3, 4), questions=None) -> None:
    found = {f["id"]: f for f in lib_findings.evaluate_findings(df, fits, analysis, questions)}
    mine = referee.findings(rows, analysis, per_question(questions))
    for fid in ids:
        assert {r["dataset"]: r["status"] for r in found[fid]["per_dataset"]} == mine[fid]["per_dataset"], fid
        assert found[fid]["status"] == mine[fid]["status"], fid


@QUICK
@given(studies())
def test_frontier_agrees(study):
    df, _, _ = study
    rows = records(df)
    assert set(lib_frontier.pareto_frontier(df)["scenario_id"]) == referee.frontier_ids(rows)


@QUICK
@given(studies(nan_share=st.just(0.0)), st.sampled_from([0.02, 0.05, 0.1]))
def test_weights_and_samples_comparisons_and_switch_agree_without_missing_estimates(study, tol):
    df, _, _ = study
    assert_comparisons_agree(df, records(df), ("weights_vs_tokens", "samples_vs_tokens"), tol)


@QUICK
@given(studies(nan_share=st.just(0.0), non_evicting=st.just(False)))
def test_findings_1_to_3_agree_without_named_checks_or_missing_estimates(study):
    df, names, _ = study
    fits = lib_threshold.fit_thresholds(df, None, n_boot=0)
    assert_verdicts_agree(df, records(df), fits, analysis_for(names, checks=False), ids=(1, 2, 3))


@THOROUGH
@given(studies(per_question=st.booleans()), st.sampled_from([0.02, 0.05, 0.1]), st.booleans())
def test_library_and_referee_agree_exactly(study, tol, checks):
    df, names, questions = study
    rows = records(df)
    assert set(lib_frontier.pareto_frontier(df)["scenario_id"]) == referee.frontier_ids(rows)
    fits = assert_comparisons_agree(df, rows, KINDS, tol, questions)
    assert_verdicts_agree(df, rows, fits, analysis_for(names, checks) | {"memory_tolerance": tol}, questions=questions)


def test_a_single_sample_partner_just_above_the_tolerance_of_no_more_memory_is_still_compared():
    """Equal memory is symmetric (within the tolerance of the larger), "no more memory" is not:
    a G = 1 scenario at 1.0526 x a maj@G scenario's memory is equal to it at 5% but above
    1.05 x. It is the comparison's partner, never an empty candidate list."""
    base = {"dataset": "d", "weights": "w", "weight_bits": 16, "kv": "full", "kv_method": "full", "kv_bits": None,
            "kv_budget": None, "engine": "e", "n_samples": 8, "weight_gib": 0.5}
    df = pd.DataFrame([base | {"scenario_id": "a", "model": "m", "token_budget": 1000, "G": 4, "total_gib": 1.0,
                               "accuracy": 0.5},
                       base | {"scenario_id": "b", "model": "n", "token_budget": 1000, "G": 1, "total_gib": 1.0526,
                               "accuracy": 0.375}])
    fit = lib_threshold.fit_threshold(df, None, n_boot=0, kind="samples_vs_tokens", memory_tolerance=0.05)
    assert library_points(fit) == referee_points(records(df), "samples_vs_tokens", 0.05) == (
        [("a", "b", 0.5, 0.125)], 0)


@pytest.mark.parametrize("kind", ["beats", "kv_order"])
def test_a_named_check_with_an_unestimated_side_is_not_lost(kind):
    base = {"dataset": "d", "weights": "w", "weight_bits": 16, "kv": "full", "kv_method": "full", "kv_bits": None,
            "kv_budget": None, "engine": "e", "n_samples": 8, "token_budget": 6000, "G": 4, "weight_gib": 1.0}
    rows = [base | {"scenario_id": "a", "model": "m1", "total_gib": 2.0, "accuracy": float("nan")},
            base | {"scenario_id": "b", "model": "m2", "total_gib": 2.0, "accuracy": 0.5},
            base | {"scenario_id": "c", "model": "m1", "kv": "hqq4", "kv_method": "quantized", "kv_bits": 4,
                    "total_gib": 1.5, "accuracy": 0.25}]
    spec = {"finding": 1, "kind": kind, "statement": "s", "kv_bits": [4],
            "a": {"model": "A", "bits": 16, "G": 4}, "b": {"model": "B", "bits": 16, "G": 4}}
    analysis = analysis_defaults() | {"paper_names": {"models": {"A": "m1", "B": "m2"}, "datasets": {}}}
    status = lib_findings.evaluate_check(spec, pd.DataFrame(rows), analysis)["status"]
    assert status == referee.check(spec, records(pd.DataFrame(rows)), analysis | {"splits": {}})
