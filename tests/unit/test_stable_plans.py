"""Stable plans: a decision is keyed by what it reads, and the ledger keeps each generation's
recorded rounds for later studies (docs/adaptive.md, "Stable plans")."""

from __future__ import annotations

import contextlib
import copy

import pytest

from bitbudget import rounds
from bitbudget.adaptive import closing, schedule
from bitbudget.artifacts import write_json
from bitbudget.schema import schema_defaults
from bitbudget.study import build_study
from tests.harness import plan_as_the_snakefile, run_grades, small_adaptive_config, with_resources
from tests.pipeline.test_adaptive_rounds import adaptive_config

#: analysis fields no decision reads ("a.b": the field b of a), each with a changed value
EXCLUDED = {"bootstrap_samples": 500, "seed": 3, "verdict_level": 0.95, "paper_checks": [],
            "paper_names.datasets": {"AIME": "aime2025"}}
#: each field of rounds.DECISION_ANALYSIS with a changed value
INCLUDED = {"kv_tokens": "context", "memory_tolerance": 0.1, "min_comparisons": 5, "switch_window": 3,
            "paper_cuts": {"weights_vs_tokens": {"model": "8B", "bits": 4, "side": "above", "gib": 5.0}},
            "paper_names.models": {"4B": "qwen3-0.6b"}}


def changed(config: dict, name: str, value) -> dict:
    out = copy.deepcopy(config)
    *outer, field = name.split(".")
    target = out["analysis"]
    for part in outer:
        target = target.setdefault(part, {})
    target[field] = value
    return out


@pytest.fixture(scope="module")
def validated():
    return plan_as_the_snakefile(adaptive_config()).config


def test_every_analysis_field_is_either_read_by_the_decisions_or_left_out_of_their_key():
    fields = set(schema_defaults("analysis")) | {"bootstrap_samples", "seed"}
    assert set(INCLUDED) == set(rounds.DECISION_ANALYSIS)
    assert {n.split(".")[0] for n in [*INCLUDED, *EXCLUDED]} == fields


def test_the_key_holds_the_analysis_fields_decisions_read_and_no_other(validated):
    base = build_study(validated)
    ids = (rounds.settings_id(base), rounds.design_id(base), rounds.plan_id(base, {}))
    for name, value in EXCLUDED.items():
        study = build_study(changed(validated, name, value))
        assert (rounds.settings_id(study), rounds.design_id(study), rounds.plan_id(study, {})) == ids, name
    for name, value in INCLUDED.items():
        study = build_study(changed(validated, name, value))
        assert rounds.decision_analysis(study.config["analysis"]) != rounds.decision_analysis(validated["analysis"])
        assert rounds.settings_id(study) != ids[0] and rounds.plan_id(study, {}) != ids[2], name


def test_a_decision_reads_only_its_analysis_fields(validated, tmp_path, monkeypatch):
    """Round 0 decided on real (simulated) samples: a changed excluded field leaves the decision
    file as it was; the decision code is handed the keyed fields alone."""
    study = build_study(validated)
    seen = []
    decide_round, aggregate = closing.decide_round, rounds.aggregate
    monkeypatch.setattr(closing, "decide_round", lambda *a, **k: seen.append(("decide", a[5])) or decide_round(*a, **k))
    monkeypatch.setattr(rounds, "aggregate", lambda scen, spec: seen.append(("aggregate", spec["analysis"]))
                        or aggregate(scen, spec))
    with contextlib.chdir(with_resources(tmp_path)):
        run_grades(study, rounds.grades_read(study, rounds.round_reads(study, None)))
        base = rounds.decide(study, 0, None)
        keyed = rounds.decision_analysis(validated["analysis"])
        assert seen == [("aggregate", keyed | rounds.POINT_ESTIMATES), ("decide", keyed)]
        for name, value in EXCLUDED.items():
            assert rounds.decide(build_study(changed(validated, name, value)), 0, None) == base, name


# ---- the ledger (no data: decisions written by hand)


@pytest.fixture(scope="module")
def config():
    return small_adaptive_config()


