from bitbudget.aggregate import aggregate
from bitbudget.artifacts import read_json_verified, read_parquet_verified, write_meta, write_parquet
from bitbudget.logs import configure_logging
from bitbudget.rounds import final_aggregate

log = configure_logging(snakemake)
scenarios = read_parquet_verified(snakemake.input.scenarios)
spec = snakemake.params.spec
if "adaptive" in snakemake.input.keys():  # sampling.adaptive: each generation at its final round's samples
    table, questions, spec = final_aggregate(scenarios, spec, read_json_verified(snakemake.input.adaptive))
else:
    table, questions = aggregate(scenarios, spec)
write_parquet(snakemake.output.scenarios, table)
write_parquet(snakemake.output.questions, questions)
inputs = sorted(spec["grades"])
for output in (snakemake.output.scenarios, snakemake.output.questions):
    write_meta(output, {"grades": inputs, "analysis": spec["analysis"]})
log.info("aggregated %d scenarios", len(table))
