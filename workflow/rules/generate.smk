# params: hold only the generation's key (what its id hashes) and paths derived from ids;
# engine speed settings and scheduler resources are resources, so editing them reruns nothing.
rule generate:
    input:
        generation_checkpoint,
    output:
        # the metadata is an output too: data without it (or it without data) is redone
        samples="results/generations/{gen_id}/samples.parquet",
        meta="results/generations/{gen_id}/samples.meta.json",
    log:
        log_path("generate", "{gen_id}"),
    benchmark:
        benchmark_path("generate", "{gen_id}")
    conda:
        "../../envs/hf.yaml"
    resources:
        gpu=generation_resource("gpu"),
        gpu_model=generation_resource("gpu_model"),
        cpus_per_gpu=generation_resource("cpus_per_gpu"),
        mem_mb=generation_resource("mem_mb"),
        runtime=generation_resource("runtime"),
        slurm_partition=generation_resource("slurm_partition"),
        slurm_account=generation_resource("slurm_account"),
        slurm_extra=generation_resource("slurm_extra"),
        engine_batch_size=engine_runtime("batch_size"),
        engine_device=engine_runtime("device"),
        engine_python=engine_runtime("python"),
        engine_cpu_kv_cache_gb=engine_runtime("cpu_kv_cache_gb"),
    params:
        key=generation_key,
        checkpoint_path=generation_checkpoint_path,
        trace_dir=generation_trace_dir,
        revision=generation_revision,
    script:
        "../scripts/generate.py"