def entry(study, gen_id: str, r: int, samples: int, history: list, open_budgets: list) -> dict:
    budgets = study.generations[gen_id].budgets
    read = {"samples": samples, "horizon": max(budgets), "gen_id": f"{gen_id[:6]}r{samples}", "grade_id": f"g{samples}"}
    return {"model": study.generations[gen_id].checkpoint.model, **read,
            "reason": schedule.OPEN if open_budgets else schedule.CURTAILED, "open_budgets": open_budgets,
            "round": r, "history": history, "open": bool(open_budgets),
            "budgets": {str(b): read for b in budgets}}


def finished(study) -> list[dict]:
    """Three rounds: ``a`` closes after round 0, ``b`` after round 2."""
    a, b = sorted(study.generations)
    budgets = list(study.generations[b].budgets)
    out = []
    for r, (ea, eb) in enumerate([
            (entry(study, a, 0, 2, [[2, 48]], budgets), entry(study, b, 0, 2, [[2, 48]], budgets)),
            (entry(study, a, 1, 5, [[2, 48], [5, 48]], []), entry(study, b, 1, 5, [[2, 48], [5, 48]], budgets)),
            (entry(study, a, 1, 5, [[2, 48], [5, 48]], []), entry(study, b, 2, 8, [[2, 48], [5, 48], [8, 48]], []))]):
        out.append({"plan_id": rounds.plan_id(study, {}), "rule": "curtail", "round": r, "held": [],
                    "open": ea["open"] + eb["open"], "generations": {a: ea, b: eb}})
    return out


def test_the_ledger_records_each_decided_generation_and_a_later_study_holds_it(config, tmp_path):
    study = build_study(config)
    a, b = sorted(study.generations)
    decisions = finished(study)
    entries = rounds.ledger_entries(study, decisions)
    sid = rounds.settings_id(study)
    assert sorted(entries) == rounds.ledger_paths(study, {}) == [rounds.ledger_path(sid, g) for g in (a, b)]
    recorded = entries[rounds.ledger_path(sid, b)]
    assert recorded["final"] == rounds.final_samples(decisions)["generations"][b]
    assert [e["round"] for e in recorded["rounds"]] == [0, 1, 2] and recorded["rounds"][-1]["samples"] == 8
    assert [e["round"] for e in entries[rounds.ledger_path(sid, a)]["rounds"]] == [0, 1]
    for path, e in entries.items():
        write_json(tmp_path / path, e)

    assert rounds.held(study, tmp_path) == {}  # the design's own rounds: decided again, identically
    bigger = copy.deepcopy(config)
    bigger["grids"]["small"]["models"].append("tiny-m")
    added = build_study(bigger)
    assert {a, b} < set(added.generations) and rounds.settings_id(added) == sid
    held = rounds.held(added, tmp_path)
    assert sorted(held) == [a, b] and held[b] == recorded
    assert rounds.plan_id(added, held) != rounds.plan_id(added, {})
    assert rounds.ledger_paths(added, held) == [rounds.ledger_path(sid, g) for g in sorted(added.generations)
                                                if g not in (a, b)]
    first = rounds.round_reads(added, None, held)
    assert first[b] == {int(x): (8, 48) for x in recorded["final"]["budgets"]}
    new = next(g for g in added.generations if g not in (a, b))
    assert set(first[new].values()) == {(2, max(added.generations[new].budgets))}

    # other decision settings: nothing is held (their ledger is another directory)
    stepped = copy.deepcopy(bigger)
    stepped["sampling"]["adaptive"]["step"] = 2
    assert rounds.held(build_study(stepped), tmp_path) == {}


def test_a_ledger_entry_of_other_settings_is_refused(config, tmp_path):
    study = build_study(config)
    path, recorded = next(iter(rounds.ledger_entries(study, finished(study)).items()))
    write_json(tmp_path / path, {**recorded, "settings": {**recorded["settings"], "seed": 99}})
    with pytest.raises(ValueError, match="ledger entry"):
        rounds.read_ledger(tmp_path / path, recorded["gen_id"], rounds.decision_settings(study))


def test_a_held_generation_draws_in_no_round(config):
    study = build_study(config)
    a, b = sorted(study.generations)
    decisions = [{**d, "held": [a]} for d in finished(study)]
    assert rounds.drew_in(decisions, a) == [] and rounds.drew_in(decisions, b) == [0, 1, 2]
    assert rounds.final_samples(decisions)["held"] == [a]
    assert list(rounds.ledger_entries(study, decisions)) == [rounds.ledger_path(rounds.settings_id(study), b)]
