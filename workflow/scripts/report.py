import json
from pathlib import Path

from bitbudget import rounds
from bitbudget.artifacts import read_json_verified, read_parquet_verified
from bitbudget.logs import configure_logging
from bitbudget.provenance import collect
from bitbudget.recommend import page_data, read_results
from bitbudget.report import TRACES_PER_SCENARIO, render_report, traces_by_scenario

log = configure_logging(snakemake)
scenarios = read_parquet_verified(snakemake.input.scenarios)
questions = read_parquet_verified(snakemake.input.questions)
adaptive = read_json_verified(snakemake.input.adaptive) if "adaptive" in snakemake.input.keys() else None
benchmarks = list(snakemake.params.benchmarks)
if adaptive:  # the rounds' jobs, from their decisions
    benchmarks += sorted(set(rounds.round_benchmarks(rounds.read_decisions(adaptive["plan_id"]))) - set(benchmarks))
render_report(
    scenarios, questions, traces_by_scenario(scenarios, snakemake.input.grades),
    threshold=json.loads(open(snakemake.input.threshold).read()),
    findings=json.loads(open(snakemake.input.findings).read()),
    provenance=collect(snakemake.params.config_summary, list(snakemake.input.grades),
                       list(snakemake.input.generations), benchmarks),
    out_path=snakemake.output[0],
    traces_per_scenario=TRACES_PER_SCENARIO,
    adaptive=adaptive,
    recommendations=page_data(read_results(Path(snakemake.input.scenarios).parents[1])),
)
log.info("report written to %s", snakemake.output[0])
