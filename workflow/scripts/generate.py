from bitbudget.generate import StopFlag, run_generation
from bitbudget.logs import configure_logging
from bitbudget.study import engine_spec

log = configure_logging(snakemake)
engine_runtime = {
    "batch_size": snakemake.resources.engine_batch_size,
    "device": snakemake.resources.engine_device,
    "python": snakemake.resources.engine_python or None,
    "cpu_kv_cache_gb": snakemake.resources.engine_cpu_kv_cache_gb,
}
spec = engine_spec(
    snakemake.params.key, engine_runtime, snakemake.params.checkpoint_path, snakemake.params.trace_dir,
    snakemake.params.revision,
)
meta = run_generation(spec, snakemake.output[0], stop_requested=StopFlag().install(), gpus=snakemake.resources.gpu)
log.info("generation %s done: %s", meta["id"], meta["counters"])
