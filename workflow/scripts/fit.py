from bitbudget.artifacts import read_parquet_verified, write_json, write_meta, write_parquet
from bitbudget.fit import fit_study
from bitbudget.logs import configure_logging

log = configure_logging(snakemake)
analysis = snakemake.params.analysis
scenarios = read_parquet_verified(snakemake.input.scenarios)
questions = read_parquet_verified(snakemake.input.questions)
frontier, thresholds, findings = fit_study(scenarios, questions, analysis)
write_parquet(snakemake.output.frontier, frontier)
write_json(snakemake.output.threshold, thresholds)
write_json(snakemake.output.findings, findings)
key = {"scenarios": sorted(scenarios["scenario_id"]), "analysis": analysis}
for output in (snakemake.output.frontier, snakemake.output.threshold, snakemake.output.findings):
    write_meta(output, key)
log.info("thresholds: %s", {kind: fit.get("estimate") for kind, fit in thresholds.items()})
