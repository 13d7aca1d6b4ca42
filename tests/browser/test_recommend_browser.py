"""The report's memory input in headless Chromium: the page gives what `bitbudget recommend --json` gives."""

import html
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

DATASET = "aime-like"
ANALYSIS = {"bootstrap_samples": 200, "seed": 5}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A results folder with a finished aggregate, and the report rendered from it."""
    from bitbudget import artifacts, recommend, report, threshold

    root = tmp_path_factory.mktemp("recommend-browser")
    scen, ques = threshold.synthetic_study(threshold_gb=4.2, seed=2, n_questions=20, datasets=(DATASET, "gpqa-like"))
    for name, table in (("scenarios", scen), ("questions", ques)):
        path = root / "results" / "aggregate" / f"{name}.parquet"
        artifacts.write_parquet(path, table)
        artifacts.write_meta(path, {"analysis": ANALYSIS})
    data = recommend.page_data(recommend.read_results(root / "results"))
    out = report.render_report(scen, ques, {}, None, [], {}, root / "index.html", recommendations=data)
    low, high = data["datasets"][DATASET]["range_gib"]
    return root / "results", out, low, high


def _command_json(results: Path, memory_gib: float) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
    from test_recommend import _command, _env  # noqa: E402  (the installed entry point, else the module)

    run = subprocess.run([*_command(), "recommend", "--memory", f"{memory_gib!r}GiB", "--dataset", DATASET,
                          "--results", str(results), "--json"], capture_output=True, text=True, env=_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)["datasets"][0]


def _page_rows(dom: str) -> dict[str, dict]:
    """way -> the data attributes of its row in the recommendation table."""
    out = re.search(r'<div id="recommend-output"[^>]*>(.*?)</div>', dom, re.S).group(1)
    rows = {}
    for attrs in re.findall(r"<tr ([^>]*data-way[^>]*)>", out):
        values = {k: html.unescape(v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', attrs)}
        rows[values["way"]] = values
    return rows


def _expected(found: dict) -> dict[str, dict]:
    rec = found["recommendation"]
    rows = {"recommendation": {"scenario": rec["scenario_id"], "accuracy": rec["accuracy"],
                               "total-gib": rec["memory"]["total_gib"]}}
    for alt in found["alternatives"]:
        c = alt["configuration"]
        rows[alt["way"]] = {"scenario": ""} if c is None else {
            "scenario": c["scenario_id"], "accuracy": c["accuracy"], "total-gib": c["memory"]["total_gib"],
            "difference": alt["difference"], "difference-low": alt["difference_ci"][0],
            "difference-high": alt["difference_ci"][1]}
    return rows


@pytest.mark.parametrize("where", [0.15, 0.5, 0.85])
def test_page_matches_the_command(study, chromium, console_problems, where):
    results, page, low, high = study
    memory_gib = float(f"{math.exp(math.log(low) + where * (math.log(high) - math.log(low))):.4g}")
    expected = _expected(_command_json(results, memory_gib))
    proc = chromium(f"{page.as_uri()}?memory={memory_gib}&dataset={DATASET}", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_problems(proc.stderr) == []
    assert 'data-status="ok"' in proc.stdout
    assert 'data-overflowing="0"' in proc.stdout  # no column cut off at the right edge
    rows = _page_rows(proc.stdout)
    assert set(rows) == set(expected)
    alternatives_found = 0
    for way, want in expected.items():
        got = rows[way]
        assert got["scenario"] == want["scenario"], way
        for key, value in want.items():
            if key != "scenario":
                assert float(got[key]) == value, (way, key)
        alternatives_found += bool(want["scenario"]) and way != "recommendation"
    assert alternatives_found >= 1  # the comparison covers at least one runner-up and its interval


def test_page_refuses_a_budget_below_the_study(study, chromium, console_problems):
    _, page, low, _ = study
    proc = chromium(f"{page.as_uri()}?memory={low / 2}&dataset={DATASET}", "--dump-dom")
    assert console_problems(proc.stderr) == []
    assert 'data-status="below"' in proc.stdout and "below the smallest configuration studied" in proc.stdout
