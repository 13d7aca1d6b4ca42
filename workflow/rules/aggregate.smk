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


rule aggregate:
    input:
        scenarios="results/scenarios.parquet",
        grades=all_grades,
        generations=all_generations,
    output:
        scenarios=report(
            "results/aggregate/scenarios.parquet",
            caption="../../report/captions/scenarios.rst",
            category="Tables",
        ),
        questions="results/aggregate/questions.parquet",
    log:
        log_path("aggregate"),
    benchmark:
        benchmark_path("aggregate")
    conda:
        "../../envs/analysis.yaml"
    params:
        spec=aggregate_spec(),
    script:
        "../scripts/aggregate.py"
