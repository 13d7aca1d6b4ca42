rule grade:
    input:
        grade_samples,
    output:
        "results/grades/{grade_id}/grades.parquet",
    log:
        log_path("grade", "{grade_id}"),
    benchmark:
        benchmark_path("grade", "{grade_id}")
    conda:
        "../../envs/analysis.yaml"
    threads: config["grading"]["workers"]
    params:
        kind=lambda wildcards: config["datasets"][
            STUDY.grades[wildcards.grade_id].generation.dataset
        ]["kind"],
        end_of_thinking=config["forcing"]["end_of_thinking"],
        grading=config["grading"],
        key=lambda wildcards: STUDY.grades[wildcards.grade_id].key,
    script:
        "../scripts/grade.py"
