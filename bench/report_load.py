"""How long the report takes to become usable in a browser, at the paper grid's scale.

Renders two reports from synthetic studies, one the size of the default study and one the
size of the paper grid (about 2,400 scenarios with long traces for every scenario), opens
each in headless Chromium a few times and reads the page's own `data-ready-ms` (navigation
start to the page script done). Prints each report's size and median ready time, the paper
grid's time as a ratio to the small report's, and whether it meets the target.

    python bench/report_load.py                  # 3 loads of each report
    python bench/report_load.py --repeats 5 --target-ms 3000
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from bitbudget import findings, report, threshold  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1280,2000", "--virtual-time-budget=3000"]
PAPER_GRID = dict(bits=(2, 3, 4, 5, 6, 8, 16), datasets=("aime", "gpqa", "third"))
SMALL_GRID = dict(bits=(4, 16), datasets=("aime",))
TRACE_TEXT = "Let me think. " * 3000  # ~40k characters, a long reasoning trace
TRACES_PER_SCENARIO = 3


def study_inputs(grid: dict, seed: int = 0) -> tuple:
    """The arguments of report.render_report for a synthetic study over `grid`."""
    scen, ques = threshold.synthetic_study(threshold_gb=4.2, seed=seed, n_questions=30, n_samples=8, **grid)
    scen["engine"] = "simulated"
    scen["grade_id"] = scen["gen_id"]
    thr = threshold.fit_thresholds(scen, ques, n_boot=50, seed=seed)
    samples = {}
    for (_, budget), rows in scen.groupby(["grade_id", "token_budget"]):
        table = pd.DataFrame([{"question_id": f"q{i}", "sample_idx": i, "token_budget": budget,
                               "correct": i % 2 == 0, "extracted_answer": "7", "reference_answer": "7",
                               "thinking_tokens": budget, "answer_tokens": 9, "forced": True,
                               "text": TRACE_TEXT} for i in range(TRACES_PER_SCENARIO)])
        samples.update({sid: table for sid in rows["scenario_id"]})
    return scen, ques, samples, thr, findings.evaluate_findings(scen, thr), {"config_hash": "bench"}


def paper_scale_inputs() -> tuple:
    return study_inputs(PAPER_GRID)


def ready_ms(page: Path, profile: Path) -> int:
    """Milliseconds from navigation start to the page script done, as the page records them."""
    proc = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=300, check=True)
    found = re.search(r'data-ready-ms="(\d+)"', proc.stdout)
    if not found:
        raise SystemExit(f"{page}: the page script did not finish (no data-ready-ms)")
    return int(found.group(1))


def measure(name: str, inputs: tuple, workdir: Path, repeats: int) -> tuple[float, float]:
    page = report.render_report(*inputs, workdir / name / "index.html")
    times = [ready_ms(page, workdir / f"{name}-profile-{i}") for i in range(repeats)]
    size_mib = page.stat().st_size / 2**20
    print(f"{name:>6}: {len(inputs[0]):5d} scenarios, {size_mib:5.2f} MiB, ready in "
          f"{statistics.median(times):6.0f} ms (median of {times})")
    return statistics.median(times), size_mib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target-ms", type=float, default=3000.0)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} missing (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        small, _ = measure("small", study_inputs(SMALL_GRID), Path(tmp), args.repeats)
        paper, _ = measure("paper", paper_scale_inputs(), Path(tmp), args.repeats)
    verdict = "meets" if paper <= args.target_ms else "misses"
    print(f"paper/small ready time: {paper / small:.2f}x; paper grid {paper:.0f} ms {verdict} "
          f"the {args.target_ms:.0f} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
