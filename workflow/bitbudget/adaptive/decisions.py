"""The fit stage's decisions as a function of the scenarios' accuracies, for many accuracy
vectors at once: what the curtailment rule compares with and without budgets closed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bitbudget import findings, frontier, threshold

__all__ = ["Decisions"]


class Decisions:
    """What the fit stage decides, as a function of the scenarios' accuracies, for many
    accuracy vectors at once (columns): frontier membership (:func:`bitbudget.frontier.pareto_frontier`),
    every switch's status and bracket (:func:`bitbudget.threshold.fit_thresholds`, each kind,
    pooled and per dataset) and each finding's rule verdict per dataset
    (:func:`bitbudget.findings.evaluate_findings` without the named checks), each through the
    public function the fit stage itself calls (:func:`bitbudget.frontier.frontier_columns`,
    :func:`bitbudget.threshold.switch_decisions`, :func:`bitbudget.findings.rule_outcomes`).
    Comparisons, testable rules and memory orders depend on memory only, so they are built once."""

    def __init__(self, scenarios: pd.DataFrame, analysis: dict):
        scen = scenarios.reset_index(drop=True)
        cfg = findings.analysis_settings(analysis)
        self.min_n, self.window = int(cfg["min_comparisons"]), float(cfg["switch_window"])
        cuts = findings.placed_cuts(cfg, scen)
        dataset = scen["dataset"].astype(str).to_numpy()
        datasets = sorted(set(dataset))
        self.fronts = frontier.frontier_order(scen)
        self.switches, self.touched, pooled = [], [], {}
        for kind in threshold.KINDS:
            for ds in [None] + (datasets if len(datasets) > 1 else []):
                rows = np.arange(len(scen)) if ds is None else np.flatnonzero(dataset == ds)
                comp = threshold.build_comparisons(scen.iloc[rows].reset_index(drop=True), kind,
                                                   cfg["memory_tolerance"])
                pooled.setdefault(kind, len(self.switches))
                self.switches.append((rows, comp, *np.unique(comp.x, return_inverse=True)))
                self.touched.append(_touched(rows, comp, len(scen)))
        self.rules = []  # (finding, its cut, the pooled switch of its kind, that switch's comparisons of the dataset)
        for fid, ds in findings.testable_rules(scen, cuts):
            kind = findings.FINDINGS[fid]["kind"]
            switch = pooled[kind]
            self.rules.append((fid, cuts[kind]["split"], switch, self.switches[switch][1].in_group(dataset, ds)))

    def frontier(self, acc: np.ndarray) -> np.ndarray:
        """[n, B] bool: on its dataset's frontier, per column (ties as pareto_frontier breaks them)."""
        return frontier.frontier_columns(self.fronts, acc)

    def advantages(self, acc: np.ndarray, reference: list | None = None, changed=None) -> list[np.ndarray]:
        """Per switch: [comparisons, B] advantages of the "win" option. Given the ``reference``
        advantages of accuracies that differ from ``acc`` only in the scenario rows ``changed``,
        only the comparisons touching those rows are computed again."""
        if reference is None:
            return [threshold.advantages(comp, acc[rows]) for rows, comp, _, _ in self.switches]
        out = []
        for (rows, comp, _, _), touched, adv in zip(self.switches, self.touched, reference):
            hit = touched[changed].any(axis=0) if len(changed) else np.zeros(len(comp.a), dtype=bool)
            if hit.any():
                adv = adv.copy()
                adv[hit] = threshold.advantages(comp.subset(hit), acc[rows])
            out.append(adv)
        return out

    def brackets(self, advantages: list[np.ndarray]) -> list[list]:
        """Per switch, per column: (status, bracket) as fit_threshold gives them."""
        return [threshold.switch_decisions(*threshold.size_evidence(adv, size_index, len(sizes))).statuses(sizes)
                for (_, _, sizes, size_index), adv in zip(self.switches, advantages)]

    def verdicts(self, advantages: list[np.ndarray]) -> list[list]:
        """Per (finding, dataset) where the paper's cut is testable, per column: the rule's
        status from the signs of the dataset's comparisons."""
        return [list(findings.rule_outcomes(fid, self.switches[switch][1].x[mine], advantages[switch][mine], cut,
                                            self.min_n, self.window))
                for fid, cut, switch, mine in self.rules]

    def outcomes(self, acc: np.ndarray, reference: tuple | None = None, changed=None) -> tuple:
        """Every decision per column of ``acc`` [n, B]: (frontier [n, B], per switch and per
        finding rule the list of per-column outcomes, the switches' advantages). ``reference``
        and ``changed``: as :meth:`advantages` (the outcomes of accuracies differing only there)."""
        advantages = self.advantages(acc, None if reference is None else reference[2], changed)
        return self.frontier(acc), self.brackets(advantages) + self.verdicts(advantages), advantages

    def differs(self, now: np.ndarray, reference: tuple, changed=None) -> np.ndarray:
        """[B] bool: column b of ``now`` decides differently from column b of ``reference``
        (the :meth:`outcomes` of the accuracies compared against, computed once by the caller;
        ``changed``: the only scenario rows where ``now`` differs from them, if known)."""
        front, per_decision, _ = self.outcomes(now, reference if changed is not None else None, changed)
        out = (front != reference[0]).any(axis=0)
        for mine, theirs in zip(per_decision, reference[1]):
            out |= np.array([x != y for x, y in zip(mine, theirs)], dtype=bool)
        return out

    def changed(self, now: np.ndarray, full: np.ndarray) -> np.ndarray:
        """[B] bool: column b of ``now`` and column b of ``full`` (both [n, B]) decide differently."""
        return self.differs(now, self.outcomes(full))


def _touched(rows: np.ndarray, comp: threshold.Comparisons, n_scenarios: int) -> np.ndarray:
    """[scenarios, comparisons] bool: the scenario rows (of the whole table) each comparison reads."""
    touched = np.zeros((n_scenarios, len(comp.a)), dtype=bool)
    for i, (a, cand) in enumerate(zip(comp.a, comp.b)):
        touched[rows[a], i] = True
        touched[rows[np.asarray(cand)], i] = True
    return touched
