"""Every check of a config before any job: the settings' own (schema, defaults, cross-field
rules), then those that need a stage's knowledge (what this machine's engines can run, the
adaptive rule's floor, the records of local dataset files). The settings layer imports no
stage; this module calls both.
"""

from __future__ import annotations

from pathlib import Path

from bitbudget import capabilities
from bitbudget.adaptive.closing import CURTAIL_DRAWS, curtail_floor
from bitbudget.config import read_config_file, validate_config
from bitbudget.datasets import DatasetError, load_questions
from bitbudget.errors import ConfigError


def validate_study_config(config: dict) -> dict:
    """Check `config` and fill the schema's defaults in place, then refuse what the stages
    could not run; every error names the field and the fix."""
    validate_config(config)
    check_adaptive(config["sampling"].get("adaptive"))
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
        questions = load_questions(dataset)
    except DatasetError as error:
        raise ConfigError(f"config field '{field}': {path}: {error}") from None
    if not questions:
        raise ConfigError(f"config field '{field}': {path} holds no questions; fix: point it at a parquet or "
                          f"JSONL file with one question per record")


def load_study_config(path: str | Path) -> dict:
    """A config from one file, checked as a run would check it, its defaults filled."""
    return validate_study_config(read_config_file(path))


def check_adaptive(adaptive: dict | None) -> None:
    """A curtail_gamma the rule's Monte Carlo bound can never get under would stop nothing."""
    if adaptive is None:
        return
    floor = curtail_floor(adaptive["confidence"])
    if adaptive["curtail_gamma"] <= floor:
        raise ConfigError(
            f"config field 'sampling.adaptive.curtail_gamma': {adaptive['curtail_gamma']} is at or below "
            f"{floor:.4f}, the least change probability {CURTAIL_DRAWS} predictive draws bound at "
            f"sampling.adaptive.confidence {adaptive['confidence']}: nothing would ever stop; fix: set it above "
            f"{floor:.4f} (or lower sampling.adaptive.confidence)"
        )
