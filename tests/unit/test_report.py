"""The HTML report: renders from synthetic data, escapes model output, stays offline."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from bitbudget import findings, report, threshold
from bitbudget.memory import axis_unit, format_memory

EVIL = "before <script>alert('pwned')</script> </pre><img src=x onerror=alert(1)> after"


def make_inputs(n_boot=40):
    scen, ques = threshold.synthetic_study(threshold_gb=4.2, seed=1, n_questions=20,
                                           datasets=("aime-like", "gpqa-like"))
    thr = threshold.fit_thresholds(scen, ques, n_boot=n_boot, seed=0)
    found = findings.evaluate_findings(scen, thr, None, ques, n_boot=n_boot, seed=0)
    samples = {}
    for sid in scen["scenario_id"].head(3):
        samples[sid] = pd.DataFrame([{
            "question_id": "q001", "sample_idx": i, "token_budget": 2000, "correct": i == 0,
            "extracted_answer": "<b>42</b>", "reference_answer": "42", "thinking_tokens": 120,
            "answer_tokens": 4, "forced": True, "text": EVIL} for i in range(2)])
    prov = {"config_hash": "0123abcd", "versions": {"python": "3.11", "bitbudget": "0.1.0"},
            "cache": {"hits": 12, "computed": 3},
            "benchmarks": [{"rule": "generate", "s": 12.5}, {"rule": "grade", "s": 0.4}]}
    return scen, ques, samples, thr, found, prov


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    scen, ques, samples, thr, found, prov = make_inputs()
    out = report.render_report(scen, ques, samples, thr, found, prov,
                               tmp_path_factory.mktemp("rep") / "index.html")
    return out.read_text(encoding="utf-8")


def test_model_text_is_escaped(rendered):
    data = re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', rendered, re.S).group(1)
    page = rendered.replace(data, "")
    assert "alert('pwned')" not in page.replace("&#39;", "'")
    assert "<script>alert" not in rendered and "<img src=x" not in rendered
    # model output reaches the page only inside the JSON block, with no markup character left
    assert "<" not in data and ">" not in data and "&" not in data
    assert "\\u003cscript\\u003ealert(" in data and "\\u003cb\\u003e42" in data
    # exactly one executable script element: ours
    assert len(re.findall(r"<script>", rendered)) == 1
    assert len(re.findall(r"<script\b", rendered)) == 2


def test_no_external_resources(rendered):
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", rendered, re.I)
    assert "@import" not in rendered and "url(http" not in rendered
    assert "Content-Security-Policy" in rendered and "default-src 'none'" in rendered


def test_sections_and_charts_present(rendered):
    for anchor in ("frontiers", "threshold", "findings", "scenarios", "traces", "provenance"):
        assert f'id="{anchor}"' in rendered
    assert rendered.count("<svg") >= 3  # two frontier charts + threshold chart(s)
    assert "spend memory on" in rendered
    assert "0123abcd" in rendered and "generate" in rendered
    assert 'class="sortable"' in rendered


def test_script_hash_matches(rendered):
    import base64
    import hashlib

    script = re.search(r"<script>(.*?)</script>", rendered, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in rendered


def test_renders_with_empty_inputs(tmp_path):
    scen, *_ = make_inputs(n_boot=5)
    out = report.render_report(scen.iloc[0:0], None, {}, None, [], {}, tmp_path / "r.html")
    assert "No threshold was fitted" in out.read_text()


def test_memory_is_shown_in_a_readable_unit():
    assert format_memory(4.19) == "4.19 GB"
    assert format_memory(0.5) == "512 MB"
    assert format_memory(4.83e-05) == "50.6 KB"
    assert format_memory(float("nan")) == "n/a"
    assert axis_unit([0.7, 90.0]) == ("GB", 1.0)
    assert axis_unit([4.83e-05, 3e-04]) == ("KB", 2.0**-20)
    assert axis_unit([]) == ("GB", 1.0)


def test_scenario_table_can_be_filtered(rendered):
    selects = re.findall(r'<select data-filter="(\w+)">', rendered)
    assert selects == ["dataset", "model", "weights", "kv", "G"]
    rows = re.findall(r'<tr data-dataset="([^"]+)" data-model="[^"]+" data-weights="[^"]+" data-kv="[^"]+" data-g="(\d+)">', rendered)
    assert len(rows) == rendered.count("<tr data-dataset=") > 100
    assert {d for d, _ in rows} == {"aime-like", "gpqa-like"} and {"1", "4", "8"} <= {g for _, g in rows}


def test_findings_show_per_dataset_verdicts_and_counts(rendered):
    section = rendered[rendered.index('<section id="findings">'):rendered.index('<section id="scenarios">')]
    assert section.count('class="finding"') == 4
    assert section.count("aime-like") >= 4 and section.count("gpqa-like") >= 4 and "pooled (reference)" in section
    assert "comparisons below" in section and "4.19 GB" in section and "8.94 GB" in section
    assert "4B-8bit itself counts above the cut" in section and "8B-8bit, the paper&#39;s value" in section


def test_each_verdict_shows_its_probability(rendered):
    section = rendered[rendered.index('<section id="findings">'):rendered.index('<section id="scenarios">')]
    _, _, _, _, found, _ = make_inputs()
    for f in found:
        shown = f"P({f['point_status']}) = " if f["status"] == "undecided" else "P = "
        assert f"{shown}{f['probability']:.2f}" in section
    assert "With eviction charged its peak" not in section  # the synthetic table has no peak column
    verdicts = section.count('class="badge') - section.count('class="pooled"')  # the pooled row decides nothing
    assert section.count('class="probability"') == verdicts  # findings, datasets and checks alike


def test_simulated_data_is_said_plainly(tmp_path):
    scen, ques, samples, thr, found, prov = make_inputs(n_boot=5)
    out = report.render_report(scen.assign(engine="simulated"), ques, samples, thr, found, prov, tmp_path / "s.html")
    html = out.read_text()
    assert 'id="simulated-banner"' in html and "<title>[SIMULATED DATA]" in html
    assert html.count("Simulated data") >= 3  # banner, trace note, footer
    real = report.render_report(scen.assign(engine="hf"), ques, samples, thr, found, prov, tmp_path / "r.html")
    assert "simulated-banner" not in real.read_text() and "Simulated data" not in real.read_text()


def test_traces_are_stored_once_per_generation_cell_and_capped(tmp_path):
    scen, ques, _, thr, found, prov = make_inputs(n_boot=5)
    long = pd.DataFrame([{"question_id": f"q{i}", "sample_idx": 0, "token_budget": 2000, "correct": True,
                          "extracted_answer": "1", "reference_answer": "1", "thinking_tokens": 9,
                          "answer_tokens": 1, "forced": False, "text": "x" * 50_000} for i in range(5)])
    samples = {sid: long for sid in scen["scenario_id"]}  # every scenario, long texts
    out = report.render_report(scen, ques, samples, thr, found, prov, tmp_path / "t.html",
                               traces_per_scenario=2, trace_total_chars=200_000)
    html = out.read_text()
    data = json.loads(re.search(r'id="trace-data">(.*?)</script>', html, re.S).group(1))
    cells = scen.groupby(["grade_id", "token_budget"]).ngroups
    assert len(data) == cells < len(scen)
    assert all(len(v) == 2 for v in data.values())
    assert sum(len(t["text"]) for v in data.values() for t in v) <= 200_000 * 1.05
    assert html.count('<option value="') >= len(scen)  # every scenario can be picked


def test_samples_per_question_and_adaptive_stops_are_shown(tmp_path):
    scen, ques, samples, thr, found, prov = make_inputs(n_boot=5)
    budgets = lambda *reads: {str(b): {"samples": n} for b, n in reads}  # noqa: E731
    adaptive = {"rule": "curtail", "rounds": 3, "open_per_round": [2, 1, 0], "generations": {
        "a" * 12: {"model": "m-small", "weights": "int4", "kv": "full", "dataset": "arith", "maximum": 8,
                   "budgets": budgets((100, 4), (200, 4), (300, 2)), "history": [[2, 300], [4, 200]],
                   "reason": "the full design would decide the same"},
        "b" * 12: {"model": "m-large", "weights": "bf16", "kv": "full", "dataset": "arith", "maximum": 8,
                   "budgets": budgets((100, 8), (200, 8), (300, 8)), "history": [[2, 300], [4, 300], [8, 300]],
                   "reason": "reached the maximum"}}}
    html = report.render_report(scen.assign(n_samples=4), ques, samples, thr, found, prov, tmp_path / "a.html",
                                adaptive=adaptive).read_text()
    assert "<th>samples/question</th>" in html
    section = html[html.index('<section id="adaptive">'):]
    section = section[:section.index("</section>")]
    # thinking per question: 2 samples to 300 and 2 more to 200 of 8 to 300; then 8 of 8 to 300
    assert "1 of 2 generations stopped early" in section and f"{(600 + 400 + 2400) / 4800:.2f} of the full" in section
    assert "<b>4 / 8 at 100-200; 2 / 8 at 300</b>" in section and "2 to 300 \u2192 4 to 200" in section
    assert "the full design would decide the same" in section and "8 / 8 at 100-300" in section
    assert "m-large" in section and "reached the maximum" in section
    plain = report.render_report(scen, ques, samples, thr, found, prov, tmp_path / "p.html").read_text()
    assert 'id="adaptive"' not in plain


def test_finding_4_says_whether_charging_eviction_its_peak_changes_it(tmp_path):
    scen, ques, samples, thr, _, prov = make_inputs(n_boot=5)
    scen["peak_total_gib"] = scen["total_gib"] * np.where(scen["kv_method"] == "r_kv", 1.004, 1.0)
    found = findings.evaluate_findings(scen, thr, None, ques, n_boot=5, seed=0)
    html = report.render_report(scen, ques, samples, thr, found, prov, tmp_path / "p.html").read_text()
    at_peak = found[3]["eviction_at_peak"]
    assert f"instead of its budget: {at_peak['status']}; the verdict is" in html


def test_traces_come_from_the_grade_its_metadata_names_not_its_path(tmp_path):
    from bitbudget.artifacts import content_id, write_meta, write_parquet

    key = {"generation": "g", "grader": "v"}
    graded = pd.DataFrame([{"question_id": f"q{i}", "sample_idx": 0, "token_budget": budget, "correct": True}
                           for budget in (16, 32) for i in range(4)])
    path = tmp_path / "moved" / "elsewhere" / "grades.parquet"  # no grade id anywhere in the path
    path.parent.mkdir(parents=True)
    write_parquet(path, graded)
    write_meta(path, key)
    scenarios = pd.DataFrame([{"scenario_id": "s16", "grade_id": content_id(key), "token_budget": 16},
                              {"scenario_id": "s32", "grade_id": content_id(key), "token_budget": 32},
                              {"scenario_id": "other", "grade_id": "0" * 12, "token_budget": 16}])
    traces = report.traces_by_scenario(scenarios, [str(path)], per_scenario=3)
    assert list(traces["s16"]["token_budget"]) == [16] * 3 and list(traces["s32"]["token_budget"]) == [32] * 3
    assert traces["other"] is None


def test_token_budgets_and_memory_read_as_people_read_them(rendered):
    tables = re.findall(r"<table.*?</table>", rendered, re.S)
    assert tables and not any(re.search(r"\d\.?\d*e\+\d", t) for t in tables)  # no 2e+03, 1.4e+04, 6.1e+04
    assert re.search(r'<td class="num" data-v="14000">14,000</td>', rendered)
    assert re.search(r"tokens \d{1,2},000 -&gt; \d{1,2},000", rendered)  # the change from the previous point
    # the frontier axis spans 0.5 to 90 GB: counted in GB, not in MB up to 92,000
    axes = re.findall(r"memory: weights \+ KV \((\w+), log\)", rendered)
    assert axes and set(axes) == {"GB"}
    assert 'class="muted change"' in rendered and 'class="scroll fit"' in rendered


def test_memory_input_is_embedded_when_recommendations_are_given(tmp_path):
    from bitbudget import recommend

    scen, ques, samples, thr, found, prov = make_inputs(n_boot=10)
    scen = scen.assign(model=scen["model"].where(scen["model"] != "m4B", "m4B</script><b>"))
    results = recommend.Results(scen, ques, n_boot=20, seed=0, generations={}, checkpoints={})
    page = report.render_report(scen, ques, samples, thr, found, prov, tmp_path / "index.html",
                                recommendations=recommend.page_data(results)).read_text()
    assert '<label for="gpu-memory">My GPU has</label>' in page and '<button type="submit">' in page
    data = re.search(r'<script type="application/json" id="recommend-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in data and "m4B\\u003c/script\\u003e" in data
    assert json.loads(data)["ways"][0]["name"] == "more parameters"
    assert len(re.findall(r"<script>", page)) == 1  # still one executable script: ours
    without = report.render_report(scen, ques, samples, thr, found, prov, tmp_path / "plain.html").read_text()
    assert 'id="gpu-memory"' not in without


def test_embedded_json_has_no_nan(tmp_path):
    """A sample without an extracted answer (NaN in the grades table) must not stop the page's script."""
    scen, ques, samples, thr, found, prov = make_inputs(n_boot=10)
    first = next(iter(samples))
    samples[first] = samples[first].assign(extracted_answer=np.nan)
    page = report.render_report(scen, ques, samples, thr, found, prov, tmp_path / "index.html").read_text()
    data = re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', page, re.S).group(1)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    parsed = json.loads(data, parse_constant=refuse)
    assert any(t["extracted_answer"] is None for texts in parsed.values() for t in texts)


