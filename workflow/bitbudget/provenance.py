"""Where every number in the report came from: versions, config hash, artifacts, timings."""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

from bitbudget import versions
from bitbudget.artifacts import canonical_json, content_id, meta_path

#: where Snakemake writes each job's timings (:func:`benchmark_path`)
BENCHMARKS = "benchmarks"
PACKAGES = ("bitbudget", "snakemake", "torch", "transformers", "vllm", "math-verify", "hqq", "pandas")


def benchmark_path(stage: str, *keys: str) -> str:
    """A job's benchmark file: ``benchmarks/<rule>[/<keys>].tsv``."""
    return str(Path(BENCHMARKS, stage, *keys)) + ".tsv"


def read_benchmarks(paths: list[str | Path]) -> list[dict]:
    """Timings Snakemake recorded for this study's jobs (rule, artifact id, seconds, max RSS).

    ``paths`` are the study's own benchmark files (``benchmarks/<rule>[/<id>].tsv``); those of
    jobs that have not run yet (the report's own) are skipped.
    """
    rows = []
    for path in map(Path, paths):
        if not path.exists():
            continue
        with open(path) as handle:
            records = list(csv.DictReader(handle, delimiter="\t"))
        if records:
            last = records[-1]
            rows.append({
                "rule": path.parts[1] if len(path.parts) > 2 else path.stem,
                "artifact": path.stem,
                "seconds": float(last["s"]),
                "max_rss_mb": float(last.get("max_rss") or 0),
            })
    return rows


def generation_records(grade_paths: list[str], generation_paths: list[str]) -> list[dict]:
    """Per grade of a generation: how many questions were generated fresh, re-forked or taken
    from cache, read from the metadata of the declared grade and generation inputs."""
    generations = {Path(p).parent.name: json.loads(meta_path(p).read_text()) for p in generation_paths}
    rows = []
    for grade_path in grade_paths:
        grade_meta = json.loads(meta_path(grade_path).read_text())
        gen_id = grade_meta["key"]["generation"]
        gen_meta = generations[gen_id]
        rows.append({
            "generation": gen_id,
            "grade": Path(grade_path).parent.name,
            "trace": gen_meta["key"]["trace"],
            "questions": gen_meta["questions"],
            "generated": gen_meta["generated"],
            "reforked": gen_meta["reforked"],
            "from_cache": gen_meta["questions"] - gen_meta["generated"] - gen_meta["reforked"],
            "decode_tokens": gen_meta["counters"]["decode_tokens"] + gen_meta["counters"]["fork_tokens"],
            "seconds": gen_meta["seconds"],
        })
    return rows


def config_summary(config: dict) -> dict:
    """The study's identity in the report: a hash of the config (runtime settings left out by the
    caller) and its size; small enough to be a job parameter."""
    return {"hash": content_id(config), "bytes": len(canonical_json(config))}


def collect(config_summary: dict, grade_paths: list[str], generation_paths: list[str],
            benchmark_paths: list[str]) -> dict:
    return {
        "versions": {name: versions.package_version(name) for name in PACKAGES}
        | {"python": platform.python_version(), "platform": platform.platform()},
        "config": config_summary,
        "code": {
            "quantizer": versions.QUANTIZER_VERSION,
            "generator": versions.GENERATOR_VERSION,
            "grader": versions.GRADER_VERSION,
        },
        "generations": generation_records(grade_paths, generation_paths),
        "timings": read_benchmarks(benchmark_paths),
    }
