import pandas as pd

from bitbudget.artifacts import content_id, write_meta, write_parquet
from bitbudget.logs import configure_logging
from bitbudget.study import build_study

log = configure_logging(snakemake)
scenarios = build_study(snakemake.config).scenarios
if content_id(scenarios) != snakemake.params.scenarios_id:
    raise RuntimeError("the scenario list differs from the one the workflow planned; rerun snakemake")
table = pd.DataFrame.from_records(scenarios)
write_parquet(snakemake.output[0], table)
write_meta(snakemake.output[0], {"scenarios": sorted(table["scenario_id"])})
log.info("%d scenarios", len(table))
