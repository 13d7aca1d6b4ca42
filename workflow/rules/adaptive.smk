# Adaptive sampling (sampling.adaptive; docs/adaptive.md, "Rounds in the DAG"). Included only
# when it is on: a study without it has exactly the DAG it had before.
#
# Round r is a checkpoint: its inputs are the grades of the samples each generation has drawn
# by round r (round 0: the first round's; later: the next round's for a generation round r-1
# left open, the same grade for one it stopped), so round r+1's generate and grade jobs exist
# only once round r has decided. Each decision is a small file: a killed run resumes at the
# first round whose decision is missing.


wildcard_constraints:
    r="[0-9]+",


def adaptive_decision(r):
    """Round r's decision (raises Snakemake's incomplete-checkpoint signal until it is written)."""
    path = checkpoints.adaptive_round.get(r=r).output.decision
    return json.loads(Path(path).read_text())


def adaptive_decisions():
    """Every round's decision up to the one that leaves no generation open."""
    decisions = [adaptive_decision(0)]
    while not rounds.is_final(decisions[-1]):
        if len(decisions) > MAX_ROUNDS:
            raise RuntimeError(f"{rounds.round_path(PLAN_ID, len(decisions))}: more rounds than any generation has")
        decisions.append(adaptive_decision(len(decisions)))
    return decisions


def adaptive_round_input(wildcards):
    r = int(wildcards.r)
    inputs = {}
    previous = None
    if r > 0:
        inputs["previous"] = rounds.round_path(PLAN_ID, r - 1)
        previous = adaptive_decision(r - 1)
    grades = rounds.round_grades(STUDY, rounds.round_samples(STUDY, previous))
    inputs["grades"] = sorted(g.output for g in grades.values())
    # the generations' metadata hold the model records the memory columns read
    inputs["generations"] = sorted(g.generation.output for g in grades.values())
    return inputs


def adaptive_round_files(wildcards=None):
    return [rounds.round_path(PLAN_ID, d["round"]) for d in adaptive_decisions()]


def adaptive_used(decision):
    """Grades of one decision, by their ids."""
    return [ALL_GRADES[e["grade_id"]] for e in decision["generations"].values()]


def adaptive_final_grades():
    return adaptive_used(adaptive_decisions()[-1])


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
    params:
        plan_id=PLAN_ID,
    script:
        "../scripts/adaptive_round.py"


rule adaptive_samples:
    input:
        rounds=adaptive_round_files,
    output:
        samples=rounds.ROOT + "/samples.json",
        meta=rounds.ROOT + "/samples.meta.json",
    log:
        log_path("adaptive_samples"),
    conda:
        "../../envs/analysis.yaml"
    params:
        plan_id=PLAN_ID,
    script:
        "../scripts/adaptive_samples.py"
