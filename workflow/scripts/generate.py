from bitbudget.enginespec import EngineRuntime, EngineSpec
from bitbudget.generate import StopFlag, run_generation
from bitbudget.logs import configure_logging

log = configure_logging(snakemake)
engine_runtime = EngineRuntime(
    batch_size=snakemake.resources.engine_batch_size,
    python=snakemake.resources.engine_python or None,
    device=snakemake.resources.engine_device,
    cpu_kv_cache_gb=snakemake.resources.engine_cpu_kv_cache_gb,
)
spec = EngineSpec.from_generation_key(
    snakemake.params.key, engine_runtime, snakemake.params.checkpoint_path, snakemake.params.trace_dir,
    snakemake.params.revision,
)
meta = run_generation(spec, snakemake.output[0], stop_requested=StopFlag().install(), gpus=snakemake.resources.gpu)
log.info("generation %s done: %s", meta["id"], meta["counters"])
