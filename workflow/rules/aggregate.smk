rule expand_scenarios:
    output:
        "results/scenarios.parquet",
    params:
        scenarios=STUDY.scenarios,
    log:
        log_path("expand_scenarios"),
    script:
        "../scripts/expand_scenarios.py"


rule aggregate:
    input:
        scenarios="results/scenarios.parquet",
        grades=all_grades,
        checkpoints=all_checkpoint_dirs,
    output:
        scenarios=report(
            "results/aggregate/scenarios.parquet",
            caption="../../report/captions/scenarios.rst",
            category="Tables",
        ),
        questions="results/aggregate/questions.parquet",
    params:
        spec=aggregate_spec(),
    log:
        log_path("aggregate"),
    benchmark:
        benchmark_path("aggregate")
    script:
        "../scripts/aggregate.py"
