import json
from pathlib import Path

from bitbudget.artifacts import read_json_verified, read_parquet_verified
from bitbudget.logs import configure_logging
from bitbudget.provenance import collect
from bitbudget.recommend import page_data, read_results
from bitbudget.report import TRACES_PER_SCENARIO, render_report

log = configure_logging(snakemake)
scenarios = read_parquet_verified(snakemake.input.scenarios)
questions = read_parquet_verified(snakemake.input.questions)
grades = {path.split("/")[-2]: read_parquet_verified(path) for path in snakemake.input.grades}
# a few samples per (grades, token budget), shared by the scenarios that read them (every G)
heads = {
    (grade_id, int(budget)): rows
    for grade_id, graded in grades.items()
    for budget, rows in graded.groupby("token_budget", sort=False).head(TRACES_PER_SCENARIO).groupby("token_budget")
}
samples_by_scenario = {
    row.scenario_id: heads.get((row.grade_id, int(row.token_budget))) for row in scenarios.itertuples()
}
render_report(
    scenarios, questions, samples_by_scenario,
    threshold=json.loads(open(snakemake.input.threshold).read()),
    findings=json.loads(open(snakemake.input.findings).read()),
    provenance=collect(snakemake.params.config_summary, list(snakemake.input.grades),
                       list(snakemake.input.generations), list(snakemake.params.benchmarks)),
    out_path=snakemake.output[0],
    traces_per_scenario=TRACES_PER_SCENARIO,
    adaptive=read_json_verified(snakemake.input.adaptive) if "adaptive" in snakemake.input.keys() else None,
    recommendations=page_data(read_results(Path(snakemake.input.scenarios).parents[1])),
)
log.info("report written to %s", snakemake.output[0])
