rule expand_scenarios:
    output:
        "results/scenarios.parquet",
    log:
        log_path("expand_scenarios"),
    conda:
        "../../envs/analysis.yaml"
    params:
        scenarios=STUDY.scenarios,
    script:
        "../scripts/expand_scenarios.py"
