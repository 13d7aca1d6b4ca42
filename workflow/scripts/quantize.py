from pathlib import Path

from bitbudget.artifacts import write_directory_meta, write_meta
from bitbudget.backends.simulated import write_metadata_checkpoint
from bitbudget.logs import configure_logging
from bitbudget.specs import CheckpointRuntime, QuantizeSpec

log = configure_logging(snakemake)
spec = QuantizeSpec.from_key(snakemake.params.key, CheckpointRuntime(python=snakemake.resources.python or None))
fmt = spec.format
out_dir = Path(snakemake.output[0])
if spec.metadata_only:  # the simulated engine's checkpoint: architecture and counts, no weights
    summary = write_metadata_checkpoint(spec.source, out_dir, fmt)
    # every file of the directory is checksummed (there is no weights file to name)
    write_directory_meta(out_dir, spec.key(), quantization=summary)
else:
    from bitbudget.quantize import quantize_checkpoint  # imports torch, which a metadata-only checkpoint never needs

    summary = quantize_checkpoint(spec.source, out_dir, fmt, python=spec.runtime.python, revision=spec.revision)
    write_meta(out_dir / "model.safetensors", spec.key(), quantization=summary)
log.info("quantized %s to %d-bit (group %d): %s", spec.source, fmt.bits, fmt.group_size, summary)
