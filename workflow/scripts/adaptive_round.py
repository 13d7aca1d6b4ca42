from bitbudget import rounds
from bitbudget.artifacts import read_json_verified, write_json, write_meta
from bitbudget.logs import configure_logging
from bitbudget.study import build_study

log = configure_logging(snakemake)
study = build_study(snakemake.config)
held = rounds.held(study)
if rounds.plan_id(study, held) != snakemake.params.plan_id:
    raise RuntimeError("the adaptive plan differs from the one the workflow planned; rerun snakemake")
r = int(snakemake.wildcards.r)
previous = read_json_verified(snakemake.input.previous) if r > 0 else None
decision = rounds.decide(study, r, previous, held, threads=snakemake.threads)
write_json(snakemake.output.decision, decision)
write_meta(snakemake.output.decision, {"plan": snakemake.params.plan_id, "round": r,
                                       "grades": sorted(e["grade_id"] for e in decision["generations"].values())})
log.info("round %d: %d of %d generations open", r, decision["open"], len(decision["generations"]))