def test_questions_closed_early_are_shown_and_counted_in_the_thinking_share(tmp_path):
    scen, ques, samples, thr, found, prov = make_inputs(n_boot=5)
    budgets = {str(b): {"samples": 8} for b in (100, 300)}
    adaptive = {"rule": "curtail", "rounds": 2, "open_per_round": [1, 0], "generations": {
        "c" * 12: {"model": "m-small", "weights": "int4", "kv": "full", "dataset": "arith", "maximum": 8,
                   "budgets": budgets, "history": [[4, 300], [8, 300]], "reason": "reached the maximum",
                   "closed_questions": {"q1": 4, "q7": 4, "q9": 4}, "questions": 10}}}
    html = report.render_report(scen.assign(n_samples=8), ques, samples, thr, found, prov, tmp_path / "c.html",
                                adaptive=adaptive).read_text()
    section = html[html.index('<section id="adaptive">'):]
    section = section[:section.index("</section>")]
    assert "<b>8 / 8 at 100-300; 3 questions closed at 4</b>" in section
    # 7 questions think 8 samples to 300, 3 think 4: (7 * 2400 + 3 * 1200) / 10 of 2400
    assert "1 of 1 generations stopped early" in section and f"{(7 * 2400 + 3 * 1200) / 10 / 2400:.2f} of the full" in section
