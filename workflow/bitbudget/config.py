"""Load and check a study configuration before any job runs."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from bitbudget.errors import ConfigError  # re-exported: callers import it from here
from bitbudget.kvspec import check_kv_strategy
from bitbudget.schema import SCHEMA_PATH, load_schema, schema_defaults  # noqa: F401 (re-exported)

# Which named section each grid axis refers to.
GRID_REFERENCES = {
    "models": "models",
    "weight_formats": "weight_formats",
    "kv_strategies": "kv_strategies",
    "datasets": "datasets",
}


#: (field, value) a config may still give from before the value was removed (value None: the
#: field itself was removed) -> why, and the fix
REMOVED = {
    ("sampling.adaptive.rule", "confidence"): (
        "the confidence rule stopped no generation on the simulated paper grid (tokens adaptive/full 1.00, "
        "docs/adaptive.md); fix: set it to 'curtail' or leave it out (curtail is the default), and remove "
        "sampling.adaptive.epsilon"),
    ("sampling.adaptive.epsilon", None): (
        "it was the indifference margin of the confidence rule, which is gone (docs/adaptive.md); fix: remove it, "
        "and set a sampling.adaptive.rule of 'confidence' to 'curtail'"),
}


def _field(path) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def schema_errors(config: dict, schema_path: str | Path = SCHEMA_PATH) -> list[str]:
    """Every schema violation of ``config``, each naming its field and the fix, in field order."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_path))
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    return [_schema_message(jsonschema.exceptions.best_match([error]), schema_path) for error in errors]


def _schema_message(error: jsonschema.ValidationError, schema_path: str | Path) -> str:
    field = _field(error.absolute_path)
    removed = _removed(field, error)
    if removed:
        return removed
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
    return f"config field '{field}': {error.message}; fix: {hint}"


def _removed(field: str, error: jsonschema.ValidationError) -> str | None:
    """The message of :data:`REMOVED` for a value or field that was removed, if the error is one."""
    if error.validator == "enum" and isinstance(error.instance, str) and (field, error.instance) in REMOVED:
        return f"config field '{field}': {error.instance!r} was removed: {REMOVED[field, error.instance]}"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        for key in sorted(map(str, error.instance)):
            name = f"{field}.{key}" if error.absolute_path else key
            if (name, None) in REMOVED:
                return f"config field '{name}' was removed: {REMOVED[name, None]}"
    return None


def check_schema(config: dict, schema_path: str | Path = SCHEMA_PATH) -> None:
    """Raise ConfigError for the most relevant schema violation, naming the field."""
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(_schema_message(error, schema_path))


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
        samples = grid_samples(config, grid)
        too_many = [g for g in grid["parallel_samples"] if g > samples]
        if too_many:
            raise ConfigError(
                f"config field 'grids.{grid_name}.parallel_samples': G={too_many} exceeds the "
                f"{samples} samples per question drawn for the pool; fix: lower G or raise "
                f"sampling.samples_per_question"
            )
    for name, strategy in config["kv_strategies"].items():
        check_kv_strategy(strategy, f"kv_strategies.{name}")
    real = models_of_real_engines(config)
    for name, model in config["models"].items():
        _check_model_path(name, model, simulated=name not in real)
    for name, dataset in config["datasets"].items():
        _check_dataset(name, dataset)
    _check_engines_apart(config)
    for name, fmt in config["weight_formats"].items():
        if "calibration" in fmt:
            _check_source(f"weight_formats.{name}.calibration", fmt["calibration"])


def _check_engines_apart(config: dict) -> None:
    """Comparisons pair scenarios of one dataset: simulated data must never meet real data there."""
    for dataset in config["datasets"]:
        grids = {name: _engine_name(config, grid) for name, grid in config["grids"].items()
                 if dataset in grid["datasets"]}
        simulated = sorted(name for name, engine in grids.items() if engine == "simulated")
        real = sorted(name for name, engine in grids.items() if engine != "simulated")
        if simulated and real:
            raise ConfigError(
                f"config field 'grids': dataset '{dataset}' is run by simulated grids {simulated} and by real-engine "
                f"grids {real}, and the analysis would compare their scenarios with each other; fix: run all of "
                f"them with one kind of engine (engine.name, or each grid's engine.name), or give the simulated "
                f"grids their own dataset"
            )


def grid_engine(config: dict, grid: dict) -> dict:
    """The global engine with the grid's overrides (e.g. the HF engine for KV-cache strategies);
    a grid without an `engine` section overrides nothing."""
    return {**config["engine"], **grid.get("engine", {})}


