from pathlib import Path

from bitbudget.artifacts import write_meta
from bitbudget.logs import configure_logging
from bitbudget.quantize import quantize_checkpoint

log = configure_logging(snakemake)
spec = snakemake.params.spec
out_dir = Path(snakemake.output[0])
summary = quantize_checkpoint(
    spec["source"], out_dir, bits=spec["bits"], group_size=spec["group_size"], method=spec["method"],
    fmt=spec.get("format"), python=spec.get("python"),
)
write_meta(out_dir / "model.safetensors", spec["key"], quantization=summary)
log.info("quantized %s to %d-bit (group %d): %s", spec["source"], spec["bits"], spec["group_size"], summary)
