from bitbudget.artifacts import read_parquet_verified, write_meta, write_parquet
from bitbudget.grading import grade
from bitbudget.logs import configure_logging
from bitbudget.specs import GradeRuntime, GradeSpec

log = configure_logging(snakemake)
spec = GradeSpec.from_key(snakemake.params.key, snakemake.params.kind, snakemake.params.end_of_thinking,
                          GradeRuntime(workers=snakemake.threads))
graded = grade(read_parquet_verified(snakemake.input[0]), spec)
write_parquet(snakemake.output[0], graded)
write_meta(snakemake.output[0], spec.key())
log.info("graded %d samples: %.3f correct", len(graded), graded["correct"].mean())
