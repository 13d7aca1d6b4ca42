from bitbudget.artifacts import read_parquet_verified, write_json, write_meta, write_parquet
from bitbudget.findings import evaluate_findings
from bitbudget.frontier import pareto_frontier
from bitbudget.logs import configure_logging
from bitbudget.threshold import fit_thresholds

log = configure_logging(snakemake)
analysis = snakemake.params.analysis
scenarios = read_parquet_verified(snakemake.input.scenarios)
questions = read_parquet_verified(snakemake.input.questions)
thresholds = fit_thresholds(scenarios, questions, n_boot=analysis["bootstrap_samples"], seed=analysis["seed"],
                            memory_tolerance=analysis["memory_tolerance"], paper_cuts=analysis["paper_cuts"])
findings = evaluate_findings(scenarios, thresholds, analysis)
write_parquet(snakemake.output.frontier, pareto_frontier(scenarios))
write_json(snakemake.output.threshold, thresholds)
write_json(snakemake.output.findings, findings)
key = {"scenarios": sorted(scenarios["scenario_id"]), "analysis": analysis}
for output in snakemake.output:
    write_meta(output, key)
log.info("thresholds: %s", {kind: fit.get("estimate") for kind, fit in thresholds.items()})
