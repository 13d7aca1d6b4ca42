import json

from bitbudget.artifacts import read_parquet_verified
from bitbudget.logs import configure_logging
from bitbudget.provenance import collect
from bitbudget.report import render_report

log = configure_logging(snakemake)
scenarios = read_parquet_verified(snakemake.input.scenarios)
questions = read_parquet_verified(snakemake.input.questions)
grades = {path.split("/")[-2]: read_parquet_verified(path) for path in snakemake.input.grades}
samples_by_scenario = {
    row.scenario_id: grades[row.grade_id][grades[row.grade_id]["token_budget"] == row.token_budget]
    for row in scenarios.itertuples()
}
render_report(
    scenarios, questions, samples_by_scenario,
    threshold=json.loads(open(snakemake.input.threshold).read()),
    findings=json.loads(open(snakemake.input.findings).read()),
    provenance=collect(snakemake.params.config, list(snakemake.input.grades)),
    out_path=snakemake.output[0],
)
log.info("report written to %s", snakemake.output[0])
