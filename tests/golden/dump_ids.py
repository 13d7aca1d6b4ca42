"""Print every artifact id a config produces, with engine and package versions pinned.

Used to make tests/golden/ids-*.json (python tests/golden/dump_ids.py config/config.yaml)
and by tests/unit/test_golden_ids.py to check that a refactor keeps ids byte-identical.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

#: versions the golden ids were made with; the ids depend on them, so they are pinned here
PINNED_ENGINES = {
    "hf": {"name": "hf", "package": "transformers", "version": "golden"},
    "vllm": {"name": "vllm", "package": "vllm", "version": "golden"},
    "simulated": {"name": "simulated", "package": "bitbudget", "version": "golden"},
}
PINNED_PACKAGE_VERSION = "golden"


def pin_versions(monkeypatch_setattr) -> None:
    """Make ids independent of what is installed: engines and packages report fixed versions."""
    from bitbudget import study, versions

    monkeypatch_setattr(study, "_engine_identity", lambda name, python=None: dict(PINNED_ENGINES[name]))
    monkeypatch_setattr(versions, "package_version", lambda name: PINNED_PACKAGE_VERSION)


def study_ids(config_paths: list[str]) -> dict:
    from bitbudget.study import build_study

    config: dict = {}
    for path in config_paths:
        config = _merge(config, yaml.safe_load(Path(path).read_text()))
    study = build_study(config)
    return {
        "checkpoints": sorted(study.checkpoints),
        "traces": sorted({g.trace_id for g in study.generations.values()}),
        "generations": sorted(study.generations),
        "grades": sorted(study.grades),
        "scenarios": sorted(s["scenario_id"] for s in study.scenarios),
    }


def _merge(base: dict, overlay: dict) -> dict:
    """Snakemake's rule for several --configfile: later files update earlier ones, recursively."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


if __name__ == "__main__":
    pin_versions(setattr)
    print(json.dumps(study_ids(sys.argv[1:]), indent=1))
