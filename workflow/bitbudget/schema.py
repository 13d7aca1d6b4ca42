"""The config schema: the user-facing reference of every field and the one source of defaults.

Bottom layer: stages that need a default read it here, never through the settings module.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def load_schema(schema_path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(schema_path).read_text())


@cache
def _schema() -> dict:
    return load_schema()


def schema_defaults(*path: str) -> dict:
    """The schema's defaults for the fields of one object; "*" steps into a named entry, e.g.
    schema_defaults("models", "*", "train", "task")."""
    node = _schema()
    for name in path:
        node = node["additionalProperties"] if name == "*" else node["properties"][name]
    return {name: spec["default"] for name, spec in node["properties"].items() if "default" in spec}
