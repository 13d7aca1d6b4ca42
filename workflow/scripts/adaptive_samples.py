from bitbudget import rounds
from bitbudget.artifacts import read_json_verified, write_json, write_meta
from bitbudget.logs import configure_logging
from bitbudget.study import build_study

log = configure_logging(snakemake)
decisions = [read_json_verified(path) for path in snakemake.input.rounds]
samples = rounds.final_samples(decisions)
ledger = rounds.ledger_entries(build_study(snakemake.config), decisions)
if sorted(ledger) != sorted(snakemake.output.ledger):
    raise RuntimeError("the ledger entries differ from those the workflow planned; rerun snakemake")
for path, entry in ledger.items():
    write_json(path, entry)
write_json(snakemake.output.samples, samples)
write_meta(snakemake.output.samples, {"plan": snakemake.params.plan_id, "rounds": len(decisions)})
log.info("%d rounds; samples per question: %s", len(decisions),
         sorted(e["samples"] for e in samples["generations"].values()))
