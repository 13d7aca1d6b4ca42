"""Every check of a config before any job: the settings' own (schema, defaults, cross-field
rules), then those that need a stage's knowledge (what this machine's engines can run, the
adaptive rule's floor, the records of local dataset files). The settings layer imports no
stage; this module calls both.
"""

from __future__ import annotations

from pathlib import Path

from bitbudget import capabilities
from bitbudget.adaptive.closing import MAX_CERTIFICATION_DRAWS, certifications, least_gamma
from bitbudget.adaptive.schedule import AdaptiveRule
from bitbudget.config import grid_samples, read_config_file, validate_config
from bitbudget.datasets import DatasetError, load_questions
from bitbudget.errors import ConfigError
from bitbudget.specs import DatasetSpec


def validate_study_config(config: dict) -> dict:
    """Check `config` and fill the schema's defaults in place, then refuse what the stages
    could not run; every error names the field and the fix."""
    validate_config(config)
    check_adaptive(config)
    capabilities.check_config(config)
    check_dataset_files(config)
    return config


def check_dataset_files(config: dict) -> None:
    for name, dataset in config["datasets"].items():
        if dataset["source"] == "file":
            check_dataset_file(name, dataset)


def check_dataset_file(name: str, dataset: dict) -> None:
    """Read a local dataset file's questions once, as a generate job will: a malformed record,
    a missing column or an answer outside its question's options stops planning, naming the
    field and the file (and the line or the question)."""
    field, path = f"datasets.{name}.file", dataset["file"]
    try:
        questions = load_questions(DatasetSpec.from_config(dataset, name))
    except DatasetError as error:
        raise ConfigError(f"config field '{field}': {path}: {error}") from None
    if not questions:
        raise ConfigError(f"config field '{field}': {path} holds no questions; fix: point it at a parquet or "
                          f"JSONL file with one question per record")


def load_study_config(path: str | Path) -> dict:
    """A config from one file, checked as a run would check it, its defaults filled."""
    return validate_study_config(read_config_file(path))


def check_adaptive(config: dict) -> None:
    """A curtail_gamma whose share per deciding round no certification of
    :data:`MAX_CERTIFICATION_DRAWS` completions could get under would stop nothing."""
    adaptive = config["sampling"].get("adaptive")
    if adaptive is None:
        return
    grids = [grid for grid in config["grids"].values() if grid["adaptive"]] or config["grids"].values()
    maximum = max(grid_samples(config, grid) for grid in grids)  # the grids drawn in rounds set them (rounds.rule_of)
    rule = AdaptiveRule.from_config(config["sampling"], maximum)
    least = least_gamma(rule.deciding_rounds, rule.confidence, certifications(rule))
    if rule.deciding_rounds and rule.gamma < least:
        raise ConfigError(
            f"config field 'sampling.adaptive.curtail_gamma': {rule.gamma} split over the {rule.deciding_rounds} "
            f"deciding rounds of {rule.rounds} samples per question is {rule.gamma / rule.deciding_rounds:.3g} a round, "
            f"and certifying a round's closings below that at sampling.adaptive.confidence {rule.confidence} takes "
            f"more than the {MAX_CERTIFICATION_DRAWS} predictive draws a round may draw: nothing would ever stop; "
            f"fix: set it to at least {least:.4f} (or fewer rounds: a larger sampling.adaptive.initial or step; "
            f"or lower sampling.adaptive.confidence)"
        )
