rule quantize:
    input:
        checkpoint_source,
    output:
        directory("results/checkpoints/{ckpt_id}"),
    params:
        spec=quantize_spec,
    log:
        log_path("quantize", "{ckpt_id}"),
    benchmark:
        benchmark_path("quantize", "{ckpt_id}")
    cache: True
    script:
        "../scripts/quantize.py"
