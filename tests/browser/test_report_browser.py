"""Open the rendered report in headless Chromium: charts drawn, scripts ran, no errors."""

import re
import struct
import zlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


def _png_is_not_blank(path: Path) -> bool:
    """Decompress the PNG's image data and check it is not one flat colour (a blank page
    filters to nearly one byte value)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    distinct = len(set(raw[: 4_000_000]))
    return distinct > 64


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
    from test_report import make_inputs  # noqa: E402

    from bitbudget import report

    out = tmp_path_factory.mktemp("browser") / "index.html"
    report.render_report(*make_inputs(), out)
    return out


def test_console_error_detection_works(chromium, console_problems, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    proc = chromium(bad.as_uri(), "--dump-dom")
    assert any("Uncaught" in line for line in console_problems(proc.stderr))


def test_report_renders_in_chromium(chromium, console_problems, report_file, tmp_path):
    proc = chromium(report_file.as_uri(), "--dump-dom")
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_problems(proc.stderr) == []
    assert 'data-ready="1"' in dom  # our script ran under the page's CSP
    svgs = re.findall(r"<svg.*?</svg>", dom, re.S)
    assert len(svgs) >= 3
    frontier = [s for s in svgs if "mark-symbol" in s]
    assert frontier and all(s.count("<path") > 10 for s in frontier[:2])
    # the injected script in a trace stayed text
    outside = re.sub(r"<pre>.*?</pre>|<script type=\"application/json\".*?</script>", "", dom, flags=re.S)
    assert "alert('pwned')" not in outside
    assert "&lt;script&gt;alert(" in dom
    # the trace viewer renders the picked scenario's samples, as text
    panel = re.search(r'<div id="trace-panel" class="trace-panel">(.*?)</div>\s*<script', dom, re.S).group(1)
    assert panel.count('<div class="trace">') == 2 and "&lt;script&gt;alert(" in panel

    shot = tmp_path / "report.png"
    proc = chromium(report_file.as_uri(), f"--screenshot={shot}")
    assert shot.exists(), proc.stderr[-2000:]
    assert console_problems(proc.stderr) == []
    assert _png_is_not_blank(shot)


def _paper_scale_inputs():
    """About 2,400 scenarios (7 weight formats x 6 models x 19 variants x 3 datasets, the size of
    the paper grid) with long traces for every scenario."""
    import pandas as pd

    from bitbudget import findings, threshold

    scen, ques = threshold.synthetic_study(threshold_gb=4.2, seed=0, n_questions=30, n_samples=8,
                                           bits=(2, 3, 4, 5, 6, 8, 16), datasets=("aime", "gpqa", "third"))
    scen["engine"] = "simulated"
    scen["grade_id"] = scen["gen_id"]
    thr = threshold.fit_thresholds(scen, ques, n_boot=50, seed=0)
    text = "Let me think. " * 3000  # ~40k characters, a long reasoning trace
    samples = {}
    for (gid, T), rows in scen.groupby(["grade_id", "token_budget"]):
        df = pd.DataFrame([{"question_id": f"q{i}", "sample_idx": i, "token_budget": T, "correct": i % 2 == 0,
                            "extracted_answer": "7", "reference_answer": "7", "thinking_tokens": T,
                            "answer_tokens": 9, "forced": True, "text": text} for i in range(3)])
        samples.update({sid: df for sid in rows["scenario_id"]})
    return scen, ques, samples, thr, findings.evaluate_findings(scen, thr), {"config_hash": "x"}


def test_paper_scale_report_is_small_fast_and_says_simulated(chromium, console_problems, tmp_path):
    from bitbudget import report

    scen, *rest = _paper_scale_inputs()
    assert len(scen) >= 2000
    out = report.render_report(scen, *rest, tmp_path / "index.html")
    size = out.stat().st_size
    assert size <= 10 * 2**20, size
    proc = chromium(out.as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_problems(proc.stderr) == []
    dom = proc.stdout
    ready_ms = int(re.search(r'data-ready-ms="(\d+)"', dom).group(1))
    assert ready_ms <= 3000, ready_ms  # navigation start to the page script done
    assert "Simulated data." in dom and dom.count("<tr data-dataset=") == len(scen)
    print(f"paper-scale report: {len(scen)} scenarios, {size / 2**20:.2f} MiB, ready in {ready_ms} ms")
