rule train_tiny_model:
    output:
        directory("{model_dir}"),
    log:
        log_path("train_tiny_model", "{model_dir}"),
    benchmark:
        benchmark_path("train_tiny_model", "{model_dir}")
    conda:
        "../../envs/hf.yaml"
    threads: workflow.cores
    params:
        recipe=lambda wildcards: next(
            m["train"]
            for m in config["models"].values()
            if m["path"] == wildcards.model_dir
        ),
        task=config.get("tiny_model_task", {}),
    script:
        "../scripts/train_tiny_model.py"
