"""Where every number in the report came from: versions, config hash, artifacts, timings."""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

from bitbudget import versions
from bitbudget.artifacts import canonical_json, content_id

PACKAGES = ("bitbudget", "snakemake", "torch", "transformers", "vllm", "math-verify", "hqq", "pandas")


def read_benchmarks(root: str | Path = "benchmarks") -> list[dict]:
    """Timings Snakemake recorded for each job that ran (rule, artifact id, seconds, max RSS)."""
    rows = []
    for path in sorted(Path(root).rglob("*.tsv")):
        with open(path) as handle:
            records = list(csv.DictReader(handle, delimiter="\t"))
        if records:
            last = records[-1]
            rows.append({
                "rule": path.parent.name if path.parent != Path(root) else path.stem,
                "artifact": path.stem,
                "seconds": float(last["s"]),
                "max_rss_mb": float(last.get("max_rss") or 0),
            })
    return rows


def generation_records(grade_paths: list[str]) -> list[dict]:
    """Per generation: how many questions were generated fresh, re-forked or taken from cache."""
    rows = []
    for grade_path in grade_paths:
        grade_dir = Path(grade_path).parent
        grade_meta = json.loads((grade_dir / "grades.meta.json").read_text())
        gen_id = grade_meta["key"]["generation"]
        gen_meta = json.loads(Path(f"results/generations/{gen_id}/samples.meta.json").read_text())
        rows.append({
            "generation": gen_id,
            "grade": grade_dir.name,
            "trace": gen_meta["key"]["trace"],
            "questions": gen_meta["questions"],
            "generated": gen_meta["generated"],
            "reforked": gen_meta["reforked"],
            "from_cache": gen_meta["questions"] - gen_meta["generated"] - gen_meta["reforked"],
            "decode_tokens": gen_meta["counters"]["decode_tokens"] + gen_meta["counters"]["fork_tokens"],
            "seconds": gen_meta["seconds"],
        })
    return rows


def collect(config: dict, grade_paths: list[str]) -> dict:
    return {
        "versions": {name: versions.package_version(name) for name in PACKAGES}
        | {"python": platform.python_version(), "platform": platform.platform()},
        "config": {"hash": content_id(config), "bytes": len(canonical_json(config))},
        "code": {
            "quantizer": versions.QUANTIZER_VERSION,
            "generator": versions.GENERATOR_VERSION,
            "grader": versions.GRADER_VERSION,
        },
        "generations": generation_records(grade_paths),
        "timings": read_benchmarks(),
    }
