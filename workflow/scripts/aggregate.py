from bitbudget.aggregate import aggregate
from bitbudget.artifacts import read_parquet_verified, write_meta, write_parquet
from bitbudget.logs import configure_logging

log = configure_logging(snakemake)
scenarios = read_parquet_verified(snakemake.input.scenarios)
table, questions = aggregate(scenarios, snakemake.params.spec)
write_parquet(snakemake.output.scenarios, table)
write_parquet(snakemake.output.questions, questions)
inputs = sorted(snakemake.params.spec["grades"])
for output in (snakemake.output.scenarios, snakemake.output.questions):
    write_meta(output, {"grades": inputs, "analysis": snakemake.params.spec["analysis"]})
log.info("aggregated %d scenarios", len(table))
