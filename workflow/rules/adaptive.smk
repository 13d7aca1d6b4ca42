# Adaptive sampling (sampling.adaptive; docs/adaptive.md, "Rounds in the DAG"). Always
# included; inert when it is off: no input names these outputs, so a study without it runs
# exactly the jobs it ran before.
#
# Round r is a checkpoint: its inputs are the grades of the samples each generation has drawn
# by round r (round 0: the first round's; later: the next round's for a generation round r-1
# left open, the same grade for one it stopped), so round r+1's generate and grade jobs exist
# only once round r has decided. Each decision is a small file: a killed run resumes at the
# first round whose decision is missing. Input functions: workflow/rules/common.smk.
#
# adaptive_samples also records the rounds of every generation the plan decided in the ledger
# (results/adaptive/ledger/): a later study with other scenarios and the same decision settings
# holds those generations at their recorded rounds (PLAN_ID and HELD, common.smk).


wildcard_constraints:
    r="[0-9]+",


checkpoint adaptive_round:
    input:
        unpack(adaptive_round_input),
    output:
        decision=rounds.round_path(PLAN_ID, "{r}"),
        meta=str(meta_path(rounds.round_path(PLAN_ID, "{r}"))),
    log:
        log_path("adaptive_round", PLAN_ID, "{r}"),
    benchmark:
        benchmark_path("adaptive_round", PLAN_ID, "{r}")
    conda:
        "../../envs/analysis.yaml"
    threads: ROUND_THREADS
    params:
        plan_id=PLAN_ID,
    script:
        "../scripts/adaptive_round.py"


rule adaptive_samples:
    input:
        rounds=adaptive_round_files,
    output:
        samples=rounds.SAMPLES,
        meta=str(meta_path(rounds.SAMPLES)),
        # the rounds of the generations this plan decided, for later plans to hold
        ledger=LEDGER_FILES,
    log:
        log_path("adaptive_samples"),
    conda:
        "../../envs/analysis.yaml"
    params:
        plan_id=PLAN_ID,
    script:
        "../scripts/adaptive_samples.py"
