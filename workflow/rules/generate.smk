rule generate:
    input:
        generation_checkpoint,
    output:
        "results/generations/{gen_id}/samples.parquet",
    log:
        log_path("generate", "{gen_id}"),
    benchmark:
        benchmark_path("generate", "{gen_id}")
    conda:
        "../../envs/hf.yaml"
    resources:
        gpu=generation_resource("gpu", 0),
        gpu_model=generation_resource("gpu_model", ""),
        cpus_per_gpu=generation_resource("cpus_per_gpu", 1),
        mem_mb=generation_resource("mem_mb", 4000),
        runtime=generation_resource("runtime", 60),
        slurm_partition=generation_resource("slurm_partition", ""),
        slurm_account=generation_resource("slurm_account", ""),
        slurm_extra=generation_resource("slurm_extra", ""),
    params:
        spec=generation_spec,
    script:
        "../scripts/generate.py"
