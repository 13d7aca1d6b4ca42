"""Load and check a study configuration before any job runs."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"

# Which named section each grid axis refers to.
GRID_REFERENCES = {
    "models": "models",
    "weight_formats": "weight_formats",
    "kv_strategies": "kv_strategies",
    "datasets": "datasets",
}
HQQ_KV_BITS = (2, 4, 8)
QUANTO_KV_BITS = (2, 4)


class ConfigError(ValueError):
    """A config value is wrong; the message names the field and the fix."""


def _field(path) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def load_schema(schema_path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(schema_path).read_text())


def check_schema(config: dict, schema_path: str | Path = SCHEMA_PATH) -> None:
    """Raise ConfigError for the most relevant schema violation, naming the field."""
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    if error.validator == "additionalProperties":
        hint = "remove it or fix its spelling; the schema lists the allowed fields"
    elif error.validator == "enum":
        hint = f"use one of {error.validator_value}"
    elif error.validator == "type":
        hint = f"give a value of type {error.validator_value}"
    elif error.validator == "required":
        hint = "add the missing field"
    else:
        hint = f"see {Path(schema_path).name}"
    raise ConfigError(f"config field '{_field(error.absolute_path)}': {error.message}; fix: {hint}")


def check_semantics(config: dict) -> None:
    """Cross-field rules a JSON schema cannot express."""
    for grid_name, grid in config["grids"].items():
        for axis, section in GRID_REFERENCES.items():
            for name in grid[axis]:
                if name not in config[section]:
                    raise ConfigError(
                        f"config field 'grids.{grid_name}.{axis}': '{name}' is not defined; "
                        f"fix: define it under '{section}' (defined: {sorted(config[section])})"
                    )
        samples = grid.get("samples_per_question", config["sampling"]["samples_per_question"])
        too_many = [g for g in grid["parallel_samples"] if g > samples]
        if too_many:
            raise ConfigError(
                f"config field 'grids.{grid_name}.parallel_samples': G={too_many} exceeds the "
                f"{samples} samples per question drawn for the pool; fix: lower G or raise "
                f"sampling.samples_per_question"
            )
    for name, strategy in config["kv_strategies"].items():
        _check_kv_strategy(name, strategy)
    for name, dataset in config["datasets"].items():
        _check_dataset(name, dataset)
    for name, fmt in config["weight_formats"].items():
        if "calibration" in fmt:
            _check_source(f"weight_formats.{name}.calibration", fmt["calibration"])
    from .capabilities import check_config as check_capabilities  # the engine/format/KV combinations

    check_capabilities(config)


def _check_kv_strategy(name: str, strategy: dict) -> None:
    field = f"kv_strategies.{name}"
    method = strategy["method"]
    if method == "quantized":
        allowed = HQQ_KV_BITS if strategy.get("backend", "hqq") == "hqq" else QUANTO_KV_BITS
        if strategy["bits"] not in allowed:
            raise ConfigError(
                f"config field '{field}.bits': {strategy['bits']}-bit is not supported by the "
                f"{strategy.get('backend', 'hqq')} backend; fix: use one of {list(allowed)}"
            )
    if method == "streaming_llm" and strategy["budget"] <= strategy.get("sink_tokens", 4):
        raise ConfigError(
            f"config field '{field}.budget': KV budget {strategy['budget']} must exceed "
            f"sink_tokens={strategy.get('sink_tokens', 4)}; fix: raise the budget"
        )
    if method == "r_kv" and strategy["budget"] < strategy.get("observation_window", 8):
        raise ConfigError(
            f"config field '{field}.budget': KV budget {strategy['budget']} is below the "
            f"observation window; fix: raise the budget"
        )


def _check_source(field: str, section: dict, sourced_from=("hub", "file")) -> None:
    """A `source:` among ``sourced_from`` has its own section, and a local file exists."""
    source = section.get("source", "synthetic")
    if source in sourced_from and source not in section:
        raise ConfigError(f"config field '{field}.{source}': source '{source}' needs this section; fix: add it")
    if source == "file" and not Path(section["file"]).is_file():
        raise ConfigError(
            f"config field '{field}.file': {section['file']} does not exist (paths are relative to the "
            f"directory snakemake runs in); fix: create it or correct the path"
        )


def _check_dataset(name: str, dataset: dict) -> None:
    _check_source(f"datasets.{name}", dataset, sourced_from=("synthetic", "hub", "file"))
    if dataset["source"] == "synthetic":
        spec = dataset["synthetic"]
        if spec["min_difficulty"] > spec["max_difficulty"]:
            raise ConfigError(
                f"config field 'datasets.{name}.synthetic.min_difficulty': exceeds max_difficulty; fix: swap them"
            )


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Check `config` and fill the schema's defaults in place (as Snakemake's validate does)."""
    from snakemake.utils import validate

    check_schema(config, schema_path)
    validate(config, schema=str(schema_path), set_default=True)
    check_semantics(config)
    return config


def load_config(path: str | Path) -> dict:
    return validate_config(yaml.safe_load(Path(path).read_text()))