def grid_samples(config: dict, grid: dict) -> int:
    """Samples per question a grid draws: its own `samples_per_question`, else sampling's."""
    return grid.get("samples_per_question", config["sampling"]["samples_per_question"])


def model_resources(config: dict, model: str) -> dict:
    """A model's generate-job resources: resources.generate with the model's overrides."""
    return {**config["resources"]["generate"], **config["models"][model].get("resources", {})}


def _engine_name(config: dict, grid: dict) -> str:
    return grid_engine(config, grid)["name"]


def _check_source(field: str, section: dict, sourced_from=("hub", "file")) -> None:
    """A `source:` among ``sourced_from`` has its own section, and a local file exists."""
    source = section["source"]
    if source in sourced_from and source not in section:
        raise ConfigError(f"config field '{field}.{source}': source '{source}' needs this section; fix: add it")
    if source == "file" and not Path(section["file"]).is_file():
        raise ConfigError(
            f"config field '{field}.file': {section['file']} does not exist (paths are relative to the "
            f"directory snakemake runs in); fix: create it or correct the path"
        )


def looks_local(path: str) -> bool:
    """A model path meant as a directory here, not a hub id: absolute, ./ or ../, ~, more than
    org/name, or org/name whose first part is a directory here (e.g. resources/...)."""
    if path.startswith(("/", "./", "../", "~")) or path.count("/") > 1:
        return True
    return "/" in path and Path(path.split("/", 1)[0]).is_dir()


def models_of_real_engines(config: dict) -> set[str]:
    """Models that a grid runs with a real engine (the others need an architecture, no weights)."""
    return {model for grid in config["grids"].values() if _engine_name(config, grid) != "simulated"
            for model in grid["models"]}


def _check_model_path(name: str, model: dict, simulated: bool = False) -> None:
    """A local model must exist unless its recipe makes it; hub ids stay unchecked (offline).
    A model only the simulated engine uses may be an architecture JSON (resources/architectures/)."""
    path = model["path"]
    if "train" in model or not looks_local(path) or Path(path).expanduser().is_dir():
        return
    if path.endswith(".json") and Path(path).expanduser().is_file():
        if simulated:
            return
        raise ConfigError(
            f"config field 'models.{name}.path': {path} is an architecture without weights, which only the "
            f"simulated engine can run; fix: point it at a model directory or hub id, or run its grids with "
            f"engine name 'simulated'"
        )
    raise ConfigError(
        f"config field 'models.{name}.path': {path} is not a directory (paths are relative to the directory "
        f"snakemake runs in; a hub id is written org/name); fix: correct the path, or give a training recipe "
        f"under models.{name}.train"
    )


def _check_dataset(name: str, dataset: dict) -> None:
    """The dataset's own fields; its file's records are read by bitbudget.preflight."""
    _check_source(f"datasets.{name}", dataset, sourced_from=("synthetic", "hub", "file"))
    if dataset["source"] == "synthetic":
        spec = dataset["synthetic"]
        if spec["min_difficulty"] > spec["max_difficulty"]:
            raise ConfigError(
                f"config field 'datasets.{name}.synthetic.min_difficulty': exceeds max_difficulty; fix: swap them"
            )


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Check `config` and fill the schema's defaults in place (as Snakemake's validate does).
    The settings' own checks only: bitbudget.preflight adds those that need a stage."""
    from snakemake.utils import validate

    check_schema(config, schema_path)
    validate(config, schema=str(schema_path), set_default=True)
    check_semantics(config)
    return config


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _duplicate_keys(node, path=()):
    """(field path, mark of the repeated key, mark of the first) for every repeated key."""
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value
            if key in seen:
                yield (*path, key), key_node.start_mark, seen[key]
            seen.setdefault(key, key_node.start_mark)
            yield from _duplicate_keys(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, index))


def read_config_file(path: str | Path) -> dict:
    """One config file, with its file and line named on a syntax error or a duplicate key."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {error.problem or error.context}; fix: correct the YAML "
                          f"there (indentation, brackets, quotes)") from None
    for field, mark, first in _duplicate_keys(node):
        raise ConfigError(
            f"config field '{_field(field)}': duplicate key in {path} at line {mark.line + 1} (first at line "
            f"{first.line + 1}); YAML would keep only the last one; fix: remove or rename one of them")
    return yaml.load(text, Loader=_StrictLoader) or {}


def check_config_files(paths) -> None:
    """Every config file Snakemake read: syntax with file and line, no duplicate key."""
    for path in paths:
        read_config_file(path)
