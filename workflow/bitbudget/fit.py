"""The fit stage: the accuracy-vs-memory frontier, the scale thresholds and the paper's findings."""

from __future__ import annotations

import pandas as pd

from bitbudget.findings import evaluate_findings, placed_cuts
from bitbudget.frontier import pareto_frontier
from bitbudget.threshold import fit_thresholds


def fit_study(scenarios: pd.DataFrame, questions: pd.DataFrame, analysis: dict) -> tuple[pd.DataFrame, dict, list]:
    """(frontier, thresholds, findings) of one aggregated study under the `analysis` settings."""
    thresholds = fit_thresholds(
        scenarios, questions, n_boot=analysis["bootstrap_samples"], seed=analysis["seed"],
        memory_tolerance=analysis["memory_tolerance"],
        paper_cuts={kind: cut["gib"] for kind, cut in placed_cuts(analysis, scenarios).items()},
    )
    findings = evaluate_findings(scenarios, thresholds, analysis, questions, n_boot=analysis["bootstrap_samples"],
                                 seed=analysis["seed"])
    return pareto_frontier(scenarios), thresholds, findings
