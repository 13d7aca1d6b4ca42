from bitbudget.artifacts import read_parquet_verified, write_meta, write_parquet
from bitbudget.grading import grade_samples
from bitbudget.logs import configure_logging

log = configure_logging(snakemake)
samples = read_parquet_verified(snakemake.input[0])
graded = grade_samples(
    samples, kind=snakemake.params.kind, end_of_thinking=snakemake.params.end_of_thinking,
    timeout_s=snakemake.params.key["timeout_s"], workers=snakemake.threads,
)
write_parquet(snakemake.output[0], graded)
write_meta(snakemake.output[0], snakemake.params.key)
log.info("graded %d samples: %.3f correct", len(graded), graded["correct"].mean())
