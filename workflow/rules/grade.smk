rule grade:
    input:
        grade_samples,
    output:
        grades="results/grades/{grade_id}/grades.parquet",
        meta="results/grades/{grade_id}/grades.meta.json",
    log:
        log_path("grade", "{grade_id}"),
    benchmark:
        benchmark_path("grade", "{grade_id}")
    conda:
        "../../envs/analysis.yaml"
    threads: lambda wildcards: grade_of(wildcards.grade_id).runtime.workers
    params:
        key=grade_key,
        kind=grade_dataset_kind,
        end_of_thinking=grade_end_of_thinking,
    script:
        "../scripts/grade.py"
