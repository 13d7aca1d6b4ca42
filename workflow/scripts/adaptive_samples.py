from bitbudget import rounds
from bitbudget.artifacts import read_json_verified, write_json, write_meta
from bitbudget.logs import configure_logging

log = configure_logging(snakemake)
decisions = [read_json_verified(path) for path in snakemake.input.rounds]
samples = rounds.final_samples(decisions)
write_json(snakemake.output.samples, samples)
write_meta(snakemake.output.samples, {"plan": snakemake.params.plan_id, "rounds": len(decisions)})
log.info("%d rounds; samples per question: %s", len(decisions),
         sorted(e["samples"] for e in samples["generations"].values()))
