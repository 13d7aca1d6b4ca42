rule train_tiny_model:
    output:
        directory("{model_dir}"),
    log:
        log_path("train_tiny_model", "{model_dir}"),
    benchmark:
        benchmark_path("train_tiny_model", "{model_dir}")
    conda:
        "../../envs/hf.yaml"
    threads: lambda wildcards: training_recipe(wildcards)["threads"]
    params:
        model=lambda wildcards: {
            k: v
            for k, v in training_recipe(wildcards).items()
            if k not in ("task", "threads")
        },
        task=lambda wildcards: training_recipe(wildcards)["task"],
    script:
        "../scripts/train_tiny_model.py"
