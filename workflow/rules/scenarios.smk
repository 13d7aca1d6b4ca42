rule expand_scenarios:
    output:
        scenarios="results/scenarios.parquet",
        meta="results/scenarios.meta.json",
    log:
        log_path("expand_scenarios"),
    conda:
        "../../envs/analysis.yaml"
    params:
        # the id of the scenario list, not the list: a dry run after a change prints one line
        scenarios_id=content_id(STUDY.scenarios),
    script:
        "../scripts/expand_scenarios.py"
