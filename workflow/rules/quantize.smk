# No benchmark: Snakemake forbids it on rules eligible for the between-workflow cache.
rule quantize:
    input:
        checkpoint_source,
    output:
        directory("results/checkpoints/{ckpt_id}"),
    log:
        log_path("quantize", "{ckpt_id}"),
    cache: True
    conda:
        "../../envs/hf.yaml"
    resources:
        python=quantize_python,
    params:
        key=checkpoint_key,
    script:
        "../scripts/quantize.py"
