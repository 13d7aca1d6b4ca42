"""Open the rendered report in headless Chromium: charts drawn, scripts ran, no errors."""

import importlib.util
import re
import struct
import zlib
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.browser

_spec = importlib.util.spec_from_file_location("bench_report_load", REPO / "bench" / "report_load.py")
bench_report_load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_report_load)


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


def test_paper_scale_report_is_small_and_says_simulated(chromium, console_problems, tmp_path):
    """Its load time is a benchmark (bench/report_load.py), not a check here."""
    from bitbudget import report

    scen, *rest = bench_report_load.paper_scale_inputs()
    assert len(scen) >= 2000
    out = report.render_report(scen, *rest, tmp_path / "index.html")
    size = out.stat().st_size
    assert size <= 10 * 2**20, size
    proc = chromium(out.as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_problems(proc.stderr) == []
    dom = proc.stdout
    assert 'data-ready="1"' in dom  # the page script ran to its end
    assert "Simulated data." in dom and dom.count("<tr data-dataset=") == len(scen)
    print(f"paper-scale report: {len(scen)} scenarios, {size / 2**20:.2f} MiB")
