from bitbudget.generate import StopFlag, run_generation
from bitbudget.logs import configure_logging

log = configure_logging(snakemake)
spec = snakemake.params.spec
meta = run_generation(spec, snakemake.output[0], stop_requested=StopFlag().install(), gpus=snakemake.resources.gpu)
log.info("generation %s done: %s", meta["id"], meta["counters"])
