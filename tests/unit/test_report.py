"""The HTML report: renders from synthetic data, escapes model output, stays offline."""

import re

import pandas as pd
import pytest

from bitbudget import findings, report, threshold

EVIL = "before <script>alert('pwned')</script> </pre><img src=x onerror=alert(1)> after"


def make_inputs(n_boot=40):
    scen, ques = threshold.synthetic_study(threshold_gb=4.2, seed=1, n_questions=20,
                                           datasets=("aime-like", "gpqa-like"))
    thr = threshold.fit_thresholds(scen, ques, n_boot=n_boot, seed=0)
    found = findings.evaluate_findings(scen, thr)
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
    assert "alert('pwned')" not in rendered.replace("&#39;", "'").split("<pre>")[0]
    assert "<script>alert" not in rendered
    assert "&lt;script&gt;alert(" in rendered
    assert "<img src=x" not in rendered
    assert "&lt;b&gt;42&lt;/b&gt;" in rendered
    # exactly one script element: ours
    assert len(re.findall(r"<script\b", rendered)) == 1


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
    from bitbudget.memory import format_memory, memory_unit

    assert format_memory(4.19) == "4.19 GB"
    assert format_memory(0.5) == "512 MB"
    assert format_memory(4.83e-05) == "50.6 KB"
    assert format_memory(float("nan")) == "n/a"
    assert memory_unit([4.19, 0.5]) == ("MB", 2.0**-10)
    assert memory_unit([4.83e-05, 3.0]) == ("KB", 2.0**-20)
    assert memory_unit([]) == ("GB", 1.0)
