from pathlib import Path

from bitbudget.artifacts import write_directory_meta, write_meta
from bitbudget.backends.simulated import write_metadata_checkpoint
from bitbudget.logs import configure_logging

log = configure_logging(snakemake)
key = snakemake.params.key
fmt = key["format"]
out_dir = Path(snakemake.output[0])
if key.get("metadata_only"):  # the simulated engine's checkpoint: architecture and counts, no weights
    summary = write_metadata_checkpoint(key["model"]["path"], out_dir, fmt)
    # every file of the directory is checksummed (there is no weights file to name)
    write_directory_meta(out_dir, key, quantization=summary)
else:
    from bitbudget.quantize import quantize_checkpoint  # imports torch, which a metadata-only checkpoint never needs

    summary = quantize_checkpoint(
        key["model"]["path"], out_dir, bits=fmt["bits"], group_size=fmt["group_size"], method=fmt["method"],
        fmt=fmt, python=snakemake.resources.python or None, revision=key["model"]["revision"],
    )
    write_meta(out_dir / "model.safetensors", key, quantization=summary)
log.info("quantized %s to %d-bit (group %d): %s", key["model"]["path"], fmt["bits"], fmt["group_size"], summary)
