from snakemake.utils import min_version

from bitbudget.config import check_config_files

min_version("9.9")


# The default study, unless the command line names its own (--configfile replaces it).
# Read once with bitbudget's loader first: a syntax error or a duplicate key names file and line.
if not workflow.overwrite_configfiles:
    check_config_files(["config/config.yaml"])

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
include: "workflow/rules/adaptive.smk"


rule all:
    default_target: True
    input:
        # under adaptive sampling a function: the rounds' jobs are known as their decisions come
        final_outputs if ADAPTIVE else final_outputs(),
