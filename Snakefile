from snakemake.utils import min_version

min_version("9.9")


# The default study, unless the command line names its own (--configfile replaces it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/grade.smk"
include: "workflow/rules/scenarios.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
