import pandas as pd

from bitbudget.artifacts import write_meta, write_parquet
from bitbudget.logs import configure_logging

log = configure_logging(snakemake)
table = pd.DataFrame.from_records(snakemake.params.scenarios)
write_parquet(snakemake.output[0], table)
write_meta(snakemake.output[0], {"scenarios": sorted(table["scenario_id"])})
log.info("%d scenarios", len(table))
